use super::*;
use crate::api::{NomadClientRetirementSpec, RetireReason, RetirementTarget};
use jiff::SignedDuration;

fn time(s: &str) -> Time {
    Time(s.parse().unwrap())
}

fn entry(phase: RetirePhase) -> RetiringNode {
    RetiringNode {
        node_id: "0b1c2d3e-0000-4000-8000-000000000001".into(),
        node_name: "client-1".into(),
        instance_id: Some("i-1".into()),
        phase,
        since: time("2026-12-01T10:00:00Z"),
        selected_at: Some(time("2026-12-01T09:59:00Z")),
        reason: RetireReason::ScaleIn,
        decrement: true,
        cordoned_by_pool: true,
        drain_started_at: Some(time("2026-12-01T09:59:30Z")),
        drain_deadline: None,
        allocations_left: 2,
        blocking_jobs: vec!["build".into()],
        message: Some("waiting for 2 allocation(s) to finish".into()),
    }
}

pub(crate) fn object(name: &str, e: Option<&RetiringNode>) -> NomadClientRetirement {
    let spec = NomadClientRetirementSpec {
        pool: "ci".into(),
        target: RetirementTarget {
            node_id: e.map(|e| e.node_id.clone()),
            node_name: e.is_none().then(|| "client-9".to_string()),
            ..Default::default()
        },
        reason: e.map_or(RetireReason::Replace, |e| e.reason),
        capacity: None,
        drain: None,
    };
    let mut r = NomadClientRetirement::new(name, spec);
    r.metadata.namespace = Some("default".into());
    r.metadata.resource_version = Some("1".into());
    r.metadata.generation = Some(1);
    r.status = e.map(|e| {
        let blocking = vec![BlockingAllocation {
            job_id: "build".into(),
            task_group: "main".into(),
            allocation_id: "a1".into(),
            since: None,
        }];
        // As the API server stores it: times to the second.
        let mut status = status_of(e, None, Some(1), Some(blocking), Timestamp::now());
        as_stored(&mut status);
        status
    });
    r
}

#[test]
fn an_entry_survives_the_trip_through_its_object() {
    for phase in [
        RetirePhase::Cordoned,
        RetirePhase::Draining,
        RetirePhase::Terminating,
    ] {
        let e = entry(phase);
        let r = object("ci-client-1-0b1c2d3e", Some(&e));
        let back = entry_of(&r).expect("in flight");
        assert_eq!(back, e, "{phase}");
    }
}

#[test]
fn blocking_allocations_follow_the_jobs_the_planner_names() {
    let now = Timestamp::now();
    let draining = object("r", Some(&entry(RetirePhase::Draining)));
    let previous = draining.status.as_ref();
    let kept = status_of(&entry(RetirePhase::Drained), previous, Some(1), None, now);
    assert_eq!(
        kept.blocking_allocations[0].allocation_id, "a1",
        "unwatched: as last seen"
    );
    let mut done = entry(RetirePhase::Terminating);
    done.blocking_jobs.clear();
    let gone = status_of(&done, previous, Some(1), None, now);
    assert!(gone.blocking_allocations.is_empty());
    assert_eq!(gone.terminated_at, Some(done.since));
    let mut other = entry(RetirePhase::Draining);
    other.blocking_jobs = vec!["deploy".into()];
    let named = status_of(&other, previous, Some(1), Some(vec![]), now);
    assert_eq!(named.blocking_allocations.len(), 1);
    assert_eq!(named.blocking_allocations[0].job_id, "deploy");
}

#[test]
fn a_deleted_retirement_is_cancelled_unless_its_vm_is_already_going() {
    let now = Timestamp::now();
    let mut draining = object("a", Some(&entry(RetirePhase::Draining)));
    draining.metadata.deletion_timestamp = Some(Time(now));
    let mut terminating_entry = entry(RetirePhase::Terminating);
    terminating_entry.node_id = "0b1c2d3e-0000-4000-8000-000000000002".into();
    let mut terminating = object("b", Some(&terminating_entry));
    terminating.metadata.deletion_timestamp = Some(Time(now));
    let t = tracked(
        &[Arc::new(draining), Arc::new(terminating)],
        &[],
        now,
        &|_| false,
    );
    let phases: Vec<RetirePhase> = t.entries.iter().map(|e| e.phase).collect();
    assert_eq!(phases, [RetirePhase::Cancelling, RetirePhase::Terminating]);
}

#[test]
fn hand_made_retirements_are_wanted_and_counted_until_they_finish() {
    let now = Timestamp::now();
    let pending = object("by-hand", None);
    let mut started = object("by-hand-2", Some(&entry(RetirePhase::Draining)));
    started.spec.reason = RetireReason::Replace;
    let mut pool_made = object("ours", Some(&entry(RetirePhase::Cordoned)));
    pool_made
        .annotations_mut()
        .insert(CREATED_BY.into(), "pool".into());
    let mut deleted = object("gone", None);
    deleted.metadata.deletion_timestamp = Some(Time(now));
    let t = tracked(
        &[pending, started, pool_made, deleted].map(Arc::new),
        &[],
        now,
        &|_| false,
    );
    assert_eq!(t.pending, 1);
    assert_eq!(t.hand_made.len(), 2, "{:?}", t.hand_made);
    assert_eq!(t.hand_made[0].node_name.as_deref(), Some("client-9"));
    assert!(
        t.hand_made[0].replace,
        "a hand-made retirement replaces by default"
    );
}

#[test]
fn a_legacy_entry_counts_only_for_a_client_without_an_object() {
    let now = Timestamp::now();
    let e = entry(RetirePhase::Draining);
    let mut other = entry(RetirePhase::Selected);
    other.node_id = "0b1c2d3e-0000-4000-8000-000000000003".into();
    let objects = [Arc::new(object("a", Some(&e)))];
    let t = tracked(&objects, &[e.clone(), other.clone()], now, &|_| false);
    assert_eq!(t.entries.len(), 2);
    assert_eq!(t.entries[1], other);
    // An end already counted is not planned again, nor read from the
    // status of the previous version.
    let t = tracked(&objects, std::slice::from_ref(&e), now, &|_| true);
    assert!(t.entries.is_empty(), "{:?}", t.entries);
}

#[test]
fn names_are_dns_subdomains_and_never_reused() {
    let n = name_for("ci", "Client_1.example", "0B1C2D3E-aaaa", |_| false);
    assert_eq!(n, "ci-client-1.example-0b1c2d3e");
    let taken = ["ci-x-12345678".to_string(), "ci-x-12345678-2".to_string()];
    let n = name_for("ci", "x", "12345678-0000", |n| taken.iter().any(|t| t == n));
    assert_eq!(n, "ci-x-12345678-3");
    let long = "a".repeat(400);
    let n = name_for("ci", &long, "12345678", |_| false);
    assert!(n.len() <= 253, "{}", n.len());
}

#[test]
fn a_retirement_s_drain_settings_apply_once_its_client_is_known() {
    let pool = DrainPolicy {
        deadline: Some("1h".into()),
        ignore_system_jobs: true,
        ..Default::default()
    };
    let own = crate::api::DrainOverrides {
        force_terminate_after: Some("5m".into()),
        ..Default::default()
    };
    let mut started = object("a", Some(&entry(RetirePhase::Draining)));
    started.spec.drain = Some(own.clone());
    let mut pending = object("b", None);
    pending.spec.drain = Some(own);
    let d = drains(&[Arc::new(started), Arc::new(pending)], &pool);
    assert_eq!(d.len(), 1);
    let policy = &d[&entry(RetirePhase::Draining).node_id];
    assert_eq!(
        policy.deadline.as_deref(),
        Some("1h"),
        "the pool's where unset"
    );
    assert_eq!(policy.force_terminate_after.as_deref(), Some("5m"));
    assert!(policy.ignore_system_jobs);
}

#[test]
fn new_counts_are_progress_a_new_message_is_news() {
    let now = Timestamp::now();
    let mut e = entry(RetirePhase::Draining);
    let before = status_of(&e, None, Some(1), None, now);
    e.allocations_left = 1;
    e.message = Some("waiting for 1 allocation(s) to finish".into());
    let counted = status_of(&e, Some(&before), Some(1), None, now);
    assert!(!material_change(&before, &counted));
    e.message = Some("node is disconnected with 1 allocation(s) that may still run".into());
    let news = status_of(&e, Some(&counted), Some(1), None, now);
    assert!(material_change(&counted, &news));
}

#[test]
fn words_and_figures_leave_the_record_a_phase_changes_it() {
    let now = Timestamp::now();
    let mut e = entry(RetirePhase::Draining);
    let before = status_of(&e, None, Some(1), None, now);
    e.allocations_left = 1;
    e.message = Some("node is disconnected with 1 allocation(s) that may still run".into());
    let words = status_of(&e, Some(&before), Some(1), None, now);
    assert!(material_change(&before, &words), "news for the reader");
    assert!(
        !record_change(&before, &words),
        "nothing an action rests on"
    );
    e.phase = RetirePhase::Drained;
    let drained = status_of(&e, Some(&words), Some(1), None, now);
    assert!(record_change(&words, &drained));
    e.phase = RetirePhase::Terminating;
    e.since = Time(now.checked_add(SignedDuration::from_secs(1)).unwrap());
    let terminating = status_of(&e, Some(&drained), Some(1), None, now);
    assert!(record_change(&drained, &terminating));
}

#[test]
fn every_phase_is_news() {
    let now = Timestamp::now();
    let mut e = entry(RetirePhase::Selected);
    let mut last = status_of(&e, None, Some(1), None, now);
    for phase in [
        RetirePhase::Cordoned,
        RetirePhase::Draining,
        RetirePhase::Cordoned,
        RetirePhase::Draining,
        RetirePhase::Drained,
        RetirePhase::Terminating,
    ] {
        e.phase = phase;
        e.since = Time(now.checked_add(SignedDuration::from_secs(1)).unwrap());
        let next = status_of(&e, Some(&last), Some(1), None, now);
        assert!(material_change(&last, &next), "{phase:?}");
        last = next;
    }
}

#[test]
fn a_hand_made_remediation_reason_is_drained_like_any_replacement() {
    let now = Timestamp::now();
    let mut unhealthy = entry(RetirePhase::Cordoned);
    unhealthy.reason = RetireReason::Unhealthy;
    let by_hand = object("by-hand", Some(&unhealthy));
    let mut pool_made = object("ours", Some(&unhealthy));
    pool_made
        .annotations_mut()
        .insert(CREATED_BY.into(), "pool".into());
    let t = tracked(&[by_hand, pool_made].map(Arc::new), &[], now, &|_| false);
    let reasons: Vec<RetireReason> = t.entries.iter().map(|e| e.reason).collect();
    assert_eq!(reasons, [RetireReason::Replace, RetireReason::Unhealthy]);
}

#[test]
fn words_in_terminating_wait_like_counts() {
    let now = Timestamp::now();
    let mut e = entry(RetirePhase::Drained);
    let drained = status_of(&e, None, Some(1), None, now);
    e.phase = RetirePhase::Terminating;
    e.message = Some("VM terminating; waiting for the Nomad node to turn down".into());
    let committed = status_of(&e, Some(&drained), Some(1), None, now);
    assert!(material_change(&drained, &committed), "the phase is news");
    e.message = Some("VM gone and node down; purging the node".into());
    let purging = status_of(&e, Some(&committed), Some(1), None, now);
    assert_ne!(committed, purging);
    assert!(
        !material_change(&committed, &purging),
        "a step of the phase"
    );
    // Before the phase, the same kind of change is news.
    e.phase = RetirePhase::Draining;
    let a = status_of(&e, Some(&drained), Some(1), None, now);
    e.message = Some("VM terminating; waiting for the Nomad node to turn down".into());
    let b = status_of(&e, Some(&a), Some(1), None, now);
    assert!(material_change(&a, &b));
}
