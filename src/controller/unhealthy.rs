//! The clock behind `remediation.unhealthyAfter` and `purgeDownAfter`: since
//! when this process has seen each client of a pool `down` or
//! `disconnected`.
//!
//! Nomad's node list stub has no `StatusUpdatedAt`, and the full node's is
//! stamped by the Nomad servers' clock and moved by every drain or
//! eligibility write, so neither tells when the client stopped
//! heartbeating. The controller's own first sighting does, within one
//! reconcile (each node event wakes one). It is kept in memory only: after
//! a restart (or a leader change) the count starts again, which makes a
//! grace longer, never shorter, so no client is replaced early.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;

use super::plan::{NodeFacts, NodeStatus};

/// Since when each client of one pool has been unhealthy.
#[derive(Default)]
pub struct UnhealthyClock {
    since: Mutex<HashMap<String, Timestamp>>,
}

fn unhealthy(status: NodeStatus) -> bool {
    matches!(status, NodeStatus::Down | NodeStatus::Disconnected)
}

impl UnhealthyClock {
    /// Record what `nodes` show at `now` and return the clock: a client
    /// newly unhealthy starts at `now`, one that is unhealthy still keeps
    /// its start (across `disconnected` to `down`), and one that is ready,
    /// initializing or gone is forgotten.
    pub fn observe(&self, nodes: &[NodeFacts], now: Timestamp) -> HashMap<String, Timestamp> {
        let mut since = self.since.lock().expect("unhealthy clock lock");
        let mut next = HashMap::new();
        for n in nodes.iter().filter(|n| unhealthy(n.status)) {
            let start = since.get(&n.id).copied().unwrap_or(now);
            next.insert(n.id.clone(), start);
        }
        *since = next.clone();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, status: NodeStatus) -> NodeFacts {
        NodeFacts {
            do_not_retire: false,
            id: id.into(),
            name: id.into(),
            status,
            eligible: true,
            draining: false,
            last_drain: None,
            last_drain_started: None,
            last_drain_mark: None,
            create_index: 1,
            instance_id: None,
        }
    }

    #[test]
    fn the_first_sighting_counts_until_the_client_is_ready_again() {
        let clock = UnhealthyClock::default();
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-12-01T10:05:00Z".parse().unwrap();
        let t2: Timestamp = "2026-12-01T10:09:00Z".parse().unwrap();
        let seen = clock.observe(&[node("a", NodeStatus::Disconnected)], t0);
        assert_eq!(seen.get("a"), Some(&t0));
        // Disconnected, then down: one spell, counted from the first sighting.
        let seen = clock.observe(
            &[node("a", NodeStatus::Down), node("b", NodeStatus::Ready)],
            t1,
        );
        assert_eq!(seen.get("a"), Some(&t0));
        assert!(!seen.contains_key("b"));
        // Back to ready, then down again: a new spell.
        clock.observe(&[node("a", NodeStatus::Ready)], t1);
        let seen = clock.observe(&[node("a", NodeStatus::Down)], t2);
        assert_eq!(seen.get("a"), Some(&t2));
        // A fresh clock (a restarted controller) starts again: later, never earlier.
        let restarted = UnhealthyClock::default();
        let seen = restarted.observe(&[node("a", NodeStatus::Down)], t2);
        assert_eq!(seen.get("a"), Some(&t2));
    }
}
