//! Starting retirements: the budget, the selection policies, cloud
//! refusals, clients named in `spec.retire`, pause and dry run.

use super::*;

#[test]
fn budget_counts_and_percentages() {
    assert_eq!(budget(&IntOrString::Int(3), 100), 3);
    assert_eq!(budget(&IntOrString::String("10%".into()), 100), 10);
    assert_eq!(
        budget(&IntOrString::String("10%".into()), 15),
        1,
        "rounded down"
    );
    assert_eq!(
        budget(&IntOrString::String("10%".into()), 5),
        1,
        "never zero"
    );
    assert_eq!(budget(&IntOrString::String("100%".into()), 7), 7);
}

#[test]
fn scale_in_selects_least_busy_within_budget_and_drains_them_at_once() {
    let mut w = World::new(6, Some(2));
    w.load = Some(
        [
            (w.id(0), 3),
            (w.id(1), 0),
            (w.id(2), 1),
            (w.id(3), 0),
            (w.id(4), 5),
            (w.id(5), 2),
        ]
        .into(),
    );
    let p = w.plan();
    // 4 to remove, budget 2: the two idle clients, oldest first.
    assert_eq!(
        phases(&p),
        [
            ("client-1".into(), RetirePhase::Cordoned),
            ("client-3".into(), RetirePhase::Cordoned)
        ]
    );
    // The drain is the cordon (Nomad sets a draining client ineligible):
    // no eligibility call before it, no reconcile between.
    let drained: Vec<_> = (p.actions.iter())
        .map(|a| match a {
            Action::Drain { node_id, mark } => (node_id.clone(), mark.cordoned_by_pool),
            other => panic!("only drains: {other:?}"),
        })
        .collect();
    assert_eq!(drained, [(w.id(1), true), (w.id(3), true)]);
    assert!(p.blockers.is_empty());
    assert!(p.retiring.iter().all(|r| r.decrement && r.cordoned_by_pool));
    assert_eq!(p.desired_nodes, 2);
}

#[test]
fn selection_asks_for_load_only_when_it_must_select() {
    let mut w = World::new(4, Some(3));
    w.load = None;
    assert!(w.plan().needs_load);
    let mut settled = World::new(4, Some(4));
    settled.load = None;
    let p = settled.plan();
    assert!(!p.needs_load && p.actions.is_empty() && p.retiring.is_empty());
}

#[test]
fn selection_policies_order_candidates() {
    let mut w = World::new(4, Some(3));
    w.load = Some([(w.id(0), 2), (w.id(1), 1), (w.id(2), 0), (w.id(3), 4)].into());
    w.spec.disruption.selection_policy = SelectionPolicy::Oldest;
    assert_eq!(w.plan().retiring[0].node_name, "client-0");
    w.spec.disruption.selection_policy = SelectionPolicy::Newest;
    assert_eq!(w.plan().retiring[0].node_name, "client-3");
    w.spec.disruption.selection_policy = SelectionPolicy::LeastBusy;
    assert_eq!(w.plan().retiring[0].node_name, "client-2");
    w.spec.disruption.selection_policy = SelectionPolicy::Empty;
    assert_eq!(w.plan().retiring[0].node_name, "client-2");
    w.load = Some([(w.id(0), 2), (w.id(1), 1), (w.id(2), 1), (w.id(3), 4)].into());
    let p = w.plan();
    assert!(p.retiring.is_empty(), "Empty never takes a busy client");
    assert!(p.blockers.contains(&Blocker::NoEmptyNodes));
}

#[test]
fn selection_skips_ineligible_draining_down_and_unmapped_clients() {
    let mut w = World::new(5, Some(0));
    w.spec.disruption.max_unavailable = IntOrString::Int(10);
    w.nodes[0].eligible = false; // cordoned by someone else
    w.nodes[1].draining = true; // drained by someone else
    w.nodes[2].status = NodeStatus::Down;
    w.nodes[3].instance_id = None;
    let p = w.plan();
    assert_eq!(phases(&p), [("client-4".into(), RetirePhase::Cordoned)]);
    assert!(matches!(&p.blockers[..], [Blocker::Preflight(m)] if m.contains("client-3")));
}

#[test]
fn preflight_refusals_skip_candidates_and_say_why() {
    let mut w = World::new(3, Some(1));
    w.group.instances[0].protected_from_scale_in = true;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2);
    assert!(p.retiring.iter().all(|r| r.node_name != "client-0"));

    let mut w = World::new(3, Some(1));
    w.group.terminate_suspended = true;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(matches!(&p.blockers[..], [Blocker::Preflight(m)] if m.contains("Terminate")));

    let mut w = World::new(3, Some(1));
    w.group.min_size = 2;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1, "only one decrement fits above MinSize");
    assert!(matches!(&p.blockers[..], [Blocker::Preflight(_)]));
}

#[test]
fn budget_exhausted_waits_and_says_so() {
    let mut w = World::new(6, Some(2));
    w.tracked = vec![
        entry(&w.nodes[0], RetirePhase::Draining),
        entry(&w.nodes[1], RetirePhase::Draining),
    ];
    w.nodes[0].draining = true;
    w.nodes[1].draining = true;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2);
    assert!(p.blockers.contains(&Blocker::BudgetExhausted {
        in_flight: 2,
        budget: 2
    }));
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Cordon { .. })));
}

#[test]
fn pending_decrements_count_against_replicas() {
    // 5 in the group, 2 already committed to scale-in: only 1 more for replicas=2.
    let mut w = World::new(5, Some(2));
    w.spec.disruption.max_unavailable = IntOrString::Int(5);
    w.tracked = vec![
        entry(&w.nodes[0], RetirePhase::Draining),
        entry(&w.nodes[1], RetirePhase::Selected),
    ];
    w.nodes[0].draining = true;
    w.nodes[0].eligible = false;
    w.nodes[0].last_drain_mark = Some(scale_in_mark());
    let p = w.plan();
    assert_eq!(p.retiring.len(), 3);
}

#[test]
fn paused_starts_nothing_but_lets_flights_land() {
    let mut w = draining_world();
    w.spec.replicas = Some(1);
    w.spec.disruption.paused = true;
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(p.blockers.contains(&Blocker::Paused));
}

#[test]
fn dry_run_previews_and_touches_nothing() {
    let mut w = World::new(4, Some(2));
    w.spec.disruption.dry_run = true;
    w.load = Some([(w.id(2), 1)].into());
    let p = w.plan();
    assert!(p.actions.is_empty() && p.retiring.is_empty());
    assert_eq!(p.preview.len(), 2);
    assert_eq!(p.preview[0].node_name, "client-0");
}

#[test]
fn explicit_retire_by_name_id_or_instance() {
    let mut w = World::new(4, None);
    w.spec.retire = vec![
        RetireTarget {
            node_name: Some("client-1".into()),
            replace: true,
            ..Default::default()
        },
        RetireTarget {
            instance_id: Some("i-0002".into()),
            replace: false,
            ..Default::default()
        },
        RetireTarget {
            node_id: Some("ffffffff-0000-0000-0000-000000000000".into()),
            replace: true,
            ..Default::default()
        },
    ];
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2);
    assert_eq!(
        (p.retiring[0].reason, p.retiring[0].decrement),
        (RetireReason::Replace, false)
    );
    assert_eq!(
        (p.retiring[1].reason, p.retiring[1].decrement),
        (RetireReason::Requested, true)
    );
    assert!(
        p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::UnknownRetireTarget(t) if t.contains("ffffffff")))
    );
    assert!(!p.needs_load, "explicit retirements need no load");
}

#[test]
fn explicit_retire_removed_from_spec_is_cancelled_before_termination() {
    let mut w = World::new(3, None);
    let mut e = entry(&w.nodes[0], RetirePhase::Cordoned);
    e.reason = RetireReason::Replace;
    e.decrement = false;
    w.tracked = vec![e];
    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Cancelling);
}
