use super::*;
use crate::api::{RetirePhase, RetirementPhase};
use crate::controller::retirement::records::{finished_status, status_of};

const TOKEN: &str = "71514b9d-6a40-4b26-8523-05e7ee35fa40";

fn time(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn held(phase: RetirePhase) -> RetiringNode {
    RetiringNode {
        node_id: "0b1c2d3e-0000-4000-8000-000000000001".into(),
        node_name: "client-1".into(),
        instance_id: Some("i-1".into()),
        phase,
        since: time("2026-12-02T12:00:00Z"),
        selected_at: Some(time("2026-12-02T11:59:00Z")),
        reason: RetireReason::LifecycleHook,
        decrement: false,
        cordoned_by_pool: true,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: 1,
        blocking_jobs: vec![],
        message: None,
    }
}

fn facts(token: Option<&str>, completed: Option<&str>) -> HoldFacts {
    HoldFacts {
        hook: Some(("drain".into(), 30)),
        tokens: token
            .map(|t| HashMap::from([("i-1".to_owned(), t.to_owned())]))
            .unwrap_or_default(),
        completed: completed
            .map(|t| HashMap::from([("i-1".to_owned(), t.parse().unwrap())]))
            .unwrap_or_default(),
    }
}

/// One status write after another, each from the previous status, as the
/// pool's reconciles make them.
fn next(
    e: &RetiringNode,
    previous: Option<&NomadClientRetirementStatus>,
    facts: &HoldFacts,
    own: &DrainPolicy,
) -> NomadClientRetirementStatus {
    let now: Timestamp = "2026-12-02T12:00:10Z".parse().unwrap();
    let mut status = status_of(e, previous, Some(1), None, now);
    apply(&mut status, e, facts, own, now);
    status
}

#[test]
fn the_token_and_the_completion_are_recorded_once_and_kept() {
    let e = held(RetirePhase::Selected);
    let none = DrainPolicy::default();
    let first = next(&e, None, &facts(Some(TOKEN), None), &none);
    let record = first.lifecycle_action.clone().unwrap();
    assert_eq!(
        (record.hook.as_str(), record.token.as_deref()),
        ("drain", Some(TOKEN))
    );
    assert_eq!(record.completed_at, None);
    // A restarted operator knows neither (no queue message yet, no
    // completion of its own), and the hook is not confirmed this time.
    let restarted = next(&e, Some(&first), &HoldFacts::default(), &none);
    assert_eq!(restarted.lifecycle_action, first.lifecycle_action);
    let done = next(
        &e,
        Some(&restarted),
        &facts(None, Some("2026-12-02T12:30:00Z")),
        &none,
    );
    let record = done.lifecycle_action.clone().unwrap();
    assert_eq!(record.token.as_deref(), Some(TOKEN));
    assert_eq!(record.completed_at, Some(time("2026-12-02T12:30:00Z")));
    // A later completion time (a repeated call) does not move it.
    let again = next(
        &e,
        Some(&done),
        &facts(None, Some("2026-12-02T12:31:00Z")),
        &none,
    );
    assert_eq!(again.lifecycle_action, done.lifecycle_action);
    // The final status keeps it.
    let now = "2026-12-02T12:32:00Z".parse().unwrap();
    let end = finished_status(
        &again,
        Some(1),
        RetirementPhase::Retired,
        "gone".into(),
        now,
    );
    assert_eq!(end.lifecycle_action, done.lifecycle_action);
}

#[test]
fn only_held_clients_get_a_record_and_only_a_uuid_is_kept() {
    let none = DrainPolicy::default();
    let mut scale_in = held(RetirePhase::Selected);
    scale_in.reason = RetireReason::ScaleIn;
    let st = next(&scale_in, None, &facts(Some(TOKEN), None), &none);
    assert_eq!(st.lifecycle_action, None);
    assert!(st.conditions.iter().all(|c| c.type_ != GLOBAL_TIMEOUT));
    let st = next(
        &held(RetirePhase::Selected),
        None,
        &facts(Some("short"), None),
        &none,
    );
    assert_eq!(
        st.lifecycle_action.unwrap().token,
        None,
        "not a token AWS gives"
    );
    // No hook confirmed and nothing recorded before: nothing to say.
    let st = next(
        &held(RetirePhase::Selected),
        None,
        &HoldFacts::default(),
        &none,
    );
    assert_eq!(st.lifecycle_action, None);
}

#[test]
fn the_global_timeout_condition_follows_the_drain_and_outlives_it() {
    let none = DrainPolicy::default();
    let capped = next(
        &held(RetirePhase::Cordoned),
        None,
        &facts(None, None),
        &none,
    );
    let c = (capped.conditions.iter())
        .find(|c| c.type_ == GLOBAL_TIMEOUT)
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "DrainDeadlineCapped")
    );
    assert!(!c.message.contains(TOKEN));
    // The hook not confirmed this reconcile: the condition stays as it was.
    let kept = next(
        &held(RetirePhase::Draining),
        Some(&capped),
        &HoldFacts::default(),
        &none,
    );
    assert!(kept.conditions.contains(c));
    assert_eq!(kept.conditions[0].type_, "Progressing");
    // The final status keeps it: it says how the drain ended.
    let now = "2026-12-02T12:40:00Z".parse().unwrap();
    let end = finished_status(&kept, Some(1), RetirementPhase::Retired, "gone".into(), now);
    assert!(end.conditions.contains(c));
    // A drain deadline edited while the client drains does not change the
    // drain Nomad runs, nor what its retirement says of it.
    let short = DrainPolicy {
        deadline: Some("30m".into()),
        ..DrainPolicy::default()
    };
    let draining = next(
        &held(RetirePhase::Draining),
        Some(&capped),
        &facts(None, None),
        &short,
    );
    assert!(draining.conditions.contains(c));
    // Before the drain is sent, a drain whose own deadline ends first.
    let within = next(
        &held(RetirePhase::Cordoned),
        Some(&capped),
        &facts(None, None),
        &short,
    );
    let c = (within.conditions.iter())
        .filter(|c| c.type_ == GLOBAL_TIMEOUT)
        .collect::<Vec<_>>();
    assert_eq!(c.len(), 1, "replaced, not added");
    assert_eq!(
        (c[0].status.as_str(), c[0].reason.as_str()),
        ("True", "WithinGlobalTimeout")
    );
}

#[test]
fn a_retirement_own_drain_is_the_one_judged() {
    let pool = DrainPolicy {
        deadline: Some("2h".into()),
        ..DrainPolicy::default()
    };
    assert_eq!(own_drain(None, &pool), pool);
    let e = held(RetirePhase::Selected);
    let mut r = crate::controller::retirement::records::tests::object("r", Some(&e));
    r.spec.drain = Some(crate::api::DrainOverrides {
        deadline: Some("30m".into()),
        force_terminate_after: None,
    });
    assert_eq!(own_drain(Some(&r), &pool).deadline.as_deref(), Some("30m"));
}

#[test]
fn a_completion_not_yet_recorded_lands_in_the_final_status() {
    let e = held(RetirePhase::Terminating);
    let before = next(&e, None, &facts(Some(TOKEN), None), &DrainPolicy::default());
    let now = "2026-12-02T12:32:00Z".parse().unwrap();
    let mut end = finished_status(
        &before,
        Some(1),
        RetirementPhase::Retired,
        "gone".into(),
        now,
    );
    finish(&mut end, &facts(None, Some("2026-12-02T12:31:00Z")));
    let record = end.lifecycle_action.unwrap();
    assert_eq!(record.completed_at, Some(time("2026-12-02T12:31:00Z")));
    assert_eq!(record.token.as_deref(), Some(TOKEN));
    // A retirement the hook never held gets no record at its end either.
    let mut other = finished_status(
        &NomadClientRetirementStatus {
            instance_id: Some("i-1".into()),
            ..Default::default()
        },
        Some(1),
        RetirementPhase::Retired,
        "gone".into(),
        now,
    );
    finish(&mut other, &facts(None, Some("2026-12-02T12:31:00Z")));
    assert_eq!(other.lifecycle_action, None);
}
