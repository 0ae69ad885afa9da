//! Which nodes' allocations a pool watches: what the next step of each
//! retirement depends on, and the oldest drains for the status.

use std::collections::{HashMap, HashSet};

use jiff::Timestamp;

use super::plan::{NodeFacts, NodeStatus};
use crate::api::{RetirePhase, RetiringNode};

/// Drains in progress whose allocations are watched live, for the status
/// (allocations left, blocking jobs): the longest-running ones, which are the
/// ones someone asks about. Each watch is a parked request whose answers carry
/// full allocations, so watching every drain of a 500-node scale-in would cost
/// memory and traffic in proportion to it.
const LIVE_DRAIN_WATCHES: usize = 32;

/// Nodes whose allocations are watched: every node the next step depends on
/// (drain finished, drain deadline passed, drained) and the oldest drains.
pub fn alloc_watch_set(
    retiring: &[RetiringNode],
    nodes: &[NodeFacts],
    now: Timestamp,
) -> HashSet<String> {
    let by_id: HashMap<&str, &NodeFacts> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let mut watched = HashSet::new();
    let mut in_progress: Vec<&RetiringNode> = Vec::new();
    for r in retiring {
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
    watched.extend(
        in_progress
            .into_iter()
            .take(LIVE_DRAIN_WATCHES)
            .map(|r| r.node_id.clone()),
    );
    watched
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

        let w = alloc_watch_set(&tracked, &nodes, now);
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
    }
}
