//! The operator's half: idle rates on two settled pools, then the scale-in.

use super::*;
use support::procstat;

// ---------------------------------------------------------------------------
// Phases

/// Requests per minute, bytes per minute, requests by endpoint.
pub type IdleRate = (f64, f64, BTreeMap<String, u64>);

/// Per world: its idle rates over `window` seconds.
pub async fn idle_rates(worlds: &[&World], window: f64) -> Vec<IdleRate> {
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

pub struct OperatorResult {
    pub figures: Value,
    pub idle: BTreeMap<usize, IdleRate>,
    pub peak_rss: BTreeMap<usize, f64>,
    pub startup: BTreeMap<usize, Value>,
}

pub async fn operator_run(p: &Params, client: &kube::Client) -> OperatorResult {
    // A scenario without an idle window (p.idle_s = 0) needs no small world;
    // on GCE the idle rate is measured on the big world only.
    let small_size = if p.idle_s > 0.0 && p.provider == Provider::Aws {
        p.small
    } else {
        0
    };
    eprintln!(
        "[operator] building worlds of {small_size} and {} clients",
        p.nodes
    );
    let small = if small_size > 0 {
        Some(World::new(p, "op-small", small_size).await)
    } else {
        None
    };
    let big = match p.provider {
        Provider::Aws => World::new(p, "op-big", p.nodes).await,
        Provider::Gce => gce::new_world(p, "op-big").await,
    };
    let reads = match p.provider {
        Provider::Aws => "moto DescribeAutoScalingGroups",
        Provider::Gce => "gce-sim listManagedInstances (one group)",
    };
    eprintln!(
        "[operator] worlds ready ({:.0} s, {:.0} s); {reads} at {}: {:?} s",
        small.as_ref().map_or(0.0, |w| w.setup_s),
        big.setup_s,
        p.nodes,
        big.moto_describe_s
    );
    let (mb, startup, idle_map, mut peak_rss) = settle_and_idle(p, client, small, &big).await;
    let figures = scale_in(p, client, &big, &mb).await;
    peak_rss.insert(big.size, mb.op.peak_rss_mib());
    mb.op.stop().await;
    support::delete_namespace(client, &mb.ns).await;
    big.shutdown().await;
    OperatorResult {
        figures,
        idle: idle_map,
        peak_rss,
        startup,
    }
}

/// The scale-in itself: replicas lowered, every terminate awaited, the pool
/// left to settle; its figures, the API server's included.
async fn scale_in(p: &Params, client: &kube::Client, big: &World, mb: &Managed) -> Value {
    let target = p.nodes - p.retire;
    let before = big.nomad_requests();
    let bytes_before = big.relay.bytes.get();
    let calls_before = big.proxy.calls();
    let objects = LargestObjects::start(client, &mb.ns).await;
    let api0 = apiserver::sample(client).await;
    let jiffies0 = procstat::machine_jiffies();
    let cpu0 = mb.op.cpu();
    let t0 = Instant::now();
    // Each pool lowered by its share (one pool on AWS).
    for name in &mb.names {
        mb.pools
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": target / mb.names.len()}})),
            )
            .await
            .unwrap();
    }
    eprintln!("[operator] replicas {} -> {target}", p.nodes);
    let completed = wait_for_terminates(p, big, mb, t0).await;
    let cpu_last_terminate = mb.op.cpu() - cpu0;
    let settle = match &completed {
        Ok(()) => try_settle(mb, target, Duration::from_secs(180)).await,
        Err(_) => Err(pool_status(mb).await),
    };
    let settled_s = t0.elapsed().as_secs_f64();
    let jiffies1 = procstat::machine_jiffies();
    let end = Instant::now();
    let api1 = apiserver::sample(client).await;
    let cpu = mb.op.cpu() - cpu0;
    let bytes = big.relay.bytes.get();
    let run = ScaleIn {
        t0,
        end,
        requests: delta(&big.nomad_requests(), &before),
        bytes: (bytes.0 - bytes_before.0, bytes.1 - bytes_before.1),
        calls_before,
        machine_busy_pct: busy_pct(jiffies0, jiffies1),
    };
    let mut f = figures(p, big, &run, p.budget());
    if let CloudSide::Gce(g) = &big.cloud {
        f["compute_calls_per_terminate"] = gce::calls_per_terminate(&f);
        f["list_managed_instances_bytes_one_group"] = json!(g.list_bytes);
    }
    let retired = f["retired"].as_u64().unwrap_or(0) as usize;
    let o = f.as_object_mut().unwrap();
    o.insert("completed".into(), json!(completed.is_ok()));
    o.insert("stopped_because".into(), json!(completed.err()));
    o.insert(
        "settled_seconds".into(),
        json!(settle.as_ref().ok().map(|_| round(settled_s, 1))),
    );
    let unsettled = match &settle {
        Ok(_) => Value::Null,
        Err(st) => diagnose(big, st).await,
    };
    if !unsettled.is_null() {
        eprintln!("[operator] the pool did not settle: {unsettled}");
    }
    o.insert("not_settled_diagnosis".into(), unsettled);
    let reads_key = match big.cloud {
        CloudSide::Aws(_) => "moto_describe_s",
        CloudSide::Gce(_) => "gce_sim_list_managed_instances_s",
    };
    o.insert(
        "world_setup".into(),
        json!({"seconds": round(big.setup_s, 1), reads_key: big.moto_describe_s}),
    );
    o.insert("cpu_seconds".into(), json!(round(cpu, 2)));
    o.insert(
        "cpu_seconds_per_retired_node".into(),
        json!(round(cpu / retired.max(1) as f64, 4)),
    );
    o.insert(
        "cpu_seconds_to_last_terminate".into(),
        json!(round(cpu_last_terminate, 2)),
    );
    o.insert(
        "cpu_seconds_process_total".into(),
        json!(round(mb.op.cpu(), 2)),
    );
    o.extend(apiserver_figures(&api0, &api1, retired, &objects));
    after_figures(big, mb, o).await;
    eprintln!("[operator] done: {}", serde_json::to_string(&f).unwrap());
    f
}

/// What the world and the operator look like once the scale-in is over.
async fn after_figures(big: &World, mb: &Managed, o: &mut serde_json::Map<String, Value>) {
    let metrics = mb.op.metrics().await;
    let violations = big.violations().await;
    let group_after = big.group_after().await;
    let st = pool_status(mb).await;
    let (list_bytes, alloc_list_bytes, alloc_list_ms) = read_sizes(big).await;
    let cluster = big.get("/sim/stats").await["cluster"]["allocations"].clone();
    o.insert(
        "allocation_list_after".into(),
        json!({"bytes": alloc_list_bytes, "ms": round(alloc_list_ms, 0), "cluster_allocations": cluster}),
    );
    o.insert("safety_violations".into(), violations["count"].clone());
    o.insert("violations".into(), violations["violations"].clone());
    o.insert("retired_total_in_status".into(), st["retiredTotal"].clone());
    o.insert("group_after".into(), group_after);
    o.insert("operator_metrics".into(), metrics);
    o.insert("node_list_bytes_after".into(), json!(list_bytes));
}

/// Wait until every planned terminate reached moto, printing progress; or
/// say why not: past the deadline, or no terminate for `SCALE_IN_STALL_S`
/// (300 s) while some are missing (a run that cannot finish is a result too).
async fn wait_for_terminates(
    p: &Params,
    big: &World,
    mb: &Managed,
    t0: Instant,
) -> Result<(), String> {
    let mut last_print = Instant::now();
    let deadline = Duration::from_secs_f64(
        (p.job_max_s * 3.0 * (p.retire as f64 / p.budget() as f64).ceil()) / p.time_scale + 600.0,
    );
    let stall = Duration::from_secs_f64(env_or("SCALE_IN_STALL_S", 300.0));
    let mut progress = (0, Instant::now());
    loop {
        let done = big.proxy.ok_terminates();
        if done >= p.retire {
            return Ok(());
        }
        if done > progress.0 {
            progress = (done, Instant::now());
        }
        if t0.elapsed() > deadline {
            return Err(format!(
                "{done} of {} terminated within {deadline:?}",
                p.retire
            ));
        }
        if progress.1.elapsed() > stall {
            return Err(format!(
                "{done} of {} terminated, none for {stall:?}",
                p.retire
            ));
        }
        if last_print.elapsed() > Duration::from_secs(15) {
            let st = pool_status(mb).await;
            eprintln!(
                "[operator] {:>4.0} s: terminated {done}, draining {}, terminating {}, rss {:.0} MiB",
                t0.elapsed().as_secs_f64(),
                st["drainingNodes"],
                st["terminatingNodes"],
                mb.op.rss_mib()
            );
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sizes of the reads the volume figures are made of: one node-list read,
/// and one read (and its time) of the allocation list the operator ranks
/// nodes with.
async fn read_sizes(big: &World) -> (usize, usize, f64) {
    // Size of one node-list read, for the request volume.
    let list_bytes = big
        .http
        .get(format!("{}/v1/nodes", big.url))
        .query(&[("filter", format!("NodePool == {:?}", big.node_pools[0]))])
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .len();
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
    (list_bytes, alloc_list_bytes, alloc_list_ms)
}

/// Both pools are created and settle; requests are counted over an idle
/// window (when there is one); the small world, if any, is then taken down.
/// Start-up figures, idle rates and the small pool's peak RSS, by world size.
async fn settle_and_idle(
    p: &Params,
    client: &kube::Client,
    small: Option<World>,
    big: &World,
) -> (
    Managed,
    BTreeMap<usize, Value>,
    BTreeMap<usize, IdleRate>,
    BTreeMap<usize, f64>,
) {
    let ms = match &small {
        Some(w) => Some(manage(client, w, p).await),
        None => None,
    };
    let mb = manage(client, big, p).await;
    let mut settled = Vec::new();
    if let (Some(w), Some(m)) = (&small, &ms) {
        let s = wait_settled(m, w.size, Duration::from_secs(300)).await;
        settled.push((w, m, s));
    }
    // Start-up lists every node and allocation: allow for the pool's size.
    let big_timeout = Duration::from_secs(600 + p.nodes as u64 / 20);
    settled.push((big, &mb, wait_settled(&mb, p.nodes, big_timeout).await));
    let mut startup = BTreeMap::new();
    for (w, m, s) in settled {
        startup.insert(
            w.size,
            json!({"settled_after_s": round(s, 1), "nomad_requests": total(&w.nomad_requests()),
                   "cpu_seconds": round(m.op.cpu(), 2), "rss_mib": round(m.op.rss_mib(), 1)}),
        );
    }
    let worlds: Vec<&World> = small.iter().chain([big]).collect();
    eprintln!("[operator] pools settled; idle window {:.0} s", p.idle_s);
    let idle = if p.idle_s > 0.0 {
        idle_rates(&worlds, p.idle_s).await
    } else {
        Vec::new()
    };
    let idle_map = worlds.iter().map(|w| w.size).zip(idle).collect();
    let mut peak_rss = BTreeMap::new();
    if let (Some(w), Some(m)) = (small, ms) {
        peak_rss.insert(w.size, m.op.peak_rss_mib());
        m.op.stop().await;
        support::delete_namespace(client, &m.ns).await;
        w.shutdown().await;
    }
    (mb, startup, idle_map, peak_rss)
}
