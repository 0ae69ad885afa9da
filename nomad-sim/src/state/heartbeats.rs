//! Client liveness: the VM killed or restarted, network partitions and
//! their healing, the heartbeat TTL running out (`down` or `disconnected`),
//! `unknown` allocations expiring, and the reconnect sequence
//! (`initializing`, allocation sync, `ready`). Separate from `nodes`
//! because this is the part of Nomad the operator's safety depends on:
//! when the servers notice that a client is gone, and what they do then.

use crate::clock::NANOS_PER_SEC;

use super::*;

impl Cluster {
    /// The VM is gone: the client stops heartbeating and its tasks die with
    /// it. The servers notice only after the heartbeat TTL plus grace.
    pub fn kill_node(&mut self, node_id: &str) -> Result<(), StateError> {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let now = self.now;
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        if !rec.alive {
            return Ok(());
        }
        rec.alive = false;
        rec.hb_gen += 1;
        let gen_ = rec.hb_gen;
        let down = rec.node.status == "down";
        self.record_violation(node_id, "killed");
        if !down {
            self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
        }
        Ok(())
    }

    /// The client comes back (VM restarted, or agent restarted). It keeps its
    /// node ID, drain strategy, eligibility and `LastDrain`. A client that
    /// is still cut off from the servers (`/sim/nodes/:id/disconnect`) is
    /// not heard from until it reconnects.
    pub fn restart_node(&mut self, node_id: &str) -> Result<(), StateError> {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let now = self.now;
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        rec.alive = true;
        rec.hb_gen += 1;
        let gen_ = rec.hb_gen;
        if !rec.connected {
            if rec.node.status != "down" {
                self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
            }
            return Ok(());
        }
        self.heartbeat_resumed(node_id, true);
        Ok(())
    }

    /// A network partition: the VM and its tasks keep running, the client
    /// stops heartbeating and cannot report allocation updates. The servers
    /// notice after the heartbeat TTL plus grace (`nomad/heartbeat.go`).
    pub fn disconnect_node(&mut self, node_id: &str) -> Result<(), StateError> {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let now = self.now;
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        if !rec.connected {
            return Ok(());
        }
        rec.connected = false;
        if !rec.alive {
            return Ok(()); // not heartbeating anyway; its timer is running
        }
        rec.hb_gen += 1;
        let gen_ = rec.hb_gen;
        if rec.node.status != "down" {
            self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
        }
        Ok(())
    }

    /// The partition heals: heartbeats get through again.
    pub fn reconnect_node(&mut self, node_id: &str) -> Result<(), StateError> {
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        if rec.connected {
            return Ok(());
        }
        rec.connected = true;
        if !rec.alive {
            return Ok(()); // the VM is gone: nothing heartbeats
        }
        rec.hb_gen += 1;
        self.heartbeat_resumed(node_id, false);
        Ok(())
    }

    /// The first heartbeat (or, after a restart, registration) of a client
    /// the servers had not heard from, following `Node.UpdateStatus`
    /// (`nomad/node_endpoint.go`): `down` becomes `ready` with a node event;
    /// `disconnected` becomes `initializing`, then the client syncs its
    /// allocations (`unknown` ones report `running` again) and its next
    /// heartbeat makes it `ready`.
    fn heartbeat_resumed(&mut self, node_id: &str, registered: bool) {
        let now = self.now;
        let ttl = self.cfg.heartbeat_ttl_ns;
        let rec = &self.nodes[node_id];
        let gen_ = rec.hb_gen;
        let status = rec.node.status.clone();
        let has_unknown = self
            .node_allocs(node_id)
            .any(|a| a.alloc.client_status == "unknown");
        match status.as_str() {
            "down" => {
                let idx = self.next_index();
                let rec = self.nodes.get_mut(node_id).unwrap();
                rec.node.status = "ready".into();
                rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
                rec.node.last_missed_heartbeat_index = 0;
                // Register (a restarted agent) writes "Node re-registered"
                // (state_store.go); a heartbeat from a down node writes
                // NodeHeartbeatEventReregistered (node_endpoint.go).
                let (msg, ev) = if registered {
                    ("Node re-registered", "NodeRegistration")
                } else {
                    ("Node reregistered by heartbeat", "NodeStreamEvent")
                };
                self.push_node_event(node_id, idx, "Cluster", msg, None);
                self.node_changed(node_id, idx, Some(ev));
                self.place_system_jobs(node_id);
            }
            "disconnected" => {
                let idx = self.next_index();
                let rec = self.nodes.get_mut(node_id).unwrap();
                rec.node.status = "initializing".into();
                rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
                self.node_changed(node_id, idx, Some("NodeStreamEvent"));
                self.timer(
                    now + CLIENT_SYNC_DELAY_NS,
                    Timer::ReconnectSync(node_id.into(), gen_),
                );
                self.timer(now + ttl, Timer::ReconnectReady(node_id.into(), gen_));
                return;
            }
            _ => {}
        }
        if has_unknown {
            self.timer(
                now + CLIENT_SYNC_DELAY_NS,
                Timer::ReconnectSync(node_id.into(), gen_),
            );
        } else {
            self.rearm_client(node_id);
        }
    }

    /// Re-arms the client-side progress of allocations that was frozen while
    /// the client could not report: starts, finishes, and stops (which take
    /// the job's kill_timeout from now).
    fn rearm_client(&mut self, node_id: &str) {
        let now = self.now;
        let ids: Vec<String> = self
            .node_allocs(node_id)
            .map(|a| a.alloc.id.clone())
            .collect();
        for id in ids {
            let a = &self.allocs[&id];
            if a.alloc.client_terminal() {
                continue;
            }
            if a.alloc.desired_status != "run" {
                let kill = a.alloc.job.kill_timeout_ns;
                self.timer(now + kill, Timer::AllocStopped(id));
            } else if a.alloc.client_status == "pending" {
                self.timer(now + START_DELAY_NS, Timer::AllocStart(id));
            } else if let Some(f) = a.finish_at {
                self.timer(f.max(now), Timer::AllocFinish(id));
            }
        }
    }

    /// The client's allocation sync after a reconnect (`Node.UpdateAlloc`):
    /// its `unknown` allocations report `running` again; then the reconnect
    /// evaluation keeps each original and stops its replacements
    /// (`reconcile_cluster.go` `computeReconnecting`: the default
    /// `best_score` picker keeps the original when neither has a better
    /// score, which is always the case here).
    pub(super) fn on_reconnect_sync(&mut self, node_id: &str, gen_: u64) {
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        if rec.hb_gen != gen_ || !rec.heartbeating() {
            return;
        }
        let unknown: Vec<String> = self
            .node_allocs(node_id)
            .filter(|a| a.alloc.client_status == "unknown")
            .map(|a| a.alloc.id.clone())
            .collect();
        if !unknown.is_empty() {
            let idx = self.next_index();
            for id in &unknown {
                let a = self.allocs.get_mut(id).unwrap();
                a.unknown_since = None;
                self.set_client_status(id, "running", "Tasks are running", idx);
            }
            self.allocs_changed(node_id, idx);
            let mut stop: Vec<String> = Vec::new();
            for id in &unknown {
                let a = &self.allocs[id];
                if a.alloc.desired_status != "run" {
                    continue; // the client stops it (rearm_client below)
                }
                let mut next = a.alloc.next_allocation.clone();
                while let Some(r) = self.allocs.get(&next) {
                    if r.alloc.desired_status == "run" {
                        stop.push(r.alloc.id.clone());
                    }
                    next = r.alloc.next_allocation.clone();
                }
            }
            if !stop.is_empty() {
                let idx = self.next_index();
                for r in stop {
                    self.stop_alloc(
                        &r,
                        "alloc not needed due to disconnected client reconnect",
                        false,
                        idx,
                    );
                }
            }
        }
        self.rearm_client(node_id);
    }

    /// The client's next heartbeat after its allocation sync: `initializing`
    /// becomes `ready` (no node event; `LastMissedHeartbeatIndex` is reset).
    pub(super) fn on_reconnect_ready(&mut self, node_id: &str, gen_: u64) {
        let now = self.now;
        let Some(rec) = self.nodes.get_mut(node_id) else {
            return;
        };
        if rec.hb_gen != gen_ || !rec.heartbeating() || rec.node.status != "initializing" {
            return;
        }
        rec.node.status = "ready".into();
        rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
        rec.node.last_missed_heartbeat_index = 0;
        let idx = self.next_index();
        self.node_changed(node_id, idx, Some("NodeStreamEvent"));
        self.place_system_jobs(node_id);
        self.reconcile_drain(node_id);
    }

    /// The heartbeat TTL plus grace ran out (`heartbeat.go`
    /// `invalidateHeartbeat` and `disconnectState`): the node becomes
    /// `disconnected` if one of its allocations tolerates a disconnect
    /// (`disconnect.lost_after`), wants to run and has not expired, else
    /// `down`. Both write the node event `Node heartbeat missed` (subsystem
    /// `Cluster`). A disconnected node's heartbeat timer is reset, so this
    /// repeats (with a new event each time) until it goes down.
    pub(super) fn on_heartbeat_expired(&mut self, node_id: &str, gen_: u64) {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        if rec.heartbeating() || rec.hb_gen != gen_ || rec.node.status == "down" {
            return;
        }
        let now = self.now;
        let was = rec.node.status.clone();
        let pending_reconnect = was != "initializing"
            && self.node_allocs(node_id).any(|a| {
                a.alloc.job.lost_after_ns.is_some()
                    && a.alloc.desired_status == "run"
                    && !a.expired(now)
            });
        let idx = self.next_index();
        let rec = self.nodes.get_mut(node_id).unwrap();
        let responsive = !matches!(was.as_str(), "down" | "disconnected");
        if responsive {
            rec.node.last_missed_heartbeat_index = idx;
        }
        rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
        if pending_reconnect {
            rec.node.status = "disconnected".into();
            self.push_node_event(node_id, idx, "Cluster", "Node heartbeat missed", None);
            self.node_changed(node_id, idx, Some("NodeStreamEvent"));
            if was != "disconnected" {
                self.disconnect_allocs(node_id);
            }
            self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
            self.reconcile_drain(node_id);
            return;
        }
        rec.node.status = "down".into();
        self.push_node_event(node_id, idx, "Cluster", "Node heartbeat missed", None);
        self.node_changed(node_id, idx, Some("NodeStreamEvent"));
        self.lose_allocs(node_id, "alloc is lost since its node is down");
        self.reconcile_drain(node_id);
        // Automatic node GC after node_gc_threshold (24h) if still down.
        let at = self.now + NODE_GC_THRESHOLD_NS;
        self.timer(at, Timer::NodeGc(node_id.to_string(), gen_));
    }

    /// The scheduler's evaluation for a node that became `disconnected`
    /// (`reconciler/filters.go` `filterByTainted`, `computeDisconnecting`):
    /// running allocations that tolerate a disconnect become `unknown`
    /// (`alloc is unknown since its node is disconnected`) and are replaced
    /// elsewhere; pending ones and those without a tolerance are `lost` and
    /// replaced. Allocations already told to stop are left alone (the
    /// reconciler skips server-terminal allocations).
    fn disconnect_allocs(&mut self, node_id: &str) {
        let now = self.now;
        let ids: Vec<(String, bool)> = self
            .node_allocs(node_id)
            .filter(|a| !a.alloc.client_terminal() && a.alloc.desired_status == "run")
            .map(|a| {
                let tolerant =
                    a.alloc.job.lost_after_ns.is_some() && a.alloc.client_status == "running";
                (a.alloc.id.clone(), tolerant)
            })
            .collect();
        if ids.is_empty() {
            return;
        }
        let idx = self.next_index();
        for (id, tolerant) in ids {
            let a = &self.allocs[&id];
            let replace = !is_system(&a.alloc.job.job_type);
            let placement = Placement {
                job: a.alloc.job.clone(),
                index_in_job: 0,
                previous: Some(id.clone()),
                duration_ns: a.duration_ns,
                node: None,
            };
            if tolerant {
                let lost_after = a.alloc.job.lost_after_ns.unwrap_or(0);
                self.set_client_status(
                    &id,
                    "unknown",
                    "alloc is unknown since its node is disconnected",
                    idx,
                );
                self.allocs.get_mut(&id).unwrap().unknown_since = Some(now);
                self.timer(now + lost_after, Timer::DisconnectExpire(id.clone()));
            } else {
                self.set_client_status(&id, "lost", "", idx);
                let a = self.allocs.get_mut(&id).unwrap();
                a.alloc.desired_status = "stop".into();
                a.alloc.desired_description = "alloc is lost since its node is down".into();
            }
            if replace {
                self.enqueue(placement);
            }
        }
        self.allocs_changed(node_id, idx);
    }

    /// `disconnect.lost_after` ran out for an `unknown` allocation that
    /// still wants to run: the follow-up evaluation marks it `lost`
    /// (its replacement was placed at the disconnect).
    pub(super) fn on_disconnect_expire(&mut self, id: &str) {
        let now = self.now;
        let Some(a) = self.allocs.get(id) else {
            return;
        };
        if a.alloc.client_status != "unknown" || a.alloc.desired_status != "run" || !a.expired(now)
        {
            return;
        }
        let node_id = a.alloc.node_id.clone();
        let replace = !is_system(&a.alloc.job.job_type) && !self.has_live_replacement(id);
        let idx = self.next_index();
        self.set_client_status(id, "lost", "", idx);
        let a = self.allocs.get_mut(id).unwrap();
        a.alloc.desired_status = "stop".into();
        a.alloc.desired_description = "alloc is lost since its node is down".into();
        if replace {
            let p = Placement {
                job: a.alloc.job.clone(),
                index_in_job: 0,
                previous: Some(id.to_string()),
                duration_ns: a.duration_ns,
                node: None,
            };
            self.enqueue(p);
        }
        self.allocs_changed(&node_id, idx);
        self.reconcile_drain(&node_id);
    }
}
