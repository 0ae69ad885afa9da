//! How GitOps tools read live pools and retirements: the real kstatus
//! library (Flux, kubectl-based pipelines) and the Argo CD health checks in
//! deploy/argocd/ run in Lua 5.1, on objects the operator wrote against the
//! real API server, moto and the Nomad simulator.
//!
//! A pipeline waits while kstatus says `InProgress`, moves on at `Current`
//! and stops at `Failed`: a pool that cannot progress without a human must
//! say `Failed` at once instead of keeping the pipeline until its timeout.

use std::time::Duration;

use nomad_pool_operator::api::{NomadClientPool, NomadClientRetirement, RetirementPhase};
use npo_testkit::gitops::live;
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

const POOL_LUA: &str = "health-nomadclientpool.lua";
const NCR_LUA: &str = "health-nomadclientretirement.lua";

/// The pool as the tools see it: (kstatus, Argo CD), after checking that
/// the status and each condition name the generation they describe.
async fn judge_pool(w: &World, name: &str) -> (Verdict, Verdict, Value) {
    let obj = live::<NomadClientPool>(&w.client, &w.namespace, name).await;
    let generation = &obj["metadata"]["generation"];
    assert_eq!(&obj["status"]["observedGeneration"], generation, "{obj:#}");
    for c in obj["status"]["conditions"].as_array().unwrap() {
        assert_eq!(&c["observedGeneration"], generation, "{c:#}");
    }
    (kstatus(&obj), argo_health(POOL_LUA, &obj), obj)
}

async fn judge_ncr(w: &World, name: &str) -> (Verdict, Verdict, Value) {
    let obj = live::<NomadClientRetirement>(&w.client, &w.namespace, name).await;
    (kstatus(&obj), argo_health(NCR_LUA, &obj), obj)
}

/// Both tools' status words, and what they said when they differ from it.
fn assert_judged(judged: &(Verdict, Verdict, Value), kstatus: &str, argo: &str) {
    let (k, a, obj) = judged;
    assert_eq!(
        (k.status.as_str(), a.status.as_str()),
        (kstatus, argo),
        "kstatus: {k:?}\nArgo CD: {a:?}\nobject: {:#}",
        obj["status"]
    );
}

fn true_condition<'a>(s: &'a PoolView, type_: &str) -> Option<&'a str> {
    condition(s, type_)
        .filter(|c| c.status == "True")
        .map(|c| c.reason.as_str())
}

/// A retirement created by hand for pool `pool`, as `kubectl create` would.
async fn create_by_hand(w: &World, name: &str, node_name: &str) {
    let r: NomadClientRetirement = serde_json::from_value(json!({
        "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
        "metadata": {"name": name, "namespace": w.namespace},
        "spec": {"pool": "pool", "target": {"nodeName": node_name}},
    }))
    .unwrap();
    w.retirements_api()
        .create(&Default::default(), &r)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn settled_is_current_retiring_in_progress_and_finished_retirements_current() {
    let w = setup("gitops-retire", 3).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 3})))
        .await;
    w.wait_status("pool", "settled", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True" && c.reason == "Settled")
    })
    .await;
    assert_judged(&judge_pool(&w, "pool").await, "Current", "Healthy");

    // One client retiring, its drain held by its job.
    w.patch_spec("pool", json!({"replicas": 2})).await;
    let st = w
        .wait_status("pool", "one client draining", T, |s| {
            s.retiring.len() == 1 && true_condition(s, "Reconciling").is_some()
        })
        .await;
    let judged = judge_pool(&w, "pool").await;
    assert_judged(&judged, "InProgress", "Progressing");
    let first = st.retirement_of(&st.retiring[0].node_id).unwrap();
    let first = first.metadata.name.clone().unwrap();
    w.wait_retirement(&first, "draining", T, |r| {
        r.phase() == RetirementPhase::Draining
    })
    .await;
    assert_judged(&judge_ncr(&w, &first).await, "InProgress", "Progressing");

    // The spec no longer asks: the retirement is cancelled, which is done.
    w.patch_spec("pool", json!({"replicas": 3})).await;
    w.wait_retirement(&first, "cancelled", T, |r| {
        r.phase() == RetirementPhase::Cancelled
    })
    .await;
    let judged = judge_ncr(&w, &first).await;
    assert_judged(&judged, "Current", "Healthy");
    assert!(judged.1.message.starts_with("Cancelled"), "{:?}", judged.1);

    // Asked again, and its job finishes: retired, done.
    w.patch_spec("pool", json!({"replicas": 2})).await;
    // The same client may be chosen again: a new object, the first one kept.
    let in_flight = |s: &PoolView| {
        s.retirements
            .iter()
            .find(|r| r.phase().in_flight().is_some())
            .and_then(|r| {
                Some((
                    r.metadata.name.clone()?,
                    r.status.as_ref()?.node_id.clone()?,
                ))
            })
    };
    let st = w
        .wait_status("pool", "a new retirement", T, |s| {
            in_flight(s).is_some_and(|(name, _)| name != first)
        })
        .await;
    let (second, node) = in_flight(&st).unwrap();
    let (_, alloc) = jobs.iter().find(|(n, _)| *n == node).unwrap();
    w.sim.finish(alloc).await;
    w.wait_retirement(&second, "retired", T, |r| {
        r.phase() == RetirementPhase::Retired
    })
    .await;
    assert_judged(&judge_ncr(&w, &second).await, "Current", "Healthy");
    w.wait_status("pool", "settled at 2", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True" && c.reason == "Settled")
            && s.retiring.is_empty()
    })
    .await;
    assert_judged(&judge_pool(&w, "pool").await, "Current", "Healthy");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn paused_and_dry_run_are_current_an_unknown_target_fails() {
    let w = setup("gitops-held", 3).await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 1, "disruption": {"paused": true}}),
    ))
    .await;
    w.wait_status("pool", "held by the pause", T, |s| {
        true_condition(s, "Ready") == Some("Paused")
    })
    .await;
    let judged = judge_pool(&w, "pool").await;
    assert_judged(&judged, "Current", "Suspended");
    assert!(judged.1.message.contains("paused"), "{:?}", judged.1);

    // A retirement asked of a paused pool waits: in progress, not failed.
    let victim = w.ready_nodes().await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    create_by_hand(&w, "waits", &victim).await;
    w.wait_retirement("waits", "pending while paused", T, |r| {
        r.status.as_ref().is_some_and(|s| {
            s.phase == Some(RetirementPhase::Pending)
                && s.conditions.iter().any(|c| c.type_ == "Reconciling")
        })
    })
    .await;
    assert_judged(&judge_ncr(&w, "waits").await, "InProgress", "Progressing");
    w.retirements_api()
        .delete("waits", &Default::default())
        .await
        .unwrap();

    w.patch_spec(
        "pool",
        json!({"disruption": {"paused": false, "dryRun": true, "maxUnavailable": 2}}),
    )
    .await;
    w.wait_status("pool", "a dry-run plan", T, |s| {
        s.plan.len() == 2 && true_condition(s, "Ready") == Some("DryRun")
    })
    .await;
    assert_judged(&judge_pool(&w, "pool").await, "Current", "Suspended");
    assert_eq!(w.group().await.desired, 3, "the dry run touched nothing");

    // A target that names no client: both fail, saying which.
    w.patch_spec(
        "pool",
        json!({"replicas": null, "disruption": {"dryRun": false}}),
    )
    .await;
    w.wait_status("pool", "settled at the group's size", T, |s| {
        true_condition(s, "Ready") == Some("Settled")
    })
    .await;
    create_by_hand(&w, "ghost", "ghost-client").await;
    w.wait_retirement("ghost", "stalled", T, |r| {
        r.status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == "Stalled" && c.status == "True")
        })
    })
    .await;
    let judged = judge_ncr(&w, "ghost").await;
    assert_judged(&judged, "Failed", "Degraded");
    assert!(judged.0.message.contains("ghost-client"), "{:?}", judged.0);
    w.wait_status("pool", "stalled on the ghost", T, |s| {
        true_condition(s, "Stalled") == Some("UnknownRetireTarget")
    })
    .await;
    let judged = judge_pool(&w, "pool").await;
    assert_judged(&judged, "Failed", "Degraded");
    assert!(judged.0.message.contains("ghost-client"), "{:?}", judged.0);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_token_and_a_missing_group_fail_an_unreachable_nomad_waits() {
    let mut w = World::new(
        "gitops-fail",
        WorldOptions {
            size: 1,
            sim: SimOptions {
                acl_tokens: vec![("good-token".into(), nomad_sim::acl::Policy::NodeWrite)],
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    w.create_aws_secret().await;
    create_secret(
        &w.client,
        &w.namespace,
        "wrong",
        "nomad-token",
        json!({"token": "wrong-token"}),
    )
    .await;
    create_secret(
        &w.client,
        &w.namespace,
        "good",
        "nomad-token",
        json!({"token": "good-token"}),
    )
    .await;
    w.start_operator().await;

    w.apply_pool(&w.pool_manifest(
        "denied",
        json!({"nomad": {"tokenSecretRef": {"name": "wrong"}}}),
    ))
    .await;
    w.wait_status("denied", "Stalled Unauthorized", T, |s| {
        true_condition(s, "Stalled") == Some("Unauthorized")
    })
    .await;
    let judged = judge_pool(&w, "denied").await;
    assert_judged(&judged, "Failed", "Degraded");
    assert!(judged.0.message.contains("denied"), "{:?}", judged.0);
    assert!(
        !judged.2.to_string().contains("wrong-token"),
        "a token in status"
    );

    let mut missing = w.pool_manifest(
        "missing",
        json!({"nomad": {"tokenSecretRef": {"name": "good"}}}),
    );
    missing["spec"]["provider"]["awsAutoScalingGroup"]["name"] = json!("no-such-group");
    w.apply_pool_untagged(&missing).await;
    w.wait_status("missing", "Stalled on the missing group", T, |s| {
        true_condition(s, "Stalled").is_some()
    })
    .await;
    let judged = judge_pool(&w, "missing").await;
    assert_judged(&judged, "Failed", "Degraded");
    assert!(judged.0.message.contains("no-such-group"), "{:?}", judged.0);

    // Nothing answers: may pass by itself, so the pipeline keeps waiting.
    w.apply_pool(&w.pool_manifest(
        "unreachable",
        json!({"nomad": {"address": "http://127.0.0.1:9"}}),
    ))
    .await;
    w.wait_status("unreachable", "NomadUnreachable", T, |s| {
        true_condition(s, "Degraded") == Some("NomadUnreachable")
    })
    .await;
    let judged = judge_pool(&w, "unreachable").await;
    assert_judged(&judged, "InProgress", "Degraded");
    w.cleanup().await;
}

/// The argocd-cm patch installs exactly the scripts tested above.
#[test]
fn the_argocd_cm_patch_carries_the_tested_scripts() {
    let dir = repo_root().join("deploy/argocd");
    let patch: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("argocd-cm.yaml")).unwrap())
            .unwrap();
    for (kind, script) in [
        ("NomadClientPool", POOL_LUA),
        ("NomadClientRetirement", NCR_LUA),
    ] {
        let key = format!("resource.customizations.health.nomadpool.dev_{kind}");
        assert_eq!(
            patch["data"][key.as_str()].as_str(),
            Some(std::fs::read_to_string(dir.join(script)).unwrap().as_str()),
            "{key} differs from deploy/argocd/{script}"
        );
    }
}
