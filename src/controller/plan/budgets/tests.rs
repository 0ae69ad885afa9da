//! Each rule of the budgets on a hand-picked instant: windows on a zone's
//! wall clock (daylight-saving gaps and repeats in New York and Berlin, a
//! window across midnight), the strictest budget, the rates, the record.

use super::*;
use crate::api::{RetirePhase, RetireReason};

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn sched(cron: &str, zone: Option<&str>, duration: &str) -> Schedule {
    Schedule::parse(cron, zone, duration).unwrap()
}

fn budget(max: IntOrString, window: Option<(&str, &str, Option<&str>)>) -> DisruptionBudget {
    DisruptionBudget {
        max_unavailable: max,
        schedule: window.map(|w| w.0.to_owned()),
        duration: window.map(|w| w.1.to_owned()),
        time_zone: window.and_then(|w| w.2.map(str::to_owned)),
        rate: None,
    }
}

fn with_rate(mut b: DisruptionBudget, retirements: i32, per: Option<&str>) -> DisruptionBudget {
    b.rate = Some(DisruptionRate {
        retirements,
        per: per.map(str::to_owned),
    });
    b
}

#[test]
fn allowance_counts_and_rounds_percentages_down_but_zero_is_zero() {
    let pct = |s: &str| IntOrString::String(s.into());
    assert_eq!(allowance(&IntOrString::Int(0), 10), Some(0));
    assert_eq!(allowance(&IntOrString::Int(3), 10), Some(3));
    assert_eq!(allowance(&IntOrString::Int(-1), 10), None);
    assert_eq!(allowance(&pct("25%"), 10), Some(2));
    assert_eq!(allowance(&pct("5%"), 10), Some(1), "at least one");
    assert_eq!(allowance(&pct("0%"), 10), Some(0));
    assert_eq!(allowance(&pct("100%"), 7), Some(7));
    assert_eq!(allowance(&pct("101%"), 7), None);
    assert_eq!(allowance(&pct("ten"), 7), None);
}

#[test]
fn what_only_the_controller_can_check_is_a_one_line_error() {
    let err = |cron: &str, zone: Option<&str>, d: &str| {
        Schedule::parse(cron, zone, d).unwrap_err().to_string()
    };
    let e = err("0 9 * *", None, "1h");
    assert!(e.contains("4 fields"), "{e}");
    let e = err("0 25 * * *", None, "1h");
    assert!(e.contains("'0 25 * * *'") && !e.contains('\n'), "{e}");
    assert!(e.contains("23"), "names the range: {e}");
    let e = err("0 9 * * *", Some("Mars/Olympus_Mons"), "1h");
    assert!(e.contains("Mars/Olympus_Mons"), "{e}");
    let e = err("0 9 * * *", None, "745h");
    assert!(e.contains("745h"), "{e}");
    let never = sched("0 0 30 2 *", None, "1h");
    let e = never.next_opening(t("2026-01-01T00:00:00Z")).unwrap_err();
    assert!(matches!(e, ScheduleError::Never { .. }), "{e}");
}

#[test]
fn business_hours_in_berlin_open_at_nine_local_time_in_winter_and_summer() {
    let s = sched("0 9 * * 1-5", Some("Europe/Berlin"), "8h");
    // Monday 7 December 2026, 10:00 in Berlin (UTC+1).
    let w = s.window_at(t("2026-12-07T09:00:00Z")).unwrap().unwrap();
    assert_eq!(w.opened, t("2026-12-07T08:00:00Z"));
    assert_eq!(w.closes, t("2026-12-07T16:00:00Z"));
    assert_eq!(
        s.window_at(t("2026-12-07T16:00:00Z")).unwrap(),
        None,
        "closed at 17:00"
    );
    assert_eq!(
        s.window_at(t("2026-12-05T09:00:00Z")).unwrap(),
        None,
        "Saturday"
    );
    // Friday evening: the next opening is Monday.
    assert_eq!(
        s.next_opening(t("2026-12-04T17:00:00Z")).unwrap(),
        t("2026-12-07T08:00:00Z")
    );
    // In summer Berlin is UTC+2: nine o'clock is 07:00Z.
    assert_eq!(
        s.next_opening(t("2026-07-06T00:00:00Z")).unwrap(),
        t("2026-07-06T07:00:00Z")
    );
}

#[test]
fn a_window_across_midnight_holds_the_small_hours() {
    let s = sched("0 22 * * *", None, "10h");
    let w = s.window_at(t("2026-12-08T03:00:00Z")).unwrap().unwrap();
    assert_eq!(w.opened, t("2026-12-07T22:00:00Z"));
    assert_eq!(w.closes, t("2026-12-08T08:00:00Z"));
    assert_eq!(s.window_at(t("2026-12-08T08:00:00Z")).unwrap(), None);
    assert!(
        s.window_at(t("2026-12-07T22:00:00Z")).unwrap().is_some(),
        "opens inclusive"
    );
}

#[test]
fn a_skipped_opening_opens_after_the_jump_in_new_york() {
    // 8 March 2026: 02:00 EST becomes 03:00 EDT; 02:30 does not exist.
    let s = sched("30 2 * * *", Some("America/New_York"), "1h");
    let opening = s.next_opening(t("2026-03-08T05:00:00Z")).unwrap();
    assert_eq!(opening, t("2026-03-08T07:30:00Z"), "03:30 EDT");
    let w = s.window_at(t("2026-03-08T08:00:00Z")).unwrap().unwrap();
    assert_eq!(w.opened, opening);
    // The day before and after, 02:30 local as usual.
    assert_eq!(
        s.next_opening(t("2026-03-07T00:00:00Z")).unwrap(),
        t("2026-03-07T07:30:00Z"),
        "02:30 EST"
    );
    assert_eq!(
        s.next_opening(opening).unwrap(),
        t("2026-03-09T06:30:00Z"),
        "02:30 EDT"
    );
}

#[test]
fn a_repeated_opening_opens_once_at_the_first_in_new_york() {
    // 1 November 2026: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
    let s = sched("30 1 * * *", Some("America/New_York"), "20m");
    let first = s.next_opening(t("2026-11-01T04:00:00Z")).unwrap();
    assert_eq!(first, t("2026-11-01T05:30:00Z"), "01:30 EDT");
    assert_eq!(
        s.next_opening(first).unwrap(),
        t("2026-11-02T06:30:00Z"),
        "not again at 01:30 EST the same night"
    );
    assert_eq!(
        s.window_at(t("2026-11-01T06:35:00Z")).unwrap(),
        None,
        "the second 01:30 opens nothing"
    );
}

#[test]
fn berlin_changes_its_clocks_at_two_and_three() {
    // 29 March 2026: 02:00 CET becomes 03:00 CEST. 25 October 2026:
    // 03:00 CEST becomes 02:00 CET.
    let s = sched("15 2 * * *", Some("Europe/Berlin"), "30m");
    assert_eq!(
        s.next_opening(t("2026-03-28T23:00:00Z")).unwrap(),
        t("2026-03-29T01:15:00Z"),
        "02:15 does not exist: 03:15 CEST"
    );
    let first = s.next_opening(t("2026-10-24T23:00:00Z")).unwrap();
    assert_eq!(first, t("2026-10-25T00:15:00Z"), "02:15 CEST, the first");
    assert_eq!(s.next_opening(first).unwrap(), t("2026-10-26T01:15:00Z"));
    // Elapsed duration: a window across the change is 8 hours long.
    let night = sched("0 22 * * *", Some("Europe/Berlin"), "8h");
    let w = night.window_at(t("2026-10-25T03:00:00Z")).unwrap().unwrap();
    assert_eq!(
        w.closes.duration_since(w.opened),
        SignedDuration::from_hours(8)
    );
}

#[test]
fn the_strictest_budget_that_applies_counts() {
    let now = t("2026-12-07T10:00:00Z"); // Monday
    let budgets = [
        budget(IntOrString::Int(3), None),
        budget(IntOrString::Int(0), Some(("0 9 * * 1-5", "8h", None))),
        budget(IntOrString::Int(1), Some(("0 20 * * *", "4h", None))),
    ];
    let e = evaluate(&budgets, 5, 10, now, &[]);
    assert_eq!((e.allowed, e.applying), (0, Some(1)));
    assert_eq!(e.window_closes, Some(t("2026-12-07T17:00:00Z")));
    assert_eq!(e.next_opening, Some((2, t("2026-12-07T20:00:00Z"))));
    assert_eq!(e.next_change, Some(t("2026-12-07T17:00:00Z")));
    // Evening: the business-hours window is closed, the evening one is open.
    let e = evaluate(&budgets, 5, 10, t("2026-12-07T21:00:00Z"), &[]);
    assert_eq!((e.allowed, e.applying), (1, Some(2)));
    // Night of Saturday: only the budget without a schedule.
    let e = evaluate(&budgets, 5, 10, t("2026-12-05T10:00:00Z"), &[]);
    assert_eq!((e.allowed, e.applying), (3, Some(0)));
    // maxUnavailable stricter than every budget: it alone is named.
    let e = evaluate(&budgets, 2, 10, t("2026-12-05T10:00:00Z"), &[]);
    assert_eq!((e.allowed, e.applying), (2, None));
    // No budget: maxUnavailable, no rate, nothing changes.
    let e = evaluate(&[], 2, 10, now, &[]);
    assert_eq!((e.allowed, e.applying, e.starts_left), (2, None, None));
    assert_eq!(e.next_change, None);
}

#[test]
fn a_budget_that_does_not_parse_blocks_everything_voluntary() {
    let budgets = [
        budget(IntOrString::Int(3), None),
        budget(
            IntOrString::Int(2),
            Some(("0 9 * * *", "8h", Some("Nowhere/Atlantis"))),
        ),
    ];
    let e = evaluate(&budgets, 5, 10, t("2026-12-07T10:00:00Z"), &[]);
    assert_eq!((e.allowed, e.starts_left), (0, Some(0)));
    assert_eq!(e.errors.len(), 1);
    let m = report::message(&e, &budgets);
    assert!(
        m.contains("disruption.budgets[1]") && m.contains("Nowhere/Atlantis"),
        "{m}"
    );
}

#[test]
fn a_rolling_rate_counts_the_starts_in_its_period() {
    let now = t("2026-12-07T10:00:00Z");
    let b = [with_rate(budget(IntOrString::Int(5), None), 2, Some("1h"))];
    let starts = [t("2026-12-07T08:30:00Z"), t("2026-12-07T09:10:00Z")];
    let e = evaluate(&b, 5, 10, now, &starts);
    assert_eq!(e.starts_left, Some(1), "08:30 left the hour");
    let starts = [
        t("2026-12-07T09:10:00Z"),
        t("2026-12-07T09:40:00Z"),
        t("2026-12-07T09:20:00Z"),
    ];
    let e = evaluate(&b, 5, 10, now, &starts);
    assert_eq!(e.starts_left, Some(0));
    // Of the two newest (09:20, 09:40) the older leaves the hour first.
    assert_eq!(e.rate_frees, Some(t("2026-12-07T10:20:00Z")));
    assert_eq!(e.next_change, e.rate_frees);
}

#[test]
fn a_rate_without_a_period_counts_since_its_window_opened() {
    let b = [with_rate(
        budget(IntOrString::Int(5), Some(("0 22 * * *", "8h", None))),
        1,
        None,
    )];
    let now = t("2026-12-08T01:00:00Z");
    let e = evaluate(&b, 5, 10, now, &[t("2026-12-07T21:59:00Z")]);
    assert_eq!(e.starts_left, Some(1), "before the window opened");
    let e = evaluate(&b, 5, 10, now, &[t("2026-12-07T23:00:00Z")]);
    assert_eq!(e.starts_left, Some(0));
    assert_eq!(
        e.rate_frees,
        Some(t("2026-12-08T06:00:00Z")),
        "the window closes"
    );
    // Outside its window the budget and its rate do not apply.
    let e = evaluate(
        &b,
        5,
        10,
        t("2026-12-08T12:00:00Z"),
        &[t("2026-12-08T05:00:00Z")],
    );
    assert_eq!(e.starts_left, None);
}

fn retiring(reason: RetireReason, at: &str) -> RetiringNode {
    RetiringNode {
        node_id: format!("n-{at}"),
        node_name: format!("client-{at}"),
        instance_id: None,
        phase: RetirePhase::Draining,
        since: Time(t(at)),
        selected_at: Some(Time(t(at))),
        reason,
        decrement: true,
        cordoned_by_pool: true,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: 0,
        blocking_jobs: vec![],
        message: None,
    }
}

#[test]
fn starts_merge_the_record_and_the_retirements_in_flight_as_multisets() {
    let a = "2026-12-07T09:00:00Z";
    let b = "2026-12-07T09:30:00Z";
    let record = [Time(t(a)), Time(t(a))];
    let in_flight = [
        retiring(RetireReason::ScaleIn, a),
        retiring(RetireReason::ScaleIn, b),
        retiring(RetireReason::ScaleIn, b),
        retiring(RetireReason::LifecycleHook, b),
    ];
    assert_eq!(starts(&record, &in_flight), [t(a), t(a), t(b), t(b)]);
}

#[test]
fn the_record_keeps_the_newest_starts_the_largest_rate_needs() {
    let now = t("2026-12-07T10:00:00Z");
    let b = [
        with_rate(budget(IntOrString::Int(5), None), 2, Some("1h")),
        with_rate(budget(IntOrString::Int(5), None), 3, Some("2h")),
    ];
    let previous: Vec<Time> = [
        "2026-12-07T07:00:00Z",
        "2026-12-07T08:00:00Z",
        "2026-11-01T08:00:00Z",
    ]
    .iter()
    .map(|s| Time(t(s)))
    .collect();
    let in_flight = [retiring(RetireReason::Requested, "2026-12-07T09:59:00Z")];
    let kept: Vec<Timestamp> = record(&b, &previous, &in_flight, now)
        .iter()
        .map(|t| t.0)
        .collect();
    assert_eq!(
        kept,
        [
            t("2026-12-07T07:00:00Z"),
            t("2026-12-07T08:00:00Z"),
            t("2026-12-07T09:59:00Z")
        ]
    );
    assert!(
        record(
            &[budget(IntOrString::Int(1), None)],
            &previous,
            &in_flight,
            now
        )
        .is_empty()
    );
}
