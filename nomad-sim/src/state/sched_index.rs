//! The scheduler's index of schedulable nodes: per node pool, the ready,
//! eligible, not draining nodes with free slots ordered by load, kept up to
//! date on every node change so that placing an allocation does not scan
//! every node. The placement loop itself is `crate::scheduler`.

use crate::wire::Job;

use super::*;

impl Cluster {
    fn schedulable(rec: &NodeRec) -> bool {
        rec.node.status == "ready"
            && rec.node.scheduling_eligibility == "eligible"
            && rec.node.drain_strategy.is_none()
            && rec.used_slots < rec.slots
    }

    pub(super) fn update_sched(&mut self, node_id: &str) {
        let Some(rec) = self.nodes.get_mut(node_id) else {
            return;
        };
        let want = Self::schedulable(rec).then(|| (rec.node.node_pool.clone(), rec.used_slots));
        if want == rec.sched_key {
            return;
        }
        if want.is_some() {
            self.sched_dirty = true;
        }
        let old = std::mem::replace(&mut rec.sched_key, want.clone());
        if let Some((pool, used)) = old
            && let Some(set) = self.sched.get_mut(&pool)
        {
            set.remove(&(used, node_id.to_string()));
        }
        if let Some((pool, used)) = want {
            self.sched
                .entry(pool)
                .or_default()
                .insert((used, node_id.to_string()));
        }
    }

    /// Least-loaded schedulable node of `pool` whose datacenter the job allows.
    pub(crate) fn pick_node(&self, job: &Job) -> Option<String> {
        let pools: Vec<&String> = if job.node_pool == "all" {
            self.sched.keys().collect()
        } else {
            vec![&job.node_pool]
        };
        let any_dc = job.datacenters.iter().any(|d| d == "*");
        let mut best: Option<&(u32, String)> = None;
        for p in pools {
            let Some(set) = self.sched.get(p) else {
                continue;
            };
            for entry in set.iter() {
                let ok = any_dc
                    || self
                        .nodes
                        .get(&entry.1)
                        .is_some_and(|r| job.datacenters.contains(&r.node.datacenter));
                if ok {
                    if best.is_none_or(|b| entry.0 < b.0) {
                        best = Some(entry);
                    }
                    break;
                }
            }
        }
        best.map(|(_, id)| id.clone())
    }
}
