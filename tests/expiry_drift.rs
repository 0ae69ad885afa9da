//! `maxNodeAge` and `replaceDrifted` end to end (issue 18), on the API
//! server, moto (the Auto Scaling API and EC2, whose `DescribeInstances`
//! gives launch times and launch template tags) or gce-sim (the VMs'
//! `creationTimestamp` from instances.list, `setInstanceTemplate`) and
//! nomad-sim: clients past their age are replaced oldest first within
//! `maxUnavailable`, the group keeps its size; after a launch template or
//! instance template change, the clients on the old one are replaced until
//! every VM runs the new one, and nothing is replaced while they match.
//!
//! On GCE (`gce_…`) VMs are made old with gce-sim's `age_s` hook (their
//! `creationTimestamp`, which the provider reads with instances.list)
//! rather than by waiting, so the young ones and the successors stay far
//! from `maxNodeAge` and the test can assert they are never replaced; a
//! group is moved to a new instance template with `setInstanceTemplate`
//! through the Compute API, as a person would.

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
    retired(s, RetireReason::Expired)
}

/// The VMs of the pool's finished retirements for `reason`, in the order
/// they were selected.
fn retired(s: &PoolView, reason: RetireReason) -> Vec<String> {
    let mut r: Vec<_> = (s.retirements.iter())
        .filter(|r| r.spec.reason == reason)
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

/// Every VM of a GCE world's group running again (`NONE/RUNNING`).
async fn group_back_at(w: &World, size: i32) {
    wait_for("the group back in service", T, || async {
        let g = w.group().await;
        let running = (g.instances.iter())
            .filter(|i| i.lifecycle == "NONE/RUNNING")
            .count();
        (g.desired == size && running == size as usize).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gce_expired_clients_are_replaced_oldest_first_within_the_budget() {
    let w = setup_on(Cloud::Gce, "expiry", 3).await;
    let gce = w.gce.as_ref().expect("a GCE world");
    let before: Vec<String> = ids(&w.group().await).into_iter().collect();
    // Three hours, two hours, and new: only the first two are past 1h.
    let (oldest, older, young) = (&before[0], &before[1], &before[2]);
    gce.backdate(&w.group, oldest, 3.0 * 3600.0).await;
    gce.backdate(&w.group, older, 2.0 * 3600.0).await;
    apply_pool_checked(
        &w,
        &w.pool_manifest(
            "pool",
            json!({"replicas": 3, "maxNodeAge": "1h", "disruption": {"maxUnavailable": 1}}),
        ),
        |s| s.max_node_age.is_some(),
    )
    .await;

    let most_in_flight = std::cell::Cell::new(0);
    let st = w
        .wait_status("pool", "both old clients replaced", T, |s| {
            most_in_flight.set(most_in_flight.get().max(out_of_service(s)));
            retired(s, RetireReason::Expired).len() >= 2 && s.retiring.is_empty()
        })
        .await;
    let most_in_flight = most_in_flight.get();
    assert!(most_in_flight <= 1, "{most_in_flight} in flight at once");
    assert_eq!(
        retired(&st, RetireReason::Expired),
        vec![oldest.clone(), older.clone()],
        "oldest first"
    );
    assert!(
        st.retirements.iter().all(|r| !r.spec.decrement()),
        "replaced, never shrunk"
    );
    group_back_at(&w, 3).await;
    // recreateInstances: new VMs (new ids); the young one untouched.
    let now = ids(&w.group().await);
    assert!(now.contains(young), "{young} is under maxNodeAge: {now:?}");
    assert!(!now.contains(oldest) && !now.contains(older), "{now:?}");
    let events = (w.events().await.into_iter())
        .filter(|(reason, _)| reason == "Expired")
        .count();
    assert!(events >= 2, "an Expired Event per client");
    // Nothing else is due: the young VM and the successors are minutes old.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let st = w.status("pool").await;
    assert_eq!(st.retirements.len(), 2, "{:?}", st.retiring);
    // Each VM's creation time was read once: one filtered list for the
    // three first VMs, then one per successor at most.
    let lists = (gce.requests().await.into_iter())
        .filter(|r| {
            r["method"] == "GET"
                && r["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with("/instances"))
        })
        .count();
    assert!((1..=3).contains(&lists), "{lists} instances.list calls");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gce_drifted_clients_are_replaced_after_set_instance_template() {
    let w = setup_on(Cloud::Gce, "drift", 3).await;
    let gce = w.gce.as_ref().expect("a GCE world");
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
    w.wait_status("pool", "the pool to settle", T, |s| {
        s.observed_generation.is_some() && s.desired_nodes == Some(3)
    })
    .await;
    // Every VM runs the group's template: nothing is drifted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.status("pool").await.retirements.is_empty());

    let v2 = gce.set_instance_template(&w.group, "ci-v2").await;
    let most_in_flight = std::cell::Cell::new(0);
    // Drift is looked for every 30 s (templates are not watchable).
    let st = w
        .wait_status("pool", "every VM on ci-v2", Duration::from_secs(120), |s| {
            most_in_flight.set(most_in_flight.get().max(out_of_service(s)));
            retired(s, RetireReason::Drifted).len() == 3 && s.retiring.is_empty()
        })
        .await;
    let most_in_flight = most_in_flight.get();
    assert!(most_in_flight <= 1, "{most_in_flight} in flight at once");
    let drifted: BTreeSet<String> = retired(&st, RetireReason::Drifted).into_iter().collect();
    assert_eq!(drifted, before, "each old VM once");
    group_back_at(&w, 3).await;
    let g = w.group().await;
    assert_eq!(g.desired, 3, "the group keeps its size");
    assert!(ids(&g).is_disjoint(&before));
    let (_, managed) = gce.raw_group(&w.group).await;
    assert!(
        managed
            .iter()
            .all(|i| i["version"]["instanceTemplate"] == v2.as_str()),
        "{managed:?}"
    );
    // Current now: no fourth replacement.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(w.status("pool").await.retirements.len(), 3);
    let note = w.wait_event("Drifted", |r, _| r == "Drifted", T).await;
    let old = format!("instanceTemplates/{}-template", w.group);
    assert!(
        note.contains(&old) && note.contains("instanceTemplates/ci-v2"),
        "{note}"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
