//! Allocations: creation on a node, the client's status reports (pending,
//! running, complete, failed, lost) with their task states, stops and
//! migrations as the scheduler writes them, and replacement chains
//! (`PreviousAllocation` / `NextAllocation`).

use crate::clock::rfc3339;
use crate::wire::{self, Allocation, DesiredTransition, TaskEvent, TaskState};

use super::*;

impl Cluster {
    /// Marks every non-terminal allocation on the node `lost` and asks for
    /// replacements of service and batch allocations.
    pub(super) fn lose_allocs(&mut self, node_id: &str, desc: &str) {
        let ids: Vec<String> = self
            .node_allocs(node_id)
            .filter(|a| !a.alloc.client_terminal())
            // An `unknown` allocation already told to stop is server-terminal:
            // the reconciler skips it, so it stays `unknown`.
            .filter(|a| !(a.alloc.client_status == "unknown" && a.alloc.desired_status != "run"))
            .map(|a| a.alloc.id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let idx = self.next_index();
        for id in ids {
            let replace = {
                let a = &self.allocs[&id];
                a.alloc.desired_status == "run"
                    && !is_system(&a.alloc.job.job_type)
                    && !self.has_live_replacement(&id)
            };
            self.set_client_status(&id, "lost", "", idx);
            let now = self.now;
            let a = self.allocs.get_mut(&id).unwrap();
            a.alloc.desired_status = "stop".into();
            a.alloc.desired_description = desc.into();
            a.alloc.modify_time = now;
            // The scheduler's plan marks them lost.
            self.events.publish_alloc(idx, "PlanResult", &a.alloc);
            if replace {
                let p = Placement {
                    job: a.alloc.job.clone(),
                    index_in_job: 0,
                    previous: Some(id.clone()),
                    duration_ns: a.duration_ns,
                    node: None,
                };
                self.enqueue(p);
            }
        }
        self.allocs_changed(node_id, idx);
    }

    pub(super) fn set_client_status(&mut self, id: &str, status: &str, desc: &str, idx: u64) {
        let now = self.now;
        let Some(a) = self.allocs.get_mut(id) else {
            return;
        };
        a.alloc.client_status = status.into();
        a.alloc.client_description = desc.into();
        a.alloc.modify_index = idx;
        a.alloc.alloc_modify_index = idx;
        a.alloc.modify_time = now;
        let terminal = a.alloc.client_terminal();
        for ts in a.alloc.task_states.values_mut() {
            match status {
                "running" => {
                    ts.state = "running";
                    ts.started_at = Some(rfc3339(now));
                    ts.events
                        .push(TaskEvent::new("Started", now, "Task started by client"));
                }
                "complete" | "failed" | "lost" => {
                    ts.state = "dead";
                    ts.failed = status == "failed";
                    ts.finished_at = Some(rfc3339(now));
                    let (k, m) = match status {
                        "complete" => ("Terminated", "Exit Code: 0"),
                        "failed" => ("Terminated", "Exit Code: 1"),
                        _ => ("Killed", "Task lost"),
                    };
                    let mut e = TaskEvent::new(k, now, m);
                    e.exit_code = i64::from(status == "failed");
                    ts.events.push(e);
                }
                _ => {}
            }
            let n = ts.events.len();
            if n > 10 {
                ts.events.drain(0..n - 10);
            }
        }
        if status != "lost" {
            // The client's Node.UpdateAlloc.
            self.events
                .publish_alloc(idx, "AllocationUpdated", &a.alloc);
        }
        if terminal && a.counted {
            a.counted = false;
            let node_id = a.alloc.node_id.clone();
            if let Some(rec) = self.nodes.get_mut(&node_id) {
                rec.used_slots = rec.used_slots.saturating_sub(1);
            }
            self.update_sched(&node_id);
        }
    }

    /// Creates an allocation on `node_id` (status `pending`).
    pub(crate) fn create_alloc(&mut self, node_id: &str, p: &Placement) -> String {
        let idx = self.next_index();
        let now = self.now;
        let id = self.uuid();
        let eval_id = self.uuid();
        let rec = self
            .nodes
            .get_mut(node_id)
            .expect("placing on a known node");
        let counted = !is_system(&p.job.job_type);
        if counted {
            rec.used_slots += 1;
        }
        let node_name = rec.node.name.clone();
        let mut ts = TaskState {
            state: "pending",
            failed: false,
            restarts: 0,
            last_restart: None,
            started_at: None,
            finished_at: None,
            events: vec![TaskEvent::new("Received", now, "Task received by client")],
            task_handle: None,
        };
        ts.events.push({
            let mut e = TaskEvent::new("Task Setup", now, "Building Task Directory");
            e.message = "Building Task Directory";
            e
        });
        let alloc = Allocation {
            id: id.clone(),
            namespace: p.job.namespace.clone(),
            eval_id,
            name: format!("{}.{}[{}]", p.job.id, p.job.task_group(), p.index_in_job),
            node_id: node_id.into(),
            node_name,
            job: p.job.clone(),
            task_group: p.job.task_group().into(),
            desired_status: "run".into(),
            desired_description: String::new(),
            desired_transition: DesiredTransition::default(),
            client_status: "pending".into(),
            client_description: "No tasks have started".into(),
            task_states: wire::TaskStates(vec![("task".to_string(), ts)]),
            deployment_status: None,
            previous_allocation: p.previous.clone().unwrap_or_default(),
            next_allocation: String::new(),
            create_index: idx,
            modify_index: idx,
            alloc_modify_index: idx,
            create_time: now,
            modify_time: now,
        };
        if let Some(prev) = &p.previous
            && let Some(pa) = self.allocs.get_mut(prev)
        {
            pa.alloc.next_allocation = id.clone();
            pa.alloc.modify_index = idx;
            let pn = pa.alloc.node_id.clone();
            self.alloc_event(prev, "PlanResult", idx);
            self.allocs_changed(&pn, idx);
        }
        self.allocs.insert(
            id.clone(),
            AllocRec {
                alloc,
                duration_ns: p.duration_ns,
                finish_at: None,
                counted,
                migrating: false,
                unknown_since: None,
            },
        );
        self.allocs_by_node
            .entry(node_id.into())
            .or_default()
            .push(id.clone());
        self.job_allocs
            .entry(p.job.key())
            .or_default()
            .push(id.clone());
        self.update_sched(node_id);
        self.alloc_event(&id, "PlanResult", idx);
        self.allocs_changed(node_id, idx);
        self.timer(now + START_DELAY_NS, Timer::AllocStart(id.clone()));
        id
    }

    /// Client reports the allocation finished (`complete`) or failed.
    pub fn finish_alloc(&mut self, id: &str, failed: bool) -> Result<(), StateError> {
        let a = self.allocs.get(id).ok_or(StateError::AllocNotFound)?;
        if a.alloc.client_terminal() {
            return Ok(());
        }
        let node_id = a.alloc.node_id.clone();
        let idx = self.next_index();
        let (st, desc) = if failed {
            ("failed", "Failed tasks")
        } else {
            ("complete", "All tasks have completed")
        };
        self.set_client_status(id, st, desc, idx);
        self.allocs_changed(&node_id, idx);
        self.reconcile_drain(&node_id);
        Ok(())
    }

    /// Stops an allocation as the scheduler does for a migration: the
    /// caller has already set `DesiredTransition`.
    pub(crate) fn stop_alloc(&mut self, id: &str, desc: &str, replace: bool, idx: u64) {
        let now = self.now;
        let Some(a) = self.allocs.get_mut(id) else {
            return;
        };
        if a.alloc.desired_status != "run" {
            return;
        }
        a.alloc.desired_status = "stop".into();
        a.alloc.desired_description = desc.into();
        a.alloc.modify_index = idx;
        a.alloc.alloc_modify_index = idx;
        a.alloc.modify_time = now;
        let node_id = a.alloc.node_id.clone();
        let live = !a.alloc.client_terminal();
        self.events.publish_alloc(idx, "PlanResult", &a.alloc);
        let kill = a.alloc.job.kill_timeout_ns;
        let p = Placement {
            job: a.alloc.job.clone(),
            index_in_job: 0,
            previous: Some(id.to_string()),
            duration_ns: a.duration_ns,
            node: None,
        };
        // An allocation that already has a replacement (an `unknown` one on a
        // disconnected node) is not replaced again.
        if replace && !self.has_live_replacement(id) {
            self.enqueue(p);
        }
        // The client keeps the task running for its kill_timeout; a client
        // that cannot be reached learns of the stop only when it is back.
        let reachable = self.nodes.get(&node_id).is_some_and(|n| n.heartbeating());
        if live && reachable {
            self.timer(now + kill, Timer::AllocStopped(id.to_string()));
        }
        self.allocs_changed(&node_id, idx);
    }

    pub(crate) fn mark_migrate(&mut self, id: &str, disable_placement: bool, idx: u64) {
        let now = self.now;
        if let Some(a) = self.allocs.get_mut(id) {
            a.alloc.desired_transition.migrate = Some(true);
            if disable_placement {
                a.alloc.desired_transition.migrate_disable_placement = Some(true);
            }
            a.alloc.modify_index = idx;
            a.alloc.modify_time = now;
            let n = a.alloc.node_id.clone();
            // The drainer's Node.UpdateAllocDesiredTransition.
            self.events
                .publish_alloc(idx, "AllocationUpdateDesiredStatus", &a.alloc);
            self.allocs_changed(&n, idx);
        }
    }

    pub(super) fn on_alloc_start(&mut self, id: &str) {
        let Some(a) = self.allocs.get(id) else {
            return;
        };
        let alive = self
            .nodes
            .get(&a.alloc.node_id)
            .is_some_and(|n| n.heartbeating());
        if a.alloc.client_status != "pending" || !alive {
            return;
        }
        let node_id = a.alloc.node_id.clone();
        let stopped = a.alloc.desired_status != "run";
        let idx = self.next_index();
        let now = self.now;
        if stopped {
            self.set_client_status(id, "complete", "All tasks have completed", idx);
            self.allocs_changed(&node_id, idx);
            self.reconcile_drain(&node_id);
            return;
        }
        self.set_client_status(id, "running", "Tasks are running", idx);
        let a = self.allocs.get_mut(id).unwrap();
        let is_service = a.alloc.job.job_type == "service";
        if is_service {
            a.alloc.deployment_status = Some(wire::DeploymentStatus {
                healthy: Some(true),
                timestamp: rfc3339(now),
                canary: false,
                modify_index: idx,
            });
        }
        let replacement = !a.alloc.previous_allocation.is_empty();
        let min_healthy = a.alloc.job.min_healthy_time_ns;
        if let Some(d) = a.duration_ns {
            a.finish_at = Some(now + d);
            self.timer(now + d, Timer::AllocFinish(id.to_string()));
        }
        if replacement {
            self.timer(now + min_healthy, Timer::ReplacementHealthy(id.to_string()));
        }
        self.allocs_changed(&node_id, idx);
    }

    /// Whether a replacement of `id` (following `NextAllocation`) still
    /// wants to run.
    pub(crate) fn has_live_replacement(&self, id: &str) -> bool {
        let mut next = self
            .allocs
            .get(id)
            .map(|a| a.alloc.next_allocation.clone())
            .unwrap_or_default();
        let mut hops = 0;
        while let Some(r) = self.allocs.get(&next) {
            if r.alloc.desired_status == "run" {
                return true;
            }
            next = r.alloc.next_allocation.clone();
            hops += 1;
            if hops > 1000 {
                break;
            }
        }
        false
    }
}
