//! Scale benchmark (plain `main`, no harness): 10,000 nodes, 100,000
//! allocations and 2,000 open blocking queries over real HTTP on loopback,
//! then a stream of changes. Reports the wake latency from a change to the
//! blocked response (p50/p99/max), request throughput and RSS, as a table on
//! stdout and as JSON in `target/bench/nomad-sim-scale.json`.
//!
//! Run: `cargo bench -p nomad-sim --bench scale`
//! Knobs (env): SCALE_NODES, SCALE_ALLOCS, SCALE_WAITERS, SCALE_CHANGES.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nomad_sim::{Config, serve};
use reqwest::Client;
use serde_json::{Value, json};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Raises the soft open-files limit to the hard limit.
fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

fn nofile_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .map(|l| l.split_whitespace().nth(3).unwrap_or("?").to_string())
        .unwrap_or_else(|| "?".into())
}

/// Pending change per watched node: when the change request was sent.
type Pending = Arc<Mutex<HashMap<String, Instant>>>;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let n_nodes = env("SCALE_NODES", 10_000);
    let n_allocs = env("SCALE_ALLOCS", 100_000);
    let n_waiters = env("SCALE_WAITERS", 2_000);
    let n_changes = env("SCALE_CHANGES", 1_000);
    raise_nofile();
    let soft_limit: usize = nofile_limit().parse().unwrap_or(1024);
    assert!(
        soft_limit > n_waiters * 2 + 256,
        "raise `ulimit -n` (now {soft_limit}) above {}",
        n_waiters * 2 + 256
    );
    let rss0 = rss_mib();
    let sim = serve(Config {
        time_scale: 0.0,
        seed: Some(42),
        node_slots: (n_allocs / n_nodes.max(1) + 2) as u32,
        // This bench measures the simulator itself with thousands of parked
        // queries from one process: far past what one Nomad agent accepts
        // from one IP (100 by default), so no limit here.
        http_max_conns_per_client: 0,
        ..Config::default()
    })
    .await
    .unwrap();
    let base = sim.url();
    let http = Client::builder()
        .pool_max_idle_per_host(n_waiters + 128)
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap();

    // --- setup ---
    let t0 = Instant::now();
    let mut node_ids = Vec::with_capacity(n_nodes);
    let mut left = n_nodes;
    while left > 0 {
        let c = left.min(1000);
        let v: Value = http
            .post(format!("{base}/sim/nodes"))
            .json(&json!({"count": c, "node_pool": "default"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for n in v["nodes"].as_array().unwrap() {
            node_ids.push(n["id"].as_str().unwrap().to_string());
        }
        left -= c;
    }
    let t_nodes = t0.elapsed();
    let t1 = Instant::now();
    let mut left = n_allocs;
    while left > 0 {
        let c = left.min(10_000);
        let r = http
            .post(format!("{base}/sim/allocations"))
            .json(&json!({"type": "batch", "count": c}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        left -= c;
    }
    http.post(format!("{base}/sim/time"))
        .json(&json!({"advance_s": 2}))
        .send()
        .await
        .unwrap();
    let t_allocs = t1.elapsed();
    let stats: Value = http
        .get(format!("{base}/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let running = stats["cluster"]["allocations"]["by_client_status"]["running"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        running as usize, n_allocs,
        "all allocations placed and running: {stats}"
    );

    let rss_setup = rss_mib();
    // Large reads, unloaded.
    let t = Instant::now();
    let r = http.get(format!("{base}/v1/nodes")).send().await.unwrap();
    let list_bytes = r.bytes().await.unwrap().len();
    let list_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    let f = "NodePool%20%3D%3D%20%22default%22%20and%20Meta%5B%22connect.log_level%22%5D%20%3D%3D%20%22info%22";
    let r = http
        .get(format!("{base}/v1/nodes?filter={f}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let filtered_list_ms = t.elapsed().as_secs_f64() * 1e3;

    // --- 2,000 blocking queries: half node reads, half node-allocation reads ---
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let lat: Arc<Mutex<Vec<(f64, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let wakes = Arc::new(AtomicU64::new(0));
    let watched: Vec<(String, bool)> = (0..n_waiters)
        .map(|i| (node_ids[i % n_nodes].clone(), i % 2 == 0))
        .collect();
    // Node-read watchers and alloc watchers use different nodes.
    let watched: Vec<(String, bool)> = watched
        .into_iter()
        .enumerate()
        .map(|(i, (_, is_node))| {
            (
                node_ids[(i * 3 + usize::from(!is_node)) % n_nodes].clone(),
                is_node,
            )
        })
        .collect();
    for (node, is_node) in watched.clone() {
        let http = http.clone();
        let base = base.clone();
        let pending = pending.clone();
        let lat = lat.clone();
        let wakes = wakes.clone();
        tokio::spawn(async move {
            let path = if is_node {
                format!("{base}/v1/node/{node}")
            } else {
                format!("{base}/v1/node/{node}/allocations")
            };
            let mut idx: u64 = http.get(&path).send().await.unwrap().headers()["x-nomad-index"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            loop {
                let r = match http.get(format!("{path}?index={idx}&wait=5m")).send().await {
                    Ok(r) => r,
                    Err(_) => return,
                };
                let new: u64 = r.headers()["x-nomad-index"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                let _ = r.bytes().await;
                let now = Instant::now();
                if new > idx {
                    let key = format!("{node}/{is_node}");
                    if let Some(sent) = pending.lock().unwrap().remove(&key) {
                        lat.lock()
                            .unwrap()
                            .push(((now - sent).as_secs_f64() * 1e3, is_node));
                        wakes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                idx = new;
            }
        });
    }
    // Wait until every query is parked on the server.
    let t_park = Instant::now();
    loop {
        let s: Value = http
            .get(format!("{base}/sim/stats"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["blocking_queries_open"].as_i64().unwrap_or(0) as usize >= n_waiters {
            break;
        }
        assert!(
            t_park.elapsed() < Duration::from_secs(120),
            "queries did not park: {}",
            s["blocking_queries_open"]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let park_s = t_park.elapsed().as_secs_f64();
    let rss_loaded = rss_mib();

    // Allocation IDs per watched alloc node (to finish one per change).
    let mut alloc_of: HashMap<String, Vec<String>> = HashMap::new();
    for (node, is_node) in &watched {
        if !*is_node {
            let v: Value = http
                .get(format!("{base}/v1/node/{node}/allocations"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let ids = v
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["ClientStatus"] == "running")
                .map(|a| a["ID"].as_str().unwrap().to_string())
                .collect();
            alloc_of.insert(node.clone(), ids);
        }
    }

    // --- stream of changes: ~100/s, alternating node and allocation changes ---
    let t_changes = Instant::now();
    let mut sent = 0usize;
    let mut elig: HashMap<String, bool> = HashMap::new();
    let mut rtt: Vec<(f64, bool)> = Vec::new();
    for i in 0..n_changes {
        let (node, is_node) = watched[(i * 7) % watched.len()].clone();
        let key = format!("{node}/{is_node}");
        if pending.lock().unwrap().contains_key(&key) {
            continue;
        }
        let req = if is_node {
            let e = elig.entry(node.clone()).or_insert(true);
            *e = !*e;
            http.post(format!("{base}/v1/node/{node}/eligibility"))
                .json(&json!({"Eligibility": if *e { "eligible" } else { "ineligible" }}))
        } else {
            let Some(a) = alloc_of.get_mut(&node).and_then(|v| v.pop()) else {
                continue;
            };
            http.post(format!("{base}/sim/allocations/{a}/finish"))
                .json(&json!({}))
        };
        let t_send = Instant::now();
        pending.lock().unwrap().insert(key, t_send);
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await;
        rtt.push((t_send.elapsed().as_secs_f64() * 1e3, is_node));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Let the last wakes land.
    let t_wait = Instant::now();
    while (wakes.load(Ordering::Relaxed) as usize) < sent
        && t_wait.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let change_s = t_changes.elapsed().as_secs_f64();
    let missed = sent - wakes.load(Ordering::Relaxed) as usize;

    // --- throughput: non-blocking node reads with 64 concurrent clients ---
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(5);
    let mut hs = Vec::new();
    for w in 0..64 {
        let http = http.clone();
        let base = base.clone();
        let ids = node_ids.clone();
        let done = done.clone();
        hs.push(tokio::spawn(async move {
            let mut i = w * 997;
            while Instant::now() < stop {
                let r = http
                    .get(format!("{base}/v1/node/{}", ids[i % ids.len()]))
                    .send()
                    .await
                    .unwrap();
                let _ = r.bytes().await.unwrap();
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    for h in hs {
        h.await.unwrap();
    }
    let rps = done.load(Ordering::Relaxed) as f64 / 5.0;

    let samples = lat.lock().unwrap().clone();
    let sorted = |f: &dyn Fn(bool) -> bool| {
        let mut v: Vec<f64> = samples
            .iter()
            .filter(|(_, n)| f(*n))
            .map(|(x, _)| *x)
            .collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v
    };
    let l = sorted(&|_| true);
    let mut rn: Vec<f64> = rtt.iter().filter(|x| x.1).map(|x| x.0).collect();
    let mut ra: Vec<f64> = rtt.iter().filter(|x| !x.1).map(|x| x.0).collect();
    rn.sort_by(|a, b| a.partial_cmp(b).unwrap());
    ra.sort_by(|a, b| a.partial_cmp(b).unwrap());
    eprintln!(
        "change request round trip p50/p99: eligibility {:.2}/{:.2} ms, alloc finish {:.2}/{:.2} ms",
        pct(&rn, 0.5),
        pct(&rn, 0.99),
        pct(&ra, 0.5),
        pct(&ra, 0.99)
    );
    let ln = sorted(&|n| n);
    let la = sorted(&|n| !n);
    let (p50, p99, max) = (
        pct(&l, 0.5),
        pct(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN),
    );
    let rss_end = rss_mib();

    println!("nomad-sim scale benchmark (sim and load generator in one process, 2 worker threads)");
    println!("| metric | value |");
    println!("|---|---|");
    println!(
        "| nodes | {n_nodes} (registered in {:.2} s) |",
        t_nodes.as_secs_f64()
    );
    println!(
        "| allocations running | {running} (placed + started in {:.2} s) |",
        t_allocs.as_secs_f64()
    );
    println!("| open blocking queries | {n_waiters} (all parked after {park_s:.2} s) |");
    println!(
        "| changes (node eligibility / alloc finish) | {sent} over {change_s:.1} s, {missed} without a wake |"
    );
    println!("| wake latency p50 / p99 / max | {p50:.2} / {p99:.2} / {max:.2} ms |");
    println!(
        "| ... node reads (eligibility change) p50 / p99 | {:.2} / {:.2} ms |",
        pct(&ln, 0.5),
        pct(&ln, 0.99)
    );
    println!(
        "| ... node-allocation reads (alloc finished) p50 / p99 | {:.2} / {:.2} ms |",
        pct(&la, 0.5),
        pct(&la, 0.99)
    );
    println!("| GET /v1/nodes ({n_nodes} stubs, {list_bytes} bytes) | {list_ms:.0} ms |");
    println!("| GET /v1/nodes?filter=... | {filtered_list_ms:.0} ms |");
    println!(
        "| GET /v1/node/:id throughput (64 clients, {n_waiters} queries parked) | {rps:.0} req/s |"
    );
    println!(
        "| RSS start / after setup / with {n_waiters} queries parked / end | {rss0:.0} / {rss_setup:.0} / {rss_loaded:.0} / {rss_end:.0} MiB |"
    );
    println!("| open-files limit | {} |", nofile_limit());
    let out = json!({
        "nodes": n_nodes, "allocations": running, "blocking_queries": n_waiters,
        "changes": sent, "missed_wakes": missed,
        "wake_latency_ms": {"p50": p50, "p99": p99, "max": max, "samples": l.len(),
            "node_read": {"p50": pct(&ln, 0.5), "p99": pct(&ln, 0.99)},
            "node_allocations_read": {"p50": pct(&la, 0.5), "p99": pct(&la, 0.99)}},
        "setup_s": {"nodes": t_nodes.as_secs_f64(), "allocations": t_allocs.as_secs_f64(), "park": park_s},
        "list_nodes_ms": list_ms, "list_nodes_bytes": list_bytes, "filtered_list_ms": filtered_list_ms,
        "node_read_rps": rps,
        "rss_mib": {"start": rss0, "after_setup": rss_setup, "loaded": rss_loaded, "end": rss_end},
        "target_p99_ms": 50.0, "p99_ok": p99 < 50.0,
    });
    let dir = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"))
        .join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nomad-sim-scale.json");
    std::fs::write(&path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    println!("wrote {}", path.display());
    sim.shutdown().await;
}
