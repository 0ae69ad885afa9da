//! The retire loop end to end: the operator binary against the real API
//! server, moto and the Nomad simulator. Every test ends by asserting the
//! simulator saw no safety violation (no VM killed under a live allocation).

use std::time::Duration;

use nomad_pool_operator::api::{RetirePhase, RetireReason};
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn scale_in_waits_for_running_jobs_then_terminates_with_decrement() {
    let w = setup("scale-in", 4).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2}}),
    ))
    .await;

    // Two clients drain; their jobs keep them (and their VMs) alive.
    let st = w
        .wait_status("pool", "two clients draining", T, |s| {
            s.retiring.len() == 2
                && s.retiring.iter().all(|r| {
                    r.phase == RetirePhase::Draining
                        && r.allocations_left == 1
                        && !r.blocking_jobs.is_empty()
                })
        })
        .await;
    for r in &st.retiring {
        assert_eq!(r.blocking_jobs, [format!("ci-build-{}", &r.node_id[..8])]);
        assert_eq!(r.reason, RetireReason::ScaleIn);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let g = w.group().await;
    assert_eq!(g.desired, 4, "no VM may go while its job runs");
    assert_eq!(g.instances.len(), 4);

    // Jobs finish: the VMs go, the group shrinks by exactly two.
    for (node, alloc) in &jobs {
        if st.retiring.iter().any(|r| &r.node_id == node) {
            w.sim.finish(alloc).await;
        }
    }
    let st = w
        .wait_status("pool", "pool settled at 2", T, |s| {
            s.retiring.is_empty()
                && s.retired_total == 2
                && condition(s, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(st.desired_nodes, Some(2));
    let g = w.group().await;
    assert_eq!(g.desired, 2);
    assert_eq!(g.instances.len(), 2);
    let retired: Vec<&String> = jobs
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !st.retiring.iter().any(|r| &&r.node_id == n))
        .collect();
    assert_eq!(retired.len(), 4);
    // The purged nodes are gone from Nomad; the survivors still run their jobs.
    wait_for("purged nodes to leave Nomad", T, || async {
        (w.sim.nodes().await.len() == 2).then_some(())
    })
    .await;
    // One event per node and phase: never folded into another node's series.
    let retired: Vec<String> = w
        .events()
        .await
        .into_iter()
        .filter(|(r, _)| r == "Retired")
        .map(|(_, n)| n)
        .collect();
    assert_eq!(retired.len(), 2, "{retired:?}");
    assert_ne!(retired[0], retired[1]);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn raising_replicas_cancels_drains_before_growing_the_group() {
    let w = setup("scale-up", 4).await;
    w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2}}),
    ))
    .await;
    let st = w
        .wait_status("pool", "two draining", T, |s| {
            s.retiring
                .iter()
                .filter(|r| r.phase == RetirePhase::Draining)
                .count()
                == 2
        })
        .await;
    let draining: Vec<String> = st.retiring.iter().map(|r| r.node_id.clone()).collect();

    w.patch_spec("pool", json!({"replicas": 5})).await;
    w.wait_status("pool", "drains cancelled and group grown", T, |s| {
        s.retiring.is_empty() && s.group_desired_capacity == Some(5)
    })
    .await;
    let nodes = w.sim.nodes().await;
    for id in &draining {
        let n = nodes
            .iter()
            .find(|n| n["id"] == id.as_str())
            .expect("cancelled node still exists");
        assert_eq!(
            n["eligibility"], "eligible",
            "a cancelled retirement returns the node to service: {n}"
        );
        assert_eq!(n["draining"], false);
    }
    wait_for("the fifth client to join", T, || async {
        (w.ready_nodes().await.len() == 5).then_some(())
    })
    .await;
    assert_eq!(w.group().await.desired, 5);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn explicit_retire_with_replacement_keeps_the_group_size() {
    let w = setup("replace", 3).await;
    let victim = w.ready_nodes().await[0].clone();
    let instance = victim["instance_id"].as_str().unwrap().to_string();
    w.apply_pool(&w.pool_manifest("pool", json!({"retire": [{"instanceID": instance}]})))
        .await;
    w.wait_status("pool", "replacement retired", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    let g = w.group().await;
    assert_eq!(g.desired, 3, "replace: the group launches a new VM");
    assert!(!g.instances.iter().any(|i| i.id == instance));
    wait_for("the replacement to join", T, || async {
        (w.ready_nodes().await.len() == 3).then_some(())
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_deadline_lets_nomad_stop_stuck_jobs_then_retires() {
    let w = setup("deadline", 2).await;
    w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 1, "drain": {"deadline": "2s"}})))
        .await;
    let st = w
        .wait_status("pool", "retired after the deadline", T, |s| {
            s.retired_total == 1 && s.retiring.is_empty()
        })
        .await;
    assert_eq!(st.desired_nodes, Some(1));
    assert_eq!(w.group().await.desired, 1);
    // Nomad stopped the job at the deadline, before the VM went: no violation.
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

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
async fn restarted_controller_adopts_the_drain_and_never_decrements_twice() {
    let mut w = setup("restart", 3).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    let st = w
        .wait_status("pool", "one draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    let node = st.retiring[0].node_id.clone();

    w.operator.as_mut().unwrap().kill().await;
    // While no controller runs, the job finishes.
    let (_, alloc) = jobs.iter().find(|(n, _)| *n == node).unwrap();
    w.sim.finish(alloc).await;
    w.start_operator().await;

    w.wait_status("pool", "retired after restart", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    let g = w.group().await;
    assert_eq!(g.desired, 2, "exactly one decrement");
    assert_eq!(g.instances.len(), 2);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_pool_returns_cordoned_nodes_and_terminates_nothing() {
    let w = setup("delete", 3).await;
    w.busy_everywhere().await;
    // Budget 1 and all busy: one drains, nothing else is touched.
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 1, "disruption": {"maxUnavailable": 1}}),
    ))
    .await;
    w.wait_status("pool", "one draining", T, |s| {
        s.retiring.iter().any(|r| r.phase == RetirePhase::Draining)
    })
    .await;
    w.pools().delete("pool", &Default::default()).await.unwrap();
    wait_for("pool gone", T, || async {
        w.pools()
            .get_opt("pool")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let g = w.group().await;
    assert_eq!(g.desired, 3, "deleting a pool never terminates VMs");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_that_lost_its_status_adopts_its_own_drain_from_nomad() {
    let mut w = setup("adopt", 3).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    let st = w
        .wait_status("pool", "one draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    let node = st.retiring[0].node_id.clone();

    // Crash, and the records are lost too (the retirement objects, the
    // pool's conditions): only Nomad's drain Meta remembers.
    w.operator.as_mut().unwrap().kill().await;
    w.pools()
        .patch_status(
            "pool",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"status": {"conditions": []}})),
        )
        .await
        .unwrap();
    let retirements = w.retirements_api();
    for r in &st.retirements {
        let name = r.metadata.name.as_deref().unwrap();
        let unpin = json!({"metadata": {"finalizers": null}});
        let params = kube::api::PatchParams::default();
        retirements
            .patch(name, &params, &kube::api::Patch::Merge(unpin))
            .await
            .unwrap();
        let _ = retirements.delete(name, &Default::default()).await;
    }
    wait_for("the records gone", T, || async {
        let left = retirements.list(&Default::default()).await.unwrap();
        left.items.is_empty().then_some(())
    })
    .await;
    w.start_operator().await;
    let st = w
        .wait_status("pool", "the drain adopted", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].node_id == node
        })
        .await;
    assert_eq!(
        st.retiring[0].phase,
        RetirePhase::Draining,
        "adopted, not started again elsewhere"
    );

    let (_, alloc) = jobs.iter().find(|(n, _)| *n == node).unwrap();
    w.sim.finish(alloc).await;
    w.wait_status("pool", "retired", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    let g = w.group().await;
    assert_eq!(g.desired, 2);
    let others: Vec<_> = w
        .sim
        .nodes()
        .await
        .into_iter()
        .filter(|n| n["id"] != node.as_str())
        .collect();
    assert!(
        others
            .iter()
            .all(|n| n["eligibility"] == "eligible" && n["draining"] == false),
        "{others:?}"
    );
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
