//! Change notification: every write ends here. Each records the new table
//! index, wakes the blocking queries that read the changed data (the
//! `nodes` / `allocs` table watches and the one node's watches), publishes
//! the event-stream event, and keeps the node's own event list. Separate so
//! that what wakes whom is in one place, not spread over the writers.

use crate::clock::rfc3339;
use crate::wire::{NodeEvent, StrMap};

use super::*;

impl Cluster {
    /// Records that `node_id`'s node object changed at `idx`.
    pub(super) fn node_changed(
        &mut self,
        node_id: &str,
        idx: u64,
        event_type: Option<&'static str>,
    ) {
        self.nodes_index = idx;
        self.nodes_tx.send_replace(idx);
        if let Some(rec) = self.nodes.get_mut(node_id) {
            rec.node.modify_index = idx;
            rec.node.drain = rec.node.drain_strategy.is_some();
        }
        if let Some(w) = self.watches.get(node_id) {
            w.node.send_replace(idx);
        }
        if let Some(t) = event_type
            && let Some(rec) = self.nodes.get(node_id)
        {
            self.events.publish_node(idx, t, &rec.node);
        }
        self.update_sched(node_id);
    }

    /// Publishes an `Allocation` event for the allocation as it is now.
    pub(super) fn alloc_event(&mut self, id: &str, kind: &'static str, idx: u64) {
        if let Some(a) = self.allocs.get(id) {
            self.events.publish_alloc(idx, kind, &a.alloc);
        }
    }

    pub(super) fn allocs_changed(&mut self, node_id: &str, idx: u64) {
        self.allocs_index = idx;
        self.allocs_tx.send_replace(idx);
        if let Some(w) = self.watches.get(node_id) {
            w.allocs.send_replace(idx);
        }
    }

    pub(super) fn push_node_event(
        &mut self,
        node_id: &str,
        idx: u64,
        subsystem: &str,
        msg: &str,
        details: Option<StrMap>,
    ) {
        let now = self.now;
        if let Some(rec) = self.nodes.get_mut(node_id) {
            rec.node.events.push(NodeEvent {
                message: msg.into(),
                subsystem: subsystem.into(),
                details,
                timestamp: rfc3339(now),
                create_index: idx,
            });
            let n = rec.node.events.len();
            if n > MAX_NODE_EVENTS {
                rec.node.events.drain(0..n - MAX_NODE_EVENTS);
            }
        }
    }
}
