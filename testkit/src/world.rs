//! One test's world: a namespace, a Nomad simulator, a cloud group whose
//! clients have registered in node pool `ci` (an Auto Scaling group in moto,
//! or with `Cloud::Gce` a managed instance group in a private gce-sim), the
//! bridge between them, and the operator binary as a child process; with the
//! helpers a test uses to act on the pool and read what happened (the pool's
//! status with its retirements, as a `PoolView`).

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use nomad_pool_operator::api::{NomadClientPool, NomadClientRetirement};
use serde_json::{Value, json};

use crate::aws::{
    Group, asg_client, create_group, create_template_group, describe_group, moto_endpoint,
    tag_group,
};
use crate::cluster::{
    create_aws_secret, create_namespace, delete_namespace, install_crd, kube_client, merge,
};
use crate::env::{unique, wait_for};
use crate::gce::{GCE_PROJECT, GCE_SECRET, GCE_ZONE, GceCloud, create_gce_secret, gce_bridge};
use crate::operator::Operator;
use crate::retirements::{self, PoolView};
use crate::sim::{Bridge, Sim, SimOptions};

pub struct World {
    pub client: Client,
    pub namespace: String,
    pub sim: Sim,
    pub asg: AsgClient,
    pub group: String,
    pub bridge: Bridge,
    pub operator: Option<Operator>,
    pub test: String,
    /// Which cloud `group` is in; with `Cloud::Gce`, its gce-sim.
    pub cloud: Cloud,
    pub gce: Option<GceCloud>,
}

/// The provider a world's group lives in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Cloud {
    /// An Auto Scaling group in the environment's moto.
    #[default]
    Aws,
    /// A zonal managed instance group in the world's own gce-sim.
    Gce,
}

pub struct WorldOptions {
    pub size: i32,
    pub min: i32,
    pub sim: SimOptions,
    /// Node meta of the group's clients (a JSON object), or null.
    pub node_meta: Value,
    pub cloud: Cloud,
    /// AWS only: the group launches from a launch template (`$Default`
    /// version, see `aws::create_template_group`) rather than a launch
    /// configuration.
    pub launch_template: bool,
}

impl Default for WorldOptions {
    fn default() -> Self {
        Self {
            size: 4,
            min: 0,
            sim: SimOptions::default(),
            node_meta: Value::Null,
            cloud: Cloud::Aws,
            launch_template: false,
        }
    }
}

/// The usual world of an end-to-end test: `size` clients, the AWS Secret,
/// and the operator running.
pub async fn setup(test: &str, size: i32) -> World {
    setup_with(
        test,
        WorldOptions {
            size,
            ..Default::default()
        },
    )
    .await
}

/// As `setup`, on `cloud`; a GCE world's test name (and so its namespace
/// and group) starts with `gce-`.
pub async fn setup_on(cloud: Cloud, test: &str, size: i32) -> World {
    let test = match cloud {
        Cloud::Aws => test.to_string(),
        Cloud::Gce => format!("gce-{test}"),
    };
    setup_with(
        &test,
        WorldOptions {
            size,
            cloud,
            ..Default::default()
        },
    )
    .await
}

/// As `setup`, with any options.
pub async fn setup_with(test: &str, opts: WorldOptions) -> World {
    let mut w = World::new(test, opts).await;
    w.create_provider_secret().await;
    w.start_operator().await;
    w
}

impl World {
    /// A namespace, a simulator, and a group of `size` instances whose
    /// clients have registered in node pool `ci`; no operator yet.
    pub async fn new(test: &str, opts: WorldOptions) -> World {
        World::on(kube_client().await, test, opts).await
    }

    /// As `new`, on the control plane `client` talks to (a private one).
    pub async fn on(client: Client, test: &str, opts: WorldOptions) -> World {
        install_crd(&client).await;
        let namespace = create_namespace(&client, test).await;
        let sim = Sim::start(opts.sim).await;
        let asg = asg_client();
        let group = unique(test);
        let (bridge, gce) = match opts.cloud {
            Cloud::Aws => {
                if opts.launch_template {
                    create_template_group(&asg, &group, opts.min, 50, opts.size).await;
                } else {
                    create_group(&asg, &group, opts.min, 50, opts.size).await;
                }
                let bridge = Bridge::start_with_meta(
                    sim.url.clone(),
                    group.clone(),
                    "ci".into(),
                    opts.node_meta,
                );
                (bridge, None)
            }
            Cloud::Gce => {
                let gce = GceCloud::start().await;
                gce.create_group(&group, opts.size).await;
                let bridge = gce_bridge(
                    gce.url.clone(),
                    group.clone(),
                    sim.url.clone(),
                    "ci".into(),
                    opts.node_meta,
                );
                (bridge, Some(gce))
            }
        };
        let world = World {
            client,
            namespace,
            sim,
            asg,
            group,
            bridge,
            operator: None,
            test: test.into(),
            cloud: opts.cloud,
            gce,
        };
        let size = opts.size as usize;
        // Generous: on a loaded machine a few dozen clients take a while.
        wait_for("clients to register", Duration::from_secs(30), || async {
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
            .as_ref()
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
        let provider = match &self.gce {
            None => json!({"awsAutoScalingGroup": {
                "name": self.group, "region": "us-east-1", "endpoint": moto_endpoint(),
                "credentialsSecretRef": {"name": "aws"}
            }}),
            Some(gce) => json!({"gceManagedInstanceGroup": {
                "project": GCE_PROJECT, "zone": GCE_ZONE, "name": self.group,
                "endpoint": gce.url, "credentialsSecretRef": {"name": GCE_SECRET}
            }}),
        };
        let mut spec = json!({
            "nomad": {"address": self.sim.url},
            "selector": {"nodePool": "ci"},
            "provider": provider,
        });
        merge(&mut spec, extra_spec);
        json!({"apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
               "metadata": {"name": name, "namespace": self.namespace}, "spec": spec})
    }

    pub async fn create_aws_secret(&self) {
        create_aws_secret(&self.client, &self.namespace).await;
    }

    /// The Secret the pool manifest names: AWS keys moto accepts, or the
    /// service-account key gce-sim knows.
    pub async fn create_provider_secret(&self) {
        match &self.gce {
            None => self.create_aws_secret().await,
            Some(gce) => create_gce_secret(&self.client, &self.namespace, &gce.key_json).await,
        }
    }

    /// This world's gce-sim; panics on an AWS world.
    pub fn gce(&self) -> &GceCloud {
        self.gce.as_ref().expect("a GCE world")
    }

    /// Apply a pool; a pool that names this world's group is first given
    /// the group (its ownership tag), as the group's owner would.
    pub async fn apply_pool(&self, manifest: &Value) {
        let name = manifest["metadata"]["name"].as_str().unwrap();
        if let Some(gce) = &self.gce {
            if manifest["spec"]["provider"]["gceManagedInstanceGroup"]["name"]
                == self.group.as_str()
            {
                gce.set_owner(&self.group, &format!("{}/{name}", self.namespace))
                    .await;
            }
        } else if manifest["spec"]["provider"]["awsAutoScalingGroup"]["name"] == self.group.as_str()
        {
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

    pub fn retirements_api(&self) -> Api<NomadClientRetirement> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// The pool's status and its retirements (read in the order
    /// `retirements::read` explains); panics if the pool does not exist.
    pub async fn status(&self, name: &str) -> PoolView {
        retirements::read(&self.pools(), &self.retirements_api(), name)
            .await
            .unwrap_or_else(|e| panic!("reading pool {name}: {e}"))
            .unwrap_or_else(|| panic!("pool {name} does not exist"))
    }

    /// Wait for the pool's view to satisfy `pred`, printing the operator's
    /// log tail when it does not.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&PoolView) -> bool,
    ) -> PoolView {
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
                    self.operator_log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every retirement of pool `pool` (labelled for it), finished ones
    /// included, by name.
    pub async fn retirements(&self, pool: &str) -> Vec<NomadClientRetirement> {
        let mut all = retirements::list(&self.retirements_api(), pool)
            .await
            .unwrap_or_else(|e| panic!("listing the retirements of pool {pool}: {e}"));
        all.sort_by_key(|r| r.metadata.name.clone());
        all
    }

    /// Wait until the retirement `name` exists and satisfies `pred`.
    pub async fn wait_retirement(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&NomadClientRetirement) -> bool,
    ) -> NomadClientRetirement {
        let api = self.retirements_api();
        let start = Instant::now();
        loop {
            let r = api
                .get_opt(name)
                .await
                .unwrap_or_else(|e| panic!("reading retirement {name}: {e}"));
            match r {
                Some(r) if pred(&r) => return r,
                _ if start.elapsed() > timeout => panic!(
                    "timed out after {timeout:?} waiting for {what}\nretirement {name}: {}\noperator log:\n{}",
                    r.map(|r| serde_json::to_string_pretty(&r).unwrap())
                        .unwrap_or_else(|| "absent".into()),
                    self.operator_log_tail()
                ),
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn operator_log_tail(&self) -> String {
        self.operator
            .as_ref()
            .map(|o| o.log_tail())
            .unwrap_or_default()
    }

    pub async fn group(&self) -> Group {
        match &self.gce {
            None => describe_group(&self.asg, &self.group).await,
            Some(gce) => gce.group(&self.group).await,
        }
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

    /// Wait until an Event that `matches` (reason, note) is in this world's
    /// namespace; its note. `what` names it in the failure. Events are
    /// published off the reconcile path, after the status write a test
    /// usually waits for first.
    pub async fn wait_event(
        &self,
        what: &str,
        matches: impl Fn(&str, &str) -> bool,
        timeout: Duration,
    ) -> String {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let events = self.events().await;
            if let Some((_, note)) = events.iter().find(|(r, n)| matches(r, n)) {
                return note.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no Event {what} within {timeout:?}; seen: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
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
        if let Some(gce) = self.gce {
            gce.sim.shutdown().await;
        }
    }
}
