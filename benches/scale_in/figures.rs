//! Figures from one scale-in, and idle request rates.

use super::*;

// ---------------------------------------------------------------------------
// Figures from one scale-in

pub struct ScaleIn {
    pub t0: Instant,
    /// Retirements driven to their end (last terminate, or settled).
    pub end: Instant,
    pub requests: BTreeMap<String, u64>,
    /// Nomad API bytes (up, down) during the scale-in.
    pub bytes: (u64, u64),
    /// Proxy call counts when the scale-in started.
    pub calls_before: BTreeMap<String, (u64, f64, f64)>,
    /// Whole-machine CPU busy, percent, during the scale-in.
    pub machine_busy_pct: f64,
}

pub fn figures(p: &Params, w: &World, run: &ScaleIn, budget: usize) -> Value {
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
    // One line per terminate (node, instance, seconds since the scale-in
    // began when its jobs were done and when it was terminated), so a tail
    // can be followed into the operator's log.
    let t0_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() - run.t0.elapsed().as_secs_f64())
        .unwrap_or_default();
    let mut rows = format!("# t0_unix={t0_unix:.3}\n");
    rows.push_str("node\tinstance\tready_s\tterminated_s\tlatency_ms\n");
    for t in &terms {
        let Some(s) = &t.snap else { continue };
        live_at_terminate += usize::from(s.live_allocs > 0);
        let Some(ready) = s.ready_ns() else { continue };
        let ready_wall = w.wall_of_sim(ready);
        lat.push((w.wall_of(t.at) - ready_wall) * 1e3);
        let since_t0 = |wall: f64| wall - w.wall_of(run.t0);
        rows.push_str(&format!(
            "{}\t{}\t{:.3}\t{:.3}\t{:.1}\n",
            s.node_id,
            t.instance,
            since_t0(ready_wall),
            since_t0(w.wall_of(t.at)),
            (w.wall_of(t.at) - ready_wall) * 1e3
        ));
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
    // One file per world (`op-big`, `baseline`, ...): the halves of a run
    // are told apart, to match against that half's own log.
    let dump = bench_dir().join(format!("scale-in-logs/retire-latencies-{}.tsv", w.label));
    if let Err(e) = std::fs::write(&dump, rows) {
        eprintln!("writing {}: {e}", dump.display());
    }
    // Every cloud call the world's proxy saw, on the same clock.
    let mut calls = format!("# t0_unix={t0_unix:.3}\narrived_s\taction\tms\n");
    for (at, action, took) in w.proxy.timeline() {
        let arrived = w.wall_of(at) - w.wall_of(run.t0);
        calls.push_str(&format!("{arrived:.3}\t{action}\t{:.1}\n", took * 1e3));
    }
    let dump = bench_dir().join(format!("scale-in-logs/cloud-calls-{}.tsv", w.label));
    if let Err(e) = std::fs::write(&dump, calls) {
        eprintln!("writing {}: {e}", dump.display());
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
