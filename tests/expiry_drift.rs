//! `maxNodeAge` and `replaceDrifted` end to end (issue 18), on the API
//! server, moto (the Auto Scaling API and EC2, whose `DescribeInstances`
//! gives launch times and launch template tags) and nomad-sim: clients
//! past their age are replaced oldest first within `maxUnavailable`, the
//! group keeps its size; after a launch template change, the clients on
//! the old version are replaced until every VM runs the new one, and
//! nothing is replaced while the versions match.
//!
//! AWS only: the GCE provider does not read VM creation times yet (the
//! managed-instance listing has none), and gce-sim has no
//! `setInstanceTemplate`.

use std::collections::BTreeSet;
use std::time::Duration;

use nomad_pool_operator::api::{NomadClientPoolSpec, RetireReason, RetirementPhase};
use npo_testkit::aws::new_default_template_version;
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(90);

/// Apply the pool and check the API server kept `keeps` of its spec: a
/// stale CRD without the field would prune it silently, and the test would
/// then wait for a retirement nothing asked for.
async fn apply_pool_checked(
    w: &World,
    manifest: &serde_json::Value,
    keeps: impl Fn(&NomadClientPoolSpec) -> bool,
) {
    w.apply_pool(manifest).await;
    let stored = w.pools().get("pool").await.expect("reading the pool");
    assert!(
        keeps(&stored.spec),
        "the API server dropped the pool's new field: is crds/ current (make crds)?"
    );
}

fn ids(g: &Group) -> BTreeSet<String> {
    g.instances.iter().map(|i| i.id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_clients_are_replaced_oldest_first_within_the_budget() {
    let w = setup_on(Cloud::Aws, "expiry", 2).await;
    let old = ids(&w.group().await);
    // A third VM, launched well after the first two.
    tokio::time::sleep(Duration::from_secs(6)).await;
    w.asg
        .set_desired_capacity()
        .auto_scaling_group_name(&w.group)
        .desired_capacity(3)
        .send()
        .await
        .expect("growing the group");
    wait_for("the third client to register", T, || async {
        (w.ready_nodes().await.len() == 3).then_some(())
    })
    .await;
    let young: BTreeSet<String> = ids(&w.group().await).difference(&old).cloned().collect();
    assert_eq!(young.len(), 1);
    apply_pool_checked(
        &w,
        &w.pool_manifest(
            "pool",
            json!({"replicas": 3, "maxNodeAge": "4s", "disruption": {"maxUnavailable": 1}}),
        ),
        |s| s.max_node_age.is_some(),
    )
    .await;

    // One at a time (the budget), the first from the old two.
    let st = w
        .wait_status("pool", "an Expired retirement", T, |s| {
            s.retiring.iter().any(|r| r.reason == RetireReason::Expired)
        })
        .await;
    assert_eq!(st.retiring.len(), 1, "maxUnavailable 1");
    let first = st.retiring[0].instance_id.clone().expect("instance known");
    assert!(
        old.contains(&first),
        "{first} is not one of the oldest VMs {old:?}"
    );
    assert!(!st.retiring[0].decrement, "expiry replaces, never shrinks");

    // The next goes once the first is done: both old VMs before the young
    // one (and before their successors, younger still). The group never
    // shrinks, and no two clients are out at once.
    let most_in_flight = std::cell::Cell::new(0);
    let st = w
        .wait_status("pool", "two Expired retirements done", T, |s| {
            most_in_flight.set(most_in_flight.get().max(out_of_service(s)));
            expired(s).len() >= 2
        })
        .await;
    // Stop the churn (every VM expires 4 s after its launch).
    w.patch_spec("pool", json!({"maxNodeAge": null})).await;
    let most_in_flight = most_in_flight.get();
    assert!(most_in_flight <= 1, "{most_in_flight} in flight at once");
    let first_two: BTreeSet<String> = expired(&st).into_iter().take(2).collect();
    assert_eq!(first_two, old, "oldest first");
    wait_for("the group back at 3 in service", T, || async {
        let g = w.group().await;
        let in_service = (g.instances.iter())
            .filter(|i| i.lifecycle == "InService")
            .count();
        (g.desired == 3 && in_service == 3).then_some(())
    })
    .await;
    assert!(ids(&w.group().await).is_disjoint(&old));
    let events = (w.events().await.into_iter())
        .filter(|(reason, _)| reason == "Expired")
        .count();
    assert!(events >= 2, "an Expired Event per client");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Clients the pool's own record has out of service (cordoned, draining or
/// terminating). The retirement objects are written after the pool's
/// record, so counting them would see a finished one beside its successor.
fn out_of_service(s: &PoolView) -> i32 {
    s.status.draining_nodes + s.status.terminating_nodes
}

/// The VMs of the pool's Expired retirements, in the order they were
/// selected.
fn expired(s: &PoolView) -> Vec<String> {
    let mut r: Vec<_> = (s.retirements.iter())
        .filter(|r| r.spec.reason == RetireReason::Expired)
        .filter_map(|r| r.status.as_ref())
        .filter(|st| st.phase == Some(RetirementPhase::Retired))
        .filter_map(|st| Some((st.selected_at.clone()?.0, st.instance_id.clone()?)))
        .collect();
    r.sort();
    r.into_iter().map(|(_, i)| i).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn drifted_clients_are_replaced_after_a_launch_template_change() {
    let w = setup_with(
        "drift",
        WorldOptions {
            size: 3,
            launch_template: true,
            ..Default::default()
        },
    )
    .await;
    let before = ids(&w.group().await);
    apply_pool_checked(
        &w,
        &w.pool_manifest(
            "pool",
            json!({"replicas": 3, "replaceDrifted": true, "disruption": {"maxUnavailable": 1}}),
        ),
        |s| s.replace_drifted,
    )
    .await;
    // Every VM runs the version the group's `$Default` resolves to: none
    // is drifted, so nothing starts.
    w.wait_status("pool", "the pool to settle", T, |s| {
        s.observed_generation.is_some() && s.desired_nodes == Some(3)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let st = w.status("pool").await;
    assert!(
        st.retirements.is_empty(),
        "nothing drifted yet: {:?}",
        st.retiring
    );

    // Version 2 becomes what the group launches.
    let version = new_default_template_version(&w.group).await;
    assert_eq!(version, 2);
    let most_in_flight = std::cell::Cell::new(0);
    w.wait_status(
        "pool",
        "every VM on version 2",
        Duration::from_secs(180),
        |s| {
            most_in_flight.set(most_in_flight.get().max(out_of_service(s)));
            s.retirements
                .iter()
                .filter(|r| r.spec.reason == RetireReason::Drifted)
                .count()
                == 3
                && s.retiring.is_empty()
        },
    )
    .await;
    let most_in_flight = most_in_flight.get();
    assert!(most_in_flight <= 1, "{most_in_flight} in flight at once");
    let g = w.group().await;
    assert_eq!(g.desired, 3);
    assert!(ids(&g).is_disjoint(&before), "{:?} vs {before:?}", ids(&g));
    // The new VMs are current: no fourth replacement follows.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let st = w.status("pool").await;
    assert_eq!(st.retirements.len(), 3, "{:?}", st.retiring);
    let note = w.wait_event("Drifted", |r, _| r == "Drifted", T).await;
    assert!(
        note.contains("version 1") && note.contains("version 2"),
        "{note}"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
