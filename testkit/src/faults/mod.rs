//! What the crash and fault tests share (`tests/faults.rs`,
//! `tests/faults_apiserver.rs`): the seed, the operator they kill, a world
//! with its provider Secret, seeded CI-like load, and the checks that a
//! scale-in ended well. `cloud` follows the group in moto or gce-sim;
//! `calls` faults and counts the operator's calls to either cloud;
//! `PrivateEnv` is a second control plane a test may break; `ledger` and
//! `service` watch the retirements and Nomad for what must hold at every
//! instant (`tests/faults_hygiene.rs`).

mod calls;
mod cloud;
mod ledger;
mod private_env;
mod service;

pub use calls::{CallTotals, CloudCalls, body_instances, carried_out_deletes, request_id};
pub use cloud::{
    GroupHistory, GroupMonitor, assert_cloud_invariants, assert_group_invariants, aws_counts,
    terminate_log,
};
pub use ledger::{Ledger, Limits, RetirementWatch, Seen, over_rate};
pub use private_env::PrivateEnv;
pub use service::{ServiceHistory, ServiceWatch, out_of_service};

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use kube::Client;
use rand::Rng;
use rand::rngs::StdRng;
use serde_json::{Value, json};

use crate::cluster::condition;
use crate::operator::{Operator, OperatorCmd};
use crate::retirements::{self, PoolView};
use crate::sim::Sim;
use crate::world::{Cloud, World, WorldOptions};

/// `NPO_FAULT_SEED` when not set.
pub const DEFAULT_SEED: u64 = 20_260_606;

/// The run's seed, printed so a failure can be replayed.
pub fn fault_seed(test: &str) -> u64 {
    let seed = std::env::var("NPO_FAULT_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(DEFAULT_SEED);
    println!("[{test}] NPO_FAULT_SEED={seed}");
    seed
}

// ---------------------------------------------------------------------------
// The operator, killed and restarted at will; a world on any control plane.

/// The operator binary for `namespace` as the admin of the control plane
/// `kubeconfig` names, logging to `log_dir`, with `extra` flags.
pub fn operator(
    kubeconfig: &str,
    namespace: &str,
    log_dir: &Path,
    test: &str,
    extra: &[&str],
) -> Operator {
    std::fs::create_dir_all(log_dir).unwrap();
    let log = log_dir.join(format!("operator-faults-{test}-{namespace}.log"));
    let cmd = OperatorCmd::run(namespace, log)
        .args(extra.iter().copied())
        .env("KUBECONFIG", kubeconfig)
        .env("NO_COLOR", "1");
    Operator::spawn(cmd)
}

/// A world of `size` clients with the AWS Secret, on the control plane
/// `client` talks to (the shared one, or a private one).
pub async fn build_world(client: Client, test: &str, size: i32) -> World {
    build_world_on(client, Cloud::Aws, test, size).await
}

/// As [`build_world`], its group in `cloud` (with the provider's Secret); a
/// GCE world's test name starts with `gce-`, as `setup_on` does.
pub async fn build_world_on(client: Client, cloud: Cloud, test: &str, size: i32) -> World {
    let test = match cloud {
        Cloud::Aws => test.to_string(),
        Cloud::Gce => format!("gce-{test}"),
    };
    let opts = WorldOptions {
        size,
        cloud,
        ..Default::default()
    };
    let world = World::on(client, &test, opts).await;
    world.create_provider_secret().await;
    world
}

/// CI-like batch jobs: `per_node` allocations on every client, each running
/// for a seeded duration in `secs`.
pub async fn busy(w: &World, rng: &mut StdRng, per_node: usize, secs: std::ops::Range<f64>) {
    for n in w.ready_nodes().await {
        let id = n["id"].as_str().unwrap().to_string();
        for k in 0..per_node {
            let d: f64 = rng.random_range(secs.clone());
            w.sim
                .post(
                    "/sim/allocations",
                    json!({"job_id": format!("ci-{}-{k}", &id[..8]), "type": "batch",
                           "node_id": id, "duration_s": (d * 10.0).round() / 10.0, "node_pool": "ci"}),
                )
                .await;
        }
    }
}

pub fn pool_spec(replicas: i32, max_unavailable: i32, endpoint: Option<&str>) -> Value {
    let mut spec = json!({"replicas": replicas, "disruption": {"maxUnavailable": max_unavailable}});
    if let Some(e) = endpoint {
        spec["provider"] = json!({"awsAutoScalingGroup": {"endpoint": e}});
    }
    spec
}

/// The pool's view, `None` while it cannot be read (absent, or the API
/// server down).
pub async fn status_of(w: &World, name: &str) -> Option<PoolView> {
    retirements::read(&w.pools(), &w.retirements_api(), name)
        .await
        .ok()
        .flatten()
}

pub fn is_settled(st: &PoolView, replicas: i32) -> bool {
    st.retiring.is_empty()
        && st.desired_nodes == Some(replicas)
        && st.group_desired_capacity == Some(replicas)
        && condition(st, "Ready").is_some_and(|c| c.status == "True")
}

/// Wait until the pool, the group and Nomad all show `replicas` clients and
/// nothing in flight; on timeout, fail with the status and the operator log.
pub async fn wait_settled(
    w: &World,
    op: &Operator,
    name: &str,
    replicas: i32,
    timeout: Duration,
) -> PoolView {
    let start = Instant::now();
    loop {
        let st = status_of(w, name).await.unwrap_or_default();
        if is_settled(&st, replicas) {
            let g = w.group().await;
            let live = live_nodes(w).await;
            if g.desired == replicas
                && g.instances.len() == replicas as usize
                && live.len() == replicas as usize
                && w.sim.nodes().await.len() == replicas as usize
            {
                return st;
            }
        }
        if start.elapsed() > timeout {
            panic!(
                "timed out after {timeout:?} waiting for the pool to settle at {replicas}\nstatus: {}\ngroup: {:?}\nnodes: {:#?}\noperator log tail:\n{}",
                serde_json::to_string_pretty(&st).unwrap(),
                w.group().await,
                w.sim.nodes().await,
                op.log_tail_n(60)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Nodes whose VM runs and that are not down.
pub async fn live_nodes(w: &World) -> Vec<Value> {
    w.sim
        .nodes()
        .await
        .into_iter()
        .filter(|n| n["vm_alive"] == true && n["status"] != "down")
        .collect()
}

/// Every client still in Nomad that is not being retired is in service.
pub async fn assert_no_stranded_nodes(w: &World, st: &PoolView) {
    let retiring: BTreeSet<&str> = st.retiring.iter().map(|r| r.node_id.as_str()).collect();
    for n in w.sim.nodes().await {
        let id = n["id"].as_str().unwrap_or_default();
        if retiring.contains(id) {
            continue;
        }
        assert!(
            n["eligibility"] == "eligible" && n["draining"] == false,
            "node {id} is not being retired but is out of service: {n}"
        );
    }
}

/// `/v1/` request counts of the simulator (the operator's traffic; the test
/// and the Bridge only use `/sim/`).
pub async fn nomad_requests(sim: &Sim) -> BTreeMap<String, u64> {
    let stats = sim.get("/sim/stats").await;
    stats["requests"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.contains(" /v1/"))
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

/// Retiring entries by phase, e.g. `Drainingx2,Terminatingx1` (`-` for none).
pub fn phases(st: &PoolView) -> String {
    let mut by: BTreeMap<String, u32> = BTreeMap::new();
    for r in &st.retiring {
        *by.entry(format!("{:?}", r.phase)).or_default() += 1;
    }
    if by.is_empty() {
        return "-".into();
    }
    by.iter()
        .map(|(p, n)| format!("{p}x{n}"))
        .collect::<Vec<_>>()
        .join(",")
}
