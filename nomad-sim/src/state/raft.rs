//! The Raft index as faults bend it: a frozen read snapshot (a follower
//! that stopped applying the log) and a rewind (a cluster restored from an
//! older snapshot). Separate because nothing else may move the index
//! other than forward by one per write.

use super::*;

impl Cluster {
    /// A copy of what reads see (nodes, allocations, table indexes), frozen:
    /// the state of a follower that stopped applying the Raft log here.
    pub fn read_snapshot(&self) -> Cluster {
        let mut c = Cluster::new(self.cfg.clone(), self.index);
        c.nodes = self.nodes.clone();
        c.allocs = self.allocs.clone();
        c.allocs_by_node = self.allocs_by_node.clone();
        c.nodes_by_vm = self.nodes_by_vm.clone();
        c.nodes_by_attribute = self.nodes_by_attribute.clone();
        c.nodes_index = self.nodes_index;
        c.allocs_index = self.allocs_index;
        c.now = self.now;
        c
    }

    /// Moves the whole cluster's Raft index back by `by` (at least to 1), as
    /// a cluster rebuilt from an older snapshot would be: table indexes and
    /// every object's indexes are clamped to the new index, and later writes
    /// continue from it. Blocked queries are woken; they re-check and keep
    /// waiting while the index is not above theirs (`nomad/rpc.go`
    /// `blockingRPC`). Event streams end and the event buffer starts empty.
    /// Returns the new index.
    pub fn rewind(&mut self, by: u64) -> u64 {
        let new = self.index.saturating_sub(by).max(1);
        self.index = new;
        self.nodes_index = self.nodes_index.min(new);
        self.allocs_index = self.allocs_index.min(new);
        for rec in self.nodes.values_mut() {
            let n = &mut rec.node;
            n.create_index = n.create_index.min(new);
            n.modify_index = n.modify_index.min(new);
            n.last_missed_heartbeat_index = n.last_missed_heartbeat_index.min(new);
            for e in n.events.iter_mut() {
                e.create_index = e.create_index.min(new);
            }
        }
        for a in self.allocs.values_mut() {
            let x = &mut a.alloc;
            x.create_index = x.create_index.min(new);
            x.modify_index = x.modify_index.min(new);
            x.alloc_modify_index = x.alloc_modify_index.min(new);
        }
        // A restore swaps in a new state store with a new event broker and
        // abandons the old one, whose broker stops and closes every
        // subscription (`nomad/fsm.go` `Restore`, `StateStore.Abandon`,
        // `stream.EventBroker.handleUpdates`): open streams end, and new
        // ones see nothing from before the restore.
        self.events = crate::events::EventBroker::new(self.cfg.event_buffer_size);
        self.nodes_tx.send_replace(self.nodes_index);
        self.allocs_tx.send_replace(self.allocs_index);
        for w in self.watches.values() {
            w.node.send_replace(new);
            w.allocs.send_replace(new);
        }
        new
    }
}
