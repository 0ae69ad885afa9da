//! What the drainer (`crate::drainer`) needs from the cluster: drain
//! generations (so that a superseded drain's timers do nothing), its
//! timers, migration bookkeeping, and the index bump, node change and node
//! event of its writes; and the drain timestamps as Nomad writes them.

use crate::clock::{rfc3339, rfc3339_secs};
use crate::wire::StrMap;

use super::*;

/// Drain-related timestamps.
/// `ForceDeadline`: a zero `time.Time` when `Deadline <= 0`, which Nomad's
/// HTTP encoder (go-msgpack's JSON handle, time as a builtin) writes as
/// `null`, not Go `encoding/json`'s `"0001-01-01T00:00:00Z"`.
pub fn force_deadline(now: i64, deadline: i64) -> Option<String> {
    if deadline > 0 {
        Some(rfc3339(now + deadline))
    } else {
        None
    }
}

pub fn drain_ts(now: i64) -> String {
    rfc3339_secs(now)
}

impl Cluster {
    pub(crate) fn drain_gen_bump(&mut self, node_id: &str) -> u64 {
        let rec = self.nodes.get_mut(node_id).unwrap();
        rec.drain_gen += 1;
        rec.drain_gen
    }

    pub(crate) fn drain_gen(&self, node_id: &str) -> u64 {
        self.nodes.get(node_id).map(|r| r.drain_gen).unwrap_or(0)
    }

    pub(crate) fn schedule_timer_deadline(&mut self, node_id: &str, at: i64, gen_: u64) {
        self.timer(at, Timer::DrainDeadline(node_id.into(), gen_));
    }

    pub(crate) fn schedule_reconcile(&mut self, node_id: &str) {
        let now = self.now;
        self.timer(now, Timer::DrainReconcile(node_id.into()));
    }

    pub(crate) fn schedule_migrate_stop(&mut self, alloc_id: &str) {
        let now = self.now;
        self.timer(
            now + MIGRATE_STOP_DELAY_NS,
            Timer::MigrateStop(alloc_id.into()),
        );
    }

    pub(crate) fn set_migrating(&mut self, alloc_id: &str, v: bool) {
        if let Some(a) = self.allocs.get_mut(alloc_id) {
            a.migrating = v;
        }
    }

    pub(crate) fn job_in_flight(&self, job_id: &str) -> u32 {
        self.job_allocs
            .get(job_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocs.get(id))
            .filter(|a| a.migrating)
            .count() as u32
    }

    pub(crate) fn bump(&mut self) -> u64 {
        self.next_index()
    }

    pub(crate) fn emit_node_change(&mut self, node_id: &str, idx: u64, ev: Option<&'static str>) {
        self.node_changed(node_id, idx, ev);
    }

    pub(crate) fn add_node_event(
        &mut self,
        node_id: &str,
        idx: u64,
        subsystem: &str,
        msg: &str,
        details: Option<StrMap>,
    ) {
        self.push_node_event(node_id, idx, subsystem, msg, details);
    }

    pub(crate) fn place_system(&mut self, node_id: &str) {
        self.place_system_jobs(node_id);
    }
}
