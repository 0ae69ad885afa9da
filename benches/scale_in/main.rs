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
//! - every world (simulator + Auto Scaling group) gets its own moto server (the
//!   project's wrapper, `npo_testkit::moto`, as the test environment runs it), so
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

mod baseline;
mod figures;
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
