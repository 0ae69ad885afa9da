//! Scale-in benchmark (issue 6), plain `main`, no harness.
//!
//! A pool of `SCALE_IN_NODES` (5,000) Nomad clients in the simulator, running
//! a steady CI-like batch workload, is scaled in by `SCALE_IN_RETIRE` (1,000)
//! with `maxUnavailable` 10 %, against the real local kube-apiserver and moto:
//! once by the operator (the release binary, as a child process) and once, on
//! a fresh copy of the same scenario (same seed and workload), by a baseline
//! that does what admins script: mark ineligible, drain with no deadline, poll
//! `GET /v1/node/:id` every 10 s (scenario time) until `DrainStrategy` is
//! null, terminate with decrement. Idle Nomad request rates are measured with
//! the operator watching settled pools of `SCALE_IN_SMALL` (500) and 5,000.
//!
//! Results: a table on stdout, JSON in `target/bench/scale-in.json`. See
//! `BENCHMARKS.md` for the method and the figures.
//!
//! Run: `cargo build --release --bin nomad-pool-operator && cargo bench -p nomad-pool-operator --bench scale_in`
//!
//! Measurement, in short:
//! - every world (simulator + Auto Scaling group) gets its own moto server, so
//!   other test runs on the shared moto do not disturb it and vice versa;
//! - the operator and the baseline reach moto through a recording proxy in
//!   this process: it timestamps each `TerminateInstanceInAutoScalingGroup`
//!   on arrival, and once moto accepted it kills the instance's simulated VM
//!   (what the harness's `Bridge` does by polling; at 5,000 instances one
//!   `DescribeAutoScalingGroups` costs moto about a second, so polling it
//!   every 100 ms would saturate moto and distort the operator's figures);
//! - "last allocation ended" is read from the simulator's state at the moment
//!   the terminate call arrives: the later of the node's last allocation end
//!   and its drain completion, in simulated time, converted to wall-clock time
//!   with the (fixed) time scale. The moment the simulator made it visible to
//!   API clients (its tick) is recorded as well, through its per-node watch.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_autoscaling::config::{BehaviorVersion, Credentials, Region};
use futures::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams};
use nomad_pool_operator::api::NomadClientPool;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

const NS_PER_S: f64 = 1e9;

// ---------------------------------------------------------------------------
// Parameters

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Clone, Debug)]
struct Params {
    nodes: usize,
    small: usize,
    retire: usize,
    max_unavailable_pct: u32,
    time_scale: f64,
    slots: u32,
    utilization: f64,
    job_min_s: f64,
    job_max_s: f64,
    warmup_s: f64,
    idle_s: f64,
    baseline_poll_s: f64,
    heartbeat_ttl_s: f64,
    heartbeat_grace_s: f64,
    seed: u64,
    baseline: bool,
    operator: bool,
}

impl Params {
    fn from_env() -> Params {
        Params {
            nodes: env_or("SCALE_IN_NODES", 5000),
            small: env_or("SCALE_IN_SMALL", 500),
            retire: env_or("SCALE_IN_RETIRE", 1000),
            max_unavailable_pct: env_or("SCALE_IN_MAX_UNAVAILABLE_PCT", 10),
            time_scale: env_or("SCALE_IN_TIME_SCALE", 10.0),
            slots: env_or("SCALE_IN_SLOTS", 4),
            utilization: env_or("SCALE_IN_UTILIZATION", 0.5),
            job_min_s: env_or("SCALE_IN_JOB_MIN_S", 60.0),
            job_max_s: env_or("SCALE_IN_JOB_MAX_S", 1200.0),
            warmup_s: env_or("SCALE_IN_WARMUP_S", 1500.0),
            idle_s: env_or("SCALE_IN_IDLE_S", 330.0),
            baseline_poll_s: env_or("SCALE_IN_BASELINE_POLL_S", 10.0),
            heartbeat_ttl_s: env_or("SCALE_IN_HEARTBEAT_TTL_S", 10.0),
            heartbeat_grace_s: env_or("SCALE_IN_HEARTBEAT_GRACE_S", 10.0),
            seed: env_or("SCALE_IN_SEED", 42),
            baseline: env_or("SCALE_IN_BASELINE", 1) != 0,
            operator: env_or("SCALE_IN_OPERATOR", 1) != 0,
        }
    }

    /// Batch jobs per simulated minute that keep `utilization` of the slots busy.
    fn rate_per_min(&self, nodes: usize) -> f64 {
        let mean_min = (self.job_min_s + self.job_max_s) / 2.0 / 60.0;
        self.utilization * (nodes as f64) * f64::from(self.slots) / mean_min
    }

    fn budget(&self) -> usize {
        (self.nodes * self.max_unavailable_pct as usize / 100).max(1)
    }

    fn json(&self) -> Value {
        json!({
            "pool_size": self.nodes,
            "small_pool_size": self.small,
            "scale_in_by": self.retire,
            "replicas_after": self.nodes - self.retire,
            "max_unavailable": format!("{}%", self.max_unavailable_pct),
            "budget_at_start": self.budget(),
            "selection_policy": "LeastBusy",
            "time_scale": self.time_scale,
            "slots_per_node": self.slots,
            "target_utilization": self.utilization,
            "job_duration_s": [self.job_min_s, self.job_max_s],
            "batch_jobs_per_min": self.rate_per_min(self.nodes),
            "warmup_sim_s": self.warmup_s,
            "idle_window_s": self.idle_s,
            "baseline_poll_s_scenario_time": self.baseline_poll_s,
            "baseline_poll_ms_wall_clock": self.baseline_poll_s / self.time_scale * 1e3,
            "heartbeat_ttl_plus_grace_sim_s": self.heartbeat_ttl_s + self.heartbeat_grace_s,
            "seed": self.seed,
        })
    }
}

// ---------------------------------------------------------------------------
// Small helpers

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    json!({
        "p50": round(pct(&v, 0.5), 1),
        "p99": round(pct(&v, 0.99), 1),
        "max": round(v.last().copied().unwrap_or(f64::NAN), 1),
        "n": v.len(),
    })
}

fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn bench_dir() -> PathBuf {
    support::repo_root().join("target/bench")
}

fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14, stime 15.
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(14) + ticks(15)) / clk_tck()
}

/// A `/proc/<pid>/status` value in kB, as MiB.
fn proc_status_mib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// (busy, total) jiffies of the whole machine, from `/proc/stat`.
fn machine_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle + iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

fn busy_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    let busy = after.0.saturating_sub(before.0) as f64;
    let total = after.1.saturating_sub(before.1).max(1) as f64;
    round(busy / total * 100.0, 0)
}

/// What was built and measured: the commit, and whether the operator's
/// sources differed from it (other engineers edit the tree concurrently).
fn build_info() -> Value {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(support::repo_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let dirty: Vec<String> = git(&["status", "--porcelain", "--", "src", "Cargo.lock"])
        .lines()
        .map(str::to_owned)
        .collect();
    let built = std::fs::metadata(operator_binary())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string());
    json!({
        "commit": git(&["rev-parse", "--short", "HEAD"]),
        "commit_subject": git(&["log", "-1", "--format=%s"]),
        "uncommitted_operator_changes": dirty,
        "operator_binary_built": built,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn parse_ts_ns(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond() as i64)
}

// ---------------------------------------------------------------------------
// moto: one private server per world

struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start(label: &str) -> Moto {
        let python = support::env_var("NPO_MOTO_PYTHON");
        let server = Path::new(&python).with_file_name("moto_server");
        let port = free_port();
        let log = bench_dir().join(format!("scale-in-logs/moto-{label}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", server.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if http
                .get(format!("{endpoint}/moto-api/"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not start; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Moto { child, endpoint }
    }

    fn client(&self) -> AsgClient {
        asg_client(&self.endpoint)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

fn asg_client(endpoint: &str) -> AsgClient {
    let config = aws_sdk_autoscaling::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "npo-bench",
        ))
        .build();
    AsgClient::from_conf(config)
}

/// Creates the group and returns its instance IDs and the describe times (s).
async fn create_group(asg: &AsgClient, name: &str, size: usize) -> (Vec<String>, Vec<f64>) {
    asg.create_launch_configuration()
        .launch_configuration_name(name)
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .expect("creating a launch configuration in moto");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(name)
        .min_size(0)
        .max_size(size as i32)
        .desired_capacity(size as i32)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("creating an Auto Scaling group in moto");
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let out = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .expect("describing the group");
        times.push(t.elapsed().as_secs_f64());
        ids = out.auto_scaling_groups()[0]
            .instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
    }
    assert_eq!(ids.len(), size, "moto launched every instance");
    (ids, times)
}

// ---------------------------------------------------------------------------
// The recording proxy in front of moto

/// What the simulator knew about a node when its VM's terminate call arrived.
#[derive(Clone, Debug, Default)]
struct NodeSnap {
    node_id: String,
    live_allocs: usize,
    /// When the node stopped taking work: first of cordon and drain (sim ns).
    emptying_since_ns: Option<i64>,
    last_alloc_end_ns: Option<i64>,
    drain_complete_ns: Option<i64>,
}

impl NodeSnap {
    /// Drained and empty: the later of the last allocation end and the
    /// drain's completion (sim ns).
    fn ready_ns(&self) -> Option<i64> {
        match (self.last_alloc_end_ns, self.drain_complete_ns) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Clone, Debug)]
struct TerminateRec {
    at: Instant,
    ok: bool,
    instance: String,
    snap: Option<NodeSnap>,
}

#[derive(Default)]
struct ProxyLog {
    /// Action -> (count, total seconds, max seconds).
    calls: BTreeMap<String, (u64, f64, f64)>,
    terminates: Vec<TerminateRec>,
    /// (arrival, answered) of each DescribeAutoScalingGroups.
    describes: Vec<(Instant, Instant)>,
}

struct ProxyState {
    moto: String,
    http: reqwest::Client,
    app: Arc<nomad_sim::App>,
    log: Mutex<ProxyLog>,
    /// AWS carries out one scaling activity of a group at a time; moto does
    /// not: two concurrent TerminateInstanceInAutoScalingGroup calls with
    /// decrement race in its read-modify-write of DesiredCapacity, one
    /// decrement is lost and moto launches a replacement instance (5 lost in
    /// 200 calls 16 at a time on a 5,000-instance group). Mutating calls are
    /// therefore forwarded one at a time.
    mutate: tokio::sync::Mutex<()>,
    /// Instances known to have a Nomad client; a scale-up's new instances
    /// register one, as a booting VM does.
    group: String,
    known: Mutex<std::collections::HashSet<String>>,
}

struct Proxy {
    url: String,
    state: Arc<ProxyState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn form_value<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn snapshot(app: &nomad_sim::App, instance: &str) -> Option<NodeSnap> {
    let c = app.cluster.read().unwrap();
    // The VM's newest client: the one the pool retires (one per VM here).
    let id = c.nodes_on_vm(instance).pop()?;
    let rec = c.nodes.get(&id)?;
    let event_ns = |msg: &str| {
        rec.node
            .events
            .iter()
            .filter(|e| e.message == msg)
            .filter_map(|e| parse_ts_ns(&e.timestamp))
            .min()
    };
    let cordon = event_ns("Node marked as ineligible for scheduling");
    let drain_set = event_ns("Node drain strategy set");
    let emptying_since_ns = match (cordon, drain_set) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let drain_complete_ns = rec
        .node
        .events
        .iter()
        .filter(|e| e.message == "Node drain complete")
        .filter_map(|e| parse_ts_ns(&e.timestamp))
        .max();
    let mut live = 0;
    let mut last_end = None;
    for a in c.node_allocs(&id) {
        if a.alloc.pending_or_running() {
            live += 1;
        } else if a.alloc.client_terminal() {
            last_end = last_end.max(Some(a.alloc.modify_time));
        }
    }
    Some(NodeSnap {
        node_id: id,
        live_allocs: live,
        emptying_since_ns,
        last_alloc_end_ns: last_end,
        drain_complete_ns,
    })
}

async fn proxy_handler(
    axum::extract::State(st): axum::extract::State<Arc<ProxyState>>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let at = Instant::now();
    let method = req.method().clone();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let mut headers = req.headers().clone();
    headers.remove(axum::http::header::HOST);
    headers.remove(axum::http::header::CONTENT_LENGTH);
    let body = axum::body::to_bytes(req.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&body).into_owned();
    let action = form_value(&text, "Action").unwrap_or("?").to_owned();
    let terminate = action == "TerminateInstanceInAutoScalingGroup";
    let action_is_describe_groups = action == "DescribeAutoScalingGroups";
    let instance = form_value(&text, "InstanceId").unwrap_or("").to_owned();
    let snap = if terminate {
        snapshot(&st.app, &instance)
    } else {
        None
    };
    let mutating = !action.starts_with("Describe");
    let _serial = if mutating {
        Some(st.mutate.lock().await)
    } else {
        None
    };
    let resp = st
        .http
        .request(method, format!("{}{pq}", st.moto))
        .headers(headers)
        .body(body)
        .send()
        .await;
    let (status, rheaders, rbody) = match resp {
        Ok(r) => {
            let status = r.status();
            let h = r.headers().clone();
            (status, h, r.bytes().await.unwrap_or_default())
        }
        Err(e) => (
            axum::http::StatusCode::BAD_GATEWAY,
            Default::default(),
            format!("proxy: {e}").into(),
        ),
    };
    let ok = status.is_success();
    if terminate && ok {
        // The VM is gone: its Nomad client stops heartbeating (the simulator
        // records a violation if anything still ran there).
        let app = st.app.clone();
        let iid = instance.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut c = app.write();
            let _ = c.vm_action(&iid, "kill");
        })
        .await;
    }
    if ok && action == "SetDesiredCapacity" {
        register_new_instances(&st).await;
    }
    drop(_serial);
    let took = at.elapsed().as_secs_f64();
    {
        let mut log = st.log.lock().unwrap();
        let e = log.calls.entry(action).or_insert((0, 0.0, 0.0));
        e.0 += 1;
        e.1 += took;
        e.2 = e.2.max(took);
        if action_is_describe_groups {
            log.describes.push((at, Instant::now()));
        }
        if terminate {
            log.terminates.push(TerminateRec {
                at,
                ok,
                instance,
                snap,
            });
        }
    }
    let mut out = axum::response::Response::new(axum::body::Body::from(rbody));
    *out.status_mut() = status;
    for (k, v) in rheaders.iter() {
        if k != axum::http::header::CONTENT_LENGTH && k != axum::http::header::TRANSFER_ENCODING {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

/// New in-service instances of the group get a Nomad client, as a VM that
/// boots does (what the harness's Bridge does by polling).
async fn register_new_instances(st: &ProxyState) {
    let Ok(out) = asg_client(&st.moto)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&st.group)
        .send()
        .await
    else {
        return;
    };
    let fresh: Vec<String> = {
        let mut known = st.known.lock().unwrap();
        out.auto_scaling_groups()
            .iter()
            .flat_map(|g| g.instances())
            .filter(|i| {
                i.lifecycle_state()
                    .is_some_and(|l| l.as_str() == "InService")
            })
            .filter_map(|i| i.instance_id())
            .filter(|id| known.insert(id.to_string()))
            .map(str::to_owned)
            .collect()
    };
    if fresh.is_empty() {
        return;
    }
    let app = st.app.clone();
    let _ = tokio::task::spawn_blocking(move || {
        let mut c = app.write();
        for id in fresh {
            c.register_node(&nomad_sim::state::NodeSpec {
                node_pool: Some("ci".into()),
                node_class: Some("linux".into()),
                instance_id: Some(id),
                availability_zone: Some("us-east-1a".into()),
                ..Default::default()
            });
        }
        c.schedule_pending();
    })
    .await;
}

impl Proxy {
    async fn start(
        moto: &str,
        app: Arc<nomad_sim::App>,
        group: &str,
        instances: &[String],
    ) -> Proxy {
        let state = Arc::new(ProxyState {
            moto: moto.to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()
                .unwrap(),
            app,
            log: Mutex::new(ProxyLog::default()),
            mutate: tokio::sync::Mutex::new(()),
            group: group.to_owned(),
            known: Mutex::new(instances.iter().cloned().collect()),
        });
        let router = axum::Router::new()
            .fallback(proxy_handler)
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Proxy { url, state, task }
    }

    fn terminates(&self) -> Vec<TerminateRec> {
        self.state.log.lock().unwrap().terminates.clone()
    }

    fn ok_terminates(&self) -> usize {
        self.state
            .log
            .lock()
            .unwrap()
            .terminates
            .iter()
            .filter(|t| t.ok)
            .count()
    }

    fn describes(&self) -> Vec<(Instant, Instant)> {
        self.state.log.lock().unwrap().describes.clone()
    }

    fn calls(&self) -> BTreeMap<String, (u64, f64, f64)> {
        self.state.log.lock().unwrap().calls.clone()
    }
}

// ---------------------------------------------------------------------------
// A byte-counting TCP relay in front of the simulator's Nomad API

/// Bytes relayed: (client to Nomad, Nomad to client).
#[derive(Default)]
struct Bytes2 {
    up: AtomicU64,
    down: AtomicU64,
    /// When each `GET /v1/allocations` (the cluster-wide allocation list the
    /// operator reads to rank nodes by load) was sent.
    alloc_list_reads: Mutex<Vec<Instant>>,
    /// Every request line seen (when, "METHOD /v1/kind"), for the timeline.
    requests: Mutex<Vec<(Instant, String)>>,
}

impl Bytes2 {
    fn get(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

struct Relay {
    url: String,
    bytes: Arc<Bytes2>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(
    mut r: tokio::net::tcp::OwnedReadHalf,
    mut w: tokio::net::tcp::OwnedWriteHalf,
    n: Arc<Bytes2>,
    up: bool,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let k = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(k) => k,
        };
        let c = if up { &n.up } else { &n.down };
        c.fetch_add(k as u64, Ordering::Relaxed);
        if up {
            let now = Instant::now();
            if buf[..k].starts_with(b"GET /v1/allocations") {
                n.alloc_list_reads.lock().unwrap().push(now);
            }
            if let Some(line) = request_kind(&buf[..k]) {
                n.requests.lock().unwrap().push((now, line));
            }
        }
        if w.write_all(&buf[..k]).await.is_err() {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// "POST /v1/node/:id/drain" from the start of an HTTP request, if it is one.
fn request_kind(b: &[u8]) -> Option<String> {
    let head = &b[..b.len().min(200)];
    let line = std::str::from_utf8(head).ok()?.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    if !matches!(method, "GET" | "POST" | "PUT") {
        return None;
    }
    let path = parts.next()?.split('?').next()?;
    let segs: Vec<&str> = path.split('/').collect();
    let kind = match segs.as_slice() {
        ["", "v1", "node", _] => "/v1/node/:id".to_owned(),
        ["", "v1", "node", _, sub] => format!("/v1/node/:id/{sub}"),
        _ => path.to_owned(),
    };
    Some(format!("{method} {kind}"))
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Relay {
        // A 1 MiB send buffer, as the simulator's own listener has: large
        // responses go out in one write instead of waiting on delayed ACKs.
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        let _ = sock.set_send_buffer_size(1 << 20);
        sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let listener = sock.listen(4096).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bytes = Arc::new(Bytes2::default());
        let b = bytes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let b = b.clone();
                tokio::spawn(async move {
                    let sock = tokio::net::TcpSocket::new_v4().unwrap();
                    let _ = sock.set_send_buffer_size(1 << 20);
                    let Ok(server) = sock.connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::spawn(pump(cr, sw, b.clone(), true));
                    pump(sr, cw, b, false).await;
                });
            }
        });
        Relay { url, bytes, task }
    }
}

// ---------------------------------------------------------------------------
// A world: simulator with a steady workload, its group in its own moto, the proxy

struct World {
    label: String,
    size: usize,
    sim: nomad_sim::Sim,
    /// The simulator itself (control surface, the bench's own reads).
    url: String,
    /// Nomad's address for the operator and the baseline: the counting relay.
    relay: Relay,
    http: reqwest::Client,
    moto: Moto,
    group: String,
    proxy: Proxy,
    /// Wall-clock instant and simulated ns taken together after the scale was set.
    clock0: (Instant, i64),
    scale: f64,
    /// When the simulator made each node's drain completion visible.
    visible_ready: Arc<Mutex<HashMap<String, Instant>>>,
    moto_describe_s: Vec<f64>,
    setup_s: f64,
}

impl World {
    async fn new(p: &Params, label: &str, size: usize) -> World {
        let t0 = Instant::now();
        let moto = Moto::start(label).await;
        let asg = moto.client();
        let group = support::unique(&format!("bench-{label}"));
        let (instances, moto_describe_s) = create_group(&asg, &group, size).await;
        let sim = nomad_sim::serve(nomad_sim::Config {
            time_scale: 0.0,
            seed: Some(p.seed),
            node_slots: p.slots,
            heartbeat_ttl: Duration::from_secs_f64(p.heartbeat_ttl_s),
            heartbeat_grace: Duration::from_secs_f64(p.heartbeat_grace_s),
            ..Default::default()
        })
        .await
        .expect("starting nomad-sim");
        let url = sim.url();
        let http = reqwest::Client::new();
        let post = |path: &str, body: Value| {
            let req = http.post(format!("{url}{path}")).json(&body);
            async move {
                let r = req.send().await.unwrap();
                assert!(r.status().is_success(), "{}", r.text().await.unwrap());
                r.json::<Value>().await.unwrap()
            }
        };
        post(
            "/sim/nodes",
            json!({"count": size, "node_pool": "ci", "node_class": "linux",
                   "instance_ids": instances, "availability_zone": "us-east-1a"}),
        )
        .await;
        post(
            "/sim/workload",
            json!({"node_pool": "ci", "rate_per_minute": p.rate_per_min(size),
                   "duration_min_s": p.job_min_s, "duration_max_s": p.job_max_s}),
        )
        .await;
        // Steady state before anything watches: every job now running was
        // started by the workload, none by the warm-up's beginning.
        post("/sim/time", json!({"advance_s": p.warmup_s})).await;
        post("/sim/time", json!({"scale": p.time_scale})).await;
        let app = sim.app().clone();
        let clock0 = (Instant::now(), app.clock.now());
        let visible_ready = Arc::new(Mutex::new(HashMap::new()));
        watch_drain_completions(&app, &visible_ready);
        let proxy = Proxy::start(&moto.endpoint, app, &group, &instances).await;
        let relay = Relay::start(sim.addr()).await;
        World {
            label: label.into(),
            size,
            sim,
            url,
            relay,
            http,
            moto,
            group,
            proxy,
            clock0,
            scale: p.time_scale,
            visible_ready,
            moto_describe_s,
            setup_s: t0.elapsed().as_secs_f64(),
        }
    }

    /// Seconds after `clock0` (wall clock) at which simulated time was `ns`.
    fn wall_of_sim(&self, ns: i64) -> f64 {
        (ns - self.clock0.1) as f64 / NS_PER_S / self.scale
    }

    fn wall_of(&self, t: Instant) -> f64 {
        if t >= self.clock0.0 {
            (t - self.clock0.0).as_secs_f64()
        } else {
            -(self.clock0.0 - t).as_secs_f64()
        }
    }

    /// Nomad API requests (`/v1/...`) by endpoint, as the simulator counted them.
    fn nomad_requests(&self) -> BTreeMap<String, u64> {
        let s = self.sim.app().stats.lock().unwrap();
        s.requests
            .iter()
            .filter(|(k, _)| k.contains(" /v1/"))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn violations(&self) -> Value {
        self.get("/sim/violations").await
    }

    /// The group as moto has it now, against the simulator's live clients.
    async fn group_after(&self) -> Value {
        let Ok(out) = self
            .moto
            .client()
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group)
            .send()
            .await
        else {
            return Value::Null;
        };
        let Some(g) = out.auto_scaling_groups().first() else {
            return Value::Null;
        };
        let live: std::collections::HashSet<String> = {
            let c = self.sim.app().cluster.read().unwrap();
            c.nodes
                .values()
                .filter(|r| r.alive)
                .filter_map(|r| r.instance_id.clone())
                .collect()
        };
        let ids: Vec<&str> = g
            .instances()
            .iter()
            .filter_map(|i| i.instance_id())
            .collect();
        json!({
            "desired_capacity": g.desired_capacity(),
            "instances": ids.len(),
            "instances_without_a_live_nomad_client": ids.iter().filter(|i| !live.contains(**i)).count(),
        })
    }

    async fn shutdown(self) {
        drop(self.proxy);
        drop(self.relay);
        self.sim.shutdown().await;
        self.moto.stop().await;
    }
}

fn delta(after: &BTreeMap<String, u64>, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

fn total(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

/// One task per node, parked on the simulator's per-node watch: records the
/// wall-clock moment its drain completion became visible to API clients.
fn watch_drain_completions(app: &Arc<nomad_sim::App>, out: &Arc<Mutex<HashMap<String, Instant>>>) {
    let rxs: Vec<(String, tokio::sync::watch::Receiver<u64>)> = {
        let c = app.cluster.read().unwrap();
        c.watches
            .iter()
            .map(|(id, w)| (id.clone(), w.node.subscribe()))
            .collect()
    };
    for (id, mut rx) in rxs {
        let app = app.clone();
        let out = out.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let done = {
                    let c = app.cluster.read().unwrap();
                    c.nodes.get(&id).is_none_or(|r| {
                        r.node.drain_strategy.is_none()
                            && r.node
                                .last_drain
                                .as_ref()
                                .is_some_and(|d| d.status == "complete")
                    })
                };
                if done {
                    out.lock().unwrap().insert(id, Instant::now());
                    return;
                }
            }
        });
    }
}

// ---------------------------------------------------------------------------
// The operator, as a child process

struct OperatorProc {
    child: Child,
    pid: u32,
    metrics: String,
}

fn operator_binary() -> PathBuf {
    // Set by cargo for benches; fall back to the release build next to us.
    if let Some(p) = option_env!("CARGO_BIN_EXE_nomad-pool-operator") {
        let p = PathBuf::from(p);
        if p.exists() {
            return p;
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap().to_path_buf(); // target/release/deps
    if dir.ends_with("deps") {
        dir.pop();
    }
    let p = dir.join("nomad-pool-operator");
    assert!(
        p.exists(),
        "{} not found: run `cargo build --release --bin nomad-pool-operator` first",
        p.display()
    );
    p
}

impl OperatorProc {
    async fn start(namespace: &str, label: &str) -> OperatorProc {
        let log = bench_dir().join(format!("scale-in-logs/operator-{label}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let port = free_port();
        // SCALE_IN_OPERATOR_WRAPPER, e.g. "heaptrack -o /tmp/op-{label}", runs the
        // operator under a profiler (the CPU/RSS figures are then the wrapper's).
        let wrapper: Vec<String> = std::env::var("SCALE_IN_OPERATOR_WRAPPER")
            .unwrap_or_default()
            .split_whitespace()
            .map(|w| w.replace("{label}", label))
            .collect();
        let mut cmd = match wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(operator_binary());
                c
            }
            None => Command::new(operator_binary()),
        };
        // SCALE_IN_OPERATOR_ENV, e.g. "MALLOC_ARENA_MAX=2": extra environment.
        for kv in std::env::var("SCALE_IN_OPERATOR_ENV")
            .unwrap_or_default()
            .split_whitespace()
        {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
        let child = cmd
            .args([
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--metrics-addr",
                &format!("127.0.0.1:{port}"),
            ])
            .env("KUBECONFIG", support::env_var("KUBECONFIG"))
            // SCALE_IN_OPERATOR_LOG, e.g.
            // "info,nomad_pool_operator::controller::reconcile=debug" for
            // each reconcile's timings.
            .env(
                "NPO_LOG",
                std::env::var("SCALE_IN_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting the operator binary");
        let pid = child.id().unwrap();
        eprintln!("[{label}] operator pid {pid}, log {}", log.display());
        OperatorProc {
            child,
            pid,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    fn cpu(&self) -> f64 {
        cpu_seconds(self.pid)
    }

    fn peak_rss_mib(&self) -> f64 {
        proc_status_mib(self.pid, "VmHWM:")
    }

    fn rss_mib(&self) -> f64 {
        proc_status_mib(self.pid, "VmRSS:")
    }

    /// The operator's own request timings (sums and counts), reconciles by
    /// result, and the reconcile duration's percentiles as bucket bounds.
    async fn metrics(&self) -> Value {
        let text = match reqwest::get(&self.metrics).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => return Value::Null,
        };
        let mut out = serde_json::Map::new();
        let mut buckets: Vec<(f64, f64)> = Vec::new(); // (le, cumulative count)
        for l in text.lines() {
            if l.starts_with('#') {
                continue;
            }
            let Some((k, v)) = l.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = v.parse::<f64>() else { continue };
            if k.starts_with("nomadpool_reconcile_duration_seconds_bucket") {
                let le = k
                    .split("le=\"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .unwrap_or("+Inf");
                buckets.push((le.parse().unwrap_or(f64::INFINITY), v));
                continue;
            }
            if k.contains("_bucket") {
                continue;
            }
            let keep = [
                "duration_seconds_sum",
                "duration_seconds_count",
                "reconciles_total",
                "requests_total",
            ];
            if keep.iter().any(|kw| k.contains(kw)) {
                out.insert(k.to_owned(), json!(round(v, 3)));
            }
        }
        let total = buckets.last().map(|b| b.1).unwrap_or(0.0);
        let at_most = |q: f64| {
            buckets
                .iter()
                .find(|(_, c)| *c >= q * total)
                .map(|(le, _)| json!(round(le * 1e3, 0)))
                .unwrap_or(Value::Null)
        };
        out.insert(
            "reconcile_duration_ms_at_most".into(),
            json!({"p50": at_most(0.5), "p99": at_most(0.99), "n": total}),
        );
        Value::Object(out)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Namespace, AWS Secret and a pool for a world, managed by a fresh operator.
struct Managed {
    ns: String,
    pools: Api<NomadClientPool>,
    op: OperatorProc,
}

async fn manage(client: &kube::Client, w: &World, p: &Params) -> Managed {
    let ns = support::create_namespace(client, &format!("bench-{}", w.label)).await;
    let keys = json!({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"});
    support::create_secret(client, &ns, "aws", "aws-credentials", keys).await;
    support::tag_group(&w.moto.client(), &w.group, &format!("{ns}/ci")).await;
    let pools: Api<NomadClientPool> = Api::namespaced(client.clone(), &ns);
    let manifest = json!({
        "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
        "metadata": {"name": "ci", "namespace": ns},
        "spec": {
            "nomad": {"address": w.relay.url},
            "selector": {"nodePool": "ci"},
            "provider": {"awsAutoScalingGroup": {
                "name": w.group, "region": "us-east-1", "endpoint": w.proxy.url,
                "credentialsSecretRef": {"name": "aws"}}},
            "replicas": w.size,
            "disruption": {"maxUnavailable": format!("{}%", p.max_unavailable_pct),
                           "selectionPolicy": "LeastBusy"},
        }
    });
    pools
        .patch(
            "ci",
            &PatchParams::apply("npo-bench").force(),
            &Patch::Apply(&manifest),
        )
        .await
        .expect("applying the pool");
    let op = OperatorProc::start(&ns, &w.label).await;
    Managed { ns, pools, op }
}

async fn pool_status(m: &Managed) -> Value {
    match m.pools.get("ci").await {
        Ok(p) => serde_json::to_value(p.status).unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

fn settled(st: &Value, nodes: usize) -> bool {
    let ready = st["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    ready
        && st["retiring"].as_array().is_none_or(|r| r.is_empty())
        && st["nodes"].as_u64() == Some(nodes as u64)
}

async fn wait_settled(m: &Managed, nodes: usize, timeout: Duration) -> f64 {
    try_settle(m, nodes, timeout).await.unwrap_or_else(|st| {
        panic!(
            "pool in {} did not settle at {nodes} nodes within {timeout:?}: {st}",
            m.ns
        )
    })
}

/// Seconds until the pool settled at `nodes`, or its last status.
async fn try_settle(m: &Managed, nodes: usize, timeout: Duration) -> Result<f64, Value> {
    let t = Instant::now();
    loop {
        let st = pool_status(m).await;
        if settled(&st, nodes) {
            return Ok(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > timeout {
            return Err(st);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// When a pool does not settle: what Nomad (directly and through the relay)
/// and this process look like.
async fn diagnose(w: &World, st: &Value) -> Value {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut out = serde_json::Map::new();
    for (name, base) in [("direct", &w.url), ("relay", &w.relay.url)] {
        let t = Instant::now();
        let r = http
            .get(format!("{base}/v1/nodes"))
            .query(&[("filter", r#"NodePool == "ci""#)])
            .send()
            .await;
        let v = match r {
            Ok(r) => {
                let status = r.status().as_u16();
                let n = r.bytes().await.map(|b| b.len()).unwrap_or(0);
                json!({"status": status, "bytes": n, "ms": round(t.elapsed().as_secs_f64() * 1e3, 0)})
            }
            Err(e) => {
                json!({"error": e.to_string(), "ms": round(t.elapsed().as_secs_f64() * 1e3, 0)})
            }
        };
        out.insert(format!("node_list_{name}"), v);
    }
    let stats = w.get("/sim/stats").await;
    out.insert("sim_nodes".into(), stats["cluster"]["nodes"].clone());
    out.insert(
        "sim_blocking_queries_open".into(),
        stats["blocking_queries_open"].clone(),
    );
    out.insert(
        "bench_open_fds".into(),
        json!(
            std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0)
        ),
    );
    let retiring: Vec<Value> = st["retiring"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| json!({"node": r["nodeName"], "phase": r["phase"], "message": r["message"]}))
        .collect();
    out.insert("status_retiring".into(), json!(retiring));
    for k in [
        "nodes",
        "readyNodes",
        "retiredTotal",
        "groupDesiredCapacity",
    ] {
        out.insert(format!("status_{k}"), st[k].clone());
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------
// Figures from one scale-in

struct ScaleIn {
    t0: Instant,
    /// Retirements driven to their end (last terminate, or settled).
    end: Instant,
    requests: BTreeMap<String, u64>,
    /// Nomad API bytes (up, down) during the scale-in.
    bytes: (u64, u64),
    /// Proxy call counts when the scale-in started.
    calls_before: BTreeMap<String, (u64, f64, f64)>,
    /// Whole-machine CPU busy, percent, during the scale-in.
    machine_busy_pct: f64,
}

fn figures(p: &Params, w: &World, run: &ScaleIn, budget: usize) -> Value {
    let terms: Vec<TerminateRec> = w
        .proxy
        .terminates()
        .into_iter()
        .filter(|t| t.ok && t.at >= run.t0)
        .collect();
    let visible = w.visible_ready.lock().unwrap().clone();
    let mut lat = Vec::new();
    let mut lat_visible = Vec::new();
    let mut tick_lag = Vec::new();
    let mut jobs: Vec<(f64, f64)> = Vec::new(); // (emptying since, job-bound seconds), sim s
    let mut live_at_terminate = 0usize;
    let describes = w.proxy.describes();
    for t in &terms {
        let Some(s) = &t.snap else { continue };
        live_at_terminate += usize::from(s.live_allocs > 0);
        let Some(ready) = s.ready_ns() else { continue };
        let ready_wall = w.wall_of_sim(ready);
        lat.push((w.wall_of(t.at) - ready_wall) * 1e3);
        if let Some(v) = visible.get(&s.node_id) {
            lat_visible.push((t.at.saturating_duration_since(*v)).as_secs_f64() * 1e3);
            tick_lag.push((w.wall_of(*v) - ready_wall) * 1e3);
        }
        if let Some(since) = s.emptying_since_ns {
            jobs.push((
                since as f64 / NS_PER_S,
                ((ready - since) as f64 / NS_PER_S).max(0.0),
            ));
        }
    }
    // Ideal: a retirer with no overhead at all and the same budget, which
    // starts a node the instant a slot frees (in the order the run started
    // them) and terminates it the instant its own jobs are done.
    jobs.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    let mut slots: BinaryHeap<std::cmp::Reverse<u64>> =
        (0..budget).map(|_| std::cmp::Reverse(0)).collect();
    let mut ideal_sim = 0.0f64;
    for (_, d) in &jobs {
        let std::cmp::Reverse(free) = slots.pop().unwrap();
        let end = free as f64 / 1e6 + d;
        ideal_sim = ideal_sim.max(end);
        slots.push(std::cmp::Reverse((end * 1e6) as u64));
    }
    let mut job_bound: Vec<f64> = jobs.iter().map(|j| j.1).collect();
    job_bound.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let last = terms.iter().map(|t| t.at).max().unwrap_or(run.t0);
    let scale_in_s = (last - run.t0).as_secs_f64();
    let n = terms.len().max(1) as f64;
    let req_total = total(&run.requests);
    let calls: BTreeMap<String, (u64, f64, f64)> = w
        .proxy
        .calls()
        .into_iter()
        .map(|(k, (c, s, m))| {
            let (c0, s0, _) = run.calls_before.get(&k).copied().unwrap_or_default();
            (k, (c - c0, s - s0, m))
        })
        .filter(|(_, v)| v.0 > 0)
        .collect();
    let mut per_instance: HashMap<&str, usize> = HashMap::new();
    for t in &terms {
        *per_instance.entry(t.instance.as_str()).or_default() += 1;
    }
    json!({
        "retired": terms.len(),
        "distinct_instances_terminated": per_instance.len(),
        "retire_latency_ms": summary(lat),
        "retire_latency_from_visible_ms": summary(lat_visible),
        "sim_visibility_lag_ms": summary(tick_lag),
        "allocation_list_reads": w.relay.bytes.alloc_list_reads.lock().unwrap().iter().filter(|l| **l >= run.t0 && **l <= run.end).count(),
        "group_reads_per_minute": round(describes.iter().filter(|(a, _)| *a >= run.t0 && *a <= run.end).count() as f64
            / ((run.end - run.t0).as_secs_f64() / 60.0), 1),
        "scale_in_seconds": round(scale_in_s, 1),
        "ideal_seconds": round(ideal_sim / p.time_scale, 1),
        "scale_in_over_ideal": round(scale_in_s / (ideal_sim / p.time_scale), 3),
        "scale_in_sim_minutes": round(scale_in_s * p.time_scale / 60.0, 1),
        "ideal_sim_minutes": round(ideal_sim / 60.0, 1),
        "job_bound_sim_s": {"p50": round(pct(&job_bound, 0.5), 1), "max": round(job_bound.last().copied().unwrap_or(f64::NAN), 1),
                            "sum": round(job_bound.iter().sum::<f64>(), 0)},
        "nomad_requests_per_retired_node": round(req_total as f64 / n, 1),
        "nomad_requests_total": req_total,
        "nomad_requests_by_endpoint": run.requests,
        "nomad_kib_per_retired_node": round((run.bytes.0 + run.bytes.1) as f64 / 1024.0 / n, 1),
        "nomad_mib_total": {"sent": round(run.bytes.0 as f64 / 1048576.0, 1),
                            "received": round(run.bytes.1 as f64 / 1048576.0, 1)},
        "terminated_with_live_allocations": live_at_terminate,
        "cloud_calls": calls.iter().map(|(k, (c, s, m))| (k.clone(), json!({
            "count": c, "mean_ms": round(s / *c as f64 * 1e3, 1), "max_ms": round(m * 1e3, 1)})))
            .collect::<serde_json::Map<_, _>>(),
        "window_seconds": round((run.end - run.t0).as_secs_f64(), 1),
        "machine_cpu_busy_pct": run.machine_busy_pct,
    })
}

// ---------------------------------------------------------------------------
// Phases

/// Per world: requests per minute, bytes per minute, requests by endpoint.
async fn idle_rates(worlds: &[&World], window: f64) -> Vec<(f64, f64, BTreeMap<String, u64>)> {
    let before: Vec<_> = worlds
        .iter()
        .map(|w| (w.nomad_requests(), w.relay.bytes.get()))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(window)).await;
    worlds
        .iter()
        .zip(before)
        .map(|(w, (b, (up, down)))| {
            let d = delta(&w.nomad_requests(), &b);
            let (up2, down2) = w.relay.bytes.get();
            let per_min = window / 60.0;
            (
                total(&d) as f64 / per_min,
                (up2 - up + down2 - down) as f64 / per_min,
                d,
            )
        })
        .collect()
}

struct OperatorResult {
    figures: Value,
    idle: BTreeMap<usize, (f64, f64, BTreeMap<String, u64>)>,
    peak_rss: BTreeMap<usize, f64>,
    startup: BTreeMap<usize, Value>,
}

async fn operator_run(p: &Params, client: &kube::Client) -> OperatorResult {
    eprintln!(
        "[operator] building worlds of {} and {} clients",
        p.small, p.nodes
    );
    let small = World::new(p, "op-small", p.small).await;
    let big = World::new(p, "op-big", p.nodes).await;
    eprintln!(
        "[operator] worlds ready ({:.0} s, {:.0} s); moto DescribeAutoScalingGroups at {}: {:?} s",
        small.setup_s, big.setup_s, p.nodes, big.moto_describe_s
    );
    let mut startup = BTreeMap::new();
    let ms = manage(client, &small, p).await;
    let mb = manage(client, &big, p).await;
    let settle_small = wait_settled(&ms, p.small, Duration::from_secs(300)).await;
    let settle_big = wait_settled(&mb, p.nodes, Duration::from_secs(600)).await;
    for (w, m, s) in [(&small, &ms, settle_small), (&big, &mb, settle_big)] {
        startup.insert(
            w.size,
            json!({"settled_after_s": round(s, 1), "nomad_requests": total(&w.nomad_requests()),
                   "cpu_seconds": round(m.op.cpu(), 2), "rss_mib": round(m.op.rss_mib(), 1)}),
        );
    }
    eprintln!(
        "[operator] both pools settled; idle window {:.0} s",
        p.idle_s
    );
    let idle = idle_rates(&[&small, &big], p.idle_s).await;
    let mut idle_map = BTreeMap::new();
    idle_map.insert(small.size, idle[0].clone());
    idle_map.insert(big.size, idle[1].clone());
    let mut peak_rss = BTreeMap::new();
    peak_rss.insert(small.size, ms.op.peak_rss_mib());
    ms.op.stop().await;
    support::delete_namespace(client, &ms.ns).await;
    small.shutdown().await;

    // --- scale-in ---
    let target = p.nodes - p.retire;
    let before = big.nomad_requests();
    let bytes_before = big.relay.bytes.get();
    let calls_before = big.proxy.calls();
    let jiffies0 = machine_jiffies();
    let cpu0 = mb.op.cpu();
    let t0 = Instant::now();
    mb.pools
        .patch(
            "ci",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": target}})),
        )
        .await
        .unwrap();
    eprintln!("[operator] replicas {} -> {target}", p.nodes);
    let mut last_print = Instant::now();
    let deadline = Duration::from_secs_f64(
        (p.job_max_s * 3.0 * (p.retire as f64 / p.budget() as f64).ceil()) / p.time_scale + 600.0,
    );
    while big.proxy.ok_terminates() < p.retire {
        assert!(
            t0.elapsed() < deadline,
            "operator scale-in did not finish in {deadline:?}"
        );
        if last_print.elapsed() > Duration::from_secs(15) {
            let st = pool_status(&mb).await;
            eprintln!(
                "[operator] {:>4.0} s: terminated {}, draining {}, terminating {}, rss {:.0} MiB",
                t0.elapsed().as_secs_f64(),
                big.proxy.ok_terminates(),
                st["drainingNodes"],
                st["terminatingNodes"],
                mb.op.rss_mib()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let cpu_last_terminate = mb.op.cpu() - cpu0;
    let settle = try_settle(&mb, target, Duration::from_secs(180)).await;
    let settled_s = t0.elapsed().as_secs_f64();
    let unsettled = match &settle {
        Ok(_) => Value::Null,
        Err(st) => {
            let d = diagnose(&big, st).await;
            eprintln!("[operator] the pool did not settle: {d}");
            d
        }
    };
    let jiffies1 = machine_jiffies();
    let end = Instant::now();
    let requests = delta(&big.nomad_requests(), &before);
    let bytes = big.relay.bytes.get();
    let bytes = (bytes.0 - bytes_before.0, bytes.1 - bytes_before.1);
    let cpu = mb.op.cpu() - cpu0;
    let cpu_total = mb.op.cpu();
    peak_rss.insert(big.size, mb.op.peak_rss_mib());
    let metrics = mb.op.metrics().await;
    let run = ScaleIn {
        t0,
        end,
        requests,
        bytes,
        calls_before,
        machine_busy_pct: busy_pct(jiffies0, jiffies1),
    };
    let mut f = figures(p, &big, &run, p.budget());
    let violations = big.violations().await;
    let group_after = big.group_after().await;
    let st = pool_status(&mb).await;
    // Size of one node-list read, for the request volume.
    let list_bytes = big
        .http
        .get(format!(
            "{}/v1/nodes?filter=NodePool%20%3D%3D%20%22ci%22",
            big.url
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    // And of one read of the allocation list the operator ranks nodes with.
    let t = Instant::now();
    let alloc_list_bytes = big
        .http
        .get(format!("{}/v1/allocations", big.url))
        .query(&[
            ("namespace", "*"),
            ("task_states", "false"),
            (
                "filter",
                r#"ClientStatus == "pending" or ClientStatus == "running""#,
            ),
        ])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
    let alloc_list_ms = t.elapsed().as_secs_f64() * 1e3;
    let cluster = big.get("/sim/stats").await["cluster"]["allocations"].clone();
    let o = f.as_object_mut().unwrap();
    o.insert(
        "settled_seconds".into(),
        if settle.is_ok() {
            json!(round(settled_s, 1))
        } else {
            Value::Null
        },
    );
    o.insert("not_settled_diagnosis".into(), unsettled);
    o.insert(
        "allocation_list_after".into(),
        json!({"bytes": alloc_list_bytes, "ms": round(alloc_list_ms, 0), "cluster_allocations": cluster}),
    );
    o.insert("cpu_seconds".into(), json!(round(cpu, 2)));
    o.insert(
        "cpu_seconds_to_last_terminate".into(),
        json!(round(cpu_last_terminate, 2)),
    );
    o.insert(
        "cpu_seconds_process_total".into(),
        json!(round(cpu_total, 2)),
    );
    o.insert("safety_violations".into(), violations["count"].clone());
    o.insert("violations".into(), violations["violations"].clone());
    o.insert("retired_total_in_status".into(), st["retiredTotal"].clone());
    o.insert("group_after".into(), group_after);
    o.insert("operator_metrics".into(), metrics);
    o.insert("node_list_bytes_after".into(), json!(list_bytes));
    eprintln!("[operator] done: {}", serde_json::to_string(&f).unwrap());
    mb.op.stop().await;
    support::delete_namespace(client, &mb.ns).await;
    big.shutdown().await;
    OperatorResult {
        figures: f,
        idle: idle_map,
        peak_rss,
        startup,
    }
}

async fn baseline_run(p: &Params) -> Value {
    eprintln!("[baseline] building a world of {} clients", p.nodes);
    let w = World::new(p, "baseline", p.nodes).await;
    let poll = Duration::from_secs_f64(p.baseline_poll_s / p.time_scale);
    let before = w.nomad_requests();
    let bytes_before = w.relay.bytes.get();
    let calls_before = w.proxy.calls();
    let jiffies0 = machine_jiffies();
    let t0 = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "baseline-script",
            &w.relay.url,
            &w.proxy.url,
            &p.retire.to_string(),
            &p.budget().to_string(),
            &poll.as_millis().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the baseline script");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let reader = tokio::spawn(async move {
        let mut last = Value::Null;
        while let Ok(Some(l)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&l) {
                last = v;
            }
        }
        last
    });
    let mut last_print = Instant::now();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "[baseline] {:>4.0} s: terminated {}",
                t0.elapsed().as_secs_f64(),
                w.proxy.ok_terminates()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let end = Instant::now();
    let jiffies1 = machine_jiffies();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "baseline script failed: {status}");
    let report = reader.await.unwrap();
    let requests = delta(&w.nomad_requests(), &before);
    let bytes = w.relay.bytes.get();
    let bytes = (bytes.0 - bytes_before.0, bytes.1 - bytes_before.1);
    let run = ScaleIn {
        t0,
        end,
        requests,
        bytes,
        calls_before,
        machine_busy_pct: busy_pct(jiffies0, jiffies1),
    };
    let mut f = figures(p, &w, &run, p.budget());
    // Kills happen before the proxy answers, so every one is recorded by now.
    let violations = w.violations().await;
    let group_after = w.group_after().await;
    let o = f.as_object_mut().unwrap();
    o.insert("group_after".into(), group_after);
    o.insert("cpu_seconds".into(), report["cpu_seconds"].clone());
    o.insert("peak_rss_mib".into(), report["peak_rss_mib"].clone());
    o.insert("safety_violations".into(), violations["count"].clone());
    o.insert("violations".into(), violations["violations"].clone());
    o.insert("script".into(), report);
    o.insert(
        "poll_interval_ms_wall_clock".into(),
        json!(poll.as_secs_f64() * 1e3),
    );
    // The script's wait is its poll period, which is scenario time: at real
    // speed each figure is `time_scale` times longer.
    let at_real = |k: &str| round(f_get(o, "retire_latency_ms", k) * p.time_scale, 0);
    let scaled = json!({"p50": at_real("p50"), "p99": at_real("p99"), "max": at_real("max")});
    o.insert("retire_latency_ms_at_scenario_speed".into(), scaled);
    let idle: serde_json::Map<String, Value> = [p.small, p.nodes]
        .iter()
        .map(|n| (n.to_string(), json!(0.0)))
        .collect();
    o.insert("idle_nomad_requests_per_min".into(), idle.into());
    o.insert(
        "idle_note".into(),
        json!("a script runs only when invoked: it sends nothing while the pool is idle"),
    );
    eprintln!("[baseline] done: {}", serde_json::to_string(&f).unwrap());
    w.shutdown().await;
    f
}

fn f_get(o: &serde_json::Map<String, Value>, a: &str, b: &str) -> f64 {
    o.get(a).and_then(|v| v[b].as_f64()).unwrap_or(f64::NAN)
}

// ---------------------------------------------------------------------------
// The baseline script (a child process of the bench, so its CPU and memory
// are its own): what admins write.
//
//   for node in $(pick N least busy); do            # N at a time
//     nomad node eligibility -disable $node
//     nomad node drain -enable -no-deadline -detach -yes $node
//     while sleep 10; do
//       [ "$(nomad node status -json $node | jq .DrainStrategy)" = null ] && break
//     done
//     aws autoscaling terminate-instance-in-auto-scaling-group \
//         --instance-id $(... unique.platform.aws.instance-id) --should-decrement-desired-capacity
//   done

fn baseline_main(args: &[String]) {
    let nomad = args[0].clone();
    let aws = args[1].clone();
    let retire: usize = args[2].parse().unwrap();
    let concurrency: usize = args[3].parse().unwrap();
    let poll = Duration::from_millis(args[4].parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(baseline_script(nomad, aws, retire, concurrency, poll));
    let pid = std::process::id();
    let mut report = report;
    report["cpu_seconds"] = json!(round(cpu_seconds(pid), 2));
    report["peak_rss_mib"] = json!(round(proc_status_mib(pid, "VmHWM:"), 1));
    println!("{report}");
}

async fn baseline_script(
    nomad: String,
    aws: String,
    retire: usize,
    concurrency: usize,
    poll: Duration,
) -> Value {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let asg = asg_client(&aws);
    let t = Instant::now();
    // Least busy first, like the operator's LeastBusy: the same choice makes
    // the comparison about the retire procedure, not the selection.
    let nodes: Value = http
        .get(format!("{nomad}/v1/nodes"))
        .query(&[("filter", r#"NodePool == "ci""#)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let allocs: Value = http
        .get(format!("{nomad}/v1/allocations"))
        .query(&[
            (
                "filter",
                r#"ClientStatus == "pending" or ClientStatus == "running""#,
            ),
            ("task_states", "false"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut busy: HashMap<&str, u32> = HashMap::new();
    for a in allocs.as_array().unwrap() {
        *busy.entry(a["NodeID"].as_str().unwrap()).or_default() += 1;
    }
    let mut candidates: Vec<(u32, u64, String)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["Status"] == "ready" && n["SchedulingEligibility"] == "eligible")
        .map(|n| {
            let id = n["ID"].as_str().unwrap();
            (
                busy.get(id).copied().unwrap_or(0),
                n["CreateIndex"].as_u64().unwrap_or(0),
                id.to_owned(),
            )
        })
        .collect();
    candidates.sort();
    candidates.truncate(retire);
    let selection_ms = t.elapsed().as_secs_f64() * 1e3;
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    futures::stream::iter(candidates)
        .for_each_concurrent(concurrency, |(_, _, id)| {
            let http = http.clone();
            let asg = asg.clone();
            let nomad = nomad.clone();
            let errors = errors.clone();
            async move {
                if let Err(e) = retire_one(&http, &asg, &nomad, &id, poll).await {
                    errors.lock().unwrap().push(format!("{id}: {e}"));
                }
            }
        })
        .await;
    let errors = errors.lock().unwrap().clone();
    json!({"selection_ms": round(selection_ms, 1), "errors": errors.len(),
           "first_errors": errors.iter().take(5).collect::<Vec<_>>()})
}

async fn retire_one(
    http: &reqwest::Client,
    asg: &AsgClient,
    nomad: &str,
    id: &str,
    poll: Duration,
) -> Result<(), String> {
    let ok = |r: reqwest::Response| {
        if r.status().is_success() {
            Ok(r)
        } else {
            Err(format!("{}", r.status()))
        }
    };
    ok(http
        .post(format!("{nomad}/v1/node/{id}/eligibility"))
        .json(&json!({"NodeID": id, "Eligibility": "ineligible"}))
        .send()
        .await
        .map_err(|e| e.to_string())?)?;
    ok(http
        .post(format!("{nomad}/v1/node/{id}/drain"))
        .json(
            &json!({"NodeID": id, "DrainSpec": {"Deadline": 0, "IgnoreSystemJobs": false},
                      "MarkEligible": false}),
        )
        .send()
        .await
        .map_err(|e| e.to_string())?)?;
    let instance = loop {
        tokio::time::sleep(poll).await;
        let n: Value = ok(http
            .get(format!("{nomad}/v1/node/{id}"))
            .send()
            .await
            .map_err(|e| e.to_string())?)?
        .json()
        .await
        .map_err(|e| e.to_string())?;
        if n["DrainStrategy"].is_null() {
            break n["Attributes"]["unique.platform.aws.instance-id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
    };
    asg.terminate_instance_in_auto_scaling_group()
        .instance_id(instance)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .map_err(|e| format!("{}", aws_sdk_autoscaling::error::DisplayErrorContext(e)))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Report

fn ratio(b: &Value, o: &Value) -> Value {
    match (b.as_f64(), o.as_f64()) {
        (Some(b), Some(o)) if o > 0.0 => json!(round(b / o, 2)),
        _ => Value::Null,
    }
}

fn table(p: &Params, op: &Value, bl: &Value) -> String {
    let num = |v: &Value| match v.as_f64() {
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) => format!("{x}"),
        None => "–".into(),
    };
    let lat = |v: &Value| {
        format!(
            "{} / {} / {}",
            num(&v["p50"]),
            num(&v["p99"]),
            num(&v["max"])
        )
    };
    let small = p.small.to_string();
    let big = p.nodes.to_string();
    let mut rows = vec![
        (
            "retire latency p50 / p99 / max, ms (wall clock)".to_string(),
            lat(&op["retire_latency_ms"]),
            lat(&bl["retire_latency_ms"]),
            ratio(
                &bl["retire_latency_ms"]["p99"],
                &op["retire_latency_ms"]["p99"],
            ),
        ),
        (
            "... at scenario speed (the script's 10 s poll unscaled), ms".to_string(),
            lat(&op["retire_latency_ms"]),
            lat(&bl["retire_latency_ms_at_scenario_speed"]),
            ratio(
                &bl["retire_latency_ms_at_scenario_speed"]["p99"],
                &op["retire_latency_ms"]["p99"],
            ),
        ),
        (
            "scale-in time / ideal, s (wall clock)".into(),
            format!(
                "{} / {}",
                num(&op["scale_in_seconds"]),
                num(&op["ideal_seconds"])
            ),
            format!(
                "{} / {}",
                num(&bl["scale_in_seconds"]),
                num(&bl["ideal_seconds"])
            ),
            ratio(&bl["scale_in_seconds"], &op["scale_in_seconds"]),
        ),
        (
            "Nomad requests per retired node".into(),
            num(&op["nomad_requests_per_retired_node"]),
            num(&bl["nomad_requests_per_retired_node"]),
            ratio(
                &bl["nomad_requests_per_retired_node"],
                &op["nomad_requests_per_retired_node"],
            ),
        ),
        (
            "Nomad API traffic per retired node, KiB".into(),
            num(&op["nomad_kib_per_retired_node"]),
            num(&bl["nomad_kib_per_retired_node"]),
            ratio(
                &bl["nomad_kib_per_retired_node"],
                &op["nomad_kib_per_retired_node"],
            ),
        ),
        (
            format!("idle Nomad requests per minute, {small} / {big} nodes"),
            format!(
                "{} / {}",
                num(&op["idle_nomad_requests_per_min"][&small]),
                num(&op["idle_nomad_requests_per_min"][&big])
            ),
            format!(
                "{} / {}",
                num(&bl["idle_nomad_requests_per_min"][&small]),
                num(&bl["idle_nomad_requests_per_min"][&big])
            ),
            Value::Null,
        ),
        (
            "CPU seconds (during the scale-in)".into(),
            num(&op["cpu_seconds"]),
            num(&bl["cpu_seconds"]),
            ratio(&bl["cpu_seconds"], &op["cpu_seconds"]),
        ),
        (
            "peak RSS, MiB".into(),
            num(&op["peak_rss_mib"]),
            num(&bl["peak_rss_mib"]),
            ratio(&bl["peak_rss_mib"], &op["peak_rss_mib"]),
        ),
        (
            "safety violations".into(),
            num(&op["safety_violations"]),
            num(&bl["safety_violations"]),
            Value::Null,
        ),
    ];
    let mut s =
        String::from("| | operator | baseline | baseline ÷ operator |\n|---|---|---|---|\n");
    for (k, a, b, r) in rows.drain(..) {
        s.push_str(&format!(
            "| {k} | {a} | {b} | {} |\n",
            r.as_f64()
                .map(|x| format!("{x}"))
                .unwrap_or_else(|| "–".into())
        ));
    }
    s
}

async fn run(p: Params) {
    std::fs::create_dir_all(bench_dir().join("scale-in-logs")).unwrap();
    let client = support::kube_client().await;
    support::install_crd(&client).await;
    let started = Instant::now();
    let build = build_info();
    eprintln!("operator binary: {} {build}", operator_binary().display());

    let mut operator = Value::Null;
    if p.operator {
        let r = operator_run(&p, &client).await;
        let mut f = r.figures;
        let o = f.as_object_mut().unwrap();
        o.insert(
            "idle_nomad_requests_per_min".into(),
            r.idle
                .iter()
                .map(|(k, (rate, _, _))| (k.to_string(), json!(round(*rate, 2))))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        o.insert(
            "idle_nomad_kib_per_min".into(),
            r.idle
                .iter()
                .map(|(k, (_, b, _))| (k.to_string(), json!(round(*b / 1024.0, 1))))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        o.insert(
            "idle_nomad_requests_by_endpoint".into(),
            r.idle
                .iter()
                .map(|(k, (_, _, by))| (k.to_string(), json!(by)))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        o.insert("peak_rss_mib".into(), json!(round(r.peak_rss[&p.nodes], 1)));
        o.insert(
            "peak_rss_mib_by_pool_size".into(),
            r.peak_rss
                .iter()
                .map(|(k, v)| (k.to_string(), json!(round(*v, 1))))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        o.insert(
            "startup".into(),
            r.startup
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        );
        operator = f;
    }
    let baseline = if p.baseline {
        baseline_run(&p).await
    } else {
        Value::Null
    };

    let keys = [
        ("retire_latency_p50", "retire_latency_ms", Some("p50")),
        ("retire_latency_p99", "retire_latency_ms", Some("p99")),
        ("retire_latency_max", "retire_latency_ms", Some("max")),
        ("scale_in_seconds", "scale_in_seconds", None),
        (
            "nomad_requests_per_retired_node",
            "nomad_requests_per_retired_node",
            None,
        ),
        ("cpu_seconds", "cpu_seconds", None),
        ("peak_rss_mib", "peak_rss_mib", None),
    ];
    let ratios: serde_json::Map<String, Value> = keys
        .iter()
        .map(|(name, k, sub)| {
            let (b, o) = match sub {
                Some(s) => (&baseline[*k][*s], &operator[*k][*s]),
                None => (&baseline[*k], &operator[*k]),
            };
            (name.to_string(), ratio(b, o))
        })
        .collect();
    let p99 = operator["retire_latency_ms"]["p99"].as_f64();
    let idle_small = operator["idle_nomad_requests_per_min"][p.small.to_string()].as_f64();
    let idle_big = operator["idle_nomad_requests_per_min"][p.nodes.to_string()].as_f64();
    let rss = operator["peak_rss_mib"].as_f64();
    let out = json!({
        "scenario": p.json(),
        "operator": operator,
        "baseline": baseline,
        "ratio_baseline_over_operator": ratios,
        "targets": {
            "retire_latency_p99_under_1s": p99.map(|x| x < 1000.0),
            "idle_rate_flat_in_pool_size": match (idle_small, idle_big) {
                (Some(a), Some(b)) => json!(b <= a.max(0.5) * 1.5),
                _ => Value::Null,
            },
            "peak_rss_under_100_mib": rss.map(|x| x < 100.0),
        },
        "run_seconds": round(started.elapsed().as_secs_f64(), 0),
        "build": build,
        "command": "cargo build --release --bin nomad-pool-operator && cargo bench -p nomad-pool-operator --bench scale_in",
    });
    let path = bench_dir().join("scale-in.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    let t = table(&p, &operator, &baseline);
    std::fs::write(bench_dir().join("scale-in.md"), &t).unwrap();
    println!(
        "scale-in of {} → {} clients, maxUnavailable {}%, time scale {}",
        p.nodes,
        p.nodes - p.retire,
        p.max_unavailable_pct,
        p.time_scale
    );
    println!("{t}");
    println!("targets: {}", out["targets"]);
    println!("wrote {}", path.display());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("baseline-script") {
        baseline_main(&args[2..]);
        return;
    }
    // `cargo test --all-targets` runs bench binaries without `--bench`: this
    // one takes many minutes and starts servers, so it only runs when asked.
    if !args.iter().any(|a| a == "--bench") {
        println!("scale_in: run with `cargo bench --bench scale_in`; skipped");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(Params::from_env()));
}
