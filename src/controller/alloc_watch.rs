//! Which nodes' allocations a pool watches, and how: what the next step of
//! each retirement depends on, and the oldest drains for the status.
//!
//! Each watch is a blocking query Nomad holds open, one connection each, and
//! Nomad limits the connections of one client IP (`budget` in the Nomad
//! client). So a watch holds a connection only while its answer can still
//! change in a way that matters: a node that can get no new allocation
//! (ineligible or not ready, no drain running) and whose allocations are all
//! terminal stays as it is until the node itself changes, which the node
//! view shows (its `ModifyIndex` moves on any eligibility, drain or status
//! change). Its watch ends there and its last answer is kept, bound to that
//! `ModifyIndex`: once the node changes, the answer no longer counts and a
//! new watch reads the node afresh before any decision uses it. Nodes held
//! at the termination gate for long (a cloud refusal, another node on the
//! VM, a token that cannot see every namespace) then cost nothing while they
//! wait; what stays parked are the nodes whose allocations are still
//! finishing, which is what changes.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;

use super::plan::{NodeFacts, NodeStatus};
use super::watch::NodeList;
use crate::api::{RetirePhase, RetiringNode};
use crate::nomad::{NodeListStub, NodeStatus as NomadNodeStatus, SchedulingEligibility};

/// How a node's allocations are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocWatchMode {
    /// The next step of a retirement waits on them.
    Gate,
    /// Only a retirement's status reads them (a drain still running).
    Status,
    /// Nothing can be placed on the node while its `ModifyIndex` stays
    /// this: once its allocations are all terminal, the watch ends and its
    /// answer holds as long as the node does not change.
    Settled(u64),
}

/// The mode of each watched node: `Status` for `status_only` nodes (the
/// drains watched only for the status), `Gate` for the others, either
/// turned `Settled` when the node view says nothing can be placed there.
pub fn watch_modes(
    watched: &HashSet<String>,
    status_only: &HashSet<String>,
    view: &NodeList,
) -> HashMap<String, AllocWatchMode> {
    watched
        .iter()
        .map(|id| {
            let mode = match view.get(id) {
                Some(n) if settled(n) => AllocWatchMode::Settled(n.modify_index),
                _ if status_only.contains(id) => AllocWatchMode::Status,
                _ => AllocWatchMode::Gate,
            };
            (id.clone(), mode)
        })
        .collect()
}

/// The mode of a node the next step waits on, `view` its stub if the node
/// view holds it: `Gate`, or `Settled` when nothing can be placed there.
pub fn gate_mode(view: Option<&NodeListStub>) -> AllocWatchMode {
    match view {
        Some(n) if settled(n) => AllocWatchMode::Settled(n.modify_index),
        _ => AllocWatchMode::Gate,
    }
}

/// Nomad's schedulers place allocations only on ready, eligible nodes, and
/// a drain still running moves allocations off the node; any change to
/// either moves the node's `ModifyIndex` on.
fn settled(n: &NodeListStub) -> bool {
    let schedulable = n.status == NomadNodeStatus::Ready
        && n.scheduling_eligibility == SchedulingEligibility::Eligible;
    !schedulable && !n.drain
}

/// Drains in progress whose allocations are watched live, for the status
/// (allocations left, blocking jobs): the longest-running ones, which are the
/// ones someone asks about. Each watch is a parked request whose answers carry
/// full allocations, so watching every drain of a 500-node scale-in would cost
/// memory and traffic in proportion to it.
const LIVE_DRAIN_WATCHES: usize = 32;

/// Nodes whose allocations are watched: every node the next step depends on
/// (drain finished, drain deadline passed, drained) and the oldest drains;
/// and of those, the drains watched only for the status.
pub fn alloc_watch_set(
    retiring: &[RetiringNode],
    nodes: &[NodeFacts],
    now: Timestamp,
) -> (HashSet<String>, HashSet<String>) {
    let by_id: HashMap<&str, &NodeFacts> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut watched = HashSet::new();
    let mut in_progress: Vec<&RetiringNode> = Vec::new();
    for r in retiring {
        // A broken client is not drained: its allocations are read before
        // its VM is replaced, so the Event can say what was left on it.
        if r.reason == crate::api::RetireReason::Unhealthy
            && matches!(
                r.phase,
                RetirePhase::Selected | RetirePhase::Cordoned | RetirePhase::Drained
            )
        {
            watched.insert(r.node_id.clone());
            continue;
        }
        match r.phase {
            RetirePhase::Drained => {
                watched.insert(r.node_id.clone());
            }
            RetirePhase::Draining | RetirePhase::Cordoned => {
                let still_draining = by_id
                    .get(r.node_id.as_str())
                    .is_some_and(|n| n.draining && n.status != NodeStatus::Down);
                let deadline_passed = r.drain_deadline.as_ref().is_some_and(|d| d.0 <= now);
                if r.phase == RetirePhase::Draining && (!still_draining || deadline_passed) {
                    watched.insert(r.node_id.clone());
                } else if still_draining {
                    in_progress.push(r);
                }
            }
            _ => {}
        }
    }
    // Oldest first; a drain without a start time last.
    in_progress.sort_by_key(|r| {
        let started = r.drain_started_at.as_ref().map(|t| t.0);
        (started.is_none(), started, r.node_name.clone())
    });
    let status_only: HashSet<String> = in_progress
        .into_iter()
        .take(LIVE_DRAIN_WATCHES)
        .map(|r| r.node_id.clone())
        .filter(|id| !watched.contains(id))
        .collect();
    watched.extend(status_only.iter().cloned());
    (watched, status_only)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::RetireReason;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn node(i: usize, draining: bool) -> NodeFacts {
        NodeFacts {
            do_not_retire: false,
            id: format!("n{i:03}"),
            name: format!("client-{i:03}"),
            status: NodeStatus::Ready,
            eligible: false,
            draining,
            last_drain: None,
            last_drain_started: None,
            last_drain_mark: None,
            create_index: 1,
            instance_id: Some(format!("i-{i:03}")),
        }
    }

    fn retiring(i: usize, phase: RetirePhase, started: Option<&str>) -> RetiringNode {
        RetiringNode {
            node_id: format!("n{i:03}"),
            node_name: format!("client-{i:03}"),
            instance_id: Some(format!("i-{i:03}")),
            phase,
            since: Time(at("2026-11-26T10:00:00Z")),
            selected_at: None,
            reason: RetireReason::ScaleIn,
            decrement: true,
            cordoned_by_pool: true,
            drain_started_at: started.map(|s| Time(at(s))),
            drain_deadline: None,
            allocations_left: 0,
            blocking_jobs: vec![],
            message: None,
        }
    }

    #[test]
    fn watches_what_the_next_step_needs_and_only_the_oldest_drains() {
        let now = at("2026-11-26T12:00:00Z");
        let mut nodes = Vec::new();
        let mut tracked = Vec::new();
        // 40 drains in progress, started one minute apart (node 0 oldest).
        for i in 0..40 {
            nodes.push(node(i, true));
            let started = format!("2026-11-26T11:{:02}:00Z", i);
            tracked.push(retiring(i, RetirePhase::Draining, Some(&started)));
        }
        // A finished drain, a drained node, a drain past its deadline, a node
        // cordoned but not draining yet, and one already terminating.
        nodes.push(node(40, false));
        tracked.push(retiring(
            40,
            RetirePhase::Draining,
            Some("2026-11-26T11:59:00Z"),
        ));
        nodes.push(node(41, false));
        tracked.push(retiring(41, RetirePhase::Drained, None));
        nodes.push(node(42, true));
        let mut past = retiring(42, RetirePhase::Draining, Some("2026-11-26T11:59:30Z"));
        past.drain_deadline = Some(Time(at("2026-11-26T11:59:59Z")));
        tracked.push(past);
        nodes.push(node(43, false));
        tracked.push(retiring(43, RetirePhase::Cordoned, None));
        nodes.push(node(44, false));
        tracked.push(retiring(44, RetirePhase::Terminating, None));

        let (w, status_only) = alloc_watch_set(&tracked, &nodes, now);
        for i in 0..LIVE_DRAIN_WATCHES {
            assert!(
                w.contains(&format!("n{i:03}")),
                "oldest drain n{i:03} watched"
            );
        }
        for i in LIVE_DRAIN_WATCHES..40 {
            assert!(
                !w.contains(&format!("n{i:03}")),
                "newer drain n{i:03} not watched"
            );
        }
        for id in ["n040", "n041", "n042"] {
            assert!(w.contains(id), "{id} is needed for the next step");
        }
        assert!(!w.contains("n043") && !w.contains("n044"));
        assert_eq!(w.len(), LIVE_DRAIN_WATCHES + 3);
        // The drains in progress are watched for the status only.
        assert_eq!(status_only.len(), LIVE_DRAIN_WATCHES);
        assert!(status_only.contains("n000") && !status_only.contains("n040"));
    }

    fn stub(id: &str, status: &str, eligibility: &str, drain: bool, modify: u64) -> NodeListStub {
        serde_json::from_value(serde_json::json!({
            "ID": id, "Name": id, "Datacenter": "dc1",
            "SchedulingEligibility": eligibility, "Status": status, "Drain": drain,
            "CreateIndex": 1, "ModifyIndex": modify,
        }))
        .unwrap()
    }

    #[test]
    fn only_a_node_that_can_get_no_new_allocation_settles_bound_to_its_modify_index() {
        let view: NodeList = [
            stub("drained", "ready", "ineligible", false, 40),
            stub("down", "down", "eligible", false, 41),
            stub("draining", "ready", "ineligible", true, 42),
            stub("eligible", "ready", "eligible", false, 43),
            stub("status", "ready", "ineligible", true, 44),
        ]
        .into_iter()
        .map(std::sync::Arc::new)
        .collect();
        let watched: HashSet<String> =
            ["drained", "down", "draining", "eligible", "status", "gone"]
                .map(String::from)
                .into();
        let status_only: HashSet<String> = ["status".to_owned()].into();
        let modes = watch_modes(&watched, &status_only, &view);
        assert_eq!(modes["drained"], AllocWatchMode::Settled(40));
        // Nomad places nothing on a node that is not ready.
        assert_eq!(modes["down"], AllocWatchMode::Settled(41));
        // A running drain still moves allocations; an eligible node may get
        // new ones; a node the view does not show is read as it is.
        assert_eq!(modes["draining"], AllocWatchMode::Gate);
        assert_eq!(modes["eligible"], AllocWatchMode::Gate);
        assert_eq!(modes["gone"], AllocWatchMode::Gate);
        assert_eq!(modes["status"], AllocWatchMode::Status);
    }
}
