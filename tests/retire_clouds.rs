//! The retire paths every provider shares, end to end, from one set of test
//! bodies run on both clouds (`on_both_clouds!`): `aws::<name>` against an Auto Scaling group in
//! moto, `gce::<name>` against a managed instance group in gce-sim (the
//! operator binary reaching it with a service-account key, as it would
//! Compute). Scale in, scale up during scale-in, explicit retire and
//! replace, a drain deadline, SIGKILL restarts and lost records, a deleted
//! pool. Every test asserts the group's size (`desired`: the ASG's desired
//! capacity, the MIG's `targetSize`) and ends by asserting the simulator
//! saw no safety violation (no VM killed under a live allocation).

use std::time::Duration;

use nomad_pool_operator::api::{RetirePhase, RetireReason};
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

on_both_clouds!(
    scale_in_waits_for_running_jobs_then_terminates_with_decrement,
    raising_replicas_cancels_drains_before_growing_the_group,
    explicit_retire_with_replacement_keeps_the_group_size,
    drain_deadline_lets_nomad_stop_stuck_jobs_then_retires,
    restarted_controller_adopts_the_drain_and_never_decrements_twice,
    deleting_a_pool_returns_cordoned_nodes_and_terminates_nothing,
    controller_that_lost_its_status_adopts_its_own_drain_from_nomad,
);

async fn scale_in_waits_for_running_jobs_then_terminates_with_decrement(cloud: Cloud) {
    let w = setup_on(cloud, "scale-in", 4).await;
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

async fn raising_replicas_cancels_drains_before_growing_the_group(cloud: Cloud) {
    let w = setup_on(cloud, "scale-up", 4).await;
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

async fn explicit_retire_with_replacement_keeps_the_group_size(cloud: Cloud) {
    let w = setup_on(cloud, "replace", 3).await;
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
    match cloud {
        Cloud::Aws => assert!(!g.instances.iter().any(|i| i.id == instance)),
        // recreateInstances keeps the name: the old VM id stays listed,
        // RECREATING, until the new VM exists under a new id.
        Cloud::Gce => {
            assert!(
                g.instances
                    .iter()
                    .filter(|i| i.id == instance)
                    .all(|i| i.lifecycle.starts_with("RECREATING/")),
                "the replaced VM is being recreated: {g:?}"
            );
            wait_for("the replaced VM id to leave the group", T, || async {
                let g = w.group().await;
                (!g.instances.iter().any(|i| i.id == instance)).then_some(())
            })
            .await;
        }
    }
    wait_for("the replacement to join", T, || async {
        (w.ready_nodes().await.len() == 3).then_some(())
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

async fn drain_deadline_lets_nomad_stop_stuck_jobs_then_retires(cloud: Cloud) {
    let w = setup_on(cloud, "deadline", 2).await;
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

async fn restarted_controller_adopts_the_drain_and_never_decrements_twice(cloud: Cloud) {
    let mut w = setup_on(cloud, "restart", 3).await;
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

async fn deleting_a_pool_returns_cordoned_nodes_and_terminates_nothing(cloud: Cloud) {
    let w = setup_on(cloud, "delete", 3).await;
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

async fn controller_that_lost_its_status_adopts_its_own_drain_from_nomad(cloud: Cloud) {
    let mut w = setup_on(cloud, "adopt", 3).await;
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
