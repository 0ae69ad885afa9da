//! What the control surface reports about the cluster: safety violations
//! (a node that went away with allocations still on it, the thing the
//! operator must never cause) and the counts of `/sim/stats`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::clock::rfc3339;

use super::*;

#[derive(Debug, Clone, Serialize)]
pub struct ViolationAlloc {
    #[serde(rename = "alloc_id")]
    pub alloc_id: String,
    pub job_id: String,
    pub job_type: String,
    pub client_status: String,
}

/// A node that went away (VM killed, or purged) while it still had a pending
/// or running allocation.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub node_id: String,
    pub node_name: String,
    pub instance_id: Option<String>,
    /// `killed` or `purged`.
    pub kind: String,
    pub allocs: Vec<ViolationAlloc>,
    pub sim_time: String,
    pub sim_time_ns: i64,
    pub index: u64,
}

impl Cluster {
    pub(super) fn record_violation(&mut self, node_id: &str, kind: &str) {
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        let allocs: Vec<ViolationAlloc> = self
            .node_allocs(node_id)
            // `unknown`: the client could not report, but the tasks run.
            .filter(|a| a.alloc.pending_or_running() || a.alloc.client_status == "unknown")
            .map(|a| ViolationAlloc {
                alloc_id: a.alloc.id.clone(),
                job_id: a.alloc.job.id.clone(),
                job_type: a.alloc.job.job_type.clone(),
                client_status: a.alloc.client_status.clone(),
            })
            .collect();
        if allocs.is_empty() {
            return;
        }
        self.violations.push(Violation {
            node_id: node_id.to_string(),
            node_name: rec.node.name.clone(),
            instance_id: rec.instance_id.clone(),
            kind: kind.into(),
            allocs,
            sim_time: rfc3339(self.now),
            sim_time_ns: self.now,
            index: self.index,
        });
    }

    /// Counts for `/sim/stats`.
    pub fn counts(&self) -> serde_json::Value {
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_elig: BTreeMap<String, u64> = BTreeMap::new();
        let (mut draining, mut dead_vms, mut partitioned) = (0u64, 0u64, 0u64);
        for r in self.nodes.values() {
            *by_status.entry(r.node.status.clone()).or_default() += 1;
            *by_elig
                .entry(r.node.scheduling_eligibility.clone())
                .or_default() += 1;
            if r.node.drain_strategy.is_some() {
                draining += 1;
            }
            if !r.alive {
                dead_vms += 1;
            }
            if !r.connected {
                partitioned += 1;
            }
        }
        let mut allocs_by: BTreeMap<String, u64> = BTreeMap::new();
        for a in self.allocs.values() {
            *allocs_by.entry(a.alloc.client_status.clone()).or_default() += 1;
        }
        serde_json::json!({
            "index": self.index,
            "nodes": {
                "total": self.nodes.len(),
                "by_status": by_status,
                "by_eligibility": by_elig,
                "draining": draining,
                "vm_gone": dead_vms,
                "partitioned": partitioned,
            },
            "allocations": {
                "total": self.allocs.len(),
                "by_client_status": allocs_by,
                "blocked_placements": self.blocked(),
            },
            "violations": self.violations.len(),
            "workloads": self.workloads.iter().map(|w| serde_json::json!({
                "id": w.id, "node_pool": w.node_pool, "rate_per_min": w.rate_per_min,
                "submitted": w.submitted})).collect::<Vec<_>>(),
        })
    }
}
