//! `make demo HOOK=1`: the lifecycle hook path. The pool names a terminating
//! lifecycle hook the operator puts itself (`mode: Managed`); then, while the
//! CI jobs run, the group replaces every VM on its own with an instance
//! refresh (in the extended moto, `tests/env/moto/asg_instance_refresh.py`).
//! Each VM the refresh replaces waits in `Terminating:Wait`; the operator
//! finds it, drains its client through a `LifecycleHook` retirement,
//! heartbeats the action meanwhile, completes it (CONTINUE) once the jobs are
//! done and purges the node. The next batch starts only when the last one
//! has left the group.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::RefreshPreferences;
use nomad_pool_operator::api::{RetireReason, RetirementPhase};
use serde_json::{Value, json};

use super::support::World;
use super::ui::Ui;
use super::view::{Events, Snapshot, settled};
use super::{
    FROM, Jobs, MAX_UNAVAILABLE, Mode, POOL, Watching, fail, fmt_secs, retired_list, sim_now_ns,
};

/// The hook the pool names.
pub const HOOK: &str = "drain-jobs";
/// Its heartbeat timeout: the operator heartbeats every third of it while
/// jobs run. The global timeout is 100 times as long (6000 s).
const HEARTBEAT_TIMEOUT: u32 = 60;
/// The pool's drain deadline, well within the global timeout less its
/// margin (5400 s), so no drain is cut short by it.
const DRAIN_DEADLINE: &str = "1h";
/// 60 % of the 10 VMs stay in service: the refresh replaces 4 at a time.
const MIN_HEALTHY_PERCENT: i32 = 60;
const REFRESH_TIMEOUT: Duration = Duration::from_secs(480);

pub fn pool_spec() -> Value {
    json!({
        "replicas": FROM,
        "disruption": {"maxUnavailable": MAX_UNAVAILABLE},
        "drain": {"deadline": DRAIN_DEADLINE},
        "provider": {"awsAutoScalingGroup": {"lifecycleHook": {
            "name": HOOK, "mode": "Managed", "heartbeatTimeoutSeconds": HEARTBEAT_TIMEOUT
        }}},
    })
}

pub fn applied_note(ui: &mut Ui) {
    ui.note(&format!(
        "Applied NomadClientPool \"{POOL}\" (replicas: {FROM}, maxUnavailable: {MAX_UNAVAILABLE}, drain deadline {DRAIN_DEADLINE})"
    ));
    ui.note(&format!(
        "  with lifecycleHook {{name: {HOOK}, mode: Managed, heartbeatTimeoutSeconds: {HEARTBEAT_TIMEOUT}}}: the operator puts the terminating hook on the group"
    ));
}

/// The pool's `LifecycleHook` condition says the hook is in place.
pub fn ready(s: &Snapshot) -> bool {
    (s.status.conditions.iter()).any(|c| c.type_ == "LifecycleHook" && c.status == "True")
}

/// The group's newest instance refresh, as DescribeInstanceRefreshes says.
pub struct RefreshView {
    pub status: String,
    pub percent: i32,
    pub to_update: i32,
}

pub async fn refresh_view(w: &World) -> Option<RefreshView> {
    let out = (w.asg.describe_instance_refreshes())
        .auto_scaling_group_name(&w.group)
        .send()
        .await
        .ok()?;
    let r = out.instance_refreshes().first()?;
    Some(RefreshView {
        status: r
            .status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        percent: r.percentage_complete().unwrap_or(0),
        to_update: r.instances_to_update().unwrap_or(0),
    })
}

pub fn refresh_line(r: &RefreshView) -> String {
    format!(
        "Instance refresh: {}, {}% done, {} VM(s) still to replace",
        r.status, r.percent, r.to_update
    )
}

/// Step 5 of `Mode::Refresh`: the group replaces every VM while the jobs
/// run, until the refresh succeeded and the pool settled; then the summary.
/// The number of violations.
pub async fn refresh(
    ui: &mut Ui,
    w: World,
    events: &mut Events,
    retired_nodes: &mut BTreeMap<String, (String, String)>,
) -> (World, u64) {
    let before = w.group().await;
    let original: BTreeSet<String> = before.instances.iter().map(|i| i.id.clone()).collect();
    let sim_start = sim_now_ns(&w).await;
    let started = Instant::now();
    let preferences = RefreshPreferences::builder()
        .min_healthy_percentage(MIN_HEALTHY_PERCENT)
        .instance_warmup(0)
        .build();
    let call = (w.asg.start_instance_refresh())
        .auto_scaling_group_name(&w.group)
        .preferences(preferences)
        .send()
        .await;
    if let Err(e) = call {
        let what = format!("starting the instance refresh: {e}");
        fail(ui, w, &what, None).await;
    }
    ui.note(&ui.bold(&format!(
        "Instance refresh of the group (aws autoscaling start-instance-refresh --auto-scaling-group-name {} --preferences MinHealthyPercentage={MIN_HEALTHY_PERCENT})",
        w.group
    )));
    ui.note(
        "  the group replaces its VMs 4 at a time; hook drain-jobs holds each in Terminating:Wait until the operator completes its action",
    );
    let mut watching = Watching {
        events,
        retiring: retired_nodes,
        mode: Mode::Refresh,
    };
    let failure = "the refresh did not finish with the pool settled";
    let (w, s) = (watching.until(ui, w, REFRESH_TIMEOUT, failure, |s| {
        refreshed(s) && !s.instances.iter().any(|i| original.contains(&i.id))
    }))
    .await;
    let took = started.elapsed();
    let sim_end = sim_now_ns(&w).await;
    let jobs = Jobs::count(&w, sim_start, sim_end, retired_nodes).await;
    summary(ui, &w, &s, (&before, &original), took).await;
    retired_list(ui, retired_nodes);
    group_line(ui, &s, (&before, &original));
    let nviol = jobs.report(ui, &w, "the refresh", s.jobs_queued).await;
    (w, nviol)
}

/// The refresh succeeded and the pool settled at its size again, every
/// replaced client retired.
fn refreshed(s: &Snapshot) -> bool {
    s.refresh.as_ref().is_some_and(|r| r.status == "Successful")
        && settled(s, FROM, i64::from(FROM))
}

/// The summary's first lines, counted from what the API server and moto
/// hold now.
async fn summary(
    ui: &mut Ui,
    w: &World,
    s: &Snapshot,
    (before, original): (&super::support::Group, &BTreeSet<String>),
    took: Duration,
) {
    let replaced = (original.iter())
        .filter(|id| !s.instances.iter().any(|i| i.id == **id))
        .count();
    ui.line("");
    ui.line(&ui.bold(&format!(
        "Settled: the instance refresh replaced {replaced} of {} VMs in {} while CI kept running (whole demo {}).",
        before.instances.len(),
        fmt_secs(took),
        fmt_secs(ui.start.elapsed())
    )));
    let hooks = (w.asg.describe_lifecycle_hooks())
        .auto_scaling_group_name(&w.group)
        .send()
        .await;
    let hook_line = match &hooks {
        Ok(out) => (out.lifecycle_hooks().iter())
            .map(|h| {
                format!(
                    "{} ({}, heartbeat timeout {}s, global timeout {}s, default result {})",
                    h.lifecycle_hook_name().unwrap_or("?"),
                    h.lifecycle_transition().unwrap_or("?"),
                    h.heartbeat_timeout().unwrap_or(0),
                    h.global_timeout().unwrap_or(0),
                    h.default_result().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(e) => format!("cannot describe the hooks: {e}"),
    };
    ui.line(&format!("  Hook:     {hook_line}, put by the operator"));
    let all = w.retirements(POOL).await;
    let held = (all.iter())
        .filter(|r| r.spec.reason == RetireReason::LifecycleHook)
        .filter(|r| r.phase() == RetirementPhase::Retired)
        .count();
    let other = all.len() - held;
    ui.line(&format!(
        "  Retired:  {held} clients with reason LifecycleHook ({other} other retirements): each VM held in Terminating:Wait, its client cordoned and drained, the lifecycle action completed (CONTINUE), the node purged:"
    ));
}

/// What the group holds now, against what it held before the refresh.
fn group_line(
    ui: &mut Ui,
    s: &Snapshot,
    (before, original): (&super::support::Group, &BTreeSet<String>),
) {
    let new_in_service = (s.instances.iter())
        .filter(|i| !original.contains(&i.id) && i.lifecycle == "InService")
        .count();
    let left = (s.instances.iter())
        .filter(|i| original.contains(&i.id))
        .count();
    ui.line(&format!(
        "  Group:    desired capacity {} -> {}; {} original VMs gone from the group, {left} left; {new_in_service} new VMs in service",
        before.desired,
        s.group_desired,
        original.len() - left,
    ));
}
