//! Raising `replicas` mid-scale-in: retirements in flight go back to
//! service before the group grows, and committed terminations never do.

use super::*;

#[test]
fn scale_up_cancels_newest_retirements_before_buying_vms() {
    let mut w = World::new(5, Some(1));
    w.spec.disruption.max_unavailable = IntOrString::Int(5);
    let mut old = entry(&w.nodes[0], RetirePhase::Draining);
    old.since = Time(t("2026-11-26T10:00:00Z"));
    old.drain_started_at = Some(Time(t("2026-11-26T10:00:00Z")));
    let mut new = entry(&w.nodes[1], RetirePhase::Cordoned);
    new.since = Time(t("2026-11-26T11:30:00Z"));
    let mut ext = entry(&w.nodes[2], RetirePhase::Cordoned);
    ext.cordoned_by_pool = false;
    ext.since = Time(t("2026-11-26T11:00:00Z"));
    w.tracked = vec![old, new, ext];
    w.nodes[0].draining = true;
    w.nodes[0].eligible = false;
    w.nodes[0].last_drain_mark = Some(scale_in_mark());
    w.nodes[1].eligible = false;
    w.nodes[2].eligible = false;
    // effective = 5 - 3 = 2; replicas raised to 3: one cancellation, the newest.
    w.spec.replicas = Some(3);
    let p = w.plan();
    let cancelled: Vec<_> = p
        .retiring
        .iter()
        .filter(|r| r.phase == RetirePhase::Cancelling)
        .collect();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(
        cancelled[0].node_name, "client-1",
        "not yet draining, and newer than client-2"
    );
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(1),
        mark_eligible: true
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetDesiredCapacity { .. }))
    );

    // replicas 6: all three cancelled (the one someone else cordoned stays
    // cordoned), then the group grows by the remaining one.
    w.spec.replicas = Some(6);
    let p = w.plan();
    assert_eq!(
        p.retiring
            .iter()
            .filter(|r| r.phase == RetirePhase::Cancelling)
            .count(),
        3
    );
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(0),
        mark_eligible: true
    }));
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(2),
        mark_eligible: false
    }));
    assert!(
        p.actions
            .contains(&Action::SetDesiredCapacity { desired: 6 })
    );
}

#[test]
fn terminating_retirements_are_not_cancelled() {
    let mut w = World::new(3, Some(3));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Terminating)];
    w.group.instances[0].lifecycle = Lifecycle::Terminating;
    w.group.desired_capacity = 2;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(
        p.actions
            .contains(&Action::SetDesiredCapacity { desired: 3 })
    );
}
