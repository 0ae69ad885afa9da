//! `make demo`: the operator's main job end to end, on local defaults.
//!
//! A local control plane (etcd + kube-apiserver) and moto (the AWS emulator)
//! from `tests/env/up.sh`; an Auto Scaling group of 10 VMs in moto, each with
//! a simulated Nomad client (nomad-sim) running CI batch jobs; the operator
//! binary; a `NomadClientPool` applied with `replicas: 10` and then lowered to
//! 6 while the jobs run. Progress is shown live until the pool settles, then a
//! summary. Exits non-zero if the simulator saw a VM go while a job still ran
//! on it, or if the pool does not settle.
//!
//! With the argument `gce` (`make demo PROVIDER=gce`) the group is a
//! managed instance group of 10 VMs in gce-sim (the Compute API fake, in
//! this process) instead, which the operator reaches with a service-account
//! key as it would Compute; everything else is the same.
//!
//! With the argument `hook` (`make demo HOOK=1`, AWS only) the pool names a
//! terminating lifecycle hook it manages, and instead of the scale-in the
//! group replaces every VM itself with an instance refresh: each replaced VM
//! waits in `Terminating:Wait` while the operator drains its client through
//! a `LifecycleHook` retirement, then the operator completes its action
//! (`hook.rs`).
//!
//! Needs the operator binary built first (`make demo` does it):
//! `cargo build -p nomad-pool-operator --bins && cargo run --example demo [-- aws|gce] [hook]`.
//! `NPO_OPERATOR_BIN` overrides where it is looked for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::Api;
use serde_json::json;
use tokio::sync::Notify;

mod hook;
mod jobs;
mod ui;
mod view;

use jobs::Jobs;
use npo_testkit as support;
use support::{Cloud, World, WorldOptions, env_var, operator_bin};
use ui::Ui;
use view::{Events, Snapshot, observe, render, settled};

const POOL: &str = "ci";
const FROM: i32 = 10;
const TO: i32 = 6;
const MAX_UNAVAILABLE: i32 = 2;
/// Simulated seconds per real second.
const TIME_SCALE: f64 = 2.0;
/// CI workload: one batch job every 60/RATE simulated seconds, each running
/// a uniform random 20–90 simulated seconds (about 22 running at once, out of
/// 4 slots on each of the 10 clients).
const JOBS_PER_MIN: f64 = 24.0;
const JOB_MIN_S: f64 = 20.0;
const JOB_MAX_S: f64 = 90.0;
/// Start the scale-in once this many clients run a job and this many jobs run.
const BUSY_CLIENTS: usize = 8;
const BUSY_JOBS: u64 = 16;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Without a terminal, an unchanged progress block is repeated this often.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static CTRL_C: Notify = Notify::const_new();

/// The first Ctrl-C asks the demo to stop the operator and the simulator
/// and exit; a second one exits at once.
fn handle_ctrl_c() {
    tokio::spawn(async {
        let _ = tokio::signal::ctrl_c().await;
        INTERRUPTED.store(true, Ordering::SeqCst);
        CTRL_C.notify_waiters();
        let _ = tokio::signal::ctrl_c().await;
        std::process::exit(130);
    });
}

/// Sleep for `d`; false if Ctrl-C was pressed (now or earlier).
async fn pause(d: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = CTRL_C.notified() => {}
    }
    !INTERRUPTED.load(Ordering::SeqCst)
}

enum Outcome {
    Done(Snapshot),
    TimedOut(Snapshot),
    Interrupted,
}

/// What a watch keeps between looks: Events printed, clients seen retiring
/// (node ID -> name, VM), and what is shown.
struct Watching<'a> {
    events: &'a mut Events,
    retiring: &'a mut BTreeMap<String, (String, String)>,
    mode: Mode,
}

impl Watching<'_> {
    /// Show progress until `done` holds and return the snapshot that
    /// showed it; otherwise end the demo: `failure` (what did not happen)
    /// after `timeout`, or at Ctrl-C.
    async fn until(
        &mut self,
        ui: &mut Ui,
        w: World,
        timeout: Duration,
        failure: &str,
        done: impl Fn(&Snapshot) -> bool,
    ) -> (World, Snapshot) {
        match self.watch(ui, &w, timeout, done).await {
            Outcome::Done(s) => (w, s),
            Outcome::TimedOut(s) => {
                let what = format!("{failure} within {}", fmt_secs(timeout));
                fail(ui, w, &what, Some(&s)).await
            }
            Outcome::Interrupted => interrupted(ui, w).await,
        }
    }

    /// Show progress once a second until `done` holds.
    async fn watch(
        &mut self,
        ui: &mut Ui,
        w: &World,
        timeout: Duration,
        done: impl Fn(&Snapshot) -> bool,
    ) -> Outcome {
        let start = Instant::now();
        loop {
            let s = observe(w, self.mode).await;
            self.events.poll(ui).await;
            for st in s.retirements.iter().filter_map(|r| r.status.as_ref()) {
                if let (Some(id), Some(name)) = (&st.node_id, &st.node_name) {
                    let instance = st.instance_id.clone().unwrap_or("-".into());
                    self.retiring.insert(id.clone(), (name.clone(), instance));
                }
            }
            let (lines, key) = render(ui, &group_label(w), &s);
            ui.live(lines, key);
            if done(&s) {
                ui.freeze();
                return Outcome::Done(s);
            }
            if start.elapsed() > timeout {
                ui.freeze();
                return Outcome::TimedOut(s);
            }
            if !pause(Duration::from_secs(1)).await {
                ui.freeze();
                return Outcome::Interrupted;
            }
        }
    }
}

pub async fn sim_now_ns(w: &World) -> i64 {
    w.sim.get("/sim/time").await["now_ns"].as_i64().unwrap_or(0)
}

/// The group and its size in the cloud's own words.
fn group_label(w: &World) -> String {
    match w.cloud {
        Cloud::Aws => format!("Auto Scaling group {}: desired capacity", w.group),
        Cloud::Gce => format!("Managed instance group {}: targetSize", w.group),
    }
}

pub fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

async fn stop(ui: &mut Ui, mut w: World) {
    if let Some(op) = w.operator.take() {
        op.kill().await;
    }
    let World {
        bridge, sim, gce, ..
    } = w;
    drop(bridge);
    sim.sim.shutdown().await;
    if let Some(gce) = gce {
        gce.sim.shutdown().await;
    }
    ui.line("Stopped the operator and the simulators. The control plane and moto keep running;");
    ui.line(&format!("stop them with: {}", ui.bold("make env-down")));
}

pub async fn interrupted(ui: &mut Ui, w: World) -> ! {
    // On a terminal, the echoed ^C is on the current line.
    ui.line(if ui.tty {
        "\nInterrupted."
    } else {
        "Interrupted."
    });
    stop(ui, w).await;
    std::process::exit(130);
}

pub async fn fail(ui: &mut Ui, w: World, what: &str, s: Option<&Snapshot>) -> ! {
    ui.line("");
    ui.line(&ui.red(&format!("FAILED: {what}")));
    if let Some(s) = s {
        ui.line("Last status:");
        ui.line(&serde_json::to_string_pretty(&s.status).unwrap_or_default());
    }
    if let Some(op) = &w.operator {
        ui.line(&format!("Operator log ({}), last lines:", op.log.display()));
        ui.line(&op.log_tail());
    }
    stop(ui, w).await;
    std::process::exit(1);
}

/// What the demo shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The pool lowered from `FROM` to `TO`: the operator's own scale-in.
    ScaleIn,
    /// The group replaces every VM itself (an instance refresh) while the
    /// pool's lifecycle hook holds each one until its client is drained.
    Refresh,
}

/// `[aws|gce] [hook]`, in any order; exits with a usage line otherwise.
fn parse_args() -> (Cloud, Mode) {
    let (mut cloud, mut mode) = (Cloud::Aws, Mode::ScaleIn);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "aws" => cloud = Cloud::Aws,
            "gce" => cloud = Cloud::Gce,
            "hook" => mode = Mode::Refresh,
            other => {
                eprintln!(
                    "Unknown argument {other:?}: the demo runs on aws (the default) or gce, and takes `hook` to show a lifecycle hook (AWS only)."
                );
                std::process::exit(2);
            }
        }
    }
    if cloud == Cloud::Gce && mode == Mode::Refresh {
        eprintln!(
            "Lifecycle hooks are an AWS Auto Scaling feature: run the hook demo on aws (make demo HOOK=1)."
        );
        std::process::exit(2);
    }
    (cloud, mode)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    handle_ctrl_c();
    let (cloud, mode) = parse_args();
    let mut ui = Ui::new();
    let bin = operator_bin();
    if !bin.is_file() {
        eprintln!(
            "The operator binary is missing: {}\nBuild it first: cargo build -p nomad-pool-operator --bins (or run `make demo`).",
            bin.display()
        );
        std::process::exit(2);
    }

    ui.line(&ui.bold(&match mode {
        Mode::ScaleIn => format!(
            "nomad-pool-operator demo: scale a Nomad client pool from {FROM} to {TO} VMs while CI jobs run"
        ),
        Mode::Refresh => format!(
            "nomad-pool-operator demo: an instance refresh replaces all {FROM} VMs of a Nomad client pool while CI jobs run; a lifecycle hook holds each until its jobs are done"
        ),
    }));
    ui.line("");
    let w = start_world(&mut ui, cloud).await;
    let w = warm_up(&mut ui, w).await;
    let (w, mut events, log) = start_pool(&mut ui, w, &bin, mode).await;
    let mut retired_nodes = BTreeMap::new();
    let (w, nviol) = match mode {
        Mode::ScaleIn => scale_in(&mut ui, w, &mut events, &mut retired_nodes).await,
        Mode::Refresh => hook::refresh(&mut ui, w, &mut events, &mut retired_nodes).await,
    };
    look_around(&mut ui, &w, &log);
    stop(&mut ui, w).await;
    if nviol != 0 {
        std::process::exit(1);
    }
}

/// Steps 1 and 2: the control plane and moto (`make demo` started them
/// already), and the world: namespace, simulator, group, clients registered.
async fn start_world(ui: &mut Ui, cloud: Cloud) -> World {
    ui.note("Starting (or reusing) the local control plane (etcd + kube-apiserver) and moto ...");
    ui.note(&format!(
        "  kube-apiserver {}, moto {}  (tests/env/README.md)",
        support::env()
            .get("NPO_KUBE_VERSION")
            .map(String::as_str)
            .unwrap_or("?"),
        support::env()
            .get("NPO_MOTO_VERSION")
            .map(String::as_str)
            .unwrap_or("?")
    ));
    let group_kind = match cloud {
        Cloud::Aws => "a moto Auto Scaling group",
        Cloud::Gce => "a gce-sim managed instance group",
    };
    ui.note(&format!(
        "Creating {FROM} VMs in {group_kind}, each a simulated Nomad client (node pool \"ci\") ..."
    ));
    let w = World::new(
        "demo",
        WorldOptions {
            size: FROM,
            min: 0,
            cloud,
            ..Default::default()
        },
    )
    .await;
    w.create_provider_secret().await;
    ui.note(&format!(
        "  group {}, {FROM} clients ready (4 job slots each), namespace {}",
        w.group, w.namespace
    ));
    w
}

/// Step 3: the CI workload, until most clients run jobs.
async fn warm_up(ui: &mut Ui, w: World) -> World {
    w.sim.post("/sim/time", json!({"scale": TIME_SCALE})).await;
    w.sim
        .post(
            "/sim/workload",
            json!({"node_pool": "ci", "rate_per_minute": JOBS_PER_MIN,
                   "duration_min_s": JOB_MIN_S, "duration_max_s": JOB_MAX_S}),
        )
        .await;
    ui.note(&format!(
        "CI workload: a batch job every {:.1} s, each running {JOB_MIN_S:.0}-{JOB_MAX_S:.0} s (simulated time, {TIME_SCALE:.0}x faster than real time)",
        60.0 / JOBS_PER_MIN
    ));
    let warm = Instant::now();
    loop {
        let s = observe(&w, Mode::ScaleIn).await;
        let line = format!(
            "warming up: {} of {} clients running jobs, {} jobs running",
            s.busy_clients, s.clients, s.jobs_running
        );
        ui.live(vec![line], s.busy_clients.to_string());
        if s.busy_clients >= BUSY_CLIENTS && s.jobs_running >= BUSY_JOBS {
            ui.freeze();
            return w;
        }
        if warm.elapsed() > Duration::from_secs(120) {
            fail(ui, w, "the CI workload did not start", Some(&s)).await;
        }
        if !pause(Duration::from_secs(1)).await {
            ui.freeze();
            interrupted(ui, w).await;
        }
    }
}

/// Step 4: the operator, and the pool at its current size (with its
/// lifecycle hook in `Mode::Refresh`), until it is Ready.
async fn start_pool(
    ui: &mut Ui,
    mut w: World,
    bin: &std::path::Path,
    mode: Mode,
) -> (World, Events, std::path::PathBuf) {
    w.start_operator().await;
    let log = w
        .operator
        .as_ref()
        .map(|o| o.log.clone())
        .unwrap_or_default();
    ui.note(&format!(
        "Operator started: {} run --namespace {}",
        bin.file_name().unwrap_or_default().to_string_lossy(),
        w.namespace
    ));
    ui.note(&format!("  log: {}", log.display()));
    let spec = match mode {
        Mode::ScaleIn => {
            json!({"replicas": FROM, "disruption": {"maxUnavailable": MAX_UNAVAILABLE}})
        }
        Mode::Refresh => hook::pool_spec(),
    };
    w.apply_pool(&w.pool_manifest(POOL, spec)).await;
    match mode {
        Mode::ScaleIn => ui.note(&format!(
            "Applied NomadClientPool \"{POOL}\" (replicas: {FROM}, maxUnavailable: {MAX_UNAVAILABLE}, drain without deadline)"
        )),
        Mode::Refresh => hook::applied_note(ui),
    }
    let mut events = Events {
        api: Api::namespaced(w.client.clone(), &w.namespace),
        seen: HashMap::new(),
    };
    let mut retired_nodes = BTreeMap::new();
    let ready = |s: &Snapshot| settled(s, FROM, 0) && (mode == Mode::ScaleIn || hook::ready(s));
    let mut watching = Watching {
        events: &mut events,
        retiring: &mut retired_nodes,
        mode,
    };
    let (w, _) = (watching.until(
        ui,
        w,
        Duration::from_secs(60),
        "the pool never became Ready",
        ready,
    ))
    .await;
    ui.line("");
    (w, events, log)
}

/// Step 5 of `Mode::ScaleIn`: lower replicas while the jobs run, until the
/// pool settles; then the summary. The number of violations.
async fn scale_in(
    ui: &mut Ui,
    w: World,
    events: &mut Events,
    retired_nodes: &mut BTreeMap<String, (String, String)>,
) -> (World, u64) {
    let before = w.group().await;
    let sim_start = sim_now_ns(&w).await;
    let scale_start = Instant::now();
    w.patch_spec(POOL, json!({"replicas": TO})).await;
    ui.note(&ui.bold(&format!(
        "Scale-in: replicas {FROM} -> {TO} (kubectl patch ncp {POOL} --type=merge -p '{{\"spec\":{{\"replicas\":{TO}}}}}')"
    )));
    ui.note(&format!(
        "  up to {MAX_UNAVAILABLE} clients at a time: cordon, drain (jobs run to completion), terminate the VM, purge the node"
    ));
    let mut watching = Watching {
        events,
        retiring: retired_nodes,
        mode: Mode::ScaleIn,
    };
    let (w, s) = (watching.until(ui, w, SETTLE_TIMEOUT, "the pool did not settle", |s| {
        settled(s, TO, (FROM - TO) as i64)
    }))
    .await;
    let took = scale_start.elapsed();
    let sim_end = sim_now_ns(&w).await;

    // Summary.
    let after: BTreeSet<String> = s.instances.iter().map(|i| i.id.clone()).collect();
    let terminated = (before.instances.iter())
        .filter(|i| !after.contains(&i.id))
        .count();
    let jobs = Jobs::count(&w, sim_start, sim_end, retired_nodes).await;
    ui.line("");
    ui.line(&ui.bold(&format!(
        "Settled: {FROM} -> {TO} clients in {} while CI kept running (whole demo {}).",
        fmt_secs(took),
        fmt_secs(ui.start.elapsed())
    )));
    ui.line(&format!(
        "  Retired:  {} clients, each cordoned, drained, its VM terminated and the node purged:",
        s.status.retired_total
    ));
    retired_list(ui, retired_nodes);
    let size_word = match w.cloud {
        Cloud::Aws => "desired capacity",
        Cloud::Gce => "targetSize",
    };
    ui.line(&format!(
        "  Group:    {size_word} {} -> {}, instances {} -> {} ({} VMs terminated)",
        before.desired,
        s.group_desired,
        before.instances.len(),
        s.instances.len(),
        terminated,
    ));
    let nviol = jobs.report(ui, &w, "the scale-in", s.jobs_queued).await;
    (w, nviol)
}

/// The retired clients, shortest names first, with their VMs.
pub fn retired_list(ui: &mut Ui, retired_nodes: &BTreeMap<String, (String, String)>) {
    let mut retired: Vec<&(String, String)> = retired_nodes.values().collect();
    retired.sort_by_key(|(n, _)| (n.len(), n.clone()));
    for (name, instance) in retired {
        ui.line(&format!("              {name:<17}{instance}"));
    }
}

/// Where to look afterwards.
fn look_around(ui: &mut Ui, w: &World, log: &std::path::Path) {
    let kubeconfig = env_var("KUBECONFIG");
    ui.line("");
    ui.line("Look at what the operator left behind (the pool keeps its last status):");
    ui.line(&format!("  export KUBECONFIG={kubeconfig}"));
    ui.line(&format!("  kubectl get ncp -n {}", w.namespace));
    ui.line(&format!("  kubectl get ncr -n {}", w.namespace));
    ui.line(&format!("  kubectl describe ncp {POOL} -n {}", w.namespace));
    ui.line(&format!(
        "  kubectl events -n {} --for ncp/{POOL}",
        w.namespace
    ));
    ui.line(&format!("  less {}", log.display()));
    ui.line("");
}
