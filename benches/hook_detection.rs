//! Lifecycle-hook detection latency (issue 16), plain `main`, no harness:
//! from the moment the Auto Scaling group puts an instance in
//! `Terminating:Wait` (someone else lowered its desired capacity) to the
//! moment Nomad has the drain of that instance's client.
//!
//! One world (the release operator binary, the shared test environment's
//! API server and moto, its own Nomad simulator) of `HOOK_BENCH_NODES` (30)
//! busy clients and a managed terminating hook. Each of `HOOK_BENCH_ROUNDS`
//! (12) rounds lowers the desired capacity by `HOOK_BENCH_BATCH` (2), reads
//! the simulator every 20 ms until every held instance's client drains,
//! then ends their jobs and waits until the VMs left. Rounds start at
//! spread-out moments (a fixed pseudo-random pause of 0–6 s), so the
//! samples cover every phase of the group read the discovery rides on.
//!
//! "Action started" is taken as the moment the `SetDesiredCapacity` call was
//! sent (moto holds the victims inside that call), so each figure is an
//! upper bound. Results: a table on stdout, JSON in
//! `target/bench/hook-detection.json`; see BENCHMARKS.md.
//!
//! Run: `cargo build --release --bin nomad-pool-operator && cargo bench -p nomad-pool-operator --bench hook_detection`

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(120);

fn env_usize(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// The simulator's clients by instance ID: (node ID, draining).
async fn clients(w: &World) -> BTreeMap<String, (String, bool)> {
    (w.sim.nodes().await.into_iter())
        .filter_map(|n| {
            let iid = n["instance_id"].as_str()?.to_string();
            let id = n["id"].as_str()?.to_string();
            Some((iid, (id, n["draining"].as_bool() == Some(true))))
        })
        .collect()
}

/// One round: seconds from the capacity change to each held client's drain.
async fn round(w: &World, jobs: &BTreeMap<String, String>, batch: i32) -> Vec<f64> {
    let before: HashSet<String> = w
        .group()
        .await
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect();
    let desired = w.group().await.desired - batch;
    let sent = Instant::now();
    w.asg
        .set_desired_capacity()
        .auto_scaling_group_name(&w.group)
        .desired_capacity(desired)
        .send()
        .await
        .expect("lowering the desired capacity as someone else");
    let held: Vec<String> = (w.group().await.instances.iter())
        .filter(|i| i.lifecycle == "Terminating:Wait" && before.contains(&i.id))
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(held.len(), batch as usize, "moto holds the victims");
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let deadline = Instant::now() + T;
    while seen.len() < held.len() {
        assert!(
            Instant::now() < deadline,
            "held clients not drained in {T:?}"
        );
        let now = clients(w).await;
        for iid in &held {
            if !seen.contains_key(iid) && now.get(iid).is_some_and(|(_, d)| *d) {
                seen.insert(iid.clone(), sent.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let the round end: the jobs finish, the actions are completed.
    let now = clients(w).await;
    for iid in &held {
        let node = &now[iid].0;
        w.sim.finish(&jobs[node]).await;
    }
    wait_for("the held VMs to leave the group", T, || async {
        let g = w.group().await;
        (!g.instances.iter().any(|i| held.contains(&i.id))).then_some(())
    })
    .await;
    seen.into_values().collect()
}

/// Where the pool learns of held instances.
#[derive(Clone, Copy)]
enum Path {
    GroupRead,
    Queue,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::GroupRead => "group-read",
            Path::Queue => "queue",
        }
    }
}

/// The hook as its owner puts it (with the queue as its notification
/// target on the queue path), and the pool's `lifecycleHook`.
async fn hook(w: &World, path: Path) -> Value {
    let put = w
        .asg
        .put_lifecycle_hook()
        .auto_scaling_group_name(&w.group)
        .lifecycle_hook_name("drain")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(300)
        .default_result("ABANDON");
    match path {
        Path::GroupRead => {
            put.send().await.expect("putting the hook");
            json!({"name": "drain"})
        }
        Path::Queue => {
            let sqs = sqs_client();
            let (url, arn) = create_queue(&sqs, &w.namespace).await;
            (put.role_arn("arn:aws:iam::123456789012:role/npo-hook-notify"))
                .notification_target_arn(arn)
                .send()
                .await
                .expect("putting the hook with its queue");
            json!({"name": "drain", "queueURL": url})
        }
    }
}

/// The samples of one path, in seconds.
async fn run(path: Path, nodes: usize, rounds: usize, batch: usize) -> Vec<f64> {
    let w = setup(&format!("bench-hook-{}", path.name()), nodes as i32).await;
    let jobs: BTreeMap<String, String> = w.busy_everywhere().await.into_iter().collect();
    let lifecycle_hook = hook(&w, path).await;
    let spec = json!({"provider": {"awsAutoScalingGroup": {"lifecycleHook": lifecycle_hook}},
        "disruption": {"maxUnavailable": 1}});
    w.apply_pool(&w.pool_manifest("pool", spec)).await;
    w.wait_status("pool", "the hook (and its queue) ready", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
            && (matches!(path, Path::GroupRead)
                || condition(s, "LifecycleQueue").is_some_and(|c| c.status == "True"))
    })
    .await;
    let mut lat = Vec::new();
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for r in 0..rounds {
        // A fixed xorshift sequence: the same pauses every run.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 6000)).await;
        let got = round(&w, &jobs, batch as i32).await;
        println!("{} round {r}: {got:.2?} s", path.name());
        lat.extend(got);
    }
    w.sim.assert_no_violations().await;
    w.cleanup().await;
    lat
}

fn figures(path: Path, mut lat: Vec<f64>) -> Value {
    lat.sort_by(|a, b| a.total_cmp(b));
    let ms = |p: f64| (pct(&lat, p) * 1e3).round();
    json!({
        "path": path.name(),
        "samples": lat.len(),
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "max_ms": ms(1.0),
    })
}

#[tokio::main]
async fn main() {
    let nodes = env_usize("HOOK_BENCH_NODES", 30);
    let rounds = env_usize("HOOK_BENCH_ROUNDS", 12);
    let batch = env_usize("HOOK_BENCH_BATCH", 2);
    assert!(rounds * batch < nodes, "the group must outlast the rounds");
    let mut out = json!({"nodes": nodes, "rounds": rounds, "batch": batch});
    for path in [Path::GroupRead, Path::Queue] {
        let f = figures(path, run(path, nodes, rounds, batch).await);
        println!("detection latency (action started -> drain in Nomad): {f:#}");
        out[path.name()] = f;
    }
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("creating target/bench");
    std::fs::write(
        dir.join("hook-detection.json"),
        serde_json::to_string_pretty(&out).unwrap(),
    )
    .expect("writing the results");
}
