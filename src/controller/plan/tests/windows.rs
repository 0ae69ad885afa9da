//! `disruption.budgets` in the plan: a window with budget 0 holds every
//! voluntary retirement and never a lifecycle-hook one, a rate caps the
//! starts of one plan and of the next, the record of starts is part of the
//! status that records them, a budget that does not parse blocks (fail
//! safe), and a pool without budgets plans exactly as before.

use super::*;

/// Business hours in UTC (09:00 to 17:00, Monday to Friday); `now()` is
/// Thursday 26 November 2026, 12:00Z: inside.
fn business_hours(max: i32) -> DisruptionBudget {
    DisruptionBudget {
        max_unavailable: IntOrString::Int(max),
        schedule: Some("0 9 * * 1-5".into()),
        duration: Some("8h".into()),
        time_zone: None,
        rate: None,
    }
}

fn always(max: i32, rate: Option<(i32, &str)>) -> DisruptionBudget {
    DisruptionBudget {
        max_unavailable: IntOrString::Int(max),
        schedule: None,
        duration: None,
        time_zone: None,
        rate: rate.map(|(n, per)| DisruptionRate {
            retirements: n,
            per: Some(per.into()),
        }),
    }
}

#[test]
fn a_zero_window_holds_scale_in_and_says_until_when() {
    let mut w = World::new(4, Some(2));
    w.spec.disruption.budgets = vec![always(1, None), business_hours(0)];
    let p = w.plan();
    assert!(p.retiring.is_empty() && p.actions.is_empty());
    let Some(Blocker::DisruptionBudget { in_flight, message }) = p.blockers.first() else {
        panic!("{:?}", p.blockers);
    };
    assert_eq!(*in_flight, 0);
    assert!(
        message.contains("budget 1 ('0 9 * * 1-5' UTC, for 8h) applies until 2026-11-26T17:00:00Z"),
        "{message}"
    );
    let d = p.disruption.as_ref().unwrap();
    assert_eq!((d.budget, d.allowed), (Some(1), 0));
    assert_eq!(d.window_closes, Some(Time(t("2026-11-26T17:00:00Z"))));
    assert_eq!(d.next_window_opens, Some(Time(t("2026-11-27T09:00:00Z"))));
    assert_eq!(p.budgets_change, Some(t("2026-11-26T17:00:00Z")));
    // Named clients wait too.
    w.spec.replicas = None;
    w.spec.retire = vec![RetireTarget {
        node_name: Some("client-0".into()),
        ..Default::default()
    }];
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(matches!(p.blockers[0], Blocker::DisruptionBudget { .. }));
}

#[test]
fn once_the_window_closes_the_next_budget_lets_one_start() {
    let mut w = World::new(4, Some(2));
    w.spec.disruption.budgets = vec![always(1, None), business_hours(0)];
    w.spec.disruption.max_unavailable = IntOrString::Int(3);
    // The same pool on Saturday: only budget 0 applies.
    w.at = t("2026-11-28T12:00:00Z");
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1, "budget 0 allows one");
    let d = p.disruption.unwrap();
    assert_eq!((d.budget, d.allowed), (Some(0), 1));
    assert_eq!(d.next_window_opens, Some(Time(t("2026-11-30T09:00:00Z"))));
}

#[test]
fn a_zero_window_never_refuses_the_lifecycle_hook() {
    let mut w = World::new(3, None);
    w.spec.disruption.budgets = vec![business_hours(0)];
    w.lifecycle_hook = Some("drain");
    w.group.desired_capacity = 2;
    w.group.instances[0].lifecycle = Lifecycle::TerminatingWait;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    assert_eq!(p.retiring[0].reason, RetireReason::LifecycleHook);
    assert!(
        p.disruption.unwrap().recent_starts.is_empty(),
        "not a voluntary start"
    );
}

#[test]
fn a_rate_caps_the_starts_and_records_them_with_their_status() {
    let mut w = World::new(6, Some(2));
    w.spec.disruption.max_unavailable = IntOrString::Int(4);
    w.spec.disruption.budgets = vec![always(4, Some((1, "1h")))];
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1, "maxUnavailable allows 4, the rate 1");
    let d = p.disruption.clone().unwrap();
    assert_eq!(
        d.recent_starts,
        [Time(now())],
        "recorded in the same status"
    );
    assert_eq!(
        d.starts_allowed,
        Some(0),
        "what is left after this plan's start"
    );
    assert!(
        d.message.contains("the next at 2026-11-26T13:00:00Z"),
        "{}",
        d.message
    );

    // The next plan: the retirement in flight and the record both know the
    // start; one start, not two, and nothing more starts.
    w.tracked = p.retiring.clone();
    w.recent_starts = d.recent_starts.clone();
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    let Some(Blocker::RateLimited(message)) = p.blockers.first() else {
        panic!("{:?}", p.blockers);
    };
    assert!(
        message.contains("allows 0 more start(s), the next at 2026-11-26T13:00:00Z"),
        "{message}"
    );
    assert_eq!(p.disruption.as_ref().unwrap().recent_starts.len(), 1);
    assert_eq!(p.budgets_change, Some(t("2026-11-26T13:00:00Z")));

    // Its retirement finished and its object is gone: the record still
    // holds the start.
    w.tracked.clear();
    let gone = (w.nodes.iter().position(|n| n.id == p.retiring[0].node_id)).unwrap();
    w.nodes.remove(gone);
    w.group.instances.remove(gone);
    w.group.desired_capacity -= 1;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(matches!(p.blockers.first(), Some(Blocker::RateLimited(_))));
}

#[test]
fn a_budget_that_does_not_parse_blocks_and_degrades() {
    let mut w = World::new(4, Some(2));
    let mut b = business_hours(2);
    b.time_zone = Some("Europe/Atlantis".into());
    w.spec.disruption.budgets = vec![b];
    let p = w.plan();
    assert!(p.retiring.is_empty());
    let invalid: Vec<_> = (p.blockers.iter())
        .filter_map(|b| match b {
            Blocker::InvalidBudget(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(invalid.len(), 1);
    assert!(invalid[0].contains("Europe/Atlantis"), "{}", invalid[0]);
}

#[test]
fn without_budgets_the_plan_is_as_before() {
    let w = World::new(6, Some(2));
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2, "maxUnavailable 2");
    assert_eq!(p.disruption, None);
    assert_eq!(p.budgets_change, None);
    // An always-applying budget as loose as maxUnavailable changes nothing
    // but the status.
    let mut with = World::new(6, Some(2));
    with.spec.disruption.budgets = vec![always(5, None)];
    let q = with.plan();
    assert_eq!(phases(&q), phases(&p));
    assert_eq!(q.actions, p.actions);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the pool, the spec and the starts already recorded: a
        /// plan starts no more voluntary retirements than the rate has
        /// left, none at all in an open zero window, and records every
        /// start it makes (the newest, up to the rate's count).
        #[test]
        fn a_plan_never_starts_more_than_the_budgets_allow(
            n in 1u32..12,
            replicas in 0i32..12,
            max in 1i32..6,
            limit in 1i32..5,
            recorded in 0usize..5,
            zero_window in any::<bool>(),
            named in prop::collection::vec(0u32..12, 0..4),
        ) {
            let mut w = World::new(n, Some(replicas.min(n as i32)));
            w.spec.disruption.max_unavailable = IntOrString::Int(max);
            w.spec.disruption.budgets = vec![always(max, Some((limit, "1h")))];
            if zero_window {
                w.spec.disruption.budgets.push(business_hours(0));
            }
            if replicas % 2 == 0 {
                // Named clients instead of a target size.
                w.spec.replicas = None;
                let mut named: Vec<u32> = named.into_iter().filter(|i| *i < n).collect();
                named.sort();
                named.dedup();
                w.spec.retire = (named.iter())
                    .map(|i| RetireTarget { node_name: Some(format!("client-{i}")), ..Default::default() })
                    .collect();
            }
            w.recent_starts = (0..recorded)
                .map(|i| Time(now() - SignedDuration::from_mins(5 * i as i64 + 1)))
                .collect();
            let p = w.plan();
            let started = p.retiring.iter().filter(|r| r.reason.is_voluntary()).count();
            let left = (limit as usize).saturating_sub(recorded);
            prop_assert!(started <= left, "{started} started, the rate had {left} left");
            if zero_window {
                prop_assert_eq!(started, 0);
            }
            let record = p.disruption.unwrap().recent_starts;
            prop_assert!(record.len() <= limit as usize);
            let new_in_record = record.iter().filter(|t| t.0 == now()).count();
            prop_assert_eq!(new_in_record, started.min(limit as usize));
        }
    }
}
