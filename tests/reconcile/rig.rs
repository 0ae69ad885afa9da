//! The rig of the middle-layer tests: a namespace, the in-process Nomad
//! simulator and a fake cloud group, and the reconciler called in this
//! process when the test says so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use nomad_pool_operator::api::NomadClientPool;
use nomad_pool_operator::controller::authority::AmbientCredentials;
use nomad_pool_operator::controller::events::EventSink;
use nomad_pool_operator::controller::reconcile::reconcile;
use nomad_pool_operator::controller::{Context, Error, retirement};
use nomad_pool_operator::provider::Lifecycle;
use nomad_pool_operator::provider::fake::{Call, FakeCloud, FakeProvider};
use npo_testkit::{
    Sim, SimOptions, condition, create_namespace, install_crd, kube_client, merge, wait_for,
};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

pub const POOL: &str = "pool";
pub const T: Duration = Duration::from_secs(60);

/// One pool, its Nomad (simulated), its cloud group (fake) and a controller
/// context whose reconciles the test runs itself.
pub struct Rig {
    pub api: Api<NomadClientPool>,
    pub client: Client,
    pub namespace: String,
    pub sim: Sim,
    pub group: Arc<FakeProvider>,
    pub cloud: Arc<FakeCloud>,
    pub ctx: Arc<Context>,
    pub woken: UnboundedReceiver<ObjectRef<NomadClientPool>>,
    pub instances: Vec<String>,
}

/// A controller context for `namespace` (events, retirement store), as a
/// freshly started operator has it: it remembers nothing.
fn context(
    client: &Client,
    namespace: &str,
    cloud: &Arc<FakeCloud>,
) -> (Arc<Context>, UnboundedReceiver<ObjectRef<NomadClientPool>>) {
    let reporter = Reporter {
        controller: "nomad-pool-operator-reconcile-test".into(),
        instance: None,
    };
    let events = EventSink::start(client.clone(), reporter);
    let (ctx, woken) = Context::new(
        client.clone(),
        events,
        AmbientCredentials::Everyone,
        cloud.clone(),
    );
    // The retirement objects' store, as the controller runs it; its
    // wake-ups are not needed here (each test reconciles on its own).
    let retirements = retirement::ledger::watch(&ctx, Some(namespace.to_owned()));
    tokio::spawn(retirements.for_each(|_| async {}));
    (ctx, woken)
}

impl Rig {
    /// `vms` VMs with one Nomad client each, in a group the pool owns.
    pub async fn new(test: &str, vms: usize) -> Rig {
        let client = kube_client().await;
        install_crd(&client).await;
        let namespace = create_namespace(&client, test).await;
        let sim = Sim::start(SimOptions::default()).await;
        let instances: Vec<String> = (0..vms).map(|i| format!("i-{test}-{i}")).collect();
        sim.post(
            "/sim/nodes",
            json!({"count": vms, "node_pool": "ci", "node_class": "linux",
                   "instance_ids": instances, "availability_zone": "us-east-1a"}),
        )
        .await;
        let ids: Vec<&str> = instances.iter().map(String::as_str).collect();
        let group = FakeProvider::new(&format!("{test}-group"), &ids);
        group.update(|g| g.owner_tag = Some(format!("{namespace}/{POOL}")));
        let cloud = Arc::new(FakeCloud::default());
        cloud.add(group.clone());
        let (ctx, woken) = context(&client, &namespace, &cloud);
        Rig {
            api: Api::namespaced(client.clone(), &namespace),
            client,
            namespace,
            sim,
            group,
            cloud,
            ctx,
            woken,
            instances,
        }
    }

    /// The operator restarted: a new context, remembering nothing of the
    /// old one (runtimes, queues, heartbeats, completions).
    pub fn restart(&mut self) {
        let (ctx, woken) = context(&self.client, &self.namespace, &self.cloud);
        self.ctx = ctx;
        self.woken = woken;
    }

    pub async fn create_pool(&self, extra_spec: Value) {
        let mut spec = json!({
            "nomad": {"address": self.sim.url},
            "selector": {"nodePool": "ci"},
            "provider": {"awsAutoScalingGroup": {
                "name": self.group.group_state().name, "region": "us-east-1"}},
        });
        merge(&mut spec, extra_spec);
        let pool: NomadClientPool = serde_json::from_value(json!({
            "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
            "metadata": {"name": POOL, "namespace": self.namespace}, "spec": spec,
        }))
        .unwrap();
        self.api
            .create(&PostParams::default(), &pool)
            .await
            .unwrap();
    }

    /// One reconcile of the pool as the API server holds it now.
    pub async fn reconcile_once(&self) -> Result<(), Error> {
        let pool = self.api.get(POOL).await.expect("reading the pool");
        reconcile(Arc::new(pool), self.ctx.clone()).await.map(drop)
    }

    /// Reconcile until `done` holds for the stored pool (`None`: deleted),
    /// waiting between reconciles for a watch's wake-up or 100 ms. The VMs
    /// the fake group terminates go down in the simulator, as the cloud's do.
    pub async fn reconcile_until(
        &mut self,
        what: &str,
        done: impl Fn(Option<&NomadClientPool>) -> bool,
    ) -> Option<NomadClientPool> {
        let start = Instant::now();
        loop {
            let _ = self.reconcile_once().await;
            self.bridge().await;
            let pool = self.api.get_opt(POOL).await.unwrap();
            if done(pool.as_ref()) {
                return pool;
            }
            assert!(
                start.elapsed() < T,
                "timed out waiting for {what}: {pool:#?}"
            );
            let wake = self.woken.recv();
            let _ = tokio::time::timeout(Duration::from_millis(100), wake).await;
        }
    }

    pub async fn bridge(&self) {
        let state = self.group.group_state();
        let terminating: Vec<String> = state
            .instances
            .iter()
            .filter(|i| i.lifecycle == Lifecycle::Terminating)
            .map(|i| i.id.clone())
            .collect();
        for id in &terminating {
            self.sim
                .post(&format!("/sim/nodes/{id}/kill"), json!({}))
                .await;
        }
        // Only those whose node was killed leave the group: a terminate
        // call landing meanwhile is bridged on the next round.
        self.group
            .update(|g| g.instances.retain(|i| !terminating.contains(&i.id)));
    }

    pub fn terminations(&self) -> Vec<(String, bool)> {
        self.group
            .calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Terminate {
                    instance_id,
                    decrement,
                } => Some((instance_id, decrement)),
                _ => None,
            })
            .collect()
    }

    /// A batch job on every client, running until finished.
    pub async fn busy_everywhere(&self) -> Vec<String> {
        let mut allocs = vec![];
        for node in self.sim.nodes().await {
            let id = node["id"].as_str().unwrap().to_owned();
            allocs.push(
                self.sim
                    .batch_on(&id, &format!("ci-{}", &id[..8]), None)
                    .await,
            );
        }
        allocs
    }

    /// The messages of the pool's Events with `reason`, once one of them
    /// satisfies `wanted`: Events are published off the reconcile path, so
    /// they may land after the reconcile that decided them returned.
    pub async fn event_where(&self, reason: &str, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let what = format!("a {reason} Event");
        wait_for(&what, T, || async {
            let list = api.list(&ListParams::default()).await.unwrap();
            let messages: Vec<String> = list
                .items
                .into_iter()
                .filter(|e| e.reason.as_deref() == Some(reason))
                .filter_map(|e| e.message)
                .collect();
            messages.iter().any(|m| wanted(m)).then_some(messages)
        })
        .await
    }
}

pub fn reason_of(pool: Option<&NomadClientPool>, type_: &str) -> Option<String> {
    let st = pool?.status.as_ref()?;
    let c = condition(st, type_)?;
    (c.status == "True").then(|| c.reason.clone())
}

pub fn settled(pool: Option<&NomadClientPool>, retired: i64) -> bool {
    let Some(st) = pool.and_then(|p| p.status.as_ref()) else {
        return false;
    };
    st.retired_total == retired
        && st.retirements_in_flight == 0
        && condition(st, "Ready").is_some_and(|c| c.reason == "Settled")
}
