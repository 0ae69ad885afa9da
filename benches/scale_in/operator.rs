//! The operator as a child process, a pool it manages, and waiting for the
//! pool to settle.

use super::*;
use support::procstat;
use support::{Operator, OperatorCmd};

// ---------------------------------------------------------------------------
// The operator, as a child process

pub struct OperatorProc {
    pub op: Operator,
    pub pid: u32,
    pub metrics: String,
}

/// The operator binary the bench runs (the release build, next to it).
pub fn operator_binary() -> PathBuf {
    let p = support::operator_bin();
    assert!(
        p.exists(),
        "{} not found: run `cargo build --release --bin nomad-pool-operator` first",
        p.display()
    );
    p
}

impl OperatorProc {
    pub async fn start(namespace: &str, label: &str) -> OperatorProc {
        let log = bench_dir().join(format!("scale-in-logs/operator-{label}.log"));
        let port = support::free_port();
        let mut cmd =
            OperatorCmd::run(namespace, log.clone()).metrics_addr(&format!("127.0.0.1:{port}"));
        // SCALE_IN_OPERATOR_WRAPPER, e.g. "heaptrack -o /tmp/op-{label}", runs the
        // operator under a profiler (the CPU/RSS figures are then the wrapper's).
        cmd.wrapper = std::env::var("SCALE_IN_OPERATOR_WRAPPER")
            .unwrap_or_default()
            .split_whitespace()
            .map(|w| w.replace("{label}", label))
            .collect();
        cmd.truncate_log = true;
        // SCALE_IN_OPERATOR_ENV, e.g. "MALLOC_ARENA_MAX=2": extra environment.
        for kv in std::env::var("SCALE_IN_OPERATOR_ENV")
            .unwrap_or_default()
            .split_whitespace()
        {
            if let Some((k, v)) = kv.split_once('=') {
                cmd = cmd.env(k, v);
            }
        }
        // SCALE_IN_OPERATOR_LOG, e.g.
        // "info,nomad_pool_operator::controller::reconcile=debug" for
        // each reconcile's timings.
        let cmd = cmd.env(
            "NPO_LOG",
            std::env::var("SCALE_IN_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
        );
        let op = Operator::spawn(cmd);
        let pid = op.pid().expect("the operator started");
        eprintln!("[{label}] operator pid {pid}, log {}", log.display());
        OperatorProc {
            op,
            pid,
            metrics: format!("http://127.0.0.1:{port}/metrics"),
        }
    }

    pub fn cpu(&self) -> f64 {
        procstat::cpu_seconds(self.pid)
    }

    pub fn peak_rss_mib(&self) -> f64 {
        procstat::status_mib(self.pid, "VmHWM:")
    }

    pub fn rss_mib(&self) -> f64 {
        procstat::status_mib(self.pid, "VmRSS:")
    }

    /// The operator's own request timings (sums and counts), reconciles by
    /// result, and the reconcile duration's percentiles as bucket bounds.
    pub async fn metrics(&self) -> Value {
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
                "wait_seconds_sum",
                "wait_seconds_count",
                "reconciles_total",
                "requests_total",
                "express_terminates_total",
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

    pub async fn stop(self) {
        self.op.kill().await;
    }
}

/// Namespace, cloud Secret and the pools of a world, managed by a fresh operator.
pub struct Managed {
    pub ns: String,
    pub pools: Api<NomadClientPool>,
    /// The pools' names (`ci` on AWS; one per group on GCE), in the
    /// world's node-pool order; the scale-in lowers each by its share.
    pub names: Vec<String>,
    pub op: OperatorProc,
}

pub async fn manage(client: &kube::Client, w: &World, p: &Params) -> Managed {
    let moto = match &w.cloud {
        CloudSide::Aws(moto) => moto,
        CloudSide::Gce(g) => return gce::manage(client, w, g, p).await,
    };
    let ns = support::create_namespace(client, &format!("bench-{}", w.label)).await;
    let keys = json!({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"});
    support::create_secret(client, &ns, "aws", "aws-credentials", keys).await;
    support::tag_group(&moto.client(), &w.group, &format!("{ns}/ci")).await;
    let pools: Api<NomadClientPool> = Api::namespaced(client.clone(), &ns);
    let manifest = json!({
        "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
        "metadata": {"name": "ci", "namespace": ns},
        "spec": {
            "nomad": {"address": w.operator_nomad_url()},
            "selector": {"nodePool": "ci"},
            "provider": {"awsAutoScalingGroup": {
                "name": w.group, "region": "us-east-1", "endpoint": w.proxy.url,
                "credentialsSecretRef": {"name": "aws"},
                "batchTerminations": p.batch_terminations}},
            "replicas": w.size,
            "disruption": {"maxUnavailable": format!("{}%", p.max_unavailable_pct),
                           "selectionPolicy": "LeastBusy"},
        }
    });
    apply_pool(&pools, &manifest).await;
    let op = OperatorProc::start(&ns, &w.label).await;
    Managed {
        ns,
        pools,
        names: vec!["ci".into()],
        op,
    }
}

pub async fn apply_pool(pools: &Api<NomadClientPool>, manifest: &Value) {
    let name = manifest["metadata"]["name"].as_str().expect("a pool name");
    pools
        .patch(
            name,
            &PatchParams::apply("npo-bench").force(),
            &Patch::Apply(manifest),
        )
        .await
        .expect("applying the pool");
}

/// The pool's status; with several pools, their statuses under `pools`
/// and the counts the bench reads summed over them.
pub async fn pool_status(m: &Managed) -> Value {
    let mut all = Vec::new();
    for name in &m.names {
        all.push(match m.pools.get(name).await {
            Ok(p) => serde_json::to_value(p.status).unwrap_or(Value::Null),
            Err(_) => Value::Null,
        });
    }
    if all.len() == 1 {
        return all.pop().unwrap_or(Value::Null);
    }
    let sum = |k: &str| all.iter().filter_map(|s| s[k].as_u64()).sum::<u64>();
    let mut out = serde_json::Map::new();
    for k in [
        "nodes",
        "readyNodes",
        "drainingNodes",
        "terminatingNodes",
        "retiredTotal",
        "retirementsInFlight",
        "groupDesiredCapacity",
    ] {
        out.insert(k.into(), json!(sum(k)));
    }
    out.insert("pools".into(), Value::Array(all));
    Value::Object(out)
}

/// Settled at `nodes` clients in all (each of several pools at its share).
pub fn settled(st: &Value, nodes: usize) -> bool {
    if let Some(pools) = st["pools"].as_array() {
        let share = nodes / pools.len().max(1);
        return pools.iter().all(|p| settled(p, share));
    }
    let ready = st["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
    });
    // `retiring` is the old model's list; `retirementsInFlight` the count of
    // unfinished retirement objects that replaced it (issue 15).
    ready
        && st["retiring"].as_array().is_none_or(|r| r.is_empty())
        && st["retirementsInFlight"].as_u64().unwrap_or(0) == 0
        && st["nodes"].as_u64() == Some(nodes as u64)
}

pub async fn wait_settled(m: &Managed, nodes: usize, timeout: Duration) -> f64 {
    try_settle(m, nodes, timeout).await.unwrap_or_else(|st| {
        panic!(
            "pool in {} did not settle at {nodes} nodes within {timeout:?}: {st}",
            m.ns
        )
    })
}

/// Seconds until the pool settled at `nodes`, or its last status.
pub async fn try_settle(m: &Managed, nodes: usize, timeout: Duration) -> Result<f64, Value> {
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
pub async fn diagnose(w: &World, st: &Value) -> Value {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
    else {
        return json!({"error": "no HTTP client (out of file descriptors?)"});
    };
    let mut out = serde_json::Map::new();
    for (name, base) in [("direct", &w.url), ("relay", &w.relay.url)] {
        let t = Instant::now();
        let r = http
            .get(format!("{base}/v1/nodes"))
            .query(&[("filter", format!("NodePool == {:?}", w.node_pools[0]))])
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
    // The new model's summary of the clients in flight (issue 15).
    out.insert(
        "status_oldestRetirements".into(),
        st["oldestRetirements"].clone(),
    );
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
