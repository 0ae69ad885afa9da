//! A deliberately simple scheduler: places queued allocations on ready,
//! eligible, non-draining nodes of the job's node pool that have a free slot,
//! least-loaded first. Placements that do not fit stay queued (Nomad's
//! "blocked evaluation") and are retried whenever the scheduler runs.
//! System jobs are placed per node by `state.rs`.

use crate::state::{Cluster, Placement};

impl Cluster {
    /// Places as many queued allocations as capacity allows.
    pub fn schedule_pending(&mut self) -> usize {
        let mut placed = 0;
        let n = self.queue.len();
        let mut keep = std::collections::VecDeque::with_capacity(n);
        // Pools found full in this pass: skip the rest of their queue.
        let mut full: std::collections::HashSet<String> = Default::default();
        while let Some(p) = self.queue.pop_front() {
            if full.contains(&p.job.node_pool) && p.node.is_none() {
                keep.push_back(p);
                continue;
            }
            match self.place_one(&p) {
                Some(_) => placed += 1,
                None => {
                    if p.node.is_none() && p.job.datacenters.iter().any(|d| d == "*") {
                        full.insert(p.job.node_pool.clone());
                    }
                    keep.push_back(p);
                }
            }
        }
        self.queue = keep;
        self.sched_dirty = false;
        placed
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
