//! What the demo observes once a second (the pool, its retirements, the
//! group, the simulator's jobs), how it is drawn, and the Events of the pool
//! and its retirements.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use nomad_pool_operator::api::{
    NomadClientPoolStatus, NomadClientRetirement, NomadClientRetirementStatus,
};

use super::hook::{self, RefreshView};
use super::support::{self, World};
use super::ui::Ui;
use super::{Mode, POOL};

// ---------------------------------------------------------------------------
// What is observed once a second.

#[derive(Default)]
pub struct Snapshot {
    pub generation: Option<i64>,
    pub status: NomadClientPoolStatus,
    /// The pool's retirements not yet finished, by name.
    pub retirements: Vec<NomadClientRetirement>,
    pub group_desired: i32,
    pub instances: Vec<support::Instance>,
    pub jobs_running: u64,
    pub jobs_queued: u64,
    pub busy_clients: usize,
    pub clients: usize,
    /// `Mode::Refresh`: the group's newest instance refresh, once started.
    pub refresh: Option<RefreshView>,
}

pub async fn observe(w: &World, mode: Mode) -> Snapshot {
    let pool = w.pools().get_opt(POOL).await.ok().flatten();
    // Listed after the pool: whatever its status counts is in the list.
    let mut retirements = support::retirements::list(&w.retirements_api(), POOL)
        .await
        .unwrap_or_default();
    retirements.retain(|r| !r.phase().is_finished());
    retirements.sort_by_key(|r| r.metadata.name.clone());
    let g = w.group().await;
    let stats = w.sim.get("/sim/stats").await;
    let allocs = &stats["cluster"]["allocations"];
    let nodes = w.ready_nodes().await;
    let refresh = match mode {
        Mode::ScaleIn => None,
        Mode::Refresh => hook::refresh_view(w).await,
    };
    Snapshot {
        generation: pool.as_ref().and_then(|p| p.metadata.generation),
        status: pool.and_then(|p| p.status).unwrap_or_default(),
        retirements,
        group_desired: g.desired,
        instances: g.instances,
        jobs_running: allocs["by_client_status"]["running"].as_u64().unwrap_or(0)
            + allocs["by_client_status"]["pending"].as_u64().unwrap_or(0),
        jobs_queued: allocs["blocked_placements"].as_u64().unwrap_or(0),
        busy_clients: nodes
            .iter()
            .filter(|n| n["used_slots"].as_u64().unwrap_or(0) > 0)
            .count(),
        clients: nodes.len(),
        refresh,
    }
}

pub fn ready_reason(st: &NomadClientPoolStatus) -> (bool, String) {
    st.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status == "True", c.reason.clone()))
        .unwrap_or((false, "-".into()))
}

pub fn settled(s: &Snapshot, replicas: i32, retired: i64) -> bool {
    let st = &s.status;
    st.observed_generation.is_some()
        && st.observed_generation == s.generation
        && st.desired_nodes == Some(replicas)
        && s.retirements.is_empty()
        && st.retired_total >= retired
        && st.ready_nodes == replicas
        && ready_reason(st).0
        && s.group_desired == replicas
        && s.instances.len() == replicas as usize
}

pub fn lifecycle_summary(instances: &[support::Instance]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for i in instances {
        *by.entry(i.lifecycle.as_str()).or_default() += 1;
    }
    if by.len() == 1 && by.contains_key("InService") {
        return String::new();
    }
    let parts: Vec<String> = by.iter().map(|(k, v)| format!("{v} {k}")).collect();
    format!(" ({})", parts.join(", "))
}

/// The progress block and its change key.
/// `group` names the group and its size as the cloud calls them, e.g.
/// `Auto Scaling group NAME: desired capacity` (see `main::group_label`).
pub fn render(ui: &Ui, group: &str, s: &Snapshot) -> (Vec<String>, String) {
    let st = &s.status;
    let (ready, reason) = ready_reason(st);
    let status = if ready {
        ui.green(&reason)
    } else {
        ui.yellow(&reason)
    };
    let desired = st
        .desired_nodes
        .map(|d| d.to_string())
        .unwrap_or("-".into());
    let mut key = format!(
        "{desired} {} {} {} {} {reason} {} {}",
        st.ready_nodes,
        st.draining_nodes,
        st.terminating_nodes,
        st.retired_total,
        s.group_desired,
        s.instances.len()
    );
    let row = if st.observed_generation.is_none() {
        format!("{POOL:<4}  (no status yet: the operator is starting)")
    } else {
        format!(
            "{POOL:<4}  {desired:<7}  {:<5}  {:<8}  {:<11}  {:<7}  {status}",
            st.ready_nodes, st.draining_nodes, st.terminating_nodes, st.retired_total
        )
    };
    let mut lines = vec![
        ui.bold("NAME  DESIRED  READY  DRAINING  TERMINATING  RETIRED  STATUS"),
        row,
        format!(
            "{group} {}, {} instances{}",
            s.group_desired,
            s.instances.len(),
            lifecycle_summary(&s.instances),
        ),
        format!(
            "CI: {} jobs running, {} waiting for a slot",
            s.jobs_running, s.jobs_queued
        ),
    ];
    if let Some(refresh) = &s.refresh {
        let _ = write!(key, " {}:{}", refresh.status, refresh.percent);
        lines.push(hook::refresh_line(refresh));
        return retirements_held(ui, s, lines, key);
    }
    if !s.retirements.is_empty() {
        lines.push(ui.bold(&format!(
            "  {:<27}{:<17}{:<12}{:<7}WAITS FOR",
            "RETIREMENT", "NODE", "PHASE", "ALLOCS"
        )));
    }
    for r in &s.retirements {
        let st = r.status.clone().unwrap_or_default();
        let name = r.metadata.name.clone().unwrap_or_default();
        let phase = r.phase().as_str();
        let _ = write!(key, " {name}:{phase}:{}", st.allocations_left);
        lines.push(format!(
            "  {name:<27}{:<17}{phase:<12}{:<7}{}",
            st.node_name.as_deref().unwrap_or("-"),
            st.allocations_left,
            waits_for(ui, &st),
        ));
    }
    (lines, key)
}

/// The retirements of `Mode::Refresh`, each with its reason and the state
/// the group shows its VM in (`Terminating:Wait` while the hook holds it).
fn retirements_held(
    ui: &Ui,
    s: &Snapshot,
    mut lines: Vec<String>,
    mut key: String,
) -> (Vec<String>, String) {
    if !s.retirements.is_empty() {
        lines.push(ui.bold(&format!(
            "  {:<17}{:<15}{:<12}{:<21}{:<7}WAITS FOR",
            "NODE", "REASON", "PHASE", "VM", "ALLOCS"
        )));
    }
    for r in &s.retirements {
        let st = r.status.clone().unwrap_or_default();
        let phase = r.phase().as_str();
        let vm = (st.instance_id.as_deref())
            .and_then(|id| s.instances.iter().find(|i| i.id == id))
            .map_or("gone", |i| i.lifecycle.as_str());
        let node = st.node_name.as_deref().unwrap_or("-");
        let _ = write!(key, " {node}:{phase}:{vm}:{}", st.allocations_left);
        lines.push(format!(
            "  {node:<17}{:<15}{phase:<12}{vm:<21}{:<7}{}",
            r.spec.reason.as_str(),
            st.allocations_left,
            waits_for(ui, &st),
        ));
    }
    (lines, key)
}

/// The jobs still running on the client, or else the retirement's message.
fn waits_for(ui: &Ui, st: &NomadClientRetirementStatus) -> String {
    let jobs: BTreeSet<&str> = st
        .blocking_allocations
        .iter()
        .map(|a| a.job_id.as_str())
        .collect();
    if jobs.is_empty() {
        return st.message.as_deref().map(|m| ui.dim(m)).unwrap_or_default();
    }
    let mut out = jobs.into_iter().collect::<Vec<_>>().join(", ");
    let more = (st.allocations_left as usize).saturating_sub(st.blocking_allocations.len());
    if more > 0 {
        let _ = write!(out, " +{more}");
    }
    out
}

/// The Events of the pool and its retirements, printed once each (again
/// when it repeats).
pub struct Events {
    pub api: Api<Event>,
    pub seen: HashMap<String, i32>,
}

impl Events {
    pub async fn poll(&mut self, ui: &mut Ui) {
        let Ok(list) = self.api.list(&ListParams::default()).await else {
            return;
        };
        let mut fresh: Vec<(jiff::Timestamp, Event, i32)> = vec![];
        for ev in list.items {
            let kind = ev.regarding.as_ref().and_then(|r| r.kind.as_deref());
            if !matches!(kind, Some("NomadClientPool" | "NomadClientRetirement")) {
                continue;
            }
            let uid = ev.metadata.uid.clone().unwrap_or_default();
            let count = ev.series.as_ref().map(|s| s.count).unwrap_or(1);
            if self.seen.get(&uid).is_some_and(|c| *c >= count) {
                continue;
            }
            self.seen.insert(uid, count);
            let at = ev
                .series
                .as_ref()
                .map(|s| s.last_observed_time.0)
                .or(ev.event_time.as_ref().map(|t| t.0))
                .unwrap_or_else(jiff::Timestamp::now);
            fresh.push((at, ev, count));
        }
        fresh.sort_by_key(|(at, _, _)| *at);
        for (_, ev, count) in fresh {
            let warning = ev.type_.as_deref() == Some("Warning");
            let reason = format!("{:<18}", ev.reason.clone().unwrap_or_default());
            let reason = if warning {
                ui.yellow(&reason)
            } else {
                ui.green(&reason)
            };
            let times = if count > 1 {
                ui.dim(&format!(" (x{count})"))
            } else {
                String::new()
            };
            let kind = if warning { "Warning" } else { "event  " };
            ui.note(&format!(
                "{kind} {reason} {}{times}",
                ev.note.unwrap_or_default()
            ));
        }
    }
}
