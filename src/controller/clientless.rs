//! The clock behind `remediation.unregisteredAfter` and the join grace of
//! the `VMsWithoutClient` report: since when this process has seen each
//! in-service VM of a pool's group without any node of the pool on it.
//!
//! Neither cloud says when a VM's agent should have registered, and a VM's
//! launch time would count the time it sat `Pending` (or in a launch hook)
//! too. The controller's own first sighting of the VM in service without a
//! client does, within one reconcile. As with the unhealthy clock, it is
//! kept in memory: after a restart the count starts again, so a VM is only
//! ever replaced late, never early.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use jiff::Timestamp;

use super::plan::NodeFacts;
use crate::provider::{GroupState, Lifecycle};

/// Since when each in-service VM of one pool's group has had no node.
#[derive(Default)]
pub struct ClientlessClock {
    since: Mutex<HashMap<String, Timestamp>>,
}

impl ClientlessClock {
    /// Record what `group` and `nodes` (the pool's, any status) show at
    /// `now` and return the clock: a VM newly in service without a node
    /// starts at `now`, one still so keeps its start, and one some node
    /// reports (or that left service) is forgotten. A node whose instance
    /// is not known yet places no VM: the planner waits for it before it
    /// acts on the clock.
    pub fn observe(
        &self,
        group: &GroupState,
        nodes: &[NodeFacts],
        now: Timestamp,
    ) -> HashMap<String, Timestamp> {
        let reported: HashSet<&str> = (nodes.iter())
            .filter_map(|n| n.instance_id.as_deref())
            .collect();
        let mut since = self.since.lock().expect("clientless clock lock");
        let next: HashMap<String, Timestamp> = (group.instances.iter())
            .filter(|i| i.lifecycle == Lifecycle::InService && !reported.contains(i.id.as_str()))
            .map(|i| (i.id.clone(), since.get(&i.id).copied().unwrap_or(now)))
            .collect();
        *since = next.clone();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::plan::NodeStatus;
    use crate::provider::fake::{group_of, vm};

    fn node_on(id: &str, instance: &str) -> NodeFacts {
        NodeFacts {
            do_not_retire: false,
            id: id.into(),
            name: id.into(),
            status: NodeStatus::Down,
            eligible: true,
            draining: false,
            last_drain: None,
            last_drain_started: None,
            last_drain_mark: None,
            create_index: 1,
            instance_id: Some(instance.into()),
        }
    }

    #[test]
    fn a_vm_counts_from_its_first_sighting_without_a_node_until_one_reports_it() {
        let clock = ClientlessClock::default();
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-12-01T10:05:00Z".parse().unwrap();
        let mut group = group_of(vec![
            vm("i-a", Lifecycle::InService),
            vm("i-b", Lifecycle::InService),
            vm("i-boot", Lifecycle::Pending),
        ]);
        // A down node still reports its VM: that VM is not clientless.
        let seen = clock.observe(&group, &[node_on("n-a", "i-a")], t0);
        assert_eq!(seen.keys().collect::<Vec<_>>(), [&"i-b".to_string()]);
        assert_eq!(seen["i-b"], t0);
        // Still without a client later: the first sighting stays.
        let seen = clock.observe(&group, &[node_on("n-a", "i-a")], t1);
        assert_eq!(seen["i-b"], t0);
        // Its client joins, then goes: a new spell.
        clock.observe(&group, &[node_on("n-b", "i-b")], t1);
        let seen = clock.observe(&group, &[], t1);
        assert_eq!((seen["i-a"], seen["i-b"]), (t1, t1));
        // Out of service: forgotten. A restarted clock starts again.
        group.instances[1].lifecycle = Lifecycle::Standby;
        assert!(!clock.observe(&group, &[], t1).contains_key("i-b"));
        let restarted = ClientlessClock::default();
        assert_eq!(restarted.observe(&group, &[], t1)["i-a"], t1);
    }
}
