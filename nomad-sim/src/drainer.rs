//! Node drain, following Nomad's server-side drainer (`nomad/drainer/*.go`)
//! and `state_store.go` `updateNodeDrainImpl`:
//!
//! * setting a drain makes the node ineligible in the same write;
//! * service allocations are marked `DesiredTransition.Migrate`, then stopped
//!   (`alloc is being migrated`) and replaced elsewhere, at most the job's
//!   `max_parallel` at a time until replacements are healthy;
//! * batch allocations run to completion until the deadline;
//! * system allocations are stopped last (the drain completes in the same
//!   step without waiting for them) unless `IgnoreSystemJobs`;
//! * at the deadline everything left is marked and the drain completes at
//!   once with `deadline_reached`;
//! * on completion `DrainStrategy` becomes null, `LastDrain.Status` is
//!   `complete`, and the node stays ineligible.
//!
//! Nomad groups deadlines in a 5 s coalesce window; here a deadline fires at
//! exactly its simulated time, and a negative deadline on the next tick.

use crate::state::{Cluster, StateError, drain_ts, force_deadline, is_system};
use crate::wire::{
    DrainMetadata, DrainRequest, DrainSpec, DrainStrategy, NodeUpdateResponse, StrMap,
};

impl Cluster {
    /// `PUT|POST /v1/node/:id/drain`.
    pub fn update_drain(
        &mut self,
        node_id: &str,
        req: &DrainRequest,
        accessor: &str,
    ) -> Result<NodeUpdateResponse, StateError> {
        let rec = self.nodes.get(node_id).ok_or(StateError::NodeNotFound)?;
        let was_draining = rec.node.drain_strategy.is_some();
        let was_eligible = rec.node.scheduling_eligibility == "eligible";
        match &req.drain_spec {
            Some(spec) => self.set_drain(node_id, spec, req, accessor, was_draining),
            None => self.cancel_drain(node_id, req, accessor, was_draining, was_eligible),
        }
    }

    /// A drain set or updated: the node becomes ineligible in the same
    /// write, `LastDrain` records who, the deadline timer is (re)armed.
    fn set_drain(
        &mut self,
        node_id: &str,
        spec: &DrainSpec,
        req: &DrainRequest,
        accessor: &str,
        was_draining: bool,
    ) -> Result<NodeUpdateResponse, StateError> {
        let now = self.now;
        let meta_nonempty = req.meta.as_ref().is_some_and(|m| !m.is_empty());
        let idx = self.bump();
        let rec = self.nodes.get_mut(node_id).unwrap();
        let started_at = rec
            .node
            .drain_strategy
            .as_ref()
            .map(|d| d.started_at.clone())
            .unwrap_or_else(|| crate::clock::rfc3339(now));
        rec.node.drain_strategy = Some(DrainStrategy {
            deadline: spec.deadline,
            ignore_system_jobs: spec.ignore_system_jobs,
            force_deadline: force_deadline(now, spec.deadline),
            started_at,
        });
        rec.node.scheduling_eligibility = "ineligible".into();
        rec.node.status_updated_at = now.div_euclid(crate::clock::NANOS_PER_SEC);
        match (&mut rec.node.last_drain, was_draining) {
            (Some(ld), true) => {
                ld.updated_at = drain_ts(now);
                ld.status = "draining".into();
                ld.accessor_id = accessor.into();
                if meta_nonempty {
                    ld.meta = req.meta.clone();
                }
            }
            _ => {
                rec.node.last_drain = Some(DrainMetadata {
                    started_at: drain_ts(now),
                    updated_at: drain_ts(now),
                    status: "draining".into(),
                    accessor_id: accessor.into(),
                    meta: req.meta.clone(),
                });
            }
        }
        let msg = if was_draining {
            "Node drain strategy updated"
        } else {
            "Node drain strategy set"
        };
        self.add_node_event(node_id, idx, "Drain", msg, None);
        self.emit_node_change(node_id, idx, Some("NodeDrain"));
        let gen_ = self.drain_gen_bump(node_id);
        if spec.deadline > 0 {
            self.schedule_timer_deadline(node_id, now + spec.deadline, gen_);
        } else if spec.deadline < 0 {
            self.schedule_timer_deadline(node_id, now, gen_);
        }
        self.schedule_reconcile(node_id);
        Ok(NodeUpdateResponse {
            eval_create_index: 0,
            eval_ids: None,
            index: idx,
            node_modify_index: idx,
        })
    }

    /// A drain canceled (or eligibility set with no drain): `LastDrain` is
    /// `canceled`, in-flight migrations are forgotten, and a node that
    /// becomes eligible gets its system jobs and evaluations.
    fn cancel_drain(
        &mut self,
        node_id: &str,
        req: &DrainRequest,
        accessor: &str,
        was_draining: bool,
        was_eligible: bool,
    ) -> Result<NodeUpdateResponse, StateError> {
        let now = self.now;
        let meta_nonempty = req.meta.as_ref().is_some_and(|m| !m.is_empty());
        let idx = self.bump();
        let rec = self.nodes.get_mut(node_id).unwrap();
        rec.node.drain_strategy = None;
        if was_draining && let Some(ld) = rec.node.last_drain.as_mut() {
            ld.status = "canceled".into();
            ld.updated_at = drain_ts(now);
            ld.accessor_id = accessor.into();
            if meta_nonempty {
                ld.meta = req.meta.clone();
            }
        }
        let becomes_eligible = req.mark_eligible && !was_eligible;
        if req.mark_eligible {
            rec.node.scheduling_eligibility = "eligible".into();
        }
        if was_draining {
            self.add_node_event(node_id, idx, "Drain", "Node drain disabled", None);
        }
        self.emit_node_change(node_id, idx, Some("NodeDrain"));
        self.drain_gen_bump(node_id);
        // Clear in-flight migrations so a later drain starts fresh.
        let ids: Vec<String> = self
            .node_allocs(node_id)
            .map(|a| a.alloc.id.clone())
            .collect();
        for id in ids {
            self.set_migrating(&id, false);
        }
        let (eval_ids, eval_idx) = if becomes_eligible {
            self.place_system(node_id);
            self.node_evals(node_id, idx)
        } else {
            (None, 0)
        };
        Ok(NodeUpdateResponse {
            eval_create_index: eval_idx,
            eval_ids,
            index: idx,
            node_modify_index: idx,
        })
    }

    /// Evaluation IDs Nomad creates for a node that became eligible: one per
    /// job with allocations there, plus the system jobs.
    pub(crate) fn node_evals(&mut self, node_id: &str, idx: u64) -> (Option<Vec<String>>, u64) {
        let mut jobs: std::collections::BTreeSet<String> = self
            .node_allocs(node_id)
            .map(|a| a.alloc.job.id.clone())
            .collect();
        for j in self.jobs.values() {
            if is_system(&j.job_type) {
                jobs.insert(j.id.clone());
            }
        }
        if jobs.is_empty() {
            return (None, 0);
        }
        let ids = jobs.iter().map(|_| self.uuid()).collect();
        (Some(ids), idx)
    }

    /// Moves a draining node forward: marks service allocations for migration
    /// within `max_parallel`, and completes the drain when every non-system
    /// allocation is client-terminal.
    pub(crate) fn reconcile_drain(&mut self, node_id: &str) {
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        let Some(ds) = rec.node.drain_strategy.clone() else {
            return;
        };
        let mut remaining = 0usize;
        let mut candidates: Vec<(String, String, u32, bool)> = Vec::new();
        for a in self.node_allocs(node_id) {
            if is_system(&a.alloc.job.job_type) || a.alloc.client_terminal() {
                continue;
            }
            remaining += 1;
            if a.alloc.job.job_type == "service"
                && a.alloc.desired_status == "run"
                && a.alloc.desired_transition.migrate != Some(true)
            {
                candidates.push((
                    a.alloc.id.clone(),
                    a.alloc.job.key(),
                    a.alloc.job.max_parallel,
                    a.alloc.client_status == "unknown",
                ));
            }
        }
        if remaining == 0 {
            if !ds.ignore_system_jobs {
                self.stop_remaining(node_id, true, false);
            }
            self.complete_drain(node_id, false);
            return;
        }
        let mut marked: Vec<(String, bool)> = Vec::new();
        let mut budget: std::collections::HashMap<String, u32> = Default::default();
        for (id, job, max_parallel, unknown) in candidates {
            if unknown {
                // An `unknown` allocation's replacement already runs, so it
                // counts as healthy for `watch_jobs.go` `handleTaskGroup`
                // (numToDrain = healthy - (Count - MaxParallel)): it is
                // marked without waiting for a migration slot.
                marked.push((id, false));
                continue;
            }
            let left = match budget.get(&job) {
                Some(l) => *l,
                None => max_parallel.saturating_sub(self.job_in_flight(&job)),
            };
            if left == 0 {
                budget.insert(job, 0);
                continue;
            }
            budget.insert(job, left - 1);
            marked.push((id, true));
        }
        if marked.is_empty() {
            return;
        }
        let idx = self.bump();
        for (id, in_flight) in marked {
            self.set_migrating(&id, in_flight);
            self.mark_migrate(&id, false, idx);
            self.schedule_migrate_stop(&id);
        }
    }

    /// Marks every remaining non-terminal allocation for migration and stops
    /// it: used at the deadline and for system allocations at the end.
    fn stop_remaining(&mut self, node_id: &str, system_only: bool, include_system: bool) {
        let ids: Vec<(String, String)> = self
            .node_allocs(node_id)
            .filter(|a| !a.alloc.terminal())
            .filter(|a| {
                let sys = is_system(&a.alloc.job.job_type);
                if system_only {
                    sys
                } else {
                    !sys || include_system
                }
            })
            .map(|a| (a.alloc.id.clone(), a.alloc.job.job_type.clone()))
            .collect();
        if ids.is_empty() {
            return;
        }
        let idx = self.bump();
        for (id, job_type) in ids {
            // Batch and sysbatch are stopped and not replaced
            // (MigrateDisablePlacement, Nomad >= 1.10.6 / 1.11.0).
            let no_place = matches!(job_type.as_str(), "batch" | "sysbatch");
            self.mark_migrate(&id, no_place, idx);
            let replace = job_type == "service";
            self.stop_alloc(&id, "alloc is being migrated", replace, idx);
        }
    }

    pub(crate) fn on_drain_deadline(&mut self, node_id: &str, gen_: u64) {
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        if self.drain_gen(node_id) != gen_ {
            return;
        }
        let Some(ds) = rec.node.drain_strategy.clone() else {
            return;
        };
        self.stop_remaining(node_id, false, !ds.ignore_system_jobs);
        self.complete_drain(node_id, true);
    }

    fn complete_drain(&mut self, node_id: &str, deadline_reached: bool) {
        let now = self.now;
        let idx = self.bump();
        let Some(rec) = self.nodes.get_mut(node_id) else {
            return;
        };
        rec.node.drain_strategy = None;
        if let Some(ld) = rec.node.last_drain.as_mut() {
            ld.status = "complete".into();
            ld.updated_at = drain_ts(now);
        }
        let details = deadline_reached.then(|| {
            let mut m = StrMap::new();
            m.insert("deadline_reached".into(), "true".into());
            m
        });
        self.add_node_event(node_id, idx, "Drain", "Node drain complete", details);
        self.emit_node_change(node_id, idx, Some("NodeDrain"));
        self.drain_gen_bump(node_id);
    }
}

impl Cluster {
    /// `PUT|POST /v1/node/:id/eligibility` (nomad/node_endpoint.go
    /// `UpdateEligibility`).
    pub fn update_eligibility(
        &mut self,
        node_id: &str,
        value: &str,
    ) -> Result<NodeUpdateResponse, StateError> {
        if value != "eligible" && value != "ineligible" {
            return Err(StateError::InvalidEligibility(value.to_string()));
        }
        let rec = self.nodes.get(node_id).ok_or(StateError::NodeNotFound)?;
        if rec.node.drain_strategy.is_some() && value == "eligible" {
            return Err(StateError::EligibleWhileDraining);
        }
        if rec.node.scheduling_eligibility == value {
            // No-op: nothing is written and every index is 0.
            return Ok(NodeUpdateResponse {
                eval_create_index: 0,
                eval_ids: None,
                index: 0,
                node_modify_index: 0,
            });
        }
        let idx = self.bump();
        let now = self.now;
        let rec = self.nodes.get_mut(node_id).unwrap();
        rec.node.scheduling_eligibility = value.into();
        rec.node.status_updated_at = now.div_euclid(crate::clock::NANOS_PER_SEC);
        let msg = if value == "eligible" {
            "Node marked as eligible for scheduling"
        } else {
            "Node marked as ineligible for scheduling"
        };
        self.add_node_event(node_id, idx, "Cluster", msg, None);
        self.emit_node_change(node_id, idx, Some("NodeEligibility"));
        let (eval_ids, eval_idx) = if value == "eligible" {
            self.place_system(node_id);
            self.node_evals(node_id, idx)
        } else {
            (None, 0)
        };
        // NodeModifyIndex is never set on this response in Nomad's code.
        Ok(NodeUpdateResponse {
            eval_create_index: eval_idx,
            eval_ids,
            index: idx,
            node_modify_index: 0,
        })
    }
}
