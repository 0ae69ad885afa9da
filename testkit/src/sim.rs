//! A Nomad simulator per test (in this process, on its own port) with the
//! test's view of it, and the "cloud bridge" that makes the simulator's nodes
//! follow an Auto Scaling group's instances the way real VMs and Nomad
//! clients do.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::aws::asg_client;

pub struct Sim {
    pub sim: nomad_sim::Sim,
    pub url: String,
    http: reqwest::Client,
}

pub struct SimOptions {
    pub acl_tokens: Vec<(String, nomad_sim::acl::Policy)>,
    pub slots: u32,
    /// Nomad's `limits.http_max_conns_per_client` (its default, 100, unless
    /// a test sets it). It counts the test's own connections to the
    /// simulator too: they come from the operator's IP.
    pub http_max_conns_per_client: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            acl_tokens: vec![],
            slots: 4,
            http_max_conns_per_client: nomad_sim::connlimit::DEFAULT_HTTP_MAX_CONNS_PER_CLIENT,
        }
    }
}

impl Sim {
    pub async fn start(opts: SimOptions) -> Sim {
        let cfg = nomad_sim::Config {
            acl_tokens: opts.acl_tokens,
            // Real Nomad waits TTL + grace (tens of seconds) before a dead client
            // turns down; tests shorten it so a retirement finishes in seconds.
            heartbeat_ttl: Duration::from_millis(500),
            heartbeat_grace: Duration::from_millis(500),
            node_slots: opts.slots,
            http_max_conns_per_client: opts.http_max_conns_per_client,
            ..Default::default()
        };
        let sim = nomad_sim::serve(cfg).await.expect("starting nomad-sim");
        let url = sim.url();
        Sim {
            sim,
            url,
            http: reqwest::Client::new(),
        }
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        control_call(&self.http, "nomad-sim", &self.url, method, path, body).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.control(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> Value {
        self.control(reqwest::Method::GET, path, None).await
    }

    /// Every node the simulator knows, as its control surface reports them.
    pub async fn nodes(&self) -> Vec<Value> {
        self.get("/sim/nodes").await["nodes"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Safety violations: nodes killed or purged with pending/running allocations.
    pub async fn violations(&self) -> Value {
        self.get("/sim/violations").await
    }

    pub async fn assert_no_violations(&self) {
        let v = self.violations().await;
        assert_eq!(v["count"], 0, "safety violations: {v:#}");
    }

    /// A batch allocation on a given node that runs until finished (or for `duration_s`).
    pub async fn batch_on(&self, node_id: &str, job: &str, duration_s: Option<f64>) -> String {
        let v = self
            .post(
                "/sim/allocations",
                json!({"job_id": job, "type": "batch", "node_id": node_id, "duration_s": duration_s, "node_pool": "ci"}),
            )
            .await;
        first_alloc_id(&v)
    }

    pub async fn finish(&self, alloc_id: &str) {
        self.post(&format!("/sim/allocations/{alloc_id}/finish"), json!({}))
            .await;
    }
}

fn first_alloc_id(v: &Value) -> String {
    v["allocations"][0]["id"]
        .as_str()
        .or_else(|| v["alloc_ids"][0].as_str())
        .or_else(|| v["ids"][0].as_str())
        .unwrap_or_else(|| panic!("no allocation ID in {v}"))
        .to_string()
}

/// Makes the simulator's nodes follow the group's instances, as VMs and Nomad
/// clients do: a new instance registers a client in `node_pool`, a terminated
/// instance's client stops heartbeating (and later turns down).
pub struct Bridge {
    task: JoinHandle<()>,
    boot_failures: BootFailures,
}

/// How many of the next VMs boot without their client ever registering
/// (an image whose agent fails to start), shared with the bridge's task.
#[derive(Clone, Default)]
pub struct BootFailures(Arc<AtomicU32>);

impl BootFailures {
    /// Whether the VM the bridge sees now is one of them (counted down).
    pub(crate) fn take(&self) -> bool {
        (self.0)
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bridge {
    /// A bridge running as `task` (the GCE bridge, `gce::gce_bridge`).
    pub(crate) fn from_task(task: JoinHandle<()>, boot_failures: BootFailures) -> Bridge {
        Bridge {
            task,
            boot_failures,
        }
    }

    /// The next `n` VMs of the group run without a Nomad client: the
    /// bridge never registers one for them.
    pub fn fail_next_boots(&self, n: u32) {
        self.boot_failures.0.fetch_add(n, Ordering::SeqCst);
    }

    /// No bridge at all: clients stay up whatever happens to their VMs,
    /// so a test can catch a retirement between its VM's end and its
    /// client's (which it then stops itself, `/sim/nodes/{id}/kill`).
    pub fn idle() -> Bridge {
        Bridge {
            task: tokio::spawn(std::future::pending()),
            boot_failures: BootFailures::default(),
        }
    }

    pub fn start(sim_url: String, group: String, node_pool: String) -> Bridge {
        Self::start_with_meta(sim_url, group, node_pool, Value::Null)
    }

    /// As `start`, with `meta` (a JSON object, or null) on every client.
    pub fn start_with_meta(
        sim_url: String,
        group: String,
        node_pool: String,
        meta: Value,
    ) -> Bridge {
        let boot_failures = BootFailures::default();
        let failing = boot_failures.clone();
        let task = tokio::spawn(async move {
            let asg = asg_client();
            let http = reqwest::Client::new();
            // A bridge started over a simulator that already has clients
            // (one bridge replaced by another with other meta) takes
            // their VMs as registered: a VM runs one client.
            let mut registered: HashSet<String> = registered_vms(&http, &sim_url).await;
            let mut killed: HashSet<String> = HashSet::new();
            loop {
                let Ok(out) = asg
                    .describe_auto_scaling_groups()
                    .auto_scaling_group_names(&group)
                    .send()
                    .await
                else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let instances: BTreeMap<String, String> = out
                    .auto_scaling_groups()
                    .iter()
                    .flat_map(|g| g.instances())
                    .map(|i| {
                        (
                            i.instance_id().unwrap_or_default().to_string(),
                            i.lifecycle_state()
                                .map(|s| s.as_str().to_string())
                                .unwrap_or_default(),
                        )
                    })
                    .collect();
                for (id, state) in &instances {
                    let alive = matches!(state.as_str(), "InService" | "Pending" | "Standby");
                    if alive && registered.insert(id.clone()) && !failing.take() {
                        let body = json!({"count": 1, "node_pool": node_pool, "node_class": "linux",
                                          "instance_ids": [id], "availability_zone": "us-east-1a",
                                          "meta": meta});
                        let _ = http
                            .post(format!("{sim_url}/sim/nodes"))
                            .json(&body)
                            .send()
                            .await;
                    }
                }
                for id in registered.iter() {
                    let gone = instances
                        .get(id)
                        // A VM a lifecycle hook holds still runs (EC2 `running`).
                        .is_none_or(|s| {
                            !matches!(
                                s.as_str(),
                                "InService" | "Pending" | "Standby" | "Terminating:Wait"
                            )
                        });
                    if gone && killed.insert(id.clone()) {
                        let _ = http
                            .post(format!("{sim_url}/sim/nodes/{id}/kill"))
                            .send()
                            .await;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        Bridge {
            task,
            boot_failures,
        }
    }
}

/// The VMs the simulator's nodes run on (its control surface's view).
async fn registered_vms(http: &reqwest::Client, sim_url: &str) -> HashSet<String> {
    let Ok(resp) = http.get(format!("{sim_url}/sim/nodes")).send().await else {
        return HashSet::new();
    };
    let v: Value = resp.json().await.unwrap_or_default();
    (v["nodes"].as_array().into_iter().flatten())
        .filter_map(|n| n["instance_id"].as_str().map(str::to_owned))
        .collect()
}

/// Request counts that grew from `b` to `a` (by endpoint), zeros left out.
pub fn delta(a: &BTreeMap<String, u64>, b: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    a.iter()
        .map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

pub fn total(m: &BTreeMap<String, u64>) -> u64 {
    m.values().sum()
}

/// A call to a fake's control surface (`what` at `base`): the JSON answer,
/// or a panic naming the call when it fails; shared by nomad-sim and gce-sim.
pub(crate) async fn control_call(
    http: &reqwest::Client,
    what: &str,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut req = http.request(method.clone(), format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("{what} {method} {path}: {e}"));
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(
        status.is_success(),
        "{what} {method} {path}: {status}: {text}"
    );
    serde_json::from_str(&text).unwrap_or(Value::Null)
}
