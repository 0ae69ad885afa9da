//! One retirement through its phases: cordon, drain, the wait for every
//! allocation, termination and what holds it back, and cancellation.

use super::*;

#[test]
fn selected_becomes_cordoned_once_ineligible_then_drains() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Selected)];
    let p = w.plan();
    assert_eq!(
        p.retiring[0].phase,
        RetirePhase::Selected,
        "still eligible: cordon again"
    );
    assert_eq!(p.actions, [Action::Cordon { node_id: w.id(0) }]);

    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Cordoned);
    assert_eq!(p.actions, [drain_of(&w, 0)]);
}

#[test]
fn cordoned_becomes_draining_only_for_our_own_drain() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Cordoned)];
    w.nodes[0].eligible = false;
    w.nodes[0].draining = true;
    w.nodes[0].last_drain = Some(LastDrainStatus::Draining);
    w.nodes[0].last_drain_mark = None; // someone else's drain
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Cordoned);
    assert_eq!(p.actions, [drain_of(&w, 0)], "our drain replaces theirs");

    w.nodes[0].last_drain_mark = Some(scale_in_mark());
    w.nodes[0].last_drain_started = Some(t("2026-11-26T11:59:00Z"));
    w.spec.drain.deadline = Some("1h".into());
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert_eq!(
        p.retiring[0].drain_deadline,
        Some(Time(t("2026-11-26T12:59:00Z")))
    );
    assert!(p.actions.is_empty());
}

#[test]
fn draining_waits_for_allocation_facts_and_for_every_allocation() {
    let mut w = draining_world();
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(p.actions.is_empty());

    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 2,
            blocking_jobs: vec!["build-1".into(), "build-2".into()],
            ..Default::default()
        },
    );
    let p = w.plan();
    assert_eq!(p.retiring[0].allocations_left, 2);
    assert_eq!(p.retiring[0].blocking_jobs, ["build-1", "build-2"]);

    // Nomad marks the drain complete (deadline path) before allocations stop.
    drain_completes(&mut w);
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Terminate { .. }))
    );
}

#[test]
fn drained_node_is_terminated_with_decrement_in_the_same_step() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert_eq!(
        p.actions,
        [Action::Terminate {
            node_id: w.id(0),
            instance_id: "i-0000".into(),
            decrement: true,
            first_attempt: true
        }]
    );
}

#[test]
fn allocations_empty_but_drain_still_running_waits_for_nomad() {
    let mut w = draining_world();
    w.allocs.insert(w.id(0), AllocFacts::default());
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(p.actions.is_empty());
}

#[test]
fn force_terminate_only_past_deadline_plus_grace() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 1,
            blocking_jobs: vec!["stuck".into()],
            ..Default::default()
        },
    );
    w.spec.drain.deadline = Some("30m".into());
    w.spec.drain.force_terminate_after = Some("10m".into());
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:55:00Z")));
    assert!(
        w.plan().actions.is_empty(),
        "5 minutes past the deadline: wait"
    );
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:45:00Z")));
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "ForceTerminate" && e.warning)
    );
}

#[test]
fn drained_client_waits_while_the_token_may_not_see_every_allocation() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    w.visibility = AllocationVisibility::Checking;
    let p = w.plan();
    assert_eq!(
        p.retiring[0].phase,
        RetirePhase::Draining,
        "checking: wait quietly"
    );
    assert!(p.actions.is_empty() && p.events.is_empty() && p.blockers.is_empty());

    w.visibility = AllocationVisibility::Unproven(
        "no policy of the Nomad token grants read-job in namespace \"*\"",
    );
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Drained);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(matches!(&p.blockers[..], [Blocker::AllocationsHidden(m)] if m.contains("read-job")));
    assert_eq!(
        p.events
            .iter()
            .filter(|e| e.reason == "TerminateWithheld")
            .count(),
        1
    );
    // The next step says nothing new: no second warning, no status churn.
    w.tracked = p.retiring.clone();
    let again = w.plan();
    assert_eq!(again.retiring, p.retiring);
    assert!(again.events.is_empty(), "{:?}", again.events);

    // Proven (the policy was fixed): the same client is terminated.
    w.visibility = AllocationVisibility::Proven;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(matches!(&p.actions[..], [Action::Terminate { .. }]));
}

#[test]
fn a_retirement_s_own_drain_settings_apply_to_its_client_only() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 1,
            blocking_jobs: vec!["stuck".into()],
            ..Default::default()
        },
    );
    w.spec.drain.deadline = Some("30m".into());
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:45:00Z")));
    assert!(
        w.plan().actions.is_empty(),
        "the pool never forces a termination"
    );
    let own = DrainPolicy {
        force_terminate_after: Some("10m".into()),
        ..w.spec.drain.clone()
    };
    w.drains.insert(w.id(0), own);
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    w.drains.clear();
    w.drains.insert(w.id(1), DrainPolicy::default());
    assert!(w.plan().actions.is_empty(), "another client's settings");
}

#[test]
fn a_forced_termination_goes_ahead_without_proof_of_visibility() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    w.visibility = AllocationVisibility::Unproven("hidden");
    w.spec.drain.deadline = Some("30m".into());
    w.spec.drain.force_terminate_after = Some("10m".into());
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:45:00Z")));
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
}

#[test]
fn a_disconnected_client_with_unknown_allocations_is_not_terminated_when_its_drain_ends() {
    // Nomad marks the drain complete at its deadline (the allocations are
    // told to stop) while the partitioned client cannot report them stopped.
    let mut w = draining_world();
    drain_completes(&mut w);
    w.nodes[0].status = NodeStatus::Disconnected;
    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 2,
            unknown: 2,
            blocking_jobs: vec!["build".into()],
            ..Default::default()
        },
    );
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let message = p.retiring[0].message.as_deref().unwrap_or_default();
    assert!(
        message.contains("disconnected") && message.contains("2 unknown"),
        "{message}"
    );

    // Nomad then marks the node down (nothing on it wants to run any more)
    // but the allocations stay unknown: still not terminated.
    w.nodes[0].status = NodeStatus::Down;
    let p = w.plan();
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let message = p.retiring[0].message.as_deref().unwrap_or_default();
    assert!(message.contains("node is down"), "{message}");

    // Past drain.forceTerminateAfter the spec allows it, and the event says
    // the work may still be running.
    w.spec.drain.deadline = Some("30m".into());
    w.spec.drain.force_terminate_after = Some("10m".into());
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:45:00Z")));
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "ForceTerminate" && e.message.contains("partition"))
    );
}

#[test]
fn drained_but_protected_instance_waits_in_drained() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    w.group.instances[0].protected_from_scale_in = true;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Drained);
    assert!(
        p.retiring[0]
            .message
            .as_deref()
            .unwrap()
            .contains("protected")
    );
    assert!(p.actions.is_empty());
}

#[test]
fn terminating_reissues_only_while_the_instance_still_counts() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Terminating)];
    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(
        p.actions,
        [Action::Terminate {
            node_id: w.id(0),
            instance_id: "i-0000".into(),
            decrement: true,
            first_attempt: false
        }]
    );

    // The call landed: the instance is terminating and desired already dropped.
    w.group.instances[0].lifecycle = Lifecycle::Terminating;
    w.group.desired_capacity = 2;
    let p = w.plan();
    assert!(
        p.actions.is_empty(),
        "never a second terminate: {:?}",
        p.actions
    );
    assert_eq!(p.desired_nodes, 2);

    w.nodes[0].status = NodeStatus::Down;
    assert_eq!(w.plan().actions, [Action::Purge { node_id: w.id(0) }]);

    w.nodes.remove(0);
    w.group.instances.remove(0);
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert_eq!(p.retired, 1);
    assert_eq!(p.retire_seconds, [7200.0], "selected two hours before");
    let retired = p.events.iter().find(|e| e.reason == "Retired");
    assert!(
        retired.is_some_and(|e| e.message.contains(" retired in 2h00m")),
        "{retired:?}"
    );
}

#[test]
fn human_seconds_reads_like_a_duration() {
    assert_eq!(super::super::human_seconds(0.4), "0s");
    assert_eq!(super::super::human_seconds(75.4), "1m15s");
    assert_eq!(super::super::human_seconds(7263.0), "2h01m");
}

#[test]
fn cancelling_finishes_when_the_node_is_back() {
    let mut w = World::new(3, Some(3));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Cancelling)];
    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(
        p.actions,
        [Action::Release {
            node_id: w.id(0),
            mark_eligible: true
        }]
    );
    w.nodes[0].eligible = true;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(p.events.iter().any(|e| e.reason == "ReturnedToService"));
}

#[test]
fn node_vanishing_mid_retirement_is_forgotten_with_a_warning() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Draining)];
    w.nodes.remove(0);
    let p = w.plan();
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "NodeLeftPool" && e.warning)
    );
    assert_eq!(p.retired, 0);
}

#[test]
fn drain_cancelled_by_someone_else_is_sent_again() {
    let mut w = draining_world();
    w.nodes[0].draining = false;
    w.nodes[0].last_drain = Some(LastDrainStatus::Canceled);
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Cordoned);
    assert_eq!(p.actions, [drain_of(&w, 0)]);
}
