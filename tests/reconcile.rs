//! The middle layer: one reconcile at a time, in this process, against the
//! real API server, the in-process Nomad simulator and the fake cloud
//! provider. Between the pure planner's unit tests and the end-to-end runs of
//! the operator binary: fast and deterministic (the test decides when each
//! reconcile runs), and able to reach `apply`, status, trouble reporting and
//! cleanup directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::api::events::v1::Event as SeriesEvent;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client};
use nomad_pool_operator::api::{
    NomadClientPool, NomadClientRetirement, RetirePhase, RetireReason, RetirementPhase,
};
use nomad_pool_operator::controller::authority::AmbientCredentials;
use nomad_pool_operator::controller::events::EventSink;
use nomad_pool_operator::controller::reconcile::reconcile;
use nomad_pool_operator::controller::{Context, Error, retirement};
use nomad_pool_operator::metrics::{PoolLabels, metrics};
use nomad_pool_operator::provider::fake::{Call, FakeCloud, FakeProvider, Operation};
use nomad_pool_operator::provider::{Lifecycle, ProviderError};
use npo_testkit::{
    Sim, SimOptions, condition, create_namespace, install_crd, kube_client, merge, wait_for,
};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

const POOL: &str = "pool";
const T: Duration = Duration::from_secs(60);

/// One pool, its Nomad (simulated), its cloud group (fake) and a controller
/// context whose reconciles the test runs itself.
struct Rig {
    api: Api<NomadClientPool>,
    client: Client,
    namespace: String,
    sim: Sim,
    group: Arc<FakeProvider>,
    cloud: Arc<FakeCloud>,
    ctx: Arc<Context>,
    woken: UnboundedReceiver<ObjectRef<NomadClientPool>>,
    instances: Vec<String>,
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
    async fn new(test: &str, vms: usize) -> Rig {
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
    fn restart(&mut self) {
        let (ctx, woken) = context(&self.client, &self.namespace, &self.cloud);
        self.ctx = ctx;
        self.woken = woken;
    }

    async fn create_pool(&self, extra_spec: Value) {
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
    async fn reconcile_once(&self) -> Result<(), Error> {
        let pool = self.api.get(POOL).await.expect("reading the pool");
        reconcile(Arc::new(pool), self.ctx.clone()).await.map(drop)
    }

    /// Reconcile until `done` holds for the stored pool (`None`: deleted),
    /// waiting between reconciles for a watch's wake-up or 100 ms. The VMs
    /// the fake group terminates go down in the simulator, as the cloud's do.
    async fn reconcile_until(
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

    async fn bridge(&self) {
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

    fn terminations(&self) -> Vec<(String, bool)> {
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
    async fn busy_everywhere(&self) -> Vec<String> {
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
    async fn event_where(&self, reason: &str, wanted: impl Fn(&str) -> bool) -> Vec<String> {
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

fn reason_of(pool: Option<&NomadClientPool>, type_: &str) -> Option<String> {
    let st = pool?.status.as_ref()?;
    let c = condition(st, type_)?;
    (c.status == "True").then(|| c.reason.clone())
}

fn settled(pool: Option<&NomadClientPool>, retired: i64) -> bool {
    let Some(st) = pool.and_then(|p| p.status.as_ref()) else {
        return false;
    };
    st.retired_total == retired
        && st.retirements_in_flight == 0
        && condition(st, "Ready").is_some_and(|c| c.reason == "Settled")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_in_by_one_retires_one_client_and_settles() {
    let mut rig = Rig::new("mid-scale-in", 3).await;
    rig.create_pool(json!({"replicas": 2})).await;
    let pool = rig
        .reconcile_until("one client retired, settled", |p| settled(p, 1))
        .await
        .unwrap();
    let terminated = rig.terminations();
    assert_eq!(terminated.len(), 1, "one VM, once: {terminated:?}");
    assert!(terminated[0].1, "with decrement");
    assert!(rig.instances.contains(&terminated[0].0));
    assert_eq!(rig.group.group_state().desired_capacity, 2);
    let st = pool.status.unwrap();
    assert_eq!((st.nodes, st.ready_nodes), (2, 2));
    assert_eq!(reason_of(Some(&pool_now(&rig).await), "Degraded"), None);
    rig.sim.assert_no_violations().await;
}

/// VMs that clear the gate together are terminated a few at a time: sent
/// all at once (4,000 in the 20,000-client bench) they queued in the cloud
/// API, timed out and were sent again, and almost none landed.
#[tokio::test(flavor = "multi_thread")]
async fn terminate_calls_in_flight_are_bounded_and_every_vm_still_goes() {
    let vms = 3 * nomad_pool_operator::controller::runtime::TERMINATE_CALLS;
    let mut rig = Rig::new("bounded-terminates", vms).await;
    rig.group.terminates_take(Duration::from_millis(500));
    rig.create_pool(json!({"replicas": 0, "disruption": {"maxUnavailable": "100%"}}))
        .await;
    rig.reconcile_until("every client retired", |p| settled(p, vms as i64))
        .await
        .unwrap();
    assert_eq!(rig.terminations().len(), vms, "every VM, once");
    let most = rig.group.most_terminates_in_flight();
    assert!(
        (2..=nomad_pool_operator::controller::runtime::TERMINATE_CALLS).contains(&most),
        "terminate calls in flight at once: {most}"
    );
    rig.sim.assert_no_violations().await;
}

async fn pool_now(rig: &Rig) -> NomadClientPool {
    rig.api.get(POOL).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_error_is_reported_as_degraded_and_clears_when_the_cloud_answers() {
    let mut rig = Rig::new("mid-cloud-error", 2).await;
    rig.group.fail_next(
        Operation::Describe,
        ProviderError::Unauthorized {
            message: "AccessDenied: not allowed".into(),
        },
    );
    rig.create_pool(json!({"replicas": 2})).await;
    let pool = rig
        .reconcile_until("Degraded ProviderError", |p| {
            reason_of(p, "Degraded").as_deref() == Some("ProviderError")
        })
        .await
        .unwrap();
    let degraded = condition(pool.status.as_ref().unwrap(), "Degraded").unwrap();
    assert!(
        degraded.message.contains("rejected the credentials")
            && degraded.message.contains("AccessDenied"),
        "{}",
        degraded.message
    );
    rig.reconcile_until("settled again", |p| settled(p, 0))
        .await;
    assert_eq!(reason_of(Some(&pool_now(&rig).await), "Degraded"), None);
    assert!(rig.terminations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_terminate_is_named_in_action_failed_and_retried() {
    let mut rig = Rig::new("mid-terminate-fails", 3).await;
    rig.group.fail_next(
        Operation::Terminate,
        ProviderError::Throttled {
            message: "Rate exceeded".into(),
        },
    );
    rig.create_pool(json!({"replicas": 2})).await;
    let pool = rig
        .reconcile_until("ActionFailed", |p| {
            reason_of(p, "Degraded").as_deref() == Some("ActionFailed")
        })
        .await
        .unwrap();
    let message = &condition(pool.status.as_ref().unwrap(), "Degraded")
        .unwrap()
        .message;
    let first = &rig.terminations()[0].0;
    assert!(
        message.contains(&format!(
            "terminating {first}: cloud API throttled the request: Rate exceeded"
        )),
        "{message}"
    );
    rig.reconcile_until("retired after the retry", |p| settled(p, 1))
        .await;
    let terminated = rig.terminations();
    assert_eq!(
        terminated.len(),
        2,
        "failed once, then once more: {terminated:?}"
    );
    assert_eq!(terminated[0], terminated[1], "the same VM");
    rig.event_where("ActionFailed", |m| m.contains("Rate exceeded"))
        .await;
    rig.sim.assert_no_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_tagged_for_no_pool_is_refused_and_nothing_is_done() {
    let mut rig = Rig::new("mid-untagged", 3).await;
    rig.group.update(|g| g.owner_tag = None);
    rig.create_pool(json!({"replicas": 1})).await;
    rig.reconcile_until("GroupNotTagged", |p| {
        reason_of(p, "Degraded").as_deref() == Some("GroupNotTagged")
    })
    .await;
    for _ in 0..3 {
        let _ = rig.reconcile_once().await;
    }
    assert!(rig.terminations().is_empty());
    let eligible = rig
        .sim
        .nodes()
        .await
        .iter()
        .filter(|n| n["eligibility"] == "eligible" && n["draining"] == false)
        .count();
    assert_eq!(
        eligible,
        3,
        "no client cordoned: {:#?}",
        rig.sim.nodes().await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_pool_mid_drain_terminates_nothing_and_says_what_it_left() {
    let mut rig = Rig::new("mid-delete", 3).await;
    rig.busy_everywhere().await;
    rig.create_pool(json!({"replicas": 2})).await;
    let pool = rig
        .reconcile_until("one client draining", |p| {
            p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
                (s.oldest_retirements.iter()).any(|r| r.phase == RetirePhase::Draining)
            })
        })
        .await
        .unwrap();
    let draining = pool.status.unwrap().oldest_retirements[0].node_name.clone();
    rig.api
        .delete(POOL, &DeleteParams::default())
        .await
        .unwrap();
    rig.reconcile_until("the pool gone", |p| p.is_none()).await;
    assert!(
        rig.terminations().is_empty(),
        "a deletion terminates nothing"
    );
    rig.event_where("PoolDeleted", |m| {
        m.contains("no VM was terminated") && m.contains(&draining)
    })
    .await;
    rig.sim.assert_no_violations().await;
}

/// Restart safety (issue 16): the token of a held VM's action, recorded in
/// its retirement (by an operator that read it from the hook's queue), is
/// what a restarted operator completes the action with; and the action is
/// completed once, with one `LifecycleActionCompleted` Event, however often
/// the pool is looked at and the operator restarts while another hook still
/// holds the VM.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_completes_a_held_action_once_with_the_recorded_token() {
    let mut rig = Rig::new("mid-hook-once", 2).await;
    rig.group.hooks(|h, _| {
        h.put("drain", 30).unwrap();
        h.put("someone-elses", 30).unwrap();
    });
    let jobs = rig.busy_everywhere().await;
    rig.create_pool(
        json!({"provider": {"awsAutoScalingGroup": {"lifecycleHook": {"name": "drain"}}}}),
    )
    .await;
    rig.reconcile_until("the hook confirmed", |p| {
        reason_of(p, "LifecycleHook").as_deref() == Some("HookReady")
    })
    .await;
    let vm = rig.group.scale_in_outside(1).remove(0);
    let token = rig.group.hooks(|h, _| h.token("drain", &vm)).unwrap();
    let retirements: Api<NomadClientRetirement> =
        Api::namespaced(rig.client.clone(), &rig.namespace);
    let held = |list: &[NomadClientRetirement]| {
        list.iter()
            .find(|r| r.spec.reason == RetireReason::LifecycleHook)
            .cloned()
    };
    rig.reconcile_until("the held client draining", |p| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            (s.oldest_retirements.iter()).any(|r| r.phase == RetirePhase::Draining)
        })
    })
    .await;
    let r = held(
        &retirements
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let name = r.metadata.name.clone().unwrap();
    let record = r.status.as_ref().and_then(|s| s.lifecycle_action.clone());
    assert_eq!(
        record
            .as_ref()
            .map(|a| (a.hook.as_str(), a.token.as_deref())),
        Some(("drain", None)),
        "found from the group: no token yet"
    );
    // What an operator that read the hook's queue recorded before it died.
    retirements
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lifecycleAction": {"token": token}}})),
        )
        .await
        .unwrap();
    rig.restart();
    for alloc in &jobs {
        rig.sim.finish(alloc).await;
    }
    let group = rig.group.clone();
    rig.reconcile_until("the action completed", |_| !completions(&group).is_empty())
        .await;
    // Another hook holds the VM: it stays in Terminating:Wait while the
    // pool is looked at again, by this operator and by a restarted one.
    for round in 0..2 {
        for _ in 0..5 {
            let _ = rig.reconcile_once().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if round == 0 {
            rig.restart();
        }
    }
    assert_eq!(
        rig.group.group_state().instances[0].lifecycle,
        Lifecycle::TerminatingWait
    );
    assert_eq!(
        completions(&rig.group),
        [(vm.clone(), Some(token.clone()))],
        "once, with the recorded token"
    );
    let r = retirements.get(&name).await.unwrap();
    let record = r.status.and_then(|s| s.lifecycle_action).unwrap();
    assert_eq!(record.token.as_deref(), Some(token.as_str()));
    assert!(record.completed_at.is_some(), "{record:?}");
    one_completion_event(&rig, &name, &vm, &token).await;

    // The other hook lets go: the VM goes and the client is retired.
    rig.group.hooks(|h, g| h.time_out(g, &vm));
    rig.reconcile_until("retired", |p| settled(p, 1)).await;
    assert_eq!(completions(&rig.group).len(), 1);
    rig.sim.assert_no_violations().await;
}

/// The completions of hook `drain` the group received, with their tokens.
fn completions(group: &FakeProvider) -> Vec<(String, Option<String>)> {
    (group.calls().into_iter())
        .filter_map(|c| match c {
            Call::CompleteLifecycleAction {
                hook,
                instance_id,
                token,
            } if hook == "drain" => Some((instance_id, token)),
            _ => None,
        })
        .collect()
}

/// One `LifecycleActionCompleted` Event, published once, on the
/// retirement `name`; no Event names the token.
async fn one_completion_event(rig: &Rig, name: &str, vm: &str, token: &str) {
    let events = rig
        .event_where("LifecycleActionCompleted", |m| m.contains(vm))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let api: Api<SeriesEvent> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let all = api.list(&ListParams::default()).await.unwrap().items;
    let completed: Vec<&SeriesEvent> = (all.iter())
        .filter(|e| e.reason.as_deref() == Some("LifecycleActionCompleted"))
        .collect();
    assert_eq!(completed.len(), 1, "{events:?}");
    let repeats = completed[0].series.as_ref().map_or(1, |s| s.count);
    assert_eq!(repeats, 1, "published once, not a series");
    let regarding = completed[0].regarding.as_ref().unwrap();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("NomadClientRetirement"), Some(name)),
        "on the retirement"
    );
    assert!(
        !all.iter()
            .any(|e| e.note.as_deref().is_some_and(|m| m.contains(token))),
        "no Event names the token"
    );
}

/// The express lane: once a reconcile has recorded two drains, no other
/// reconcile runs; their jobs end, and the lane alone records `Terminating`
/// and terminates the client whose retirement stands, never the one whose
/// retirement was deleted meanwhile (that one the next reconcile cancels).
#[tokio::test(flavor = "multi_thread")]
async fn the_express_lane_terminates_a_drained_client_without_a_reconcile() {
    let mut rig = Rig::new("mid-express", 3).await;
    let allocs = rig.busy_everywhere().await;
    rig.create_pool(json!({"replicas": 1, "disruption": {"maxUnavailable": 2}}))
        .await;
    let ncrs: Api<NomadClientRetirement> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let draining = |p: Option<&NomadClientPool>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            (s.oldest_retirements.iter())
                .filter(|r| r.phase == RetirePhase::Draining)
                .count()
                == 2
        })
    };
    rig.reconcile_until("two clients draining", draining).await;
    let items = ncrs.list(&ListParams::default()).await.unwrap().items;
    let (stopped, kept) = (&items[0], &items[1]);
    ncrs.delete(&stopped.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    for a in &allocs {
        rig.sim.finish(a).await;
    }
    let kept_vm = kept.status.as_ref().unwrap().instance_id.clone().unwrap();
    let terminated = wait_for("the lane's terminate", T, || async {
        let t = rig.terminations();
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(terminated, vec![(kept_vm, true)]);
    let record = ncrs.get(&kept.name_any()).await.unwrap();
    assert_eq!(record.phase(), RetirementPhase::Terminating);
    let pool = format!("{}/{POOL}", rig.namespace);
    let lane = metrics()
        .express_terminates
        .get_or_create(&PoolLabels { pool });
    assert_eq!(lane.get(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.terminations().len(), 1, "the deleted one waits");
    // The reconcile cancels it, once the pool no longer needs it.
    rig.api
        .patch(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let stopped_vm = stopped.status.as_ref().unwrap().instance_id.clone();
    wait_for("the deleted retirement cancelled", T, || async {
        let _ = rig.reconcile_once().await;
        let now = ncrs.get_opt(&stopped.name_any()).await.unwrap();
        // Kept for history (finished), or already pruned.
        now.is_none_or(|r| r.phase() == RetirementPhase::Cancelled)
            .then_some(())
    })
    .await;
    let vms: Vec<String> = rig.terminations().into_iter().map(|t| t.0).collect();
    assert!(!vms.contains(&stopped_vm.unwrap()), "{vms:?}");
    rig.sim.assert_no_violations().await;
}
