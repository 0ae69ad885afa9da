//! A deliberately simple scheduler: places queued allocations on ready,
//! eligible, non-draining nodes of the job's node pool that have a free slot,
//! least-loaded first. Placements that do not fit wait in a FIFO queue per
//! node pool (Nomad's "blocked evaluation") and are retried whenever capacity
//! may have appeared; a pool's queue stops at its first placement that does
//! not fit, so a retry costs O(pools + placements), not O(queue).
//! System jobs are placed per node by `state/jobs.rs`.

use crate::state::{Cluster, Placement};

impl Cluster {
    /// Places as many queued allocations as capacity allows.
    pub fn schedule_pending(&mut self) -> usize {
        let mut placed = 0;
        let pools: Vec<String> = self
            .queue
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(p, _)| p.clone())
            .collect();
        for pool in pools {
            loop {
                let Some(p) = self.queue.get_mut(&pool).and_then(|q| q.pop_front()) else {
                    break;
                };
                if self.place_one(&p).is_some() {
                    placed += 1;
                } else {
                    self.queue.get_mut(&pool).unwrap().push_front(p);
                    break;
                }
            }
        }
        if !self.pinned.is_empty() {
            let pinned = std::mem::take(&mut self.pinned);
            for p in pinned {
                let gone = p.node.as_ref().is_some_and(|n| !self.nodes.contains_key(n));
                if gone {
                    continue; // the node was purged: nothing to wait for
                }
                if self.place_one(&p).is_some() {
                    placed += 1;
                } else {
                    self.pinned.push(p);
                }
            }
        }
        self.sched_dirty = false;
        placed
    }

    /// Placements waiting for capacity.
    pub fn blocked(&self) -> usize {
        self.queue.values().map(|q| q.len()).sum::<usize>() + self.pinned.len()
    }

    /// Places one allocation now, or returns `None` when nothing fits.
    pub fn place_one(&mut self, p: &Placement) -> Option<String> {
        let node = match &p.node {
            Some(n) => {
                let rec = self.nodes.get(n)?;
                let ok = rec.node.status == "ready"
                    && rec.node.scheduling_eligibility == "eligible"
                    && rec.node.drain_strategy.is_none()
                    && rec.used_slots < rec.slots;
                if !ok {
                    return None;
                }
                n.clone()
            }
            None => self.pick_node(&p.job)?,
        };
        Some(self.create_alloc(&node, p))
    }
}
