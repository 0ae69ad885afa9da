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
//! Needs the operator binary built first (`make demo` does it):
//! `cargo build -p nomad-pool-operator --bins && cargo run --example demo`.
//! `NPO_OPERATOR_BIN` overrides where it is looked for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use nomad_pool_operator::api::NomadClientPoolStatus;
use serde_json::{Value, json};
use tokio::sync::Notify;

#[path = "../tests/support/mod.rs"]
mod support;

use support::{World, WorldOptions, env_var, operator_bin};

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

// ---------------------------------------------------------------------------
// Output: plain lines that scroll (steps, events) and, on a terminal, a live
// block redrawn in place under them. Without a terminal (a pipe, a CI log) the
// block is printed whenever its content changes, so the log reads top to bottom.

struct Ui {
    tty: bool,
    color: bool,
    start: Instant,
    /// Lines of the live block currently on screen (terminal only).
    drawn: usize,
    /// Terminal width.
    width: usize,
    block: Vec<String>,
    /// Without a terminal: what the last printed block showed, and when.
    last_key: String,
    last_print: Instant,
}

impl Ui {
    fn new() -> Ui {
        let tty = std::io::stdout().is_terminal();
        Ui {
            tty,
            color: tty && std::env::var_os("NO_COLOR").is_none(),
            start: Instant::now(),
            drawn: 0,
            width: terminal_width(),
            block: vec![],
            last_key: String::new(),
            last_print: Instant::now(),
        }
    }

    fn clock(&self) -> String {
        let s = self.start.elapsed().as_secs();
        format!("{:02}:{:02}", s / 60, s % 60)
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    fn red(&self, s: &str) -> String {
        self.paint("1;31", s)
    }

    fn erase(&mut self, out: &mut String) {
        if self.drawn > 0 {
            let _ = write!(out, "\x1b[{}F\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn redraw(&mut self, out: &mut String) {
        // A line wider than the terminal would wrap and break the redraw.
        for l in &self.block {
            out.push_str(&fit(l, self.width));
            out.push('\n');
        }
        self.drawn = self.block.len();
    }

    /// A line that stays (a step, an event).
    fn line(&mut self, text: &str) {
        let mut out = String::new();
        if self.tty {
            self.erase(&mut out);
            out.push_str(text);
            out.push('\n');
            self.redraw(&mut out);
        } else {
            out.push_str(text);
            out.push('\n');
        }
        print!("{out}");
        let _ = std::io::stdout().flush();
    }

    /// A timestamped line that stays.
    fn note(&mut self, text: &str) {
        let t = self.dim(&self.clock());
        self.line(&format!("{t}  {text}"));
    }

    /// Replace the live block; `lines[0]` gets the clock prepended. On a
    /// terminal it is redrawn in place; otherwise it is printed when `key`
    /// (what matters in it, without counters that move every second)
    /// changes, or every `PLAIN_EVERY`.
    fn live(&mut self, mut lines: Vec<String>, key: String) {
        for (i, l) in lines.iter_mut().enumerate() {
            *l = if i == 0 {
                format!("{}  {l}", self.dim(&self.clock()))
            } else {
                format!("       {l}")
            };
        }
        if self.tty {
            self.block = lines;
            let mut out = String::new();
            self.erase(&mut out);
            self.redraw(&mut out);
            print!("{out}");
        } else {
            if key == self.last_key && self.last_print.elapsed() < PLAIN_EVERY {
                return;
            }
            self.last_key = key;
            self.last_print = Instant::now();
            print!("{}", lines.join("\n") + "\n");
        }
        let _ = std::io::stdout().flush();
    }

    /// Leave the live block on screen as ordinary output.
    fn freeze(&mut self) {
        self.drawn = 0;
        self.block.clear();
    }
}

/// Columns of the terminal on stdin (`stty size`), else `$COLUMNS`, else 80.
fn terminal_width() -> usize {
    std::process::Command::new("stty")
        .arg("size")
        .stdin(std::process::Stdio::inherit())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
        })
        .or_else(|| std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()))
        .filter(|w| *w > 20)
        .unwrap_or(80)
}

/// Cut `s` to `width - 1` visible characters, keeping ANSI colour codes.
fn fit(s: &str, width: usize) -> String {
    let mut out = String::new();
    let mut visible = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            out.push(c);
            for c in chars.by_ref() {
                out.push(c);
                if c == 'm' {
                    break;
                }
            }
            continue;
        }
        if visible + 1 >= width {
            out.push_str("\x1b[0m");
            break;
        }
        out.push(c);
        visible += 1;
    }
    out
}

// ---------------------------------------------------------------------------
// What is observed once a second.

#[derive(Default)]
struct Snapshot {
    generation: Option<i64>,
    status: NomadClientPoolStatus,
    group_desired: i32,
    instances: Vec<support::Instance>,
    jobs_running: u64,
    jobs_queued: u64,
    busy_clients: usize,
    clients: usize,
}

async fn observe(w: &World) -> Snapshot {
    let pool = w.pools().get_opt(POOL).await.ok().flatten();
    let g = w.group().await;
    let stats = w.sim.get("/sim/stats").await;
    let allocs = &stats["cluster"]["allocations"];
    let nodes = w.ready_nodes().await;
    Snapshot {
        generation: pool.as_ref().and_then(|p| p.metadata.generation),
        status: pool.and_then(|p| p.status).unwrap_or_default(),
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
    }
}

fn ready_reason(st: &NomadClientPoolStatus) -> (bool, String) {
    st.conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status == "True", c.reason.clone()))
        .unwrap_or((false, "-".into()))
}

fn settled(s: &Snapshot, replicas: i32, retired: i64) -> bool {
    let st = &s.status;
    st.observed_generation.is_some()
        && st.observed_generation == s.generation
        && st.desired_nodes == Some(replicas)
        && st.retiring.is_empty()
        && st.retired_total >= retired
        && st.ready_nodes == replicas
        && ready_reason(st).0
        && s.group_desired == replicas
        && s.instances.len() == replicas as usize
}

fn lifecycle_summary(instances: &[support::Instance]) -> String {
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

fn ago(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> String {
    let secs = (jiff::Timestamp::now().as_second() - t.0.as_second()).max(0);
    if secs < 60 {
        format!("{secs}s")
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// The progress block and its change key.
fn render(ui: &Ui, group: &str, s: &Snapshot) -> (Vec<String>, String) {
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
            "Auto Scaling group {group}: desired capacity {}, {} instances{}",
            s.group_desired,
            s.instances.len(),
            lifecycle_summary(&s.instances),
        ),
        format!(
            "CI: {} jobs running, {} waiting for a slot",
            s.jobs_running, s.jobs_queued
        ),
    ];
    if !st.retiring.is_empty() {
        lines.push(ui.bold(&format!(
            "  {:<17}{:<21}{:<13}{:<7}{:<8}BLOCKING JOBS",
            "RETIRING NODE", "INSTANCE", "PHASE", "FOR", "ALLOCS"
        )));
        for r in &st.retiring {
            let what = if !r.blocking_jobs.is_empty() {
                let more = (r.allocations_left as usize).saturating_sub(r.blocking_jobs.len());
                let mut j = r.blocking_jobs.join(", ");
                if more > 0 {
                    let _ = write!(j, " +{more}");
                }
                j
            } else {
                r.message.clone().map(|m| ui.dim(&m)).unwrap_or_default()
            };
            let phase = format!("{:?}", r.phase);
            let _ = write!(key, " {}:{phase}:{}", r.node_id, r.allocations_left);
            lines.push(format!(
                "  {:<17}{:<21}{phase:<13}{:<7}{:<8}{what}",
                r.node_name,
                r.instance_id.as_deref().unwrap_or("-"),
                ago(&r.since),
                r.allocations_left,
            ));
        }
    }
    (lines, key)
}

/// The pool's Kubernetes Events, printed once each (again when it repeats).
struct Events {
    api: Api<Event>,
    seen: HashMap<String, i32>,
}

impl Events {
    async fn poll(&mut self, ui: &mut Ui) {
        let Ok(list) = self.api.list(&ListParams::default()).await else {
            return;
        };
        let mut fresh: Vec<(jiff::Timestamp, Event, i32)> = vec![];
        for ev in list.items {
            if ev.regarding.as_ref().and_then(|r| r.kind.as_deref()) != Some("NomadClientPool") {
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

/// Show progress once a second until `done` holds.
async fn watch(
    ui: &mut Ui,
    w: &World,
    events: &mut Events,
    retiring: &mut BTreeMap<String, (String, String)>,
    timeout: Duration,
    done: impl Fn(&Snapshot) -> bool,
) -> Outcome {
    let start = Instant::now();
    loop {
        let s = observe(w).await;
        events.poll(ui).await;
        for r in &s.status.retiring {
            let instance = r.instance_id.clone().unwrap_or("-".into());
            retiring.insert(r.node_id.clone(), (r.node_name.clone(), instance));
        }
        let (lines, key) = render(ui, &w.group, &s);
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

async fn sim_now_ns(w: &World) -> i64 {
    w.sim.get("/sim/time").await["now_ns"].as_i64().unwrap_or(0)
}

/// Every allocation the simulator knows (stubs, through its Nomad API).
async fn allocations(w: &World) -> Vec<Value> {
    reqwest::get(format!("{}/v1/allocations", w.sim.url))
        .await
        .expect("listing allocations from nomad-sim")
        .json()
        .await
        .expect("allocation list")
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

async fn stop(ui: &mut Ui, mut w: World) {
    if let Some(mut op) = w.operator.take() {
        op.kill().await;
    }
    let World { bridge, sim, .. } = w;
    drop(bridge);
    sim.sim.shutdown().await;
    ui.line(
        "Stopped the operator and the Nomad simulator. The control plane and moto keep running;",
    );
    ui.line(&format!("stop them with: {}", ui.bold("make env-down")));
}

async fn interrupted(ui: &mut Ui, w: World) -> ! {
    // On a terminal, the echoed ^C is on the current line.
    ui.line(if ui.tty {
        "\nInterrupted."
    } else {
        "Interrupted."
    });
    stop(ui, w).await;
    std::process::exit(130);
}

async fn fail(ui: &mut Ui, w: World, what: &str, s: Option<&Snapshot>) -> ! {
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

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    handle_ctrl_c();
    let mut ui = Ui::new();
    let bin = operator_bin();
    if !bin.is_file() {
        eprintln!(
            "The operator binary is missing: {}\nBuild it first: cargo build -p nomad-pool-operator --bins (or run `make demo`).",
            bin.display()
        );
        std::process::exit(2);
    }

    ui.line(&ui.bold(&format!(
        "nomad-pool-operator demo: scale a Nomad client pool from {FROM} to {TO} VMs while CI jobs run"
    )));
    ui.line("");

    // 1. Control plane and moto (idempotent; `make demo` started them already).
    ui.note("Starting (or reusing) the local control plane (etcd + kube-apiserver) and moto ...");
    let kubeconfig = env_var("KUBECONFIG");
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

    // 2. The world: namespace, simulator, group of 10, clients registered.
    ui.note(&format!(
        "Creating {FROM} VMs in a moto Auto Scaling group, each a simulated Nomad client (node pool \"ci\") ..."
    ));
    let mut w = World::new(
        "demo",
        WorldOptions {
            size: FROM,
            min: 0,
            ..Default::default()
        },
    )
    .await;
    w.create_aws_secret().await;
    ui.note(&format!(
        "  group {}, {FROM} clients ready (4 job slots each), namespace {}",
        w.group, w.namespace
    ));

    // 3. CI workload.
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
        let s = observe(&w).await;
        let line = format!(
            "warming up: {} of {} clients running jobs, {} jobs running",
            s.busy_clients, s.clients, s.jobs_running
        );
        ui.live(vec![line], s.busy_clients.to_string());
        if s.busy_clients >= BUSY_CLIENTS && s.jobs_running >= BUSY_JOBS {
            ui.freeze();
            break;
        }
        if warm.elapsed() > Duration::from_secs(120) {
            fail(&mut ui, w, "the CI workload did not start", Some(&s)).await;
        }
        if !pause(Duration::from_secs(1)).await {
            ui.freeze();
            interrupted(&mut ui, w).await;
        }
    }

    // 4. Operator and the pool at its current size.
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
    let manifest = w.pool_manifest(
        POOL,
        json!({"replicas": FROM, "disruption": {"maxUnavailable": MAX_UNAVAILABLE}}),
    );
    w.apply_pool(&manifest).await;
    ui.note(&format!(
        "Applied NomadClientPool \"{POOL}\" (replicas: {FROM}, maxUnavailable: {MAX_UNAVAILABLE}, drain without deadline)"
    ));
    let mut events = Events {
        api: Api::namespaced(w.client.clone(), &w.namespace),
        seen: HashMap::new(),
    };
    let mut retired_nodes = BTreeMap::new();
    match watch(
        &mut ui,
        &w,
        &mut events,
        &mut retired_nodes,
        Duration::from_secs(60),
        |s| settled(s, FROM, 0),
    )
    .await
    {
        Outcome::Done(_) => {}
        Outcome::TimedOut(s) => fail(&mut ui, w, "the pool never became Ready", Some(&s)).await,
        Outcome::Interrupted => {
            interrupted(&mut ui, w).await;
        }
    }
    ui.line("");

    // 5. Scale in while the jobs run.
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
    let outcome = watch(
        &mut ui,
        &w,
        &mut events,
        &mut retired_nodes,
        SETTLE_TIMEOUT,
        |s| settled(s, TO, (FROM - TO) as i64),
    )
    .await;
    let took = scale_start.elapsed();
    let s = match outcome {
        Outcome::Done(s) => s,
        Outcome::TimedOut(s) => {
            fail(
                &mut ui,
                w,
                &format!(
                    "the pool did not settle within {}",
                    fmt_secs(SETTLE_TIMEOUT)
                ),
                Some(&s),
            )
            .await
        }
        Outcome::Interrupted => {
            interrupted(&mut ui, w).await;
        }
    };
    let sim_end = sim_now_ns(&w).await;

    // Summary.
    let after: BTreeSet<String> = s.instances.iter().map(|i| i.id.clone()).collect();
    let terminated = before
        .instances
        .iter()
        .filter(|i| !after.contains(&i.id))
        .count();
    let allocs = allocations(&w).await;
    let terminal = |a: &Value| {
        !matches!(
            a["ClientStatus"].as_str().unwrap_or(""),
            "pending" | "running"
        )
    };
    let during: Vec<&Value> = allocs
        .iter()
        .filter(|a| {
            a["CreateTime"].as_i64().unwrap_or(0) <= sim_end
                && (!terminal(a) || a["ModifyTime"].as_i64().unwrap_or(0) >= sim_start)
        })
        .collect();
    let finished_during = during.iter().filter(|a| terminal(a)).count();
    let on_retired: Vec<&Value> = allocs
        .iter()
        .filter(|a| {
            retired_nodes.contains_key(a["NodeID"].as_str().unwrap_or(""))
                && a["ModifyTime"].as_i64().unwrap_or(0) >= sim_start
        })
        .collect();
    let mut on_retired_by: BTreeMap<String, usize> = BTreeMap::new();
    for a in &on_retired {
        *on_retired_by
            .entry(a["ClientStatus"].as_str().unwrap_or("?").to_string())
            .or_default() += 1;
    }
    let violations = w.sim.violations().await;
    let nviol = violations["count"].as_u64().unwrap_or(u64::MAX);

    ui.line("");
    ui.line(&ui.bold(&format!(
        "Settled: {FROM} -> {TO} clients in {} while CI kept running (whole demo {}).",
        fmt_secs(took),
        fmt_secs(ui.start.elapsed())
    )));
    let mut retired: Vec<&(String, String)> = retired_nodes.values().collect();
    retired.sort_by_key(|(n, _)| (n.len(), n.clone()));
    ui.line(&format!(
        "  Retired:  {} clients, each cordoned, drained, its VM terminated and the node purged:",
        s.status.retired_total
    ));
    for (name, instance) in retired {
        ui.line(&format!("              {name:<17}{instance}"));
    }
    ui.line(&format!(
        "  Group:    desired capacity {} -> {}, instances {} -> {} ({} VMs terminated)",
        before.desired,
        s.group_desired,
        before.instances.len(),
        s.instances.len(),
        terminated,
    ));
    ui.line(&format!(
        "  CI jobs:  {} ran during the scale-in: {} finished, {} still running, {} waiting for a slot",
        during.len(),
        finished_during,
        during.len() - finished_during,
        s.jobs_queued
    ));
    let lost = on_retired_by.get("lost").copied().unwrap_or(0);
    let by: Vec<String> = on_retired_by
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let jobs_line = format!(
        "            {} of them ran on the retired clients: {}",
        on_retired.len(),
        if lost == 0 {
            "every one finished before its VM went (none lost)".to_string()
        } else {
            by.join(", ")
        }
    );
    ui.line(&if lost == 0 {
        jobs_line
    } else {
        ui.red(&jobs_line)
    });
    let viol_line = format!(
        "  Safety:   {nviol} violations (a VM terminated or a node purged while a job ran on it)"
    );
    if nviol == 0 {
        ui.line(&format!("{viol_line}  {}", ui.green("OK")));
    } else {
        ui.line(&ui.red(&viol_line));
        ui.line(&format!("{violations:#}"));
    }
    ui.line("");
    ui.line("Look at what the operator left behind (the pool keeps its last status):");
    ui.line(&format!("  export KUBECONFIG={kubeconfig}"));
    ui.line(&format!("  kubectl get ncp -n {}", w.namespace));
    ui.line(&format!("  kubectl describe ncp {POOL} -n {}", w.namespace));
    ui.line(&format!(
        "  kubectl events -n {} --for ncp/{POOL}",
        w.namespace
    ));
    ui.line(&format!("  less {}", log.display()));
    ui.line("");
    stop(&mut ui, w).await;
    if nviol != 0 {
        std::process::exit(1);
    }
}
