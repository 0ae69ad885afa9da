//! Replacing expired (`maxNodeAge`) and drifted (`replaceDrifted`)
//! clients: oldest first, within the budget and the rates, replaced not
//! shrunk, each client for one reason only.

use super::*;
use crate::provider::LaunchSpec;

/// VM `i` launched `hours` before `now()`.
fn launched(w: &mut World, i: usize, hours: i64) {
    w.group.instances[i].launched_at = Some(now() - SignedDuration::from_hours(hours));
}

fn template(version: &str) -> LaunchSpec {
    LaunchSpec::LaunchTemplate {
        id: "lt-0abc".into(),
        version: version.into(),
    }
}

/// Six clients launched 10, 50, 30, 70, 5 and 40 hours ago.
fn aged_world() -> World {
    let mut w = World::new(6, Some(6));
    for (i, hours) in [10, 50, 30, 70, 5, 40].into_iter().enumerate() {
        launched(&mut w, i, hours);
    }
    w.spec.max_node_age = Some("24h".into());
    w
}

fn selected(p: &Plan) -> Vec<(String, RetireReason, bool)> {
    (p.retiring.iter())
        .filter(|r| r.phase == RetirePhase::Cordoned)
        .map(|r| (r.node_name.clone(), r.reason, r.decrement))
        .collect()
}

#[test]
fn expired_clients_are_replaced_oldest_first_within_the_budget() {
    let w = aged_world();
    let p = w.plan();
    // Four are past 24h (70, 50, 40, 30 hours); the budget is 2.
    assert_eq!(
        selected(&p),
        [
            ("client-3".into(), RetireReason::Expired, false),
            ("client-1".into(), RetireReason::Expired, false),
        ]
    );
    assert!(drains(&p, &w.id(3)), "{:?}", p.actions);
    assert!(
        (p.blockers.iter()).any(|b| matches!(b, Blocker::BudgetExhausted { budget: 2, .. })),
        "{:?}",
        p.blockers
    );
    let events: Vec<_> = (p.events.iter())
        .filter(|e| e.reason == "Expired")
        .collect();
    assert_eq!(events.len(), 2);
    assert!(
        events[0].message.contains("70h00m"),
        "{}",
        events[0].message
    );
    assert!(
        p.retiring[0]
            .message
            .as_deref()
            .unwrap()
            .contains("maxNodeAge 24h")
    );
    // Replaced, not shrunk: nothing lowers the group's size.
    assert!(
        !(p.actions.iter()).any(|a| matches!(a, Action::SetDesiredCapacity { .. })),
        "{:?}",
        p.actions
    );
}

#[test]
fn without_max_node_age_or_launch_times_nothing_expires() {
    let mut w = aged_world();
    w.spec.max_node_age = None;
    assert!(w.plan().retiring.is_empty());
    // Launch times not read (the cloud was not asked): nothing is due.
    let mut w = aged_world();
    for i in &mut w.group.instances {
        i.launched_at = None;
    }
    assert!(w.plan().retiring.is_empty());
}

#[test]
fn expiry_counts_what_is_already_in_flight_and_never_takes_a_client_twice() {
    let mut w = aged_world();
    // The oldest is already being scaled in: it is neither counted twice
    // nor retired for a second reason; one slot is left.
    w.tracked = vec![entry(&w.nodes[3], RetirePhase::Draining)];
    w.nodes[3].eligible = false;
    w.nodes[3].draining = true;
    let p = w.plan();
    assert_eq!(
        selected(&p),
        [("client-1".into(), RetireReason::Expired, false)]
    );
    assert_eq!(
        (p.retiring.iter())
            .filter(|r| r.node_id == w.id(3))
            .map(|r| r.reason)
            .collect::<Vec<_>>(),
        [RetireReason::ScaleIn]
    );
}

#[test]
fn scale_in_goes_first_and_expiry_takes_what_budget_is_left() {
    let mut w = aged_world();
    w.spec.replicas = Some(5);
    let p = w.plan();
    let reasons: Vec<RetireReason> = p.retiring.iter().map(|r| r.reason).collect();
    assert_eq!(reasons, [RetireReason::ScaleIn, RetireReason::Expired]);
    // The scale-in took the least busy oldest client (client-0); expiry
    // the oldest VM that is left.
    assert_eq!(p.retiring[1].node_name, "client-3");
    assert_ne!(p.retiring[0].node_id, p.retiring[1].node_id);
}

#[test]
fn a_rate_limits_expiry_like_every_voluntary_start() {
    let mut w = aged_world();
    w.spec.disruption.budgets = vec![DisruptionBudget {
        max_unavailable: IntOrString::Int(5),
        schedule: None,
        duration: None,
        time_zone: None,
        rate: Some(DisruptionRate {
            retirements: 1,
            per: Some("1h".into()),
        }),
    }];
    w.spec.disruption.max_unavailable = IntOrString::Int(5);
    let p = w.plan();
    assert_eq!(selected(&p).len(), 1, "{:?}", p.retiring);
    assert!(
        (p.blockers.iter()).any(|b| matches!(b, Blocker::RateLimited(_))),
        "{:?}",
        p.blockers
    );
}

#[test]
fn paused_and_dry_run_start_nothing() {
    let mut w = aged_world();
    w.spec.disruption.paused = true;
    assert!(w.plan().retiring.is_empty());
    let mut w = aged_world();
    w.spec.disruption.dry_run = true;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(p.actions.is_empty());
    let previewed: Vec<_> = (p.preview.iter())
        .map(|r| (r.node_name.as_str(), r.reason))
        .collect();
    assert_eq!(
        previewed,
        [
            ("client-3", RetireReason::Expired),
            ("client-1", RetireReason::Expired)
        ]
    );
}

#[test]
fn only_ready_eligible_clients_on_their_own_vm_are_replaced() {
    let mut w = aged_world();
    w.spec.disruption.max_unavailable = IntOrString::Int(6);
    w.nodes[3].eligible = false; // cordoned by someone else
    w.nodes[1].status = NodeStatus::Disconnected;
    w.group.instances[5].lifecycle = Lifecycle::Standby;
    let p = w.plan();
    assert_eq!(
        selected(&p),
        [("client-2".into(), RetireReason::Expired, false)]
    );
}

#[test]
fn drifted_clients_are_replaced_only_when_asked() {
    let mut w = World::new(4, Some(4));
    w.group.launch_specs = vec![template("3")];
    for (i, v) in ["3", "2", "3", "1"].into_iter().enumerate() {
        w.group.instances[i].launch_spec = Some(template(v));
        launched(&mut w, i, 10 - i as i64);
    }
    assert!(w.plan().retiring.is_empty(), "drift is opt-in");
    w.spec.replace_drifted = true;
    let p = w.plan();
    // Oldest VM first (client-3 launched 7h ago, client-1 9h ago: client-1).
    assert_eq!(
        selected(&p),
        [
            ("client-1".into(), RetireReason::Drifted, false),
            ("client-3".into(), RetireReason::Drifted, false),
        ]
    );
    let event = (p.events.iter()).find(|e| e.reason == "Drifted").unwrap();
    assert!(
        event
            .message
            .contains("runs launch template lt-0abc version 2")
            && event
                .message
                .contains("launches launch template lt-0abc version 3"),
        "{}",
        event.message
    );
}

#[test]
fn unknown_launch_specs_are_never_drift() {
    let mut w = World::new(3, Some(3));
    w.spec.replace_drifted = true;
    // The group's current spec not read: nothing can be called drifted.
    w.group.instances[0].launch_spec = Some(template("1"));
    assert!(w.plan().retiring.is_empty());
    // A VM whose own spec is not known is not drifted either.
    w.group.launch_specs = vec![template("2")];
    w.group.instances[0].launch_spec = None;
    assert!(w.plan().retiring.is_empty());
    // A group rolling out two instance templates: both are current.
    w.group.launch_specs = vec![
        LaunchSpec::InstanceTemplate("projects/p/global/instanceTemplates/a".into()),
        LaunchSpec::InstanceTemplate("projects/p/global/instanceTemplates/b".into()),
    ];
    w.group.instances[0].launch_spec = w.group.launch_specs.first().cloned();
    w.group.instances[1].launch_spec = w.group.launch_specs.get(1).cloned();
    assert!(w.plan().retiring.is_empty());
}

#[test]
fn an_expired_and_drifted_client_is_retired_once_as_expired() {
    let mut w = World::new(2, Some(2));
    w.spec.max_node_age = Some("24h".into());
    w.spec.replace_drifted = true;
    w.group.launch_specs = vec![template("2")];
    launched(&mut w, 0, 48);
    launched(&mut w, 1, 2);
    w.group.instances[0].launch_spec = Some(template("1"));
    w.group.instances[1].launch_spec = Some(template("1"));
    let p = w.plan();
    assert_eq!(
        selected(&p),
        [
            ("client-0".into(), RetireReason::Expired, false),
            ("client-1".into(), RetireReason::Drifted, false),
        ]
    );
}

#[test]
fn turning_the_feature_off_gives_clients_back_before_termination() {
    let mut w = aged_world();
    let mut e = entry(&w.nodes[3], RetirePhase::Draining);
    e.reason = RetireReason::Expired;
    e.decrement = false;
    w.tracked = vec![e];
    w.nodes[3].eligible = false;
    w.nodes[3].draining = true;
    w.spec.max_node_age = None;
    let p = w.plan();
    assert_eq!(phases(&p), [("client-3".into(), RetirePhase::Cancelling)]);
    // Still on: it carries on.
    w.spec.max_node_age = Some("24h".into());
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
}

#[test]
fn a_client_that_opted_out_is_never_expired_or_drifted() {
    let mut w = aged_world();
    w.nodes[3].do_not_retire = true;
    let p = w.plan();
    assert_eq!(
        selected(&p),
        [
            ("client-1".into(), RetireReason::Expired, false),
            ("client-5".into(), RetireReason::Expired, false),
        ]
    );
}

#[test]
fn the_plan_wakes_when_the_next_vm_expires_and_to_look_for_drift() {
    let mut w = World::new(2, Some(2));
    w.spec.max_node_age = Some("24h".into());
    launched(&mut w, 0, 20);
    launched(&mut w, 1, 10);
    assert_eq!(w.plan().wake, Some(now() + SignedDuration::from_hours(4)));
    w.spec.replace_drifted = true;
    assert_eq!(w.plan().wake, Some(now() + SignedDuration::from_secs(30)));
    w.spec.max_node_age = None;
    w.spec.replace_drifted = false;
    assert_eq!(w.plan().wake, None);
}

#[test]
fn max_node_age_on_a_cloud_without_launch_times_says_so() {
    let mut w = aged_world();
    w.group.reads_launch_times = false;
    for i in &mut w.group.instances {
        i.launched_at = None;
    }
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(
        p.blockers.contains(&Blocker::LaunchTimesUnknown),
        "{:?}",
        p.blockers
    );
    w.spec.max_node_age = None;
    assert!(!w.plan().blockers.contains(&Blocker::LaunchTimesUnknown));
}
