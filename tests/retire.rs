//! The retire loop end to end: the operator binary against the real API
//! server, moto and the Nomad simulator. Every test ends by asserting the
//! simulator saw no safety violation (no VM killed under a live allocation).
//! The paths every provider shares (scale in, scale up during scale-in,
//! explicit retire and replace, SIGKILL restarts) are in `retire_clouds.rs`,
//! run on moto and on gce-sim; these are the AWS- and Nomad-specific ones.

use std::time::Duration;

use nomad_pool_operator::api::RetirePhase;
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn paused_pool_starts_nothing_and_dry_run_only_plans() {
    let w = setup("pause", 3).await;
    w.apply_pool(&w.pool_manifest(
        "paused",
        json!({"replicas": 1, "disruption": {"paused": true}}),
    ))
    .await;
    let st = w
        .wait_status("paused", "Paused reported", T, |s| {
            condition(s, "Progressing").is_some_and(|c| c.reason == "Paused")
        })
        .await;
    assert!(st.retiring.is_empty());

    w.pools()
        .delete("paused", &Default::default())
        .await
        .unwrap();
    w.apply_pool(&w.pool_manifest(
        "dry",
        json!({"replicas": 1, "disruption": {"dryRun": true, "maxUnavailable": 2}}),
    ))
    .await;
    let st = w
        .wait_status("dry", "a dry-run plan", T, |s| s.plan.len() == 2)
        .await;
    assert!(st.retiring.is_empty());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.group().await.desired, 3);
    assert!(
        w.sim
            .nodes()
            .await
            .iter()
            .all(|n| n["eligibility"] == "eligible"),
        "dry run touches nothing"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn nomad_permission_denied_and_unreachable_show_as_conditions() {
    let w = World::new(
        "acl",
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
    let mut w = w;
    w.create_aws_secret().await;
    let token = json!({"token": "wrong-token"});
    create_secret(&w.client, &w.namespace, "nomad", "nomad-token", token).await;
    w.start_operator().await;
    w.apply_pool(&w.pool_manifest(
        "denied",
        json!({"replicas": 0, "nomad": {"tokenSecretRef": {"name": "nomad"}}}),
    ))
    .await;
    let st = w
        .wait_status("denied", "Unauthorized", T, |s| {
            condition(s, "Degraded").is_some_and(|c| c.reason == "Unauthorized")
        })
        .await;
    let msg = &condition(&st, "Degraded").unwrap().message;
    assert!(
        !msg.contains("wrong-token"),
        "a token must never appear in status: {msg}"
    );

    w.apply_pool(&w.pool_manifest(
        "unreachable",
        json!({"nomad": {"address": "http://127.0.0.1:9"}}),
    ))
    .await;
    w.wait_status("unreachable", "NomadUnreachable", T, |s| {
        condition(s, "Degraded").is_some_and(|c| c.reason == "NomadUnreachable")
    })
    .await;
    assert_eq!(w.group().await.desired, 1);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn preflight_refuses_when_terminate_is_suspended_or_at_min_size() {
    let w = setup("preflight", 2).await;
    w.set_terminate_suspended(true).await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 1})))
        .await;
    let st = w
        .wait_status("pool", "PreflightFailed", T, |s| {
            condition(s, "Degraded").is_some_and(|c| c.reason == "PreflightFailed")
        })
        .await;
    assert!(
        condition(&st, "Degraded")
            .unwrap()
            .message
            .contains("Terminate"),
        "{st:?}"
    );
    assert!(
        st.retiring.is_empty(),
        "nothing is drained that the cloud would refuse to remove"
    );
    assert!(
        w.sim
            .nodes()
            .await
            .iter()
            .all(|n| n["eligibility"] == "eligible")
    );

    // Resume Terminate but raise MinSize to the current size: still refused.
    w.set_terminate_suspended(false).await;
    w.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&w.group)
        .min_size(2)
        .send()
        .await
        .unwrap();
    let st = w
        .wait_status("pool", "MinSize refusal", T, |s| {
            condition(s, "Degraded")
                .is_some_and(|c| c.reason == "PreflightFailed" && c.message.contains("min"))
        })
        .await;
    assert!(st.retiring.is_empty());
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn client_given_back_after_its_drain_finished_keeps_its_owners_cordon() {
    // Someone cordoned client A; the spec names it for replacement; its drain
    // finishes while the cloud refuses the terminate; then the spec drops it.
    // Nomad keeps the finished drain's Meta (a cancel of a finished drain
    // changes nothing in it), so a controller that adopts by Meta alone
    // takes A back and undoes the owner's cordon, or terminates it.
    let mut w = setup("given-back", 3).await;
    let jobs = w.busy_everywhere().await;
    let (victim, alloc) = jobs[0].clone();
    let node = |nodes: Vec<serde_json::Value>| {
        nodes
            .into_iter()
            .find(|n| n["id"] == victim.as_str())
            .unwrap()
    };
    let victim_instance = node(w.sim.nodes().await)["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    w.sim
        .post(
            &format!("/v1/node/{victim}/eligibility"),
            json!({"Eligibility": "ineligible"}),
        )
        .await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 3, "retire": [{"nodeID": victim, "replace": true}]}),
    ))
    .await;
    let st = w
        .wait_status("pool", "A draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    assert!(!st.retiring[0].cordoned_by_pool, "{st:?}");

    // Suspend Terminate; a restarted operator reads the group afresh, so it
    // surely sees that when A's job ends.
    w.set_terminate_suspended(true).await;
    w.restart_operator().await;
    w.sim.finish(&alloc).await;
    w.wait_status("pool", "A drained, terminate refused", T, |s| {
        s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Drained
    })
    .await;

    // The spec drops A: given back, still cordoned as its owner left it.
    w.patch_spec("pool", json!({"retire": []})).await;
    w.wait_status("pool", "A given back", T, |s| s.retiring.is_empty())
        .await;
    // A terminate would now go through; a restarted operator sees that, and
    // has only Nomad's Meta to go by.
    w.set_terminate_suspended(false).await;
    w.restart_operator().await;
    w.patch_spec("pool", json!({"disruption": {"maxUnavailable": 1}}))
        .await;
    let generation = w.pools().get("pool").await.unwrap().metadata.generation;
    w.wait_status("pool", "the edit observed", T, |s| {
        s.observed_generation == generation
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let st = w.status("pool").await;
    assert!(st.retiring.is_empty(), "{st:?}");
    let a = node(w.sim.nodes().await);
    assert_eq!(
        a["eligibility"], "ineligible",
        "the owner's cordon stays: {a}"
    );
    assert_eq!(a["draining"], false, "{a}");
    let g = w.group().await;
    assert_eq!(g.desired, 3);
    assert!(g.instances.iter().any(|i| i.id == victim_instance));
    let events = w.events().await;
    assert!(
        !events.iter().any(|(r, _)| r == "AdoptedDrain"),
        "{events:?}"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_given_back_after_its_drain_finished_is_drained_again_when_named_again() {
    // A's drain finishes while the cloud refuses the terminate; the spec
    // drops A, which goes back to service (eligible) while Nomad keeps the
    // finished drain, Meta and all, as its LastDrain. Named again while
    // Nomad refuses its drains, A must not be taken for drained: it is
    // eligible, and the scheduler may place work on it at any moment.
    let mut w = setup("named-again", 3).await;
    let jobs = w.busy_everywhere().await;
    let (victim, alloc) = jobs[0].clone();
    let instance_of = |nodes: Vec<serde_json::Value>| {
        let n = nodes.into_iter().find(|n| n["id"] == victim.as_str());
        n.and_then(|n| n["instance_id"].as_str().map(str::to_owned))
    };
    let instance = instance_of(w.sim.nodes().await).expect("A's VM");
    let named = json!({"retire": [{"nodeID": victim, "replace": true}]});
    let mut spec = named.clone();
    spec["replicas"] = json!(3);
    w.apply_pool(&w.pool_manifest("pool", spec)).await;
    w.wait_status("pool", "A draining", T, |s| {
        s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
    })
    .await;
    // Suspend Terminate; a restarted operator reads the group afresh, so it
    // surely sees that when A's job ends.
    w.set_terminate_suspended(true).await;
    w.restart_operator().await;
    w.sim.finish(&alloc).await;
    w.wait_status("pool", "A drained, terminate refused", T, |s| {
        s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Drained
    })
    .await;
    w.patch_spec("pool", json!({"retire": []})).await;
    w.wait_status("pool", "A given back", T, |s| s.retiring.is_empty())
        .await;
    wait_for("A eligible again", T, || async {
        let nodes = w.sim.nodes().await;
        let a = nodes.iter().find(|n| n["id"] == victim.as_str())?;
        (a["eligibility"] == "eligible").then_some(())
    })
    .await;

    // Terminate allowed again (a restarted operator reads the group
    // afresh); Nomad refuses every drain of A; the spec names A again.
    w.set_terminate_suspended(false).await;
    w.restart_operator().await;
    let drain_path = format!("/v1/node/{victim}/drain");
    w.sim
        .post(
            "/sim/faults",
            json!({"path_prefix": drain_path, "error_rate": 1.0}),
        )
        .await;
    w.patch_spec("pool", named).await;
    w.wait_status("pool", "A named again", T, |s| s.retiring.len() == 1)
        .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let st = w.status("pool").await;
    assert_eq!(
        st.retiring.iter().map(|r| r.phase).collect::<Vec<_>>(),
        [RetirePhase::Cordoned],
        "A's old drain is not this retirement's: {st:?}"
    );
    let g = w.group().await;
    assert!(
        g.instances.iter().any(|i| i.id == instance),
        "A's VM terminated though its drain never landed: {g:?}"
    );

    // Nomad takes the drain: A is drained, then replaced.
    w.sim.post("/sim/faults", json!({})).await;
    wait_for("A's VM gone", Duration::from_secs(90), || async {
        let g = w.group().await;
        (!g.instances.iter().any(|i| i.id == instance)).then_some(())
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_usable_event_stream_the_node_watch_falls_back_to_blocking_queries() {
    // Every event-stream request fails, as on a Nomad that refuses it.
    falls_back_to_blocking_queries(
        "no-stream",
        json!({"path_prefix": "/v1/event/stream", "error_rate": 1.0}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_refusal_of_nomad_1_11_2_falls_back_to_blocking_queries() {
    // Since 1.11.2 a refused subscription is a 200 that closes with an
    // empty body, not a 403: it looks like a stream that ended at once.
    falls_back_to_blocking_queries("stream-refused", json!({"event_stream_refused": true})).await;
}

/// With `faults` making the event stream unusable, a scale-in completes
/// through blocking list queries, and the stream is not retried in a loop.
async fn falls_back_to_blocking_queries(test: &str, faults: serde_json::Value) {
    let w = setup(test, 3).await;
    w.sim.post("/sim/faults", faults).await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    w.wait_status("pool", "retired through blocking list queries", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    assert_eq!(w.group().await.desired, 2);
    let log = std::fs::read_to_string(&w.operator.as_ref().unwrap().log).unwrap();
    assert!(
        log.contains("watching the node list with blocking queries"),
        "no fallback in the log"
    );
    let stats = w.sim.get("/sim/stats").await;
    let streams: u64 = stats["requests"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.contains("event/stream"))
        .map(|(_, v)| v.as_u64().unwrap_or(0))
        .sum();
    assert!(
        (1..=5).contains(&streams),
        "{streams} subscriptions: an unusable stream must not be retried in a loop"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
