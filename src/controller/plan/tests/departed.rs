//! Retirements whose client left the selector: released before the point
//! of no return, carried to the end after it, never dropped.

use super::*;
use proptest::prelude::*;

/// Plan `w` with `outside` as the tracked clients the selector no longer
/// matches (the driver reads them by ID).
fn plan_outside(w: &World, outside: &[NodeFacts]) -> Plan {
    // The cluster-wide read sees the VMs of clients outside the selector too.
    let all: Vec<NodeFacts> = w.nodes.iter().chain(outside).cloned().collect();
    let instance_nodes = super::instance_nodes_of(&all);
    plan(&PoolView {
        now: now(),
        pool_key: "ns/pool",
        spec: &w.spec,
        tracked: &w.tracked,
        retired: &w.retired,
        recent_starts: &[],
        nodes: &w.nodes,
        outside,
        allocs: &w.allocs,
        load: w.load.as_ref(),
        group: &w.group,
        visibility: w.visibility,
        instance_nodes: &instance_nodes,
        drains: &w.drains,
        lifecycle_hook: None,
        unhealthy_since: &w.unhealthy_since,
        clientless_since: &w.clientless_since,
        index: Default::default(),
    })
}

/// A world of four clients where client-3 is tracked in `phase` and has
/// left the selector: it is no longer among the pool's nodes.
fn left_world(phase: RetirePhase) -> (World, Vec<NodeFacts>) {
    let mut w = World::new(4, Some(3));
    let mut gone = w.nodes.pop().unwrap();
    gone.eligible = phase == RetirePhase::Selected;
    gone.draining = matches!(phase, RetirePhase::Draining);
    w.tracked = vec![entry(&gone, phase)];
    (w, vec![gone])
}

#[test]
fn a_client_in_flight_that_left_the_selector_is_released() {
    for phase in [
        RetirePhase::Selected,
        RetirePhase::Cordoned,
        RetirePhase::Draining,
        RetirePhase::Drained,
    ] {
        for cordoned_by_pool in [true, false] {
            let (mut w, outside) = left_world(phase);
            w.tracked[0].cordoned_by_pool = cordoned_by_pool;
            w.allocs
                .insert(outside[0].id.clone(), AllocFacts::default());
            let p = plan_outside(&w, &outside);
            // The pool wants three clients and has three that take work
            // (scale-in counts clients, not VMs): nothing else is selected.
            assert_eq!(
                phases(&p),
                [("client-3".into(), RetirePhase::Cancelling)],
                "{phase:?}"
            );
            assert_eq!(
                p.actions,
                [Action::Release {
                    node_id: outside[0].id.clone(),
                    mark_eligible: cordoned_by_pool
                }],
                "{phase:?}: only the release, eligibility as its owner had it"
            );
            assert!(
                p.retiring[0]
                    .message
                    .as_deref()
                    .is_some_and(|m| m.contains("left the selector: released")),
                "{:?}",
                p.retiring[0].message
            );
            assert!(p.events.iter().any(|e| e.reason == "RetirementCancelled"
                && e.message.contains("client-3")
                && e.message.contains("left the selector")));
        }
    }
}

#[test]
fn a_released_client_outside_the_selector_is_dropped_once_back_in_service() {
    let (mut w, mut outside) = left_world(RetirePhase::Cancelling);
    w.spec.replicas = Some(4);
    let p = plan_outside(&w, &outside);
    assert_eq!(phases(&p), [("client-3".into(), RetirePhase::Cancelling)]);
    assert!(matches!(p.actions[..], [Action::Release { .. }]));

    outside[0].eligible = true;
    w.tracked = p.retiring;
    let p = plan_outside(&w, &outside);
    assert!(p.retiring.is_empty(), "{:?}", phases(&p));
    assert!(p.events.iter().any(|e| e.reason == "ReturnedToService"));
}

#[test]
fn a_terminating_client_outside_the_selector_is_carried_to_the_end() {
    let (mut w, mut outside) = left_world(RetirePhase::Terminating);
    // The terminate has not landed: sent again, and said once why.
    let p = plan_outside(&w, &outside);
    assert_eq!(phases(&p), [("client-3".into(), RetirePhase::Terminating)]);
    assert!(matches!(
        p.actions[..],
        [Action::Terminate {
            first_attempt: false,
            ..
        }]
    ));
    assert_eq!(
        p.events
            .iter()
            .filter(|e| e.reason == "LeftSelector")
            .count(),
        1
    );
    w.tracked = p.retiring;
    let p = plan_outside(&w, &outside);
    assert!(
        !p.events.iter().any(|e| e.reason == "LeftSelector"),
        "said once: {:?}",
        p.events
    );

    // The VM is gone and the client down: purged, then retired once Nomad
    // no longer knows it.
    w.group.instances.retain(|i| i.id != "i-0003");
    w.group.desired_capacity = 3;
    outside[0].status = NodeStatus::Down;
    w.tracked = p.retiring;
    let p = plan_outside(&w, &outside);
    assert_eq!(
        p.actions,
        [Action::Purge {
            node_id: outside[0].id.clone()
        }]
    );
    assert!(
        p.retiring[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("carried to the end"))
    );
    w.tracked = p.retiring;
    let p = plan_outside(&w, &[]);
    assert!(p.retiring.is_empty());
    assert_eq!(p.retired, 1);
}

#[test]
fn a_client_outside_the_selector_is_neither_selected_nor_adopted() {
    // Released and eligible, or still showing an old drain of ours: once
    // outside the selector it is not the pool's to take.
    let mut w = World::new(2, Some(0));
    let mut gone = node(7);
    gone.eligible = false;
    gone.draining = true;
    gone.last_drain_mark = Some(scale_in_mark());
    let p = plan_outside(&w, std::slice::from_ref(&gone));
    assert!(!p.retiring.iter().any(|r| r.node_id == gone.id));
    w.nodes.clear();
    gone.eligible = true;
    gone.draining = false;
    let p = plan_outside(&w, &[gone]);
    assert!(p.retiring.is_empty(), "{:?}", phases(&p));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Whatever the phase and the client's state, a retirement outside the
    /// selector is kept until released or finished, and nothing new is
    /// started on it.
    #[test]
    fn never_dropped_while_out_of_service(
        phase in prop_oneof![
            Just(RetirePhase::Selected),
            Just(RetirePhase::Cordoned),
            Just(RetirePhase::Draining),
            Just(RetirePhase::Drained),
            Just(RetirePhase::Terminating),
            Just(RetirePhase::Cancelling),
        ],
        eligible in any::<bool>(),
        draining in any::<bool>(),
        down in any::<bool>(),
        cordoned_by_pool in any::<bool>(),
        in_group in any::<bool>(),
    ) {
        let (mut w, mut outside) = left_world(phase);
        outside[0].eligible = eligible;
        outside[0].draining = draining;
        if down {
            outside[0].status = NodeStatus::Down;
        }
        w.tracked[0].cordoned_by_pool = cordoned_by_pool;
        if !in_group {
            w.group.instances.retain(|i| i.id != "i-0003");
        }
        let id = outside[0].id.clone();
        let p = plan_outside(&w, &outside);
        let next = p.retiring.iter().find(|r| r.node_id == id);
        let released = !draining && (eligible || !cordoned_by_pool);
        match phase {
            RetirePhase::Terminating => prop_assert!(next.is_some_and(|r| r.phase == RetirePhase::Terminating)),
            RetirePhase::Cancelling if released => prop_assert!(next.is_none()),
            _ => {
                prop_assert!(next.is_some_and(|r| r.phase == RetirePhase::Cancelling));
                let release = Action::Release { node_id: id.clone(), mark_eligible: cordoned_by_pool };
                prop_assert!(p.actions.contains(&release));
            }
        }
        for a in &p.actions {
            let about_it = a.node_id() == Some(id.as_str());
            let step = matches!(a, Action::Cordon { .. } | Action::Drain { .. } | Action::Terminate { .. });
            prop_assert!(!(about_it && step && phase != RetirePhase::Terminating), "{:?}", a);
        }
    }
}
