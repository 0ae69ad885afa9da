//! A pool that lost its status finds its retirements again from the Meta of
//! the drains it sent, and does not adopt what it already gave back.

use super::*;

#[test]
fn lost_status_is_recovered_from_our_drain_meta() {
    let mut w = World::new(3, Some(2));
    w.nodes[1].eligible = false;
    w.nodes[1].draining = true;
    w.nodes[1].last_drain = Some(LastDrainStatus::Draining);
    w.nodes[1].last_drain_mark = Some(scale_in_mark());
    // Someone else's drain is never adopted.
    w.nodes[2].eligible = false;
    w.nodes[2].draining = true;
    w.nodes[2].last_drain_mark = None;
    let p = w.plan();
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Draining)]);
    assert!(p.events.iter().any(|e| e.reason == "AdoptedDrain"));
    assert!(
        !p.actions.iter().any(|a| matches!(a, Action::Cordon { .. })),
        "the adopted drain fills the need"
    );
}

#[test]
fn adopted_drain_is_cancelled_when_the_spec_no_longer_wants_it() {
    let mut w = World::new(3, Some(3));
    w.nodes[1].eligible = false;
    w.nodes[1].draining = true;
    w.nodes[1].last_drain_mark = Some(scale_in_mark());
    let p = w.plan();
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Cancelling)]);
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(1),
        mark_eligible: true
    }));
}

#[test]
fn drain_meta_records_the_retirement_and_reads_back() {
    let mark = DrainMark {
        reason: RetireReason::Replace,
        cordoned_by_pool: false,
        selected_at: None,
    };
    let meta = drain_meta("ns/pool", UID, &mark);
    assert_eq!(read_drain_meta(&meta, UID), Some(mark));
    assert_eq!(read_drain_meta(&meta, "another-pool"), None);
    // A drain sent before the reason was recorded: a scale-in, which only
    // ever takes clients the pool cordoned itself.
    let legacy = [(META_POOL_UID.to_string(), UID.to_string())].into();
    assert_eq!(read_drain_meta(&legacy, UID), Some(scale_in_mark()));
}

#[test]
fn adopted_replacement_keeps_its_reason_and_does_not_shrink_the_group() {
    let mut w = World::new(3, Some(3));
    w.spec.retire = vec![RetireTarget {
        node_name: Some("client-1".into()),
        replace: true,
        ..Default::default()
    }];
    w.nodes[1].eligible = false;
    w.nodes[1].draining = true;
    w.nodes[1].last_drain = Some(LastDrainStatus::Draining);
    w.nodes[1].last_drain_mark = Some(DrainMark {
        reason: RetireReason::Replace,
        cordoned_by_pool: false,
        selected_at: None,
    });
    let p = w.plan();
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Draining)]);
    let adopted = &p.retiring[0];
    assert_eq!(
        (adopted.reason, adopted.decrement, adopted.cordoned_by_pool),
        (RetireReason::Replace, false, false)
    );
    assert!(p.actions.is_empty(), "{:?}", p.actions);
}

#[test]
fn client_given_back_after_its_drain_finished_is_not_adopted_again() {
    // Someone else had cordoned client-1; the spec named it, its drain
    // finished, then the spec dropped it. The cancel left it ineligible (as
    // its owner had it) and Nomad kept our completed drain's Meta.
    let mut w = World::new(3, Some(3));
    w.nodes[1].eligible = false;
    w.nodes[1].last_drain = Some(LastDrainStatus::Complete);
    w.nodes[1].last_drain_mark = Some(DrainMark {
        reason: RetireReason::Replace,
        cordoned_by_pool: false,
        selected_at: None,
    });
    let p = w.plan();
    assert!(p.retiring.is_empty(), "{:?}", phases(&p));
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(p.events.is_empty(), "{:?}", p.events);

    // Named again, it is adopted and goes on to its terminate.
    w.spec.retire = vec![RetireTarget {
        node_name: Some("client-1".into()),
        replace: true,
        ..Default::default()
    }];
    w.allocs.insert(w.id(1), AllocFacts::default());
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    assert_eq!(p.retiring[0].reason, RetireReason::Replace);

    // A drain still running is adopted even when the spec dropped the
    // client, so that it can be cancelled: leaving it would strand the
    // client ineligible. The cancel keeps the owner's cordon.
    w.spec.retire.clear();
    w.nodes[1].draining = true;
    w.nodes[1].last_drain = Some(LastDrainStatus::Draining);
    let p = w.plan();
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Cancelling)]);
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(1),
        mark_eligible: false
    }));
}

#[test]
fn an_earlier_retirements_finished_drain_is_not_taken_for_this_ones() {
    // client-1 was drained by an earlier retirement of this pool, which was
    // then cancelled: the client went back to service (eligible) and Nomad
    // kept that drain as its LastDrain (complete, with our Meta). Selected
    // again, its new drain has not landed: Nomad refused it, or this
    // reconcile ran before it did.
    let mut w = World::new(3, Some(2));
    w.nodes[1].last_drain = Some(LastDrainStatus::Complete);
    w.nodes[1].last_drain_mark = Some(scale_in_mark());
    w.nodes[1].last_drain_started = Some(t("2026-11-20T09:00:00Z"));
    w.tracked = vec![entry(&w.nodes[1], RetirePhase::Cordoned)];
    w.allocs.insert(w.id(1), AllocFacts::default());
    let p = w.plan();
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Cordoned)]);
    assert!(drains(&p, &w.id(1)), "{:?}", p.actions);
}

#[test]
fn a_client_made_eligible_after_its_drain_finished_is_drained_again_not_terminated() {
    // Our drain of client-1 finished; then the client was made eligible
    // (an admin, or a cancel whose record was lost). Its allocations read
    // empty, but new work may be placed on it at any moment.
    let mut w = World::new(3, Some(2));
    w.nodes[1].last_drain = Some(LastDrainStatus::Complete);
    w.nodes[1].last_drain_mark = Some(scale_in_mark());
    w.tracked = vec![entry(&w.nodes[1], RetirePhase::Draining)];
    w.allocs.insert(w.id(1), AllocFacts::default());
    let p = w.plan();
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Terminate { .. })),
        "{:?}",
        p.actions
    );
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Cordoned)]);
    assert!(drains(&p, &w.id(1)), "{:?}", p.actions);
    // Ineligible, as our finished drain left it: drained, terminated.
    w.nodes[1].eligible = false;
    let p = w.plan();
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Terminating)]);
}

#[test]
fn a_finished_drain_of_an_earlier_selection_is_not_taken_for_this_ones() {
    // Someone else had cordoned client-1 (it stays ineligible whatever this
    // pool does). An earlier retirement drained it, then gave it back; the
    // spec names it again, and its new drain has not landed (Nomad refused
    // it). The finished drain Nomad shows was selected at another time.
    let mut w = World::new(3, Some(2));
    let n = &mut w.nodes[1];
    n.eligible = false;
    n.last_drain = Some(LastDrainStatus::Complete);
    let mut earlier = scale_in_mark();
    earlier.selected_at = Some(t("2026-11-20T09:00:00Z"));
    n.last_drain_mark = Some(earlier);
    let mut e = entry(&w.nodes[1], RetirePhase::Cordoned);
    e.cordoned_by_pool = false;
    w.tracked = vec![e];
    w.allocs.insert(
        w.id(1),
        AllocFacts {
            live: 1,
            blocking_jobs: vec!["service".into()],
            ..Default::default()
        },
    );
    let p = w.plan();
    // Taken for drained, it would wait for good on a job no drain moves.
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Cordoned)]);
    assert!(drains(&p, &w.id(1)), "{:?}", p.actions);

    // This retirement's own drain (selected at 10:00, as `entry` says),
    // finished between two looks: drained.
    let mut own = scale_in_mark();
    own.selected_at = Some(t("2026-11-26T10:00:00.400Z"));
    w.nodes[1].last_drain_mark = Some(own.clone());
    assert_eq!(
        phases(&w.plan()),
        [("client-1".into(), RetirePhase::Draining)]
    );
    // A drain of an earlier version (no selection recorded) passes, as before.
    own.selected_at = None;
    w.nodes[1].last_drain_mark = Some(own);
    assert_eq!(
        phases(&w.plan()),
        [("client-1".into(), RetirePhase::Draining)]
    );
}

#[test]
fn the_drain_records_the_selection_and_adoption_reads_it_back() {
    let w = World::new(3, Some(2));
    let p = w.plan();
    let (e, mark) = p
        .actions
        .iter()
        .find_map(|a| match a {
            Action::Drain { node_id, mark } => {
                Some((p.retiring.iter().find(|r| r.node_id == *node_id)?, mark))
            }
            _ => None,
        })
        .expect("a drain");
    assert_eq!(mark.selected_at, e.selected_at.as_ref().map(|t| t.0));
    assert!(mark.selected_at.is_some());

    // Status lost: the drain's Meta gives the selection time back.
    let mut w = World::new(3, Some(2));
    let n = &mut w.nodes[0];
    n.eligible = false;
    n.draining = true;
    n.last_drain = Some(LastDrainStatus::Draining);
    n.last_drain_started = Some(t("2026-11-26T11:59:00Z"));
    let mut m = scale_in_mark();
    m.selected_at = Some(t("2026-11-26T11:30:00Z"));
    n.last_drain_mark = Some(m);
    let p = w.plan();
    assert_eq!(
        p.retiring[0].selected_at,
        Some(Time(t("2026-11-26T11:30:00Z")))
    );
}
