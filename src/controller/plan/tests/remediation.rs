//! `spec.remediation` (issue 18): clients that stay down on a VM in service
//! are replaced within `maxUnhealthy`; down nodes whose VM is gone are
//! purged after `purgeDownAfter`; and the per-client opt-out from voluntary
//! retirement.

use super::*;

fn minutes(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// Ten clients, `replicas: 10`, remediation after 10 minutes; client-0
/// down since 15 minutes ago.
fn down_world() -> World {
    let mut w = World::new(10, Some(10));
    w.spec.remediation = Some(RemediationPolicy {
        unhealthy_after: Some("10m".into()),
        ..Default::default()
    });
    go_down(&mut w, 0, 15);
    w
}

/// Client `i` down for `mins` minutes on the controller's clock.
fn go_down(w: &mut World, i: usize, mins: i64) {
    w.nodes[i].status = NodeStatus::Down;
    let since = w.at.checked_sub(minutes(mins)).unwrap();
    w.unhealthy_since.insert(w.id(i), since);
}

fn unhealthy_entry(w: &World, i: usize, phase: RetirePhase) -> RetiringNode {
    RetiringNode {
        reason: RetireReason::Unhealthy,
        decrement: false,
        ..entry(&w.nodes[i], phase)
    }
}

fn terminates(p: &Plan) -> Vec<(String, bool)> {
    (p.actions.iter())
        .filter_map(|a| match a {
            Action::Terminate {
                instance_id,
                decrement,
                ..
            } => Some((instance_id.clone(), *decrement)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_client_down_past_its_grace_is_selected_for_replacement() {
    let w = down_world();
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    let e = &p.retiring[0];
    assert_eq!(
        (e.node_id.as_str(), e.reason, e.decrement),
        (w.id(0).as_str(), RetireReason::Unhealthy, false),
        "replaced: the group launches a new VM"
    );
    assert_eq!(p.actions, [Action::Cordon { node_id: w.id(0) }]);
    let said = p.events.iter().find(|e| e.reason == "Unhealthy").unwrap();
    assert!(said.warning);
    assert!(said.message.contains("down for 15m00s"), "{}", said.message);
    assert_eq!(p.unhealthy, 1);
}

#[test]
fn a_client_within_its_grace_waits_and_the_plan_wakes_when_it_ends() {
    let mut w = down_world();
    go_down(&mut w, 0, 4);
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert_eq!(p.wake, Some(w.at.checked_add(minutes(6)).unwrap()));
    assert_eq!(p.unhealthy, 1, "counted as unhealthy all the same");
    // A client the controller never saw go down (just restarted) starts
    // its count now: late, never early.
    w.unhealthy_since.clear();
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert_eq!(p.wake, Some(w.at.checked_add(minutes(10)).unwrap()));
}

#[test]
fn without_remediation_a_down_client_is_left_alone() {
    let mut w = down_world();
    w.spec.remediation = None;
    let p = w.plan();
    assert!(p.retiring.is_empty() && p.actions.is_empty());
    // purgeDownAfter alone does not replace anyone either.
    w.spec.remediation = Some(RemediationPolicy {
        purge_down_after: Some("1h".into()),
        ..Default::default()
    });
    assert!(w.plan().retiring.is_empty());
}

#[test]
fn the_vm_is_terminated_without_shrinking_the_group_once_its_allocations_are_read() {
    let mut w = down_world();
    w.nodes[0].eligible = false;
    w.tracked = vec![unhealthy_entry(&w, 0, RetirePhase::Selected)];
    // Not read yet: it waits, touching nothing.
    let p = w.plan();
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Cordoned)]);
    assert!(terminates(&p).is_empty());
    assert!(
        p.retiring[0]
            .message
            .as_deref()
            .unwrap()
            .contains("reading")
    );

    w.tracked = p.retiring;
    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 2,
            unknown: 2,
            ..Default::default()
        },
    );
    let p = w.plan();
    assert_eq!(terminates(&p), [("i-0000".to_string(), false)]);
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Terminating)]);
    let said = (p.events.iter())
        .find(|e| e.reason == "ReplacingUnhealthy")
        .unwrap();
    assert!(
        said.message.contains("2 allocation(s)") && said.message.contains("2 unknown"),
        "{}",
        said.message
    );
    assert_eq!(p.retiring[0].allocations_left, 2);
    // The scale-in loop does not make up for it: replicas 10, the group
    // keeps its 10.
    assert!(
        !(p.actions.iter()).any(|a| matches!(a, Action::SetDesiredCapacity { .. })),
        "{:?}",
        p.actions
    );
}

#[test]
fn once_the_vm_is_gone_the_down_node_is_purged() {
    let mut w = down_world();
    w.nodes[0].eligible = false;
    w.tracked = vec![unhealthy_entry(&w, 0, RetirePhase::Terminating)];
    w.group.instances.remove(0);
    w.group.instances.push(InstanceState {
        id: "i-new".into(),
        lifecycle: Lifecycle::Pending,
        protected_from_scale_in: false,
        zone: None,
        healthy: true,
        launched_at: None,
        launch_spec: None,
    });
    let p = w.plan();
    assert_eq!(p.actions, [Action::Purge { node_id: w.id(0) }]);
    // Purged: the retirement ends.
    w.nodes.remove(0);
    w.tracked = p.retiring;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert_eq!(p.retired, 1);
}

#[test]
fn a_client_that_comes_back_before_its_vm_is_touched_is_given_back() {
    let mut w = down_world();
    w.nodes[0].eligible = false;
    w.nodes[0].status = NodeStatus::Ready;
    w.tracked = vec![unhealthy_entry(&w, 0, RetirePhase::Cordoned)];
    let p = w.plan();
    assert_eq!(phases(&p), [("client-0".into(), RetirePhase::Cancelling)]);
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(0),
        mark_eligible: true
    }));
    assert!(terminates(&p).is_empty());
}

#[test]
fn more_unhealthy_clients_than_max_unhealthy_remediates_none_and_says_why() {
    let mut w = down_world();
    // 20% of 10: 2. Three down.
    go_down(&mut w, 1, 15);
    go_down(&mut w, 2, 15);
    let p = w.plan();
    assert!(p.retiring.is_empty(), "{:?}", phases(&p));
    assert!(
        p.blockers.contains(&Blocker::TooManyUnhealthy {
            unhealthy: 3,
            allowed: 2
        }),
        "{:?}",
        p.blockers
    );
    assert_eq!(p.unhealthy, 3);
    // Two: both are replaced.
    w.nodes[2].status = NodeStatus::Ready;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2);
    assert!(
        p.blockers
            .iter()
            .all(|b| !matches!(b, Blocker::TooManyUnhealthy { .. }))
    );
    // A raised cap lets three through.
    go_down(&mut w, 2, 15);
    w.spec.remediation.as_mut().unwrap().max_unhealthy = Some(IntOrString::Int(3));
    assert_eq!(w.plan().retiring.len(), 3);
}

#[test]
fn the_budgets_do_not_hold_remediation_back_but_the_cap_counts_what_is_in_flight() {
    let mut w = down_world();
    // A budget of 0 blocks voluntary retirement, not a replacement.
    w.spec.disruption.budgets = vec![DisruptionBudget {
        max_unavailable: IntOrString::Int(0),
        schedule: None,
        duration: None,
        time_zone: None,
        rate: None,
    }];
    assert_eq!(w.plan().retiring.len(), 1);
    // Two in flight already (20% of 10): a third waits.
    w.nodes[1].status = NodeStatus::Down;
    w.nodes[2].status = NodeStatus::Down;
    w.tracked = vec![
        unhealthy_entry(&w, 1, RetirePhase::Terminating),
        unhealthy_entry(&w, 2, RetirePhase::Terminating),
    ];
    let p = w.plan();
    assert!(!(p.retiring.iter()).any(|e| e.node_id == w.id(0)));
    assert!(
        (p.blockers.iter()).any(|b| matches!(b, Blocker::TooManyUnhealthy { .. })),
        "{:?}",
        p.blockers
    );
}

#[test]
fn a_disconnected_client_waits_for_down_unless_the_spec_says_replace_it() {
    let mut w = down_world();
    w.nodes[0].status = NodeStatus::Disconnected;
    let p = w.plan();
    assert!(
        p.retiring.is_empty(),
        "its unknown allocations may still run"
    );
    assert_eq!(p.unhealthy, 1);
    w.spec.remediation.as_mut().unwrap().replace_disconnected = Some(true);
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    let said = p.events.iter().find(|e| e.reason == "Unhealthy").unwrap();
    assert!(said.message.contains("disconnected"), "{}", said.message);
}

#[test]
fn a_down_identity_of_a_client_that_registered_again_is_not_a_broken_vm() {
    let mut w = down_world();
    // client-0 came back under a new node ID on the same VM.
    let mut again = node(20);
    again.instance_id = w.nodes[0].instance_id.clone();
    w.nodes.push(again);
    assert!(w.plan().retiring.is_empty());
}

#[test]
fn a_standby_or_unknown_vm_is_not_remediated() {
    let mut w = down_world();
    w.group.instances[0].lifecycle = Lifecycle::Standby;
    assert!(
        w.plan().retiring.is_empty(),
        "standby: out of service on purpose"
    );
    let mut w = down_world();
    w.nodes[0].instance_id = None;
    assert!(w.plan().retiring.is_empty(), "its VM is not known");
}

#[test]
fn paused_and_dry_run_start_no_remediation() {
    let mut w = down_world();
    w.spec.disruption.paused = true;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(p.blockers.contains(&Blocker::Paused));
    w.spec.disruption.paused = false;
    w.spec.disruption.dry_run = true;
    let p = w.plan();
    assert!(p.retiring.is_empty() && p.actions.is_empty());
    assert_eq!(p.preview.len(), 1);
    assert_eq!(p.preview[0].reason, RetireReason::Unhealthy);
}

/// client-0 down for 2 hours, its VM gone from the group.
fn vanished_world() -> World {
    let mut w = World::new(4, None);
    w.spec.remediation = Some(RemediationPolicy {
        purge_down_after: Some("1h".into()),
        ..Default::default()
    });
    go_down(&mut w, 0, 120);
    w.group.instances.remove(0);
    w.group.desired_capacity = 3;
    w
}

#[test]
fn a_down_node_whose_vm_vanished_is_purged_after_the_grace() {
    let w = vanished_world();
    let p = w.plan();
    assert_eq!(p.actions, [Action::Purge { node_id: w.id(0) }]);
    assert!(p.events.iter().any(|e| e.reason == "PurgedDownNode"));
    assert!(p.retiring.is_empty(), "nothing to retire: the VM is gone");
}

#[test]
fn a_vanished_vm_node_within_the_grace_waits_and_the_plan_wakes() {
    let mut w = vanished_world();
    go_down(&mut w, 0, 20);
    let p = w.plan();
    assert!(p.actions.is_empty());
    assert_eq!(p.wake, Some(w.at.checked_add(minutes(40)).unwrap()));
}

#[test]
fn a_node_whose_vm_is_unknown_or_still_listed_is_never_purged() {
    let mut w = vanished_world();
    w.nodes[0].instance_id = None;
    assert!(w.plan().actions.is_empty(), "may run on any VM");
    let mut w = vanished_world();
    w.group.instances.push(InstanceState {
        id: "i-0000".into(),
        lifecycle: Lifecycle::Terminating,
        protected_from_scale_in: false,
        zone: None,
        healthy: false,
        launched_at: None,
        launch_spec: None,
    });
    assert!(w.plan().actions.is_empty(), "the group still lists it");
    let mut w = vanished_world();
    w.spec.remediation = None;
    assert!(w.plan().actions.is_empty(), "purgeDownAfter unset");
    let mut w = vanished_world();
    w.nodes[0].status = NodeStatus::Disconnected;
    assert!(w.plan().actions.is_empty(), "not down");
}

#[test]
fn scale_in_skips_opted_out_clients() {
    // LeastBusy picks the oldest idle client first: client-0, then 1.
    let mut w = World::new(4, Some(2));
    w.nodes[0].do_not_retire = true;
    let p = w.plan();
    let chosen: Vec<_> = p.retiring.iter().map(|e| e.node_name.as_str()).collect();
    assert_eq!(chosen, ["client-1", "client-2"]);
    assert!(
        p.blockers
            .iter()
            .all(|b| !matches!(b, Blocker::DoNotRetire { .. }))
    );
}

#[test]
fn a_scale_in_that_needs_opted_out_clients_says_so() {
    let mut w = World::new(4, Some(1));
    w.spec.disruption.max_unavailable = IntOrString::Int(10);
    w.nodes[0].do_not_retire = true;
    w.nodes[1].do_not_retire = true;
    let p = w.plan();
    let chosen: Vec<_> = p.retiring.iter().map(|e| e.node_name.as_str()).collect();
    assert_eq!(chosen, ["client-2", "client-3"]);
    assert!(
        p.blockers.contains(&Blocker::DoNotRetire {
            short: 1,
            opted_out: 2
        }),
        "{:?}",
        p.blockers
    );
}

#[test]
fn a_client_named_in_spec_retire_goes_even_when_opted_out() {
    let mut w = World::new(3, None);
    w.nodes[1].do_not_retire = true;
    w.spec.retire = vec![RetireTarget {
        node_name: Some("client-1".into()),
        ..Default::default()
    }];
    let p = w.plan();
    assert_eq!(phases(&p), [("client-1".into(), RetirePhase::Cordoned)]);
}

#[test]
fn an_opted_out_client_that_breaks_is_still_replaced() {
    let mut w = down_world();
    w.nodes[0].do_not_retire = true;
    assert_eq!(w.plan().retiring.len(), 1, "remediation is not voluntary");
}

#[test]
fn a_dry_run_previews_a_replacement_beside_the_scale_in_it_does_not_shorten() {
    // Ten VMs, replicas 8, client-0 down: nine working clients, so one
    // scale-in (never fewer working clients than replicas) beside the
    // replacement, which takes no VM away and so shortens nothing.
    let mut w = down_world();
    w.spec.replicas = Some(8);
    w.spec.disruption.dry_run = true;
    let p = w.plan();
    let reasons: Vec<_> = p.preview.iter().map(|r| r.reason).collect();
    assert_eq!(reasons, [RetireReason::Unhealthy, RetireReason::ScaleIn]);
}
