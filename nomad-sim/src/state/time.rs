//! Simulated time: the timer queue is drained in due order, each timer
//! handled at its own due time, and the scheduler runs after every change
//! that may let a queued placement through. Every delayed step of the
//! simulation (task start, kill timeout, heartbeat expiry, drain deadline,
//! workload arrivals, node GC) is a `Timer` handled here.

use std::cmp::Reverse;

use super::*;

impl Cluster {
    /// Processes every timer due at or before `now`, then the scheduler and
    /// the workload generators. Returns the number of timers handled.
    pub fn advance_to(&mut self, now: i64, max_timers: usize) -> usize {
        // Never move simulated time backwards (a tick may race with a jump).
        let now = now.max(self.now);
        let start = self.now;
        if self.sched_dirty {
            self.schedule_pending();
        }
        let mut n = 0;
        loop {
            let due = matches!(self.timers.peek(), Some(Reverse((at, _, _))) if *at <= now);
            if !due {
                break;
            }
            if n >= max_timers {
                // Out of budget: stop at the last handled timer's time so
                // the next call continues from there, not from `now`.
                self.events.flush();
                return n;
            }
            let Reverse((at, _, t)) = self.timers.pop().unwrap();
            // Handle each timer at its own due time so timestamps and the
            // timers it schedules are exact.
            self.now = at.clamp(start, now);
            self.fire(t);
            if self.sched_dirty {
                self.schedule_pending();
            }
            n += 1;
        }
        self.now = now;
        self.schedule_pending();
        self.events.flush();
        n
    }

    fn fire(&mut self, t: Timer) {
        match t {
            Timer::AllocStart(id) => self.on_alloc_start(&id),
            Timer::AllocFinish(id) => {
                let ok = self.allocs.get(&id).is_some_and(|a| {
                    a.alloc.client_status == "running"
                        && self
                            .nodes
                            .get(&a.alloc.node_id)
                            .is_some_and(|n| n.heartbeating())
                });
                if ok {
                    let _ = self.finish_alloc(&id, false);
                }
            }
            Timer::AllocStopped(id) => {
                let Some(a) = self.allocs.get(&id) else {
                    return;
                };
                let alive = self
                    .nodes
                    .get(&a.alloc.node_id)
                    .is_some_and(|n| n.heartbeating());
                if a.alloc.client_terminal() || !alive {
                    return;
                }
                let node_id = a.alloc.node_id.clone();
                let idx = self.next_index();
                self.set_client_status(&id, "complete", "All tasks have completed", idx);
                self.allocs_changed(&node_id, idx);
                self.reconcile_drain(&node_id);
            }
            Timer::MigrateStop(id) => {
                let Some(a) = self.allocs.get(&id) else {
                    return;
                };
                let replace = !a
                    .alloc
                    .desired_transition
                    .migrate_disable_placement
                    .unwrap_or(false)
                    && !is_system(&a.alloc.job.job_type);
                let idx = self.next_index();
                self.stop_alloc(&id, "alloc is being migrated", replace, idx);
            }
            Timer::ReplacementHealthy(id) => {
                let Some(a) = self.allocs.get(&id) else {
                    return;
                };
                if a.alloc.client_status != "running" {
                    return;
                }
                let prev = a.alloc.previous_allocation.clone();
                if let Some(p) = self.allocs.get_mut(&prev) {
                    p.migrating = false;
                    let n = p.alloc.node_id.clone();
                    self.reconcile_drain(&n);
                }
            }
            Timer::Heartbeat(node_id, gen_) => self.on_heartbeat_expired(&node_id, gen_),
            Timer::DisconnectExpire(id) => self.on_disconnect_expire(&id),
            Timer::ReconnectSync(node_id, gen_) => self.on_reconnect_sync(&node_id, gen_),
            Timer::ReconnectReady(node_id, gen_) => self.on_reconnect_ready(&node_id, gen_),
            Timer::DrainDeadline(node_id, gen_) => self.on_drain_deadline(&node_id, gen_),
            Timer::DrainReconcile(node_id) => self.reconcile_drain(&node_id),
            Timer::Workload(id) => self.on_workload(&id),
            Timer::NodeGc(id, gen_) => {
                if self.nodes.get(&id).is_some_and(|r| r.hb_gen == gen_) {
                    self.gc_node(&id);
                }
            }
            Timer::Reregister(node_id) => {
                if self.nodes.contains_key(&node_id) {
                    return;
                }
                let Some(mut rec) = self.purged_alive.remove(&node_id) else {
                    return;
                };
                if !rec.heartbeating() {
                    return;
                }
                let idx = self.next_index();
                let now = self.now;
                rec.node.events.clear();
                rec.node.drain_strategy = None;
                rec.node.last_drain = None;
                rec.node.scheduling_eligibility = "eligible".into();
                rec.node.status = "ready".into();
                rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
                rec.node.create_index = idx;
                rec.used_slots = 0;
                rec.sched_key = None;
                self.insert_node(rec);
                self.push_node_event(&node_id, idx, "Cluster", "Node registered", None);
                self.node_changed(&node_id, idx, Some("NodeRegistration"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Processing in budget-limited slices gives the same result as one
    /// call: a slice that runs out of budget must not jump to the target.
    #[test]
    fn sliced_advance_matches_single_advance() {
        let run = |budget: usize| {
            let mut c = Cluster::new(
                ClusterConfig {
                    seed: Some(1),
                    ..ClusterConfig::default()
                },
                1,
            );
            for _ in 0..10 {
                c.register_node(&NodeSpec::default());
            }
            c.add_workload(
                "default",
                "default",
                600.0,
                5 * NANOS_PER_SEC,
                50 * NANOS_PER_SEC,
            );
            let target = 300 * NANOS_PER_SEC;
            while c.advance_to(target, budget) >= budget {}
            let running = c
                .allocs
                .values()
                .filter(|a| a.alloc.client_status == "running")
                .count();
            (running, c.allocs.len(), c.blocked())
        };
        let whole = run(usize::MAX);
        assert!(whole.0 >= 36, "slots busy: {whole:?}");
        assert_eq!(run(7), whole);
    }
}
