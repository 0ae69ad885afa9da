//! The hook's global timeout: however many heartbeats, AWS lets a held VM
//! go after min(48 h, 100 × heartbeat timeout) (ref §2.2, §2.4), whatever
//! runs on it. Jobs that would outlast it cannot be saved by the operator,
//! so it says so early: a Warning Event once the wait has used three
//! quarters of it, naming the node and what still runs.
//!
//! The wait is counted from the retirement's selection, which comes after
//! the action began (by up to one look at the group), so the warning errs
//! late by seconds, never early by more.

use std::collections::HashSet;
use std::sync::Mutex;

use jiff::Timestamp;

use crate::api::{RetirePhase, RetiringNode};
use crate::provider::{GroupState, Lifecycle};

/// AWS's cap on any wait, heartbeats or not (ref §2.2).
const GLOBAL_TIMEOUT_CAP: u64 = 172_800;

pub fn global_timeout_seconds(heartbeat_timeout: u32) -> u64 {
    (100 * u64::from(heartbeat_timeout)).min(GLOBAL_TIMEOUT_CAP)
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
            }],
            owner_tag: None,
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
}
