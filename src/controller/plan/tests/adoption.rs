//! A pool deleted and created again mid-drain: its drains are recognised by
//! the pool's namespace/name, and every client out of service, whoever took
//! it out, counts against `maxUnavailable`.

use super::*;

#[test]
fn drains_of_an_earlier_pool_of_the_same_name_are_recognised() {
    let mark = DrainMark {
        reason: RetireReason::Replace,
        cordoned_by_pool: false,
        selected_at: None,
    };
    let earlier = drain_meta("ns/pool", "uid-of-the-deleted-pool", &mark);
    assert_eq!(
        read_drain_meta_of(&earlier, "ns/pool", UID),
        Some(mark.clone())
    );
    // The UID alone no longer decides.
    assert_eq!(read_drain_meta(&earlier, UID), None);
    // Another pool's drains stay theirs, however close the name.
    for other in ["ns/pool-2", "other/pool", "ns/poo"] {
        assert_eq!(read_drain_meta_of(&earlier, other, UID), None, "{other}");
    }
    // This pool's own drains, whatever key they carry.
    let own = drain_meta("ns/renamed", UID, &mark);
    assert_eq!(read_drain_meta_of(&own, "ns/pool", UID), Some(mark));
    assert_eq!(
        read_drain_meta_of(&Default::default(), "ns/pool", UID),
        None,
        "a drain without our Meta is someone else's"
    );
}

#[test]
fn a_recreated_pool_takes_over_the_running_drains_instead_of_selecting_more() {
    // As `kubectl replace --force` leaves it: the deleted pool's two drains
    // run on, and the new pool (same spec) sees them by its key.
    let mut w = World::new(4, Some(2));
    for i in [0, 1] {
        w.nodes[i].eligible = false;
        w.nodes[i].draining = true;
        w.nodes[i].last_drain = Some(LastDrainStatus::Draining);
        w.nodes[i].last_drain_mark = Some(scale_in_mark());
    }
    let p = w.plan();
    assert_eq!(
        phases(&p),
        [
            ("client-0".into(), RetirePhase::Draining),
            ("client-1".into(), RetirePhase::Draining)
        ]
    );
    assert_eq!(
        p.events
            .iter()
            .filter(|e| e.reason == "AdoptedDrain")
            .count(),
        2
    );
    assert!(p.actions.is_empty(), "nothing else starts: {:?}", p.actions);
}

#[test]
fn clients_cordoned_by_someone_else_use_up_the_budget() {
    // Two of four clients made ineligible by hand; maxUnavailable 2. One
    // client is wanted, so a scale-in is due even counting only the two
    // clients that take work.
    let mut w = World::new(4, Some(1));
    w.nodes[0].eligible = false;
    w.nodes[1].eligible = false;
    let p = w.plan();
    assert!(p.retiring.is_empty(), "{:?}", phases(&p));
    assert!(p.blockers.contains(&Blocker::BudgetExhausted {
        in_flight: 2,
        budget: 2
    }));

    // One drained by another tool: one retirement may start, not two.
    w.nodes[0].eligible = true;
    w.nodes[1].draining = true;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1, "{:?}", phases(&p));
    assert_ne!(p.retiring[0].node_id, w.id(1));

    // A down client is gone, not out of service.
    w.nodes[1].status = NodeStatus::Down;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2, "{:?}", phases(&p));
}

#[test]
fn clients_still_returning_to_service_count_until_they_are_back() {
    // Two clients wanted: with client-0 out, three take work, one too many.
    let mut w = World::new(4, Some(2));
    w.spec.disruption.max_unavailable = IntOrString::Int(1);
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Cancelling)];
    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Cancelling)]);
    assert!(p.blockers.contains(&Blocker::BudgetExhausted {
        in_flight: 1,
        budget: 1
    }));

    w.nodes[0].eligible = true;
    let p = w.plan();
    assert!(p.events.iter().any(|e| e.reason == "ReturnedToService"));
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Cordoned)]);
}

#[test]
fn retiring_a_client_already_out_of_service_costs_no_budget() {
    // Someone cordoned client-0 and names it for retirement: it is out of
    // service already, so retiring it takes nothing more out.
    let mut w = World::new(4, None);
    w.spec.disruption.max_unavailable = IntOrString::Int(1);
    w.nodes[0].eligible = false;
    w.spec.retire = vec![RetireTarget {
        node_name: Some("client-0".into()),
        ..Default::default()
    }];
    let p = w.plan();
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Cordoned)]);
    assert!(!p.retiring[0].cordoned_by_pool);

    // An eligible client named next to it waits for the budget.
    w.spec.retire.push(RetireTarget {
        node_name: Some("client-2".into()),
        ..Default::default()
    });
    let p = w.plan();
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Cordoned)]);
    assert!(p.blockers.contains(&Blocker::BudgetExhausted {
        in_flight: 1,
        budget: 1
    }));
}

#[test]
fn an_inherited_retirement_whose_vm_is_already_terminated_counts_no_decrement_again() {
    // The deleted pool had terminated client-0's VM (desired capacity
    // already lowered) and its client has not turned down yet.
    let mut w = World::new(4, Some(3));
    w.nodes[0].eligible = false;
    w.nodes[0].last_drain = Some(LastDrainStatus::Complete);
    w.nodes[0].last_drain_mark = Some(scale_in_mark());
    w.group.instances[0].lifecycle = Lifecycle::Terminating;
    w.group.desired_capacity = 3;
    let p = w.plan();
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Draining)]);
    assert!(!p.retiring[0].decrement, "already in the desired capacity");
    assert!(
        p.actions.is_empty(),
        "no scale-up, no release: {:?}",
        p.actions
    );

    // Empty: on to Terminating without a second terminate, then purged
    // once its client is down.
    w.tracked = p.retiring;
    w.allocs.insert(w.id(0), AllocFacts::default());
    let p = w.plan();
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Terminating)]);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    w.nodes[0].status = NodeStatus::Down;
    w.tracked = p.retiring;
    let p = w.plan();
    assert_eq!(p.actions, [Action::Purge { node_id: w.id(0) }]);
}
