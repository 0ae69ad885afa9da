//! VMs the group's lifecycle hook holds in `Terminating:Wait` (issue 16):
//! retired with reason `LifecycleHook` whatever the budget, drained like any
//! other, and let go (the action completed) instead of terminated.

use super::*;

const HOOK: &str = "drain";

/// Three clients, `replicas` unset (another tool owns the size), the hook
/// confirmed; the group lowered its capacity and holds VM 0.
fn held_world() -> World {
    let mut w = World::new(3, None);
    w.lifecycle_hook = Some(HOOK);
    w.group.desired_capacity = 2;
    w.group.instances[0].lifecycle = Lifecycle::TerminatingWait;
    w
}

fn complete_of(w: &World, i: usize) -> Action {
    Action::CompleteLifecycleAction {
        instance_id: format!("i-{i:04}"),
        node_id: Some(w.id(i)),
    }
}

#[test]
fn a_held_vm_becomes_a_lifecycle_hook_retirement_before_any_nomad_call() {
    let w = held_world();
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    let e = &p.retiring[0];
    assert_eq!(
        (e.node_id.as_str(), e.phase, e.reason, e.decrement),
        (
            w.id(0).as_str(),
            RetirePhase::Cordoned,
            RetireReason::LifecycleHook,
            false
        ),
        "the group decided and lowered its capacity itself: no decrement"
    );
    assert!(
        matches!(&p.actions[..], [Action::Drain { node_id, .. }] if *node_id == w.id(0)),
        "{:?}",
        p.actions
    );
    assert!(p.events.iter().any(|e| e.reason == "LifecycleHookWaiting"));
}

#[test]
fn the_budget_counts_hook_retirements_but_never_refuses_them() {
    let mut w = held_world();
    w.spec.disruption.max_unavailable = IntOrString::Int(1);
    // Someone else's cordon already uses the whole budget.
    w.nodes[2].eligible = false;
    w.group.instances[1].lifecycle = Lifecycle::TerminatingWait;
    let p = w.plan();
    let reasons: Vec<_> = p.retiring.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, [RetireReason::LifecycleHook; 2], "both held VMs");

    // They count: a named retirement waits for the budget.
    w.spec.retire = vec![RetireTarget {
        node_name: Some("client-2".into()),
        ..Default::default()
    }];
    w.nodes[2].eligible = true;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2);
    assert!(
        p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::BudgetExhausted { .. }))
    );
}

#[test]
fn a_held_vm_without_a_client_is_let_go_at_once() {
    let mut w = held_world();
    w.nodes.remove(0);
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert_eq!(
        p.actions,
        [Action::CompleteLifecycleAction {
            instance_id: "i-0000".into(),
            node_id: None,
        }]
    );

    // A down client runs nothing either.
    let mut w = held_world();
    w.nodes[0].status = NodeStatus::Down;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert_eq!(p.actions.len(), 1);
}

#[test]
fn nothing_is_let_go_while_a_live_client_has_no_instance_id_yet() {
    let mut w = held_world();
    w.nodes.remove(0);
    w.nodes[0].instance_id = None;
    let p = w.plan();
    assert!(p.actions.is_empty(), "{:?}", p.actions);
}

#[test]
fn an_unconfirmed_hook_makes_nothing_of_held_vms() {
    let mut w = held_world();
    w.lifecycle_hook = None;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(p.actions.is_empty());
}

/// A hook retirement draining, its allocations still running.
fn draining_hook_world() -> World {
    let mut w = held_world();
    let mut e = entry(&w.nodes[0], RetirePhase::Draining);
    e.reason = RetireReason::LifecycleHook;
    e.decrement = false;
    w.tracked = vec![e];
    let n = &mut w.nodes[0];
    n.eligible = false;
    n.draining = true;
    n.last_drain = Some(LastDrainStatus::Draining);
    n.last_drain_mark = Some(DrainMark {
        reason: RetireReason::LifecycleHook,
        cordoned_by_pool: true,
        selected_at: None,
    });
    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 2,
            ..Default::default()
        },
    );
    w
}

#[test]
fn a_drained_hook_retirement_completes_the_action_instead_of_terminating() {
    let mut w = draining_hook_world();
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(p.actions.is_empty(), "jobs run: nothing is let go");

    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert_eq!(p.actions, [complete_of(&w, 0)], "no terminate call");

    // Completed again on each look while the view still shows it held (a
    // repeat is harmless); purged once the VM is gone and the node down.
    w.tracked = p.retiring.clone();
    let p = w.plan();
    assert_eq!(p.actions, [complete_of(&w, 0)]);
    w.group.instances.remove(0);
    w.nodes[0].status = NodeStatus::Down;
    let p = w.plan();
    assert_eq!(p.actions, [Action::Purge { node_id: w.id(0) }]);
}

#[test]
fn a_scale_in_retirement_whose_vm_the_group_took_is_completed_once_drained() {
    // Our own terminate landed: the hook holds the VM.
    let mut w = held_world();
    w.spec.replicas = Some(2);
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Terminating)];
    let p = w.plan();
    assert_eq!(p.actions, [complete_of(&w, 0)]);
    assert_eq!(p.retiring[0].reason, RetireReason::ScaleIn);
}

#[test]
fn a_held_vm_is_not_given_back_when_the_spec_stops_wanting_it() {
    // A scale-in draining when someone else's scale-in took its VM, then
    // replicas raised: the VM goes anyway, so its client stays drained.
    let mut w = draining_hook_world();
    w.tracked[0].reason = RetireReason::ScaleIn;
    w.tracked[0].decrement = true;
    w.spec.replicas = None;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Release { .. }))
    );
}

#[test]
fn with_replicas_set_a_capacity_lowered_elsewhere_is_put_back() {
    // The pool owns the size: someone lowered it 4 -> 2; the two held VMs
    // are drained (the group decided), and the capacity goes back to 4.
    let mut w = World::new(4, Some(4));
    w.lifecycle_hook = Some(HOOK);
    w.group.desired_capacity = 2;
    w.group.instances[0].lifecycle = Lifecycle::TerminatingWait;
    w.group.instances[1].lifecycle = Lifecycle::TerminatingWait;
    let p = w.plan();
    let reasons: Vec<_> = p.retiring.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, [RetireReason::LifecycleHook; 2]);
    assert!(
        p.actions
            .contains(&Action::SetDesiredCapacity { desired: 4 }),
        "{:?}",
        p.actions
    );
}
