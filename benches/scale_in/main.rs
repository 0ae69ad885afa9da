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
//! The API server's cost of the operator's scale-in (issue 15) is measured
//! too: kube-apiserver's write requests and request bytes (its own
//! `/metrics`), the CPU seconds of kube-apiserver and etcd, and the largest
//! pool or retirement object written (`apiserver.rs`).
//!
//! `SCALE_IN_SCALE_20000=1` runs a second scenario after the first (operator
//! only, no idle window): 20,000 clients scaled in by 4,000 at
//! `maxUnavailable` 25 % (`Params::scale_20000`); `SCALE_IN_SCALE_20000=only`
//! runs it alone and merges it into an existing JSON. Its figures go to the
//! JSON's `scale_20000` object.
//!
//! `SCALE_IN_PROVIDER=gce` runs the operator's half on Compute Engine
//! instead (`gce.rs`): the clients are VMs of zonal managed instance groups
//! of 1,000 (the zonal cap) in one in-process gce-sim, one pool per group,
//! each lowered by its share (5 × 1,000 lowered by 200 each at the
//! defaults). No baseline: the admin script speaks only the Auto Scaling
//! API; the JSON and the table say so.
//!
//! Results: a table on stdout, JSON in `target/bench/scale-in.json`. See
//! `BENCHMARKS.md` for the method and the figures.
//!
//! Run: `cargo build --release --bin nomad-pool-operator && cargo bench -p nomad-pool-operator --bench scale_in`
//!
//! Measurement, in short:
//! - every world (simulator + Auto Scaling group) gets its own moto server (the
//!   project's wrapper, `npo_testkit::moto`, as the test environment runs it), so
//!   other test runs on the shared moto do not disturb it and vice versa;
//! - the operator and the baseline reach moto through a recording proxy in
//!   this process: it timestamps each `TerminateInstanceInAutoScalingGroup`
//!   (and, with `batchTerminations`, each EC2 `TerminateInstances`, for every
//!   VM it names: `SCALE_IN_BATCH_TERMINATIONS`, default 0, and
//!   `SCALE_IN_20000_BATCH_TERMINATIONS`, default 0, set the pool's field)
//!   on arrival, and once moto accepted it kills the instance's simulated VM
//!   (what the harness's `Bridge` does by polling; at 5,000 instances one
//!   `DescribeAutoScalingGroups` costs moto about a second, so polling it
//!   every 100 ms would saturate moto and distort the operator's figures);
//! - "last allocation ended" is read from the simulator's state at the moment
//!   the terminate call arrives: the later of the node's last allocation end
//!   and its drain completion, in simulated time, converted to wall-clock time
//!   with the (fixed) time scale. The moment the simulator made it visible to
//!   API clients (its tick) is recorded as well, through its per-node watch.

mod apiserver;
mod baseline;
mod figures;
mod gce;
mod helpers;
mod operator;
mod operator_run;
mod params;
mod recorder;
mod relay;
mod report;
mod world;

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use futures::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams};
use nomad_pool_operator::api::NomadClientPool;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;
use tokio::process::Command;

const NS_PER_S: f64 = 1e9;

use npo_testkit as support;
use support::{delta, total};

use apiserver::{LargestObjects, apiserver_figures};
use baseline::*;
use figures::*;
use helpers::*;
use operator::*;
use operator_run::*;
use params::*;
use recorder::*;
use relay::*;
use report::*;
use world::*;

async fn run(p: Params, scenarios: Scenarios) {
    std::fs::create_dir_all(bench_dir().join("scale-in-logs")).unwrap();
    let client = support::kube_client().await;
    support::install_crd(&client).await;
    let started = Instant::now();
    let build = build_info();
    eprintln!("operator binary: {} {build}", operator_binary().display());
    let path = bench_dir().join("scale-in.json");
    let mut out = match scenarios {
        // The second scenario alone joins the figures of an earlier run.
        Scenarios::Second => {
            let mut earlier: Value = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_else(|| json!({}));
            // Said in the file: the halves, `build` and `run_seconds` are
            // the earlier run's; this run's own build is `scale_20000.build`.
            if earlier.get("operator").is_some() {
                earlier["joined_earlier_run"] =
                    json!("all but scale_20000 comes from the earlier run this one joined");
            }
            earlier
        }
        _ => {
            let out = first_scenario(&p, &client).await;
            println!(
                "scale-in of {} → {} clients, maxUnavailable {}%, time scale {}",
                p.nodes,
                p.nodes - p.retire,
                p.max_unavailable_pct,
                p.time_scale
            );
            println!("{}", table(&p, &out["operator"], &out["baseline"]));
            println!("targets: {}", out["targets"]);
            out
        }
    };
    if scenarios != Scenarios::First {
        warn_fd_limit();
        let p2 = p.scale_20000();
        let t = Instant::now();
        let mut s = scale_20000(&p2, &client).await;
        s["run_seconds"] = json!(round(t.elapsed().as_secs_f64(), 0));
        s["build"] = build.clone();
        println!(
            "scale-in of {} → {} clients, maxUnavailable {}% (scale_20000)",
            p2.nodes,
            p2.nodes - p2.retire,
            p2.max_unavailable_pct
        );
        println!("{}", table(&p2, &s, &Value::Null));
        println!("targets: {}", s["targets"]);
        out["scale_20000"] = s;
    }
    if scenarios != Scenarios::Second {
        out["run_seconds"] = json!(round(started.elapsed().as_secs_f64(), 0));
        out["build"] = build;
    }
    let provider = match p.provider {
        Provider::Aws => "",
        Provider::Gce => "SCALE_IN_PROVIDER=gce ",
    };
    out["command"] = json!(format!(
        "cargo build --release --bin nomad-pool-operator && {provider}cargo bench -p nomad-pool-operator --bench scale_in"
    ));
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    let mut md = table(&p, &out["operator"], &out["baseline"]);
    if !out["scale_20000"].is_null() {
        md.push_str("\nscale_20000:\n\n");
        md.push_str(&table(&p.scale_20000(), &out["scale_20000"], &Value::Null));
    }
    std::fs::write(bench_dir().join("scale-in.md"), md).unwrap();
    println!("wrote {}", path.display());
    // A run that could not finish is recorded above, and fails the bench.
    for o in [&out["operator"], &out["scale_20000"]] {
        if o["completed"] == json!(false) {
            eprintln!("scale-in incomplete: {}", o["stopped_because"]);
            std::process::exit(1);
        }
    }
}

/// The relay and the simulator live in this process and take three file
/// descriptors per Nomad connection of the operator, which opened more than
/// 6,000 at once at 20,000 clients (old controller): warn when the limit is
/// low (raise it with `ulimit -n` where allowed, or bypass the relay with
/// `SCALE_IN_RELAY=0`).
fn warn_fd_limit() {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<u64>().ok());
    if soft.is_some_and(|n| n < 100_000) {
        eprintln!(
            "warning: open files limit {soft:?}; the 20,000-client scenario can exhaust it (ulimit -n, or SCALE_IN_RELAY=0)"
        );
    }
}

/// The 5,000-client scenario: the operator and the baseline, their ratios
/// and the targets.
async fn first_scenario(p: &Params, client: &kube::Client) -> Value {
    let operator = if p.operator {
        operator_json(p, operator_run(p, client).await)
    } else {
        Value::Null
    };
    let baseline = if p.provider == Provider::Gce {
        json!({"not_run": BASELINE_NOT_ON_GCE})
    } else if p.baseline {
        baseline_run(p).await
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
    json!({
        "scenario": p.json(),
        "targets": targets(p, &operator, &baseline),
        "operator": operator,
        "baseline": baseline,
        "ratio_baseline_over_operator": ratios,
    })
}

/// The targets of issues 6 and 15 for the 5,000-client scenario.
fn targets(p: &Params, operator: &Value, baseline: &Value) -> Value {
    let p99 = operator["retire_latency_ms"]["p99"].as_f64();
    let idle_small = operator["idle_nomad_requests_per_min"][p.small.to_string()].as_f64();
    let idle_big = operator["idle_nomad_requests_per_min"][p.nodes.to_string()].as_f64();
    let rss = operator["peak_rss_mib"].as_f64();
    let cpu = operator["cpu_seconds"].as_f64();
    json!({
        "retire_latency_p99_under_1s": p99.map(|x| x < 1000.0),
        "retire_latency_p99_under_0_3s": p99.map(|x| x < 300.0),
        "idle_rate_flat_in_pool_size": match (idle_small, idle_big) {
            (Some(a), Some(b)) => json!(b <= a.max(0.5) * 1.5),
            _ => Value::Null,
        },
        "peak_rss_under_100_mib": rss.map(|x| x < 100.0),
        "cpu_seconds_at_most_baseline": cpu.zip(baseline["cpu_seconds"].as_f64()).map(|(o, b)| o <= b),
        "no_safety_violations": operator["safety_violations"].as_u64().map(|v| v == 0),
    })
}

/// The operator's figures with its idle rates, peak RSS and start-up.
fn operator_json(p: &Params, r: OperatorResult) -> Value {
    let mut f = r.figures;
    let o = f.as_object_mut().unwrap();
    let by_size = |g: &dyn Fn(&IdleRate) -> Value| -> Value {
        r.idle
            .iter()
            .map(|(k, v)| (k.to_string(), g(v)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    o.insert(
        "idle_nomad_requests_per_min".into(),
        by_size(&|(rate, _, _)| json!(round(*rate, 2))),
    );
    o.insert(
        "idle_nomad_kib_per_min".into(),
        by_size(&|(_, b, _)| json!(round(*b / 1024.0, 1))),
    );
    o.insert(
        "idle_nomad_requests_by_endpoint".into(),
        by_size(&|(_, _, by)| json!(by)),
    );
    o.insert(
        "peak_rss_mib".into(),
        json!(r.peak_rss.get(&p.nodes).map(|v| round(*v, 1))),
    );
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
    f
}

/// The 20,000-client scenario (issue 15), operator only: its figures, the
/// scenario and its targets in one object.
async fn scale_20000(p: &Params, client: &kube::Client) -> Value {
    let mut f = operator_json(p, operator_run(p, client).await);
    let p99 = f["retire_latency_ms"]["p99"].as_f64();
    let rss = f["peak_rss_mib"].as_f64();
    f["targets"] = json!({
        "completed": f["completed"],
        "no_safety_violations": f["safety_violations"].as_u64().map(|v| v == 0),
        "retire_latency_p99_under_0_5s": p99.map(|x| x < 500.0),
        "peak_rss_under_250_mib": rss.map(|x| x < 250.0),
    });
    f["scenario"] = p.json();
    f
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
    rt.block_on(run(Params::from_env(), Scenarios::from_env()));
}
