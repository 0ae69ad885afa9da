//! Test harness: a real kube-apiserver + etcd and a moto server (started once
//! per test run by `tests/env/up.sh`), and per test its own namespace, its own
//! Nomad simulator, its own Auto Scaling group, a "cloud bridge" that makes the
//! simulator's nodes follow the group's instances the way real VMs and Nomad
//! clients do, and the operator binary running as a child process.
//!
//! A dependency that cannot start fails the test with its log; nothing is skipped.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_autoscaling::config::{BehaviorVersion, Credentials, Region};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use nomad_pool_operator::api::{NomadClientPool, NomadClientPoolStatus};
use serde_json::{Value, json};

use tokio::task::JoinHandle;

mod operator;
mod ownership;
#[allow(unused_imports)] // not every test binary starts the operator itself
pub use operator::{Operator, operator_bin};
pub use ownership::tag_group;

pub const CRD_NAME: &str = "nomadclientpools.nomadpool.dev";

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The environment file written by `tests/env/up.sh`, read once per test binary.
pub fn env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let root = repo_root();
        // up.sh is idempotent and takes about a second when everything runs;
        // a lock inside it serialises test binaries that start together.
        let out = std::process::Command::new("bash")
            .arg(root.join("tests/env/up.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("running tests/env/up.sh");
        assert!(
            out.status.success(),
            "tests/env/up.sh failed; the test environment is required:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = std::env::var("NPO_TESTENV_DIR")
            .unwrap_or_else(|_| root.join("target/testenv").display().to_string());
        let text = std::fs::read_to_string(Path::new(&dir).join("env"))
            .expect("tests/env/up.sh wrote no env file");
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.trim_matches('\'').trim_matches('"').to_string(),
                )
            })
            .collect()
    })
}

pub fn env_var(key: &str) -> String {
    env()
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("{key} missing from the test environment file"))
}

pub async fn kube_client() -> Client {
    let kubeconfig =
        Kubeconfig::read_from(env_var("KUBECONFIG")).expect("reading the admin kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("admin kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// Install the committed CRD (what users apply) and wait until it is served.
pub async fn install_crd(client: &Client) {
    let yaml =
        std::fs::read_to_string(repo_root().join("crds/nomadclientpools.nomadpool.dev.yaml"))
            .unwrap();
    let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        CRD_NAME,
        &PatchParams::apply("npo-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("applying the CRD");
    wait_for("CRD established", Duration::from_secs(30), || async {
        let crd = api.get(CRD_NAME).await.ok()?;
        let established = crd
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        established.then_some(())
    })
    .await;
}

pub fn unique(prefix: &str) -> String {
    let n: u32 = rand::random();
    format!("{prefix}-{n:08x}")
}

pub async fn create_namespace(client: &Client, prefix: &str) -> String {
    let name = unique(&format!("npo-{prefix}"));
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("creating namespace");
    name
}

pub async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// Poll `check` until it returns Some, or fail the test after `timeout`.
/// (Polling is fine here: this is the test observing, not the operator.)
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------
// AWS (moto)

pub fn moto_endpoint() -> String {
    env_var("NPO_MOTO_ENDPOINT")
}

pub fn asg_client() -> AsgClient {
    let config = aws_sdk_autoscaling::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "npo-tests",
        ))
        .build();
    AsgClient::from_conf(config)
}

pub async fn create_group(asg: &AsgClient, name: &str, min: i32, max: i32, desired: i32) {
    asg.create_launch_configuration()
        .launch_configuration_name(name)
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .expect("creating a launch configuration in moto");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(name)
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("creating an Auto Scaling group in moto");
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub lifecycle: String,
    pub protected: bool,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub desired: i32,
    pub min: i32,
    pub instances: Vec<Instance>,
}

pub async fn describe_group(asg: &AsgClient, name: &str) -> Group {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .expect("describing the group in moto");
    let g = out
        .auto_scaling_groups()
        .first()
        .expect("group exists")
        .clone();
    Group {
        desired: g.desired_capacity().unwrap_or_default(),
        min: g.min_size().unwrap_or_default(),
        instances: g
            .instances()
            .iter()
            .map(|i| Instance {
                id: i.instance_id().unwrap_or_default().to_string(),
                lifecycle: i
                    .lifecycle_state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                protected: i.protected_from_scale_in().unwrap_or(false),
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------
// Nomad simulator

pub struct Sim {
    pub sim: nomad_sim::Sim,
    pub url: String,
    http: reqwest::Client,
}

pub struct SimOptions {
    pub acl_tokens: Vec<(String, nomad_sim::acl::Policy)>,
    pub slots: u32,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            acl_tokens: vec![],
            slots: 4,
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
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
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
}

impl Drop for Bridge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Bridge {
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
        let task = tokio::spawn(async move {
            let asg = asg_client();
            let http = reqwest::Client::new();
            let mut registered: HashSet<String> = HashSet::new();
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
                    if alive && registered.insert(id.clone()) {
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
                        .is_none_or(|s| !matches!(s.as_str(), "InService" | "Pending" | "Standby"));
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
        Bridge { task }
    }
}

// ---------------------------------------------------------------------------
// One test's world

pub struct World {
    pub client: Client,
    pub namespace: String,
    pub sim: Sim,
    pub asg: AsgClient,
    pub group: String,
    pub bridge: Bridge,
    pub operator: Option<Operator>,
    pub test: String,
}

pub struct WorldOptions {
    pub size: i32,
    pub min: i32,
    pub sim: SimOptions,
    /// Node meta of the group's clients (a JSON object), or null.
    pub node_meta: Value,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            size: 4,
            min: 0,
            sim: SimOptions::default(),
            node_meta: Value::Null,
        }
    }
}

impl World {
    /// A namespace, a simulator, a group of `size` instances whose clients
    /// have registered in node pool `ci`, and the operator running.
    pub async fn new(test: &str, opts: WorldOptions) -> World {
        let client = kube_client().await;
        install_crd(&client).await;
        let namespace = create_namespace(&client, test).await;
        let sim = Sim::start(opts.sim).await;
        let asg = asg_client();
        let group = unique(test);
        create_group(&asg, &group, opts.min, 50, opts.size).await;
        let bridge =
            Bridge::start_with_meta(sim.url.clone(), group.clone(), "ci".into(), opts.node_meta);
        let world = World {
            client,
            namespace,
            sim,
            asg,
            group,
            bridge,
            operator: None,
            test: test.into(),
        };
        let size = opts.size as usize;
        wait_for("clients to register", Duration::from_secs(20), || async {
            (world.ready_nodes().await.len() == size).then_some(())
        })
        .await;
        world
    }

    pub async fn start_operator(&mut self) {
        self.operator = Some(Operator::start(&self.namespace, &self.test).await);
    }

    /// SIGKILL the operator and start a new one (which reads everything
    /// afresh: the cloud group, Nomad, the pool).
    pub async fn restart_operator(&mut self) {
        self.operator
            .as_mut()
            .expect("an operator is running")
            .kill()
            .await;
        self.start_operator().await;
    }

    /// Suspend or resume the group's `Terminate` process, which makes the
    /// controller's pre-flight check refuse to terminate.
    pub async fn set_terminate_suspended(&self, suspended: bool) {
        if suspended {
            self.asg
                .suspend_processes()
                .auto_scaling_group_name(&self.group)
                .scaling_processes("Terminate")
                .send()
                .await
                .expect("suspending Terminate");
        } else {
            self.asg
                .resume_processes()
                .auto_scaling_group_name(&self.group)
                .scaling_processes("Terminate")
                .send()
                .await
                .expect("resuming Terminate");
        }
    }

    pub fn pools(&self) -> Api<NomadClientPool> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// A pool manifest for this world's simulator and group.
    pub fn pool_manifest(&self, name: &str, extra_spec: Value) -> Value {
        let mut spec = json!({
            "nomad": {"address": self.sim.url},
            "selector": {"nodePool": "ci"},
            "provider": {"awsAutoScalingGroup": {
                "name": self.group, "region": "us-east-1", "endpoint": moto_endpoint(),
                "credentialsSecretRef": {"name": "aws"}
            }},
        });
        merge(&mut spec, extra_spec);
        json!({"apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
               "metadata": {"name": name, "namespace": self.namespace}, "spec": spec})
    }

    pub async fn create_aws_secret(&self) {
        create_secret(
            &self.client,
            &self.namespace,
            "aws",
            "aws-credentials",
            json!({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}),
        )
        .await;
    }

    /// Apply a pool; a pool that names this world's group is first given
    /// the group (its ownership tag), as the group's owner would.
    pub async fn apply_pool(&self, manifest: &Value) {
        let name = manifest["metadata"]["name"].as_str().unwrap();
        if manifest["spec"]["provider"]["awsAutoScalingGroup"]["name"] == self.group.as_str() {
            tag_group(
                &self.asg,
                &self.group,
                &format!("{}/{name}", self.namespace),
            )
            .await;
        }
        self.apply_pool_untagged(manifest).await;
    }

    /// Apply a pool, leaving the group's ownership tag as it is.
    pub async fn apply_pool_untagged(&self, manifest: &Value) {
        let name = manifest["metadata"]["name"].as_str().unwrap();
        self.pools()
            .patch(
                name,
                &PatchParams::apply("npo-tests").force(),
                &Patch::Apply(manifest),
            )
            .await
            .unwrap_or_else(|e| panic!("applying pool {name}: {e}"));
    }

    pub async fn patch_spec(&self, name: &str, spec: Value) {
        self.pools()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap_or_else(|e| panic!("patching pool {name}: {e}"));
    }

    pub async fn status(&self, name: &str) -> NomadClientPoolStatus {
        self.pools()
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap_or_default()
    }

    /// Wait for the pool's status to satisfy `pred`, printing the operator's
    /// log tail when it does not.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&NomadClientPoolStatus) -> bool,
    ) -> NomadClientPoolStatus {
        let start = Instant::now();
        loop {
            let st = self.status(name).await;
            if pred(&st) {
                return st;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nstatus: {}\noperator log:\n{}",
                    serde_json::to_string_pretty(&st).unwrap(),
                    self.operator
                        .as_ref()
                        .map(|o| o.log_tail())
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn group(&self) -> Group {
        describe_group(&self.asg, &self.group).await
    }

    /// Clients that are up (not down), as the simulator reports them.
    pub async fn ready_nodes(&self) -> Vec<Value> {
        self.sim
            .nodes()
            .await
            .into_iter()
            .filter(|n| n["status"] == "ready" && n["vm_alive"] == true)
            .collect()
    }

    /// The Events in this world's namespace as (reason, note).
    pub async fn events(&self) -> Vec<(String, String)> {
        let api: Api<k8s_openapi::api::events::v1::Event> =
            Api::namespaced(self.client.clone(), &self.namespace);
        api.list(&Default::default())
            .await
            .expect("listing events")
            .items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
            .collect()
    }

    /// Start a batch job that runs until finished on every ready client;
    /// returns (node ID, allocation ID) pairs. Job IDs are `ci-build-<node prefix>`.
    pub async fn busy_everywhere(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        for n in self.ready_nodes().await {
            let id = n["id"].as_str().unwrap().to_string();
            let alloc = self
                .sim
                .batch_on(&id, &format!("ci-build-{}", &id[..8]), None)
                .await;
            out.push((id, alloc));
        }
        out
    }

    pub async fn cleanup(self) {
        delete_namespace(&self.client, &self.namespace).await;
        drop(self.operator);
        drop(self.bridge);
        self.sim.sim.shutdown().await;
    }
}

/// A Secret a pool may use: labelled `nomadpool.dev/secret-type: <secret_type>`
/// (`nomad-token`, `tls`, `aws-credentials`), without which the operator
/// refuses it. `string_data` is the Secret's `stringData` object.
pub fn pool_secret(name: &str, secret_type: &str, string_data: Value) -> Value {
    json!({"metadata": {"name": name, "labels": {"nomadpool.dev/secret-type": secret_type}},
           "stringData": string_data})
}

/// Create `pool_secret(name, secret_type, string_data)` in `namespace`.
pub async fn create_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    secret_type: &str,
    string_data: Value,
) {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
    let s = serde_json::from_value(pool_secret(name, secret_type, string_data)).unwrap();
    api.create(&PostParams::default(), &s)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {namespace}/{name}: {e}"));
}

/// Deep-merge `patch` into `base` (objects merge, anything else replaces).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub fn condition<'a>(
    st: &'a NomadClientPoolStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    st.conditions.iter().find(|c| c.type_ == type_)
}
