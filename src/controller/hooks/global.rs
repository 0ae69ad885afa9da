//! The hook's global timeout: however many heartbeats, AWS lets a held VM
//! go after min(48 h, 100 × heartbeat timeout) (ref §2.2, §2.4), whatever
//! runs on it. Jobs that would outlast it cannot be saved by the operator,
//! so it says so early: a Warning Event once the wait has used three
//! quarters of it, naming the node and what still runs.
//!
//! The wait is counted from the retirement's selection, which comes after
//! the action began (by up to one look at the group), so the warning errs
//! late by seconds, never early by more.
//!
//! It is also treated as a drain deadline: a held client's drain is given a
//! deadline no later than the global timeout less a margin ([`capped_drains`]),
//! so Nomad stops what still runs, the client counts as drained and the
//! operator completes the action, instead of AWS's default result ending
//! the wait with the jobs still running.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{DrainPolicy, RetirePhase, RetireReason, RetiringNode};
use crate::controller::plan::parse_go_duration;
use crate::provider::{GroupState, Lifecycle};

/// AWS's cap on any wait, heartbeats or not (ref §2.2).
const GLOBAL_TIMEOUT_CAP: u64 = 172_800;

pub fn global_timeout_seconds(heartbeat_timeout: u32) -> u64 {
    (100 * u64::from(heartbeat_timeout)).min(GLOBAL_TIMEOUT_CAP)
}

/// What is left between a capped drain deadline and the global timeout:
/// time for Nomad to stop the jobs and for the operator to see the client
/// drained and complete the action (a tenth, at most ten minutes).
pub fn global_margin(global: u64) -> u64 {
    (global / 10).min(600)
}

/// A held client whose drain the global timeout shortens.
#[derive(Clone, Debug, PartialEq)]
pub struct CappedDrain {
    pub node_id: String,
    pub node_name: String,
    /// The drain it gets: its own, with this deadline.
    pub drain: DrainPolicy,
    pub deadline_seconds: u64,
}

/// The seconds a held client's drain may last if it starts at `at`: the
/// global timeout counted from its selection, less [`global_margin`], at
/// least a second (Nomad reads a zero deadline as "none").
fn usable_from(global: u64, selected_at: Option<&Time>, at: Timestamp) -> u64 {
    let usable = global.saturating_sub(global_margin(global));
    let waited = selected_at.map_or(0, |t| at.duration_since(t.0).as_secs().max(0) as u64);
    usable.saturating_sub(waited).max(1)
}

fn own_deadline_seconds(own: &DrainPolicy) -> Option<u64> {
    (own.deadline.as_deref())
        .and_then(parse_go_duration)
        .map(|d| d.as_secs().max(0) as u64)
}

/// The drains of `LifecycleHook` retirements not draining yet whose
/// deadline (none, or one too late) would let the global timeout end the
/// wait: each gets the global timeout, counted from its selection, less
/// [`global_margin`]. Pure.
pub fn capped_drains(
    heartbeat_timeout: u32,
    tracked: &[RetiringNode],
    drains: &HashMap<String, DrainPolicy>,
    pool_drain: &DrainPolicy,
    now: Timestamp,
) -> Vec<CappedDrain> {
    let global = global_timeout_seconds(heartbeat_timeout);
    let mut out = Vec::new();
    for e in tracked.iter().filter(|e| {
        e.reason == RetireReason::LifecycleHook
            && matches!(e.phase, RetirePhase::Selected | RetirePhase::Cordoned)
    }) {
        let left = usable_from(global, e.selected_at.as_ref(), now);
        let own = drains.get(&e.node_id).unwrap_or(pool_drain);
        if own_deadline_seconds(own).is_some_and(|d| d <= left) {
            continue;
        }
        let mut drain = own.clone();
        drain.deadline = Some(format!("{left}s"));
        out.push(CappedDrain {
            node_id: e.node_id.clone(),
            node_name: e.node_name.clone(),
            drain,
            deadline_seconds: left,
        });
    }
    out
}

/// What the global timeout does to one held client's drain, for its
/// retirement's `LifecycleGlobalTimeout` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalCap {
    /// The global timeout, seconds.
    pub global: u64,
    /// When AWS lets the VM go whatever runs (counted from the selection,
    /// which comes after the action began: late by seconds, never early).
    pub ends_at: Timestamp,
    /// The drain's own deadline (the retirement's or the pool's), as the
    /// spec spells it.
    pub own_deadline: Option<String>,
    /// When the drain ends because of the global timeout; `None` when its
    /// own deadline ends first.
    pub capped_deadline: Option<Timestamp>,
}

/// The global timeout's effect on the drain of a `LifecycleHook`
/// retirement whose own drain is `own`, judged as [`capped_drains`] does
/// when the drain is sent (at its start once it has one, else now). `None`
/// for other retirements, or before the selection is recorded. Pure.
pub fn global_cap(
    heartbeat_timeout: u32,
    e: &RetiringNode,
    own: &DrainPolicy,
    now: Timestamp,
) -> Option<GlobalCap> {
    if e.reason != RetireReason::LifecycleHook {
        return None;
    }
    let selected = e.selected_at.as_ref()?;
    let global = global_timeout_seconds(heartbeat_timeout);
    let at = e.drain_started_at.as_ref().map_or(now, |t| t.0);
    let left = usable_from(global, Some(selected), at);
    let capped = own_deadline_seconds(own).is_none_or(|d| d > left);
    let after = |secs: u64| {
        let secs = i64::try_from(secs).unwrap_or(i64::MAX);
        (selected.0).saturating_add(jiff::SignedDuration::from_secs(secs))
    };
    Some(GlobalCap {
        global,
        ends_at: after(global).ok()?,
        own_deadline: own.deadline.clone(),
        capped_deadline: capped
            .then(|| at.saturating_add(jiff::SignedDuration::from_secs(left as i64)))
            .and_then(Result::ok),
    })
}

/// Instances already warned about by this process.
#[derive(Default)]
pub struct Warned(Mutex<HashSet<String>>);

/// (node name, message) of each held client still draining past three
/// quarters of the global timeout, once per instance.
pub fn warnings(
    warned: &Warned,
    heartbeat_timeout: u32,
    group: &GroupState,
    retiring: &[RetiringNode],
    now: Timestamp,
) -> Vec<(String, String)> {
    let global = global_timeout_seconds(heartbeat_timeout);
    let mut warned = warned.0.lock().expect("warned lock");
    let mut out = Vec::new();
    for e in retiring
        .iter()
        .filter(|e| e.phase < RetirePhase::Terminating)
    {
        let Some(id) = e.instance_id.as_deref() else {
            continue;
        };
        let held = (group.instance(id)).is_some_and(|i| i.lifecycle == Lifecycle::TerminatingWait);
        let Some(since) = e.selected_at.as_ref().filter(|_| held) else {
            continue;
        };
        let waited = now.duration_since(since.0).as_secs().max(0) as u64;
        if waited * 4 < global * 3 || !warned.insert(id.to_owned()) {
            continue;
        }
        out.push((
            e.node_name.clone(),
            format!(
                "VM {id} of node {} has waited {waited}s of its lifecycle hook's global timeout ({global}s): AWS lets it go in about {}s whatever runs; {} allocation(s) still run",
                e.node_name,
                global.saturating_sub(waited),
                e.allocations_left
            ),
        ));
    }
    warned.retain(|id| {
        retiring
            .iter()
            .any(|e| e.instance_id.as_deref() == Some(id))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RetireReason;
    use crate::provider::InstanceState;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn warns_once_past_three_quarters_of_the_global_timeout() {
        assert_eq!(global_timeout_seconds(30), 3000);
        assert_eq!(global_timeout_seconds(7200), 172_800);
        let now: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let group = GroupState {
            name: "g".into(),
            min_size: 0,
            max_size: 3,
            desired_capacity: 0,
            terminate_suspended: false,
            suspended_processes: vec![],
            instances: vec![InstanceState {
                id: "i-1".into(),
                lifecycle: Lifecycle::TerminatingWait,
                protected_from_scale_in: false,
                zone: None,
                healthy: true,
                launched_at: None,
                launch_spec: None,
            }],
            owner_tag: None,
            launch_specs: vec![],
            reads_launch_times: true,
        };
        let entry = |selected: &str| RetiringNode {
            node_id: "n".into(),
            node_name: "client-1".into(),
            instance_id: Some("i-1".into()),
            phase: RetirePhase::Draining,
            since: Time(now),
            selected_at: Some(Time(selected.parse().unwrap())),
            reason: RetireReason::LifecycleHook,
            decrement: false,
            cordoned_by_pool: true,
            drain_started_at: None,
            drain_deadline: None,
            allocations_left: 2,
            blocking_jobs: vec![],
            message: None,
        };
        let warned = Warned::default();
        // 30 s heartbeat timeout: 3000 s global; 2000 s waited is fine.
        let early = [entry("2026-12-02T11:26:40Z")];
        assert!(warnings(&warned, 30, &group, &early, now).is_empty());
        let late = [entry("2026-12-02T11:10:00Z")];
        let w = warnings(&warned, 30, &group, &late, now);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].0, "client-1");
        assert!(
            w[0].1
                .contains("waited 3000s of its lifecycle hook's global timeout (3000s)")
                && w[0].1.contains("2 allocation(s) still run"),
            "{}",
            w[0].1
        );
        assert!(warnings(&warned, 30, &group, &late, now).is_empty(), "once");
    }

    fn held(node: &str, phase: RetirePhase, selected: &str) -> RetiringNode {
        RetiringNode {
            node_id: format!("id-{node}"),
            node_name: node.into(),
            instance_id: Some(format!("i-{node}")),
            phase,
            since: Time("2026-12-02T12:00:00Z".parse().unwrap()),
            selected_at: Some(Time(selected.parse().unwrap())),
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

    #[test]
    fn held_drains_end_before_the_global_timeout_less_a_margin() {
        // Heartbeat 30 s: global 3000 s, margin 300 s, 2700 s usable.
        assert_eq!(global_margin(3000), 300);
        assert_eq!(global_margin(172_800), 600);
        let now: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let mut other = held("scale-in", RetirePhase::Selected, "2026-12-02T11:59:00Z");
        other.reason = RetireReason::ScaleIn;
        let tracked = [
            held("a", RetirePhase::Selected, "2026-12-02T11:59:00Z"),
            held("b", RetirePhase::Cordoned, "2026-12-02T11:10:00Z"),
            // Its drain was sent with its deadline already.
            held("c", RetirePhase::Draining, "2026-12-02T11:59:00Z"),
            other,
        ];
        let unset = DrainPolicy::default();
        let capped = capped_drains(30, &tracked, &HashMap::new(), &unset, now);
        let got: Vec<(&str, u64, Option<&str>)> = capped
            .iter()
            .map(|c| {
                (
                    c.node_name.as_str(),
                    c.deadline_seconds,
                    c.drain.deadline.as_deref(),
                )
            })
            .collect();
        // a waited 60 s, b 3000 s (past it: a second, at once).
        assert_eq!(got, [("a", 2640, Some("2640s")), ("b", 1, Some("1s"))]);

        // A pool deadline that ends sooner is kept; one that ends later is
        // cut, and the rest of the drain policy is the pool's.
        let short = DrainPolicy {
            deadline: Some("30m".into()),
            ignore_system_jobs: true,
            force_terminate_after: None,
        };
        let capped = capped_drains(30, &tracked[..1], &HashMap::new(), &short, now);
        assert!(capped.is_empty(), "{capped:?}");
        let long = DrainPolicy {
            deadline: Some("2h".into()),
            ..short.clone()
        };
        let capped = capped_drains(30, &tracked[..1], &HashMap::new(), &long, now);
        assert_eq!(capped.len(), 1);
        assert_eq!(capped[0].drain.deadline.as_deref(), Some("2640s"));
        assert!(capped[0].drain.ignore_system_jobs);
        // A retirement's own drain wins over the pool's.
        let own = HashMap::from([("id-a".to_owned(), short)]);
        assert!(capped_drains(30, &tracked[..1], &own, &long, now).is_empty());
    }

    /// The retirement's condition judges the drain as `capped_drains` did
    /// when it was sent: from its start once it has one, so it says the
    /// same thing for as long as the client drains.
    #[test]
    fn the_cap_of_a_drain_is_judged_at_its_start() {
        let now: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let t = |s: &str| Time(s.parse().unwrap());
        let mut e = held("a", RetirePhase::Cordoned, "2026-12-02T11:59:00Z");
        let none = DrainPolicy::default();
        // Heartbeat 30 s: global 3000 s, 2700 s usable from the selection.
        let cap = global_cap(30, &e, &none, now).unwrap();
        assert_eq!(cap.global, 3000);
        assert_eq!(cap.ends_at, "2026-12-02T12:49:00Z".parse().unwrap());
        assert_eq!(
            cap.capped_deadline,
            Some("2026-12-02T12:44:00Z".parse().unwrap())
        );
        // Draining since 11:59:30 under a capped drain: an hour later it
        // still reads as capped, with the same deadline.
        e.phase = RetirePhase::Draining;
        e.drain_started_at = Some(t("2026-12-02T11:59:30Z"));
        let later = now
            .checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap();
        let hour = DrainPolicy {
            deadline: Some("1h".into()),
            ..DrainPolicy::default()
        };
        let cap = global_cap(30, &e, &hour, later).unwrap();
        assert_eq!(
            cap.capped_deadline,
            Some("2026-12-02T12:44:00Z".parse().unwrap())
        );
        assert_eq!(cap.own_deadline.as_deref(), Some("1h"));
        // A 30 minute drain ends first.
        let half = DrainPolicy {
            deadline: Some("30m".into()),
            ..DrainPolicy::default()
        };
        assert_eq!(
            global_cap(30, &e, &half, later).unwrap().capped_deadline,
            None
        );
        // Only a held client's drain has one.
        e.reason = RetireReason::ScaleIn;
        assert_eq!(global_cap(30, &e, &none, now), None);
    }
}
