//! `spec.remediation` and the do-not-retire opt-out (issue 18), end to end
//! against the API server, moto (and gce-sim) and nomad-sim: a client that
//! stays down while its VM runs is replaced (VM terminated, group not
//! shrunk, node purged); `maxUnhealthy` refuses a mass remediation with a
//! condition; a down node whose VM vanished is purged after the grace; a
//! scale-in skips opted-out clients; a VM whose client never registers is
//! replaced, and one a node of another pool runs on is left alone.

use std::collections::HashSet;
use std::time::Duration;

use nomad_pool_operator::api::{DO_NOT_RETIRE_META, RetireReason};
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

on_both_clouds!(
    a_client_that_stays_down_is_replaced_and_its_node_purged,
    a_vm_whose_client_never_registers_is_replaced,
);

/// The client's agent dies; its VM keeps running (the bridge only follows
/// the group). Past `unhealthyAfter` the pool terminates the VM without a
/// decrement: the group launches a replacement whose client registers, and
/// the dead node is purged once its VM is gone.
async fn a_client_that_stays_down_is_replaced_and_its_node_purged(cloud: Cloud) {
    let w = setup_on(cloud, "remedy-down", 3).await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 3, "remediation": {"unhealthyAfter": "2s"}}),
    ))
    .await;
    w.wait_status("pool", "pool ready", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    let before = w.group().await;
    let victim = w.ready_nodes().await[0].clone();
    let (node, vm) = (
        victim["id"].as_str().unwrap().to_string(),
        victim["instance_id"].as_str().unwrap().to_string(),
    );
    w.sim
        .post(&format!("/sim/nodes/{node}/kill"), json!({}))
        .await;

    let st = w
        .wait_status("pool", "the down client replaced", T, |s| {
            s.retired_total == 1 && s.retiring.is_empty()
        })
        .await;
    let r = (st.retirements.iter())
        .find(|r| r.spec.target.node_id.as_deref() == Some(node.as_str()))
        .expect("a retirement for the down client");
    assert_eq!(r.spec.reason, RetireReason::Unhealthy);
    // The node is purged, the VM gone, and the group kept its size.
    wait_for("the dead node purged", T, || async {
        (!w.sim.nodes().await.iter().any(|n| n["id"] == node.as_str())).then_some(())
    })
    .await;
    wait_for("a replacement client", T, || async {
        (w.ready_nodes().await.len() == 3).then_some(())
    })
    .await;
    let after = w.group().await;
    assert_eq!(after.desired, before.desired, "replaced, not shrunk");
    assert!(
        !after.instances.iter().any(|i| i.id == vm),
        "VM {vm} still in the group: {:?}",
        after.instances
    );
    let note = w
        .wait_event(
            "ReplacingUnhealthy",
            |r, n| r == "ReplacingUnhealthy" && n.contains(&vm),
            T,
        )
        .await;
    assert!(note.contains("No allocation"), "{note}");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Two of four clients go down with `maxUnhealthy: 1`: nothing is
/// remediated, `Degraded` says why; raising the cap lets both go.
#[tokio::test(flavor = "multi_thread")]
async fn max_unhealthy_refuses_a_mass_remediation_with_a_condition() {
    let w = setup("remedy-cap", 4).await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 4, "remediation": {"unhealthyAfter": "1s", "maxUnhealthy": 1}}),
    ))
    .await;
    w.wait_status("pool", "pool ready", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    for n in &w.ready_nodes().await[..2] {
        let id = n["id"].as_str().unwrap();
        w.sim
            .post(&format!("/sim/nodes/{id}/kill"), json!({}))
            .await;
    }
    let st = w
        .wait_status("pool", "TooManyUnhealthy", T, |s| {
            condition(s, "Degraded").is_some_and(|c| c.reason == "TooManyUnhealthy")
        })
        .await;
    assert_eq!(st.unhealthy_nodes, 2);
    let message = &condition(&st, "Degraded").unwrap().message;
    assert!(message.contains("maxUnhealthy allows 1"), "{message}");
    // It holds: seconds later nothing was selected or terminated.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(w.retirements("pool").await.is_empty());
    let g = w.group().await;
    assert_eq!((g.desired, g.instances.len()), (4, 4));

    w.patch_spec("pool", json!({"remediation": {"maxUnhealthy": 2}}))
        .await;
    w.wait_status("pool", "both replaced", T, |s| {
        s.retired_total == 2
            && s.retiring.is_empty()
            && condition(s, "Degraded").is_none_or(|c| c.reason != "TooManyUnhealthy")
    })
    .await;
    assert_eq!(w.group().await.desired, 4);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// A VM terminated outside the pool leaves a down node in Nomad; with
/// `purgeDownAfter` the pool purges it, and only it.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_vm_vanished_is_purged_after_the_grace() {
    let w = setup("remedy-vanished", 3).await;
    w.apply_pool(&w.pool_manifest("pool", json!({"remediation": {"purgeDownAfter": "3s"}})))
        .await;
    w.wait_status("pool", "pool ready", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    let victim = w.ready_nodes().await[0].clone();
    let (node, vm) = (
        victim["id"].as_str().unwrap().to_string(),
        victim["instance_id"].as_str().unwrap().to_string(),
    );
    // Someone terminates the VM by hand, shrinking the group.
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&vm)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("terminating the VM outside the pool");
    wait_for("the node down", T, || async {
        (w.sim.nodes().await.iter())
            .any(|n| n["id"] == node.as_str() && n["status"] == "down")
            .then_some(())
    })
    .await;
    let down_at = std::time::Instant::now();
    wait_for("the node purged", T, || async {
        (!w.sim.nodes().await.iter().any(|n| n["id"] == node.as_str())).then_some(())
    })
    .await;
    assert!(
        down_at.elapsed() >= Duration::from_secs(2),
        "purged {:?} after it was seen down: before purgeDownAfter",
        down_at.elapsed()
    );
    w.wait_event(
        "PurgedDownNode",
        |r, n| r == "PurgedDownNode" && n.contains(&vm),
        T,
    )
    .await;
    assert_eq!(w.sim.nodes().await.len(), 2, "the live clients stay");
    assert!(w.retirements("pool").await.is_empty(), "nothing retired");
    w.cleanup().await;
}

/// Two clients opt out in their Meta, two do not: a scale-in to 2 with
/// `selectionPolicy: Oldest` (which would take the opted-out ones, the
/// oldest) retires the other two; to 1 it stops and says why.
#[tokio::test(flavor = "multi_thread")]
async fn a_scale_in_skips_opted_out_clients() {
    let mut w = setup_with(
        "remedy-optout",
        WorldOptions {
            size: 2,
            node_meta: json!({ DO_NOT_RETIRE_META: "true" }),
            ..Default::default()
        },
    )
    .await;
    let opted: Vec<String> = (w.ready_nodes().await.iter())
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    // Two more clients, without the key.
    w.bridge = Bridge::start(w.sim.url.clone(), w.group.clone(), "ci".into());
    w.asg
        .set_desired_capacity()
        .auto_scaling_group_name(&w.group)
        .desired_capacity(4)
        .send()
        .await
        .expect("growing the group");
    wait_for("four clients", T, || async {
        (w.ready_nodes().await.len() == 4).then_some(())
    })
    .await;

    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2, "selectionPolicy": "Oldest"}}),
    ))
    .await;
    let st = w
        .wait_status("pool", "scaled in to 2", T, |s| {
            s.retired_total == 2 && s.retiring.is_empty()
        })
        .await;
    assert_eq!(st.do_not_retire_nodes, 2);
    let live: Vec<String> = (w.ready_nodes().await.iter())
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        live.iter().collect::<std::collections::BTreeSet<_>>(),
        opted.iter().collect(),
        "the opted-out clients stay"
    );
    for r in &st.retirements {
        assert!(!opted.contains(r.spec.target.node_id.as_ref().unwrap()));
    }

    w.patch_spec("pool", json!({"replicas": 1})).await;
    let st = w
        .wait_status("pool", "DoNotRetire", T, |s| {
            condition(s, "Degraded").is_some_and(|c| c.reason == "DoNotRetire")
        })
        .await;
    assert!(st.retiring.is_empty());
    assert_eq!(w.group().await.desired, 2);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// The grace is counted on the operator's own clock, in memory: an
/// operator killed and started again counts it afresh, so a client is
/// replaced late, never before `unhealthyAfter` has passed in one process.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_counts_the_grace_again_and_never_replaces_early() {
    let mut w = setup("remedy-restart", 3).await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 3, "remediation": {"unhealthyAfter": "10s"}}),
    ))
    .await;
    w.wait_status("pool", "pool ready", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    let node = w.ready_nodes().await[0]["id"].as_str().unwrap().to_string();
    w.sim
        .post(&format!("/sim/nodes/{node}/kill"), json!({}))
        .await;
    w.wait_status("pool", "the client seen unhealthy", T, |s| {
        s.unhealthy_nodes == 1
    })
    .await;
    // Most of the grace passes in the first process.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(w.retirements("pool").await.is_empty(), "replaced early");
    w.restart_operator().await;
    let restarted = std::time::Instant::now();
    // Past the first process's grace, well within the second's.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        w.retirements("pool").await.is_empty(),
        "replaced {:?} after a restart: the grace was not counted again",
        restarted.elapsed()
    );
    let st = w
        .wait_status("pool", "replaced after a full grace", T, |s| {
            s.retired_total == 1 && s.retiring.is_empty()
        })
        .await;
    assert!(restarted.elapsed() >= Duration::from_secs(10));
    assert_eq!(st.retirements[0].spec.reason, RetireReason::Unhealthy);
    assert_eq!(w.group().await.desired, 3);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// The VM of the group that no simulated Nomad node reports, once there is one.
async fn clientless_vm(w: &World) -> String {
    wait_for("a VM without a client", T, || async {
        let reported: HashSet<String> = (w.sim.nodes().await.iter())
            .filter_map(|n| n["instance_id"].as_str().map(str::to_owned))
            .collect();
        (w.group().await.instances.iter())
            .find(|i| !reported.contains(&i.id))
            .map(|i| i.id.clone())
    })
    .await
}

/// The group grows by one and that VM's agent never starts. Past
/// `unregisteredAfter` the pool terminates it without a decrement (once no
/// node of the cluster reports it): the group launches another VM, whose
/// client registers.
async fn a_vm_whose_client_never_registers_is_replaced(cloud: Cloud) {
    let w = setup_on(cloud, "remedy-unreg", 2).await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "remediation": {"unregisteredAfter": "3s"}}),
    ))
    .await;
    w.wait_status("pool", "pool ready", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    w.bridge.fail_next_boots(1);
    w.patch_spec("pool", json!({"replicas": 3})).await;
    let vm = clientless_vm(&w).await;

    let st = w
        .wait_status("pool", "the clientless VM replaced", T, |s| {
            s.retired_total == 1 && s.retiring.is_empty()
        })
        .await;
    let r = (st.retirements.iter())
        .find(|r| r.spec.target.instance_id.as_deref() == Some(vm.as_str()))
        .expect("a retirement for the clientless VM");
    assert_eq!(r.spec.reason, RetireReason::Unregistered);
    let rs = r.status.as_ref().unwrap();
    assert_eq!(
        (rs.node_id.as_deref(), rs.instance_id.as_deref()),
        (None, Some(vm.as_str())),
        "a VM without a client names no node"
    );
    wait_for("three ready clients", T, || async {
        (w.ready_nodes().await.len() == 3).then_some(())
    })
    .await;
    let g = w.group().await;
    assert_eq!(g.desired, 3, "replaced, not shrunk");
    assert!(!g.instances.iter().any(|i| i.id == vm), "{:?}", g.instances);
    w.wait_event(
        "ReplacingUnregistered",
        |r, n| r == "ReplacingUnregistered" && n.contains(&vm),
        T,
    )
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// A VM whose client registered in another node pool (a misconfigured
/// image) is not this pool's, but it may run work: the cluster-wide read
/// finds its node and the VM is never terminated for `Unregistered`, while
/// a VM beside it that truly has no client is replaced.
#[tokio::test(flavor = "multi_thread")]
async fn a_vm_a_client_of_another_pool_runs_on_is_left_alone() {
    let w = setup("remedy-foreign", 2).await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "remediation": {"unregisteredAfter": "6s", "maxUnhealthy": 2}}),
    ))
    .await;
    w.wait_status("pool", "pool ready", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    w.bridge.fail_next_boots(2);
    w.patch_spec("pool", json!({"replicas": 4})).await;
    let foreign = clientless_vm(&w).await;
    w.sim
        .post(
            "/sim/nodes",
            json!({"count": 1, "node_pool": "batch", "node_class": "linux",
                   "instance_ids": [foreign], "availability_zone": "us-east-1a"}),
        )
        .await;
    let lonely = clientless_vm(&w).await;
    let st = w
        .wait_status("pool", "the VM without any client replaced", T, |s| {
            s.retired_total == 1 && s.retiring.is_empty()
        })
        .await;
    let targets: Vec<Option<&str>> = (st.retirements.iter())
        .map(|r| r.spec.target.instance_id.as_deref())
        .collect();
    assert_eq!(targets, [Some(lonely.as_str())]);
    // Well past the timeout the other VM still runs its foreign client.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(w.retirements("pool").await.len(), 1);
    let g = w.group().await;
    assert!(
        g.instances.iter().any(|i| i.id == foreign),
        "{:?}",
        g.instances
    );
    assert_eq!(w.status("pool").await.unhealthy_nodes, 0);
    w.cleanup().await;
}
