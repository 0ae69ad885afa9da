//! Generated schedules, zones, instants and starts against brute force: a
//! minute-by-minute walk of the wall clock, each matching minute made an
//! instant with the "compatible" rule, is the oracle for the windows; a
//! plain count is the oracle for the rates. Half the instants fall within
//! a day and a half of a daylight-saving change in New York, Berlin or
//! Lord Howe (whose clocks move by half an hour), where the edges are.

use std::collections::BTreeSet;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use proptest::prelude::*;

use super::*;

const ZONES: [&str; 5] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Kolkata",
];

/// The daylight-saving changes of 2026 (UTC) in the zones above.
const CHANGES: [&str; 6] = [
    "2026-03-08T07:00:00Z", // New York springs forward
    "2026-11-01T06:00:00Z", // New York falls back
    "2026-03-29T01:00:00Z", // Berlin springs forward
    "2026-10-25T01:00:00Z", // Berlin falls back
    "2026-04-04T15:00:00Z", // Lord Howe falls back half an hour
    "2026-10-03T15:30:00Z", // Lord Howe springs forward half an hour
];

/// A schedule the oracle can match: minutes, hours, days of the week.
#[derive(Clone, Debug)]
struct Cron {
    minutes: BTreeSet<i8>,
    hours: BTreeSet<i8>,
    weekdays: BTreeSet<i8>,
}

impl Cron {
    fn text(&self) -> String {
        let list = |s: &BTreeSet<i8>| {
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        format!(
            "{} {} * * {}",
            list(&self.minutes),
            list(&self.hours),
            list(&self.weekdays)
        )
    }

    fn matches(&self, c: DateTime) -> bool {
        self.minutes.contains(&c.minute())
            && self.hours.contains(&c.hour())
            && (self.weekdays).contains(&c.weekday().to_sunday_zero_offset())
    }
}

fn cron() -> impl Strategy<Value = Cron> {
    (
        prop::collection::btree_set(prop_oneof![Just(0i8), Just(30), 0i8..60], 1..3),
        prop::collection::btree_set(0i8..24, 1..4),
        prop::collection::btree_set(0i8..7, 1..4),
    )
        .prop_map(|(minutes, hours, weekdays)| Cron {
            minutes,
            hours,
            weekdays,
        })
}

/// An instant in 2026, half of them near a daylight-saving change.
fn instant() -> impl Strategy<Value = Timestamp> {
    let year = t("2026-01-01T00:00:00Z").as_second();
    prop_oneof![
        (0i64..365 * 86_400).prop_map(move |s| Timestamp::from_second(year + s).unwrap()),
        (0usize..CHANGES.len(), -36 * 3600i64..36 * 3600)
            .prop_map(|(i, s)| t(CHANGES[i]) + SignedDuration::from_secs(s)),
    ]
}

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// Every opening whose wall-clock time lies in `[from, to]`, minute by
/// minute: the oracle.
fn openings(cron: &Cron, zone: &TimeZone, from: DateTime, to: DateTime) -> BTreeSet<Timestamp> {
    let mut out = BTreeSet::new();
    let mut c = from
        .round(
            jiff::civil::DateTimeRound::new()
                .smallest(jiff::Unit::Minute)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap();
    while c <= to {
        if cron.matches(c) {
            out.insert(zone.to_ambiguous_zoned(c).compatible().unwrap().timestamp());
        }
        c += SignedDuration::from_mins(1);
    }
    out
}

fn margin() -> SignedDuration {
    SignedDuration::from_hours(3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// A window holds `now` exactly when an opening lies in
    /// `(now - duration, now]`, and it is the latest such opening.
    #[test]
    fn the_window_at_an_instant_is_the_latest_opening_within_its_duration(
        cron in cron(),
        zone in 0usize..ZONES.len(),
        minutes in 1i64..48 * 60,
        now in instant(),
    ) {
        let duration = format!("{minutes}m");
        let s = Schedule::parse(&cron.text(), Some(ZONES[zone]), &duration).unwrap();
        let tz = schedule::zone(ZONES[zone]).unwrap();
        let d = SignedDuration::from_mins(minutes);
        let all = openings(&cron, &tz, tz.to_datetime(now - d) - margin(), tz.to_datetime(now) + margin());
        let expected = all.iter().copied().filter(|o| *o > now - d && *o <= now).max();
        let got = s.window_at(now).unwrap();
        prop_assert_eq!(got.map(|w| w.opened), expected, "{} in {}", cron.text(), ZONES[zone]);
        if let Some(w) = got {
            prop_assert!(w.opened <= now && now < w.closes);
            prop_assert_eq!(w.closes.duration_since(w.opened), d);
        }
    }

    /// The next opening is the first instant after `now` that a matching
    /// wall-clock minute stands for, and each opens once.
    #[test]
    fn openings_follow_the_wall_clock_each_once(
        cron in cron(),
        zone in 0usize..ZONES.len(),
        now in instant(),
    ) {
        let s = Schedule::parse(&cron.text(), Some(ZONES[zone]), "1h").unwrap();
        let tz = schedule::zone(ZONES[zone]).unwrap();
        let from = tz.to_datetime(now) - margin();
        let all = openings(&cron, &tz, from, tz.to_datetime(now) + SignedDuration::from_hours(8 * 24));
        let expected: Vec<Timestamp> = all.iter().copied().filter(|o| *o > now).take(4).collect();
        let mut got = Vec::new();
        let mut at = now;
        for _ in 0..expected.len() {
            at = s.next_opening(at).unwrap();
            got.push(at);
        }
        prop_assert_eq!(got, expected, "{} in {}", cron.text(), ZONES[zone]);
    }

    /// Budgets only restrict: the allowance is the smallest among
    /// `maxUnavailable` and the budgets that apply, and another budget
    /// never raises it nor the starts left.
    #[test]
    fn the_strictest_applying_budget_counts_and_budgets_only_restrict(
        windows in prop::collection::vec((0i32..6, prop::option::of((cron(), 1i64..24 * 60)), prop::option::of((1i32..4, 10i64..600))), 0..4),
        pool_allowed in 1u32..6,
        now in instant(),
        ago in prop::collection::vec(0i64..600 * 60, 0..8),
    ) {
        let budgets: Vec<DisruptionBudget> = windows.iter().map(|(max, window, rate)| DisruptionBudget {
            max_unavailable: IntOrString::Int(*max),
            schedule: window.as_ref().map(|(c, _)| c.text()),
            duration: window.as_ref().map(|(_, m)| format!("{m}m")),
            time_zone: Some("Europe/Berlin".into()),
            rate: rate.map(|(n, per)| DisruptionRate { retirements: n, per: Some(format!("{per}m")) }),
        }).collect();
        let starts: Vec<Timestamp> = ago.iter().map(|s| now - SignedDuration::from_secs(*s)).collect();
        let e = evaluate(&budgets, pool_allowed, 10, now, &starts);
        prop_assert!(e.errors.is_empty());
        let mut expected = pool_allowed;
        for (i, b) in budgets.iter().enumerate() {
            let applies = match schedule_of(i, b).unwrap() {
                None => true,
                Some(s) => s.window_at(now).unwrap().is_some(),
            };
            if applies {
                expected = expected.min(count(b));
                if let Some(rate) = &b.rate {
                    let per = parse_go_duration(rate.per.as_deref().unwrap()).unwrap();
                    let n = starts.iter().filter(|s| **s > now - per).count();
                    let left = (rate.retirements as usize).saturating_sub(n) as u32;
                    prop_assert!(e.starts_left.is_some_and(|l| l <= left));
                }
            }
        }
        prop_assert_eq!(e.allowed, expected);
        for k in 0..budgets.len() {
            let fewer = evaluate(&budgets[..k], pool_allowed, 10, now, &starts);
            prop_assert!(fewer.allowed >= e.allowed);
            prop_assert!(fewer.starts_left.unwrap_or(u32::MAX) >= e.starts_left.unwrap_or(u32::MAX));
        }
        if let Some(change) = e.next_change {
            prop_assert!(change > now);
        }
    }

    /// The bounded record decides as the whole history does: the newest
    /// `retirements` starts are all a rate needs.
    #[test]
    fn the_bounded_record_decides_as_the_whole_history(
        rates in prop::collection::vec((1i32..6, 1i64..48 * 60), 1..3),
        ago in prop::collection::vec(0i64..48 * 3600, 0..30),
        now in instant(),
    ) {
        let budgets: Vec<DisruptionBudget> = rates.iter().map(|(n, per)| DisruptionBudget {
            max_unavailable: IntOrString::Int(5),
            schedule: None,
            duration: None,
            time_zone: None,
            rate: Some(DisruptionRate { retirements: *n, per: Some(format!("{per}m")) }),
        }).collect();
        let now = Timestamp::from_second(now.as_second()).unwrap();
        let history: Vec<Time> = ago.iter().map(|s| Time(now - SignedDuration::from_secs(*s))).collect();
        let kept = record(&budgets, &history, &[], now);
        let max_rate = rates.iter().map(|(n, _)| *n as usize).max().unwrap();
        prop_assert!(kept.len() <= max_rate);
        let all: Vec<Timestamp> = history.iter().map(|t| t.0).collect();
        let bounded: Vec<Timestamp> = kept.iter().map(|t| t.0).collect();
        let full = evaluate(&budgets, 5, 10, now, &all);
        let short = evaluate(&budgets, 5, 10, now, &bounded);
        prop_assert_eq!(full.starts_left, short.starts_left);
        prop_assert_eq!(full.rate_frees, short.rate_frees);
    }
}

/// The count a generated budget allows (they never use percentages).
fn count(b: &DisruptionBudget) -> u32 {
    match b.max_unavailable {
        IntOrString::Int(n) => n as u32,
        IntOrString::String(_) => unreachable!("generated budgets are counts"),
    }
}
