//! The operator's half: idle rates on two settled pools, then the scale-in.

use super::*;
use support::procstat;

// ---------------------------------------------------------------------------
// Phases

/// Per world: requests per minute, bytes per minute, requests by endpoint.
pub async fn idle_rates(worlds: &[&World], window: f64) -> Vec<(f64, f64, BTreeMap<String, u64>)> {
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
    pub idle: BTreeMap<usize, (f64, f64, BTreeMap<String, u64>)>,
    pub peak_rss: BTreeMap<usize, f64>,
    pub startup: BTreeMap<usize, Value>,
}

pub async fn operator_run(p: &Params, client: &kube::Client) -> OperatorResult {
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
    let (mb, startup, idle_map, mut peak_rss) = settle_and_idle(p, client, small, &big).await;

    // --- scale-in ---
    let target = p.nodes - p.retire;
    let before = big.nomad_requests();
    let bytes_before = big.relay.bytes.get();
    let calls_before = big.proxy.calls();
    let jiffies0 = procstat::machine_jiffies();
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
    wait_for_terminates(p, &big, &mb, t0).await;
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
    let jiffies1 = procstat::machine_jiffies();
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
    let (list_bytes, alloc_list_bytes, alloc_list_ms) = read_sizes(&big).await;
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

/// Wait until every planned terminate reached moto, printing progress.
async fn wait_for_terminates(p: &Params, big: &World, mb: &Managed, t0: Instant) {
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
            let st = pool_status(mb).await;
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
}

/// Sizes of the reads the volume figures are made of: one node-list read,
/// and one read (and its time) of the allocation list the operator ranks
/// nodes with.
async fn read_sizes(big: &World) -> (usize, usize, f64) {
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

/// Both pools are created and settle; requests are counted over an idle window; the small
/// world is then taken down. Start-up figures, idle rates and the small
/// pool's peak RSS, by world size.
async fn settle_and_idle(
    p: &Params,
    client: &kube::Client,
    small: World,
    big: &World,
) -> (
    Managed,
    BTreeMap<usize, Value>,
    BTreeMap<usize, (f64, f64, BTreeMap<String, u64>)>,
    BTreeMap<usize, f64>,
) {
    let mut startup = BTreeMap::new();
    let ms = manage(client, &small, p).await;
    let mb = manage(client, big, p).await;
    let settle_small = wait_settled(&ms, p.small, Duration::from_secs(300)).await;
    let settle_big = wait_settled(&mb, p.nodes, Duration::from_secs(600)).await;
    for (w, m, s) in [(&small, &ms, settle_small), (big, &mb, settle_big)] {
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
    let idle = idle_rates(&[&small, big], p.idle_s).await;
    let mut idle_map = BTreeMap::new();
    idle_map.insert(small.size, idle[0].clone());
    idle_map.insert(big.size, idle[1].clone());
    let mut peak_rss = BTreeMap::new();
    peak_rss.insert(small.size, ms.op.peak_rss_mib());
    ms.op.stop().await;
    support::delete_namespace(client, &ms.ns).await;
    small.shutdown().await;

    (mb, startup, idle_map, peak_rss)
}
