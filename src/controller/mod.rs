//! The `NomadClientPool` controller.
//!
//! - `plan`: the retire decisions, pure and unit-tested;
//! - `reconcile`: observe → plan → write-ahead status → side effects;
//! - `watch`: Nomad blocking queries that wake the reconciler;
//! - `connect`: spec and Secrets → Nomad and cloud clients;
//! - `secret_use`: which Secrets a pool may use, and for what (their label);
//! - `events`: Kubernetes Events, published off the reconcile path;
//! - `group`: the cloud group as last read, refreshed off the critical path;
//! - `status`: condition bookkeeping;
//! - `authority`: which pools may use the operator's cloud identity and a group;
//! - `conditions`: what the conditions say (reasons for trouble and blockers).

pub mod alloc_watch;
pub mod authority;
pub mod conditions;
pub mod connect;
pub mod drain_meta;
pub mod events;
pub mod group;
pub mod outside;
pub mod plan;
pub mod readiness;
pub mod reconcile;
pub mod resends;
pub mod secret_use;
pub mod siblings;
pub mod status;
pub mod visibility;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_stream_shim::UnboundedReceiverStream;
use tracing::{info, warn};

use crate::api::NomadClientPool;
use crate::nomad::NomadClient;
use crate::provider::CloudProvider;

/// Errors that make a reconcile fail and retry with backoff. Trouble with
/// Nomad or the cloud is not here: it is reported in status and requeued.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the pool's status failed: {0}")]
    StatusWrite(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cleanup on deletion: {0}")]
    Cleanup(String),
}

impl Error {
    /// A write refused because the pool changed since the copy it was made
    /// from: not a failure to back off from.
    pub fn is_conflict(&self) -> bool {
        let status_write = match self {
            Error::StatusWrite(e) => Some(e),
            Error::Finalizer(f) => match f.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(Error::StatusWrite(e))
                | kube::runtime::finalizer::Error::CleanupFailed(Error::StatusWrite(e)) => Some(e),
                _ => None,
            },
            Error::Cleanup(_) => None,
        };
        matches!(status_write, Some(kube::Error::Api(s)) if s.code == 409)
    }
}

/// What a pool needs between reconciles: its clients and its watches.
pub struct PoolRuntime {
    pub fingerprint: u64,
    pub address: String,
    pub nomad: NomadClient,
    pub provider: Arc<dyn CloudProvider>,
    pub watch: watch::PoolWatch,
    pub group: group::GroupView,
    /// Whether the token provably sees every allocation; no termination
    /// without it.
    pub visibility: visibility::VisibilityWatch,
    /// Every Nomad node reporting the VMs at the termination gate.
    pub siblings: siblings::SiblingWatch,
    /// VMs of the group no node reports yet, since when.
    pub clientless: readiness::Clientless,
    /// Nomad writes to nodes not yet seen in the node view.
    pub writes: WriteLog,
    /// Drains answered `200` that the node view does not show.
    pub drain_resends: resends::DrainResends,
    /// Instances whose terminate call is running: they are not sent again.
    pub terminating: Mutex<std::collections::HashSet<String>>,
    /// Failed terminate calls, reported by the next reconcile.
    pub cloud_failures: Mutex<Vec<String>>,
    pub trigger: watch::Trigger,
}

impl PoolRuntime {
    /// A Nomad write to `node_id` answered with `index`: not sent again
    /// while the node view does not show it, and read back from the node
    /// if the view does not show it within seconds.
    pub fn wrote(&self, node_id: &str, index: u64) {
        self.writes.record(node_id, index);
        self.watch.expect_write(node_id, index);
    }
}

/// How long a write may stay invisible in the node watch before it is sent
/// again anyway (a lost event; the next re-list repairs the view).
pub const WRITE_OBSERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Nomad writes to nodes (cordon, drain, release, purge) by node ID, with
/// the index Nomad gave them.
#[derive(Default)]
pub struct WriteLog(Mutex<HashMap<String, (u64, std::time::Instant)>>);

impl WriteLog {
    pub fn record(&self, node_id: &str, index: u64) {
        // Index 0: Nomad changed nothing (e.g. eligibility already set).
        if index > 0 {
            self.0
                .lock()
                .expect("writes lock")
                .insert(node_id.to_owned(), (index, std::time::Instant::now()));
        }
    }

    pub fn clear(&self) {
        self.0.lock().expect("writes lock").clear();
    }

    /// Nodes with a write the node view does not show yet (neither the
    /// view's index nor the node's, which a read-back may have advanced).
    /// Planning on that view would send the same write again: during a large
    /// scale-in the event that shows a drain can trail the reconciles that
    /// follow it by seconds, and every one of them would re-send it.
    pub fn unobserved(&self, view: &watch::NodesSnapshot) -> std::collections::HashSet<String> {
        let mut writes = self.0.lock().expect("writes lock");
        writes.retain(|id, (index, at)| {
            !view.shows_write(id, *index) && at.elapsed() < WRITE_OBSERVE_TIMEOUT
        });
        writes.keys().cloned().collect()
    }
}

#[cfg(test)]
#[test]
fn a_write_is_unobserved_until_the_node_view_reaches_its_index() {
    let node = |id: &str, modify_index: u64| {
        let n: crate::nomad::NodeListStub = serde_json::from_value(serde_json::json!({
            "ID": id, "Name": id, "Datacenter": "dc1", "SchedulingEligibility": "eligible",
            "Status": "ready", "CreateIndex": 1, "ModifyIndex": modify_index,
        }))
        .unwrap();
        Arc::new(n)
    };
    let view = |index: u64, b_at: u64| watch::NodesSnapshot {
        index,
        nodes: vec![node("a", 1), node("b", b_at), node("c", 1), node("d", 1)],
        ..Default::default()
    };
    let log = WriteLog::default();
    log.record("a", 10);
    log.record("b", 20);
    log.record("c", 0);
    log.record("d", 30);
    let both: std::collections::HashSet<String> = ["b".to_string(), "d".to_string()].into();
    assert_eq!(log.unobserved(&view(15, 1)), both);
    assert_eq!(
        log.unobserved(&view(5, 1)),
        both,
        "a seen write is forgotten"
    );
    assert_eq!(
        log.unobserved(&view(15, 20)),
        ["d".to_string()].into(),
        "the node itself (read back) shows the write"
    );
    assert!(log.unobserved(&view(30, 1)).is_empty());
}

/// Our own status writes, for reading them back before the controller's
/// cache shows them. The controller hands each reconcile its cache's copy of
/// the pool, which trails our last status write until the watch event for
/// it arrives; a write made from that copy fails the resourceVersion check.
/// During a busy scale-in that happened on one reconcile in seven, and each
/// conflict held every planned action back. A copy whose resourceVersion one
/// of our writes replaced is swapped for what that write returned; any other
/// version (a user's edit, a newer event) is used as is.
#[derive(Default)]
pub struct OwnWrites(Mutex<HashMap<ObjectRef<NomadClientPool>, Written>>);

struct Written {
    latest: Arc<NomadClientPool>,
    replaced: std::collections::VecDeque<String>,
    at: std::time::Instant,
}

/// How many of our replaced resourceVersions are remembered per pool: the
/// cache trails by an event or two, never by dozens.
const OWN_WRITES_KEPT: usize = 16;

impl OwnWrites {
    /// The newest copy of the pool we know of.
    pub fn newest(&self, pool: Arc<NomadClientPool>) -> Arc<NomadClientPool> {
        let Some(rv) = pool.metadata.resource_version.as_deref() else {
            return pool;
        };
        let own = self.0.lock().expect("own writes lock");
        match own.get(&ObjectRef::from_obj(pool.as_ref())) {
            Some(w) if w.replaced.iter().any(|r| r == rv) => w.latest.clone(),
            _ => pool,
        }
    }

    /// Remember a write: `before` is the copy it was made from, `after` what
    /// the API server returned.
    pub fn wrote(&self, before: &NomadClientPool, after: NomadClientPool) {
        let Some(rv) = before.metadata.resource_version.clone() else {
            return;
        };
        let after = Arc::new(after);
        let mut own = self.0.lock().expect("own writes lock");
        let w = own
            .entry(ObjectRef::from_obj(before))
            .or_insert_with(|| Written {
                latest: after.clone(),
                replaced: Default::default(),
                at: std::time::Instant::now(),
            });
        w.latest = after;
        w.at = std::time::Instant::now();
        w.replaced.push_back(rv);
        if w.replaced.len() > OWN_WRITES_KEPT {
            w.replaced.pop_front();
        }
    }

    /// Whether this process wrote the pool's status within `period`.
    pub fn written_within(&self, pool: &NomadClientPool, period: Duration) -> bool {
        self.0
            .lock()
            .expect("own writes lock")
            .get(&ObjectRef::from_obj(pool))
            .is_some_and(|w| w.at.elapsed() < period)
    }

    pub fn forget(&self, pool: &NomadClientPool) {
        self.0
            .lock()
            .expect("own writes lock")
            .remove(&ObjectRef::from_obj(pool));
    }
}

#[cfg(test)]
#[test]
fn a_copy_our_write_replaced_is_read_as_what_the_write_returned() {
    let pool = |rv: &str, retired: i64| {
        let spec = crate::api::NomadClientPoolSpec {
            nomad: Default::default(),
            selector: Default::default(),
            provider: Default::default(),
            replicas: None,
            retire: vec![],
            drain: Default::default(),
            disruption: Default::default(),
        };
        let mut p = NomadClientPool::new("ci", spec);
        p.metadata.namespace = Some("default".into());
        p.metadata.resource_version = Some(rv.into());
        p.status = Some(crate::api::NomadClientPoolStatus {
            retired_total: retired,
            ..Default::default()
        });
        Arc::new(p)
    };
    let own = OwnWrites::default();
    own.wrote(&pool("1", 0), (*pool("2", 1)).clone());
    own.wrote(&pool("2", 1), (*pool("3", 2)).clone());
    let rv = |p: Arc<NomadClientPool>| p.metadata.resource_version.clone().unwrap();
    assert_eq!(rv(own.newest(pool("1", 0))), "3", "cache two writes behind");
    assert_eq!(rv(own.newest(pool("2", 1))), "3", "cache one write behind");
    assert_eq!(rv(own.newest(pool("3", 2))), "3");
    assert!(own.written_within(&pool("3", 2), Duration::from_secs(60)));
    assert!(!own.written_within(&pool("3", 2), Duration::ZERO));
    assert_eq!(
        rv(own.newest(pool("7", 0))),
        "7",
        "a version we did not write over is newer: a user's edit"
    );
    own.forget(&pool("3", 2));
    assert_eq!(rv(own.newest(pool("1", 0))), "1");
}

pub struct Context {
    pub client: Client,
    pub events: events::EventSink,
    pub pools: Mutex<HashMap<ObjectRef<NomadClientPool>, Arc<PoolRuntime>>>,
    pub trigger: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
    pub own_writes: OwnWrites,
    /// Namespaces whose pools may use the operator's own cloud identity.
    pub ambient: authority::AmbientCredentials,
    failures: Mutex<HashMap<ObjectRef<NomadClientPool>, u32>>,
}

impl Context {
    pub fn note_failure(&self, pool: &NomadClientPool) {
        *self
            .failures
            .lock()
            .expect("failures lock")
            .entry(ObjectRef::from_obj(pool))
            .or_default() += 1;
    }
    pub fn note_success(&self, pool: &NomadClientPool) {
        self.failures
            .lock()
            .expect("failures lock")
            .remove(&ObjectRef::from_obj(pool));
    }
    /// Per-pool exponential backoff: one failing pool never spins, and never
    /// slows the others.
    pub fn backoff(&self, pool: &NomadClientPool) -> Duration {
        let n = self
            .failures
            .lock()
            .expect("failures lock")
            .get(&ObjectRef::from_obj(pool))
            .copied()
            .unwrap_or(0);
        Duration::from_millis(500u64.saturating_mul(1 << n.min(7))).min(Duration::from_secs(60))
    }
}

fn error_policy(pool: Arc<NomadClientPool>, error: &Error, ctx: Arc<Context>) -> Requeue {
    if error.is_conflict() {
        // Someone else changed the pool since our copy (our own writes are
        // read back, see OwnWrites): retry soon on the cache's newer copy,
        // without the back-off of a failure.
        info!("the pool changed while reconciling; retrying on the newer copy");
        return Requeue::requeue(Duration::from_secs(1));
    }
    warn!(error = %error, "reconcile failed");
    ctx.note_failure(&pool);
    Requeue::requeue(ctx.backoff(&pool))
}

/// Run the controller until the process is told to stop. With namespaces,
/// only pools in those are watched (a namespaced install, whose rights are
/// Roles in exactly those namespaces); without, pools in every namespace.
/// `ambient` lists the namespaces whose pools may use the operator's own
/// cloud identity.
pub async fn run(
    client: Client,
    reporter: Reporter,
    namespaces: Vec<String>,
    ambient: authority::AmbientCredentials,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Context {
        events: events::EventSink::start(client.clone(), reporter),
        client,
        pools: Mutex::new(HashMap::new()),
        trigger: tx,
        failures: Mutex::new(HashMap::new()),
        own_writes: OwnWrites::default(),
        ambient,
    });
    let scopes: Vec<Option<String>> = if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    };
    // One controller per namespace: a namespaced install may not list pools
    // cluster-wide, and one watch's store cannot be fed by several lists.
    // They share the context (clients, watches, events); the Nomad and
    // cloud watches' wake-ups are routed to the controller of their pool.
    let mut routes = HashMap::new();
    let mut controllers = Vec::new();
    for scope in scopes {
        let (tx, rx) = mpsc::unbounded_channel();
        routes.insert(scope.clone(), tx);
        controllers.push(run_scope(ctx.clone(), scope, rx));
    }
    tokio::spawn(route_triggers(rx, routes));
    futures::future::join_all(controllers).await;
    info!("controller stopped");
}

async fn route_triggers(
    mut rx: mpsc::UnboundedReceiver<ObjectRef<NomadClientPool>>,
    routes: HashMap<Option<String>, mpsc::UnboundedSender<ObjectRef<NomadClientPool>>>,
) {
    while let Some(pool) = rx.recv().await {
        let route = routes.get(&pool.namespace).or_else(|| routes.get(&None));
        if let Some(tx) = route {
            let _ = tx.send(pool);
        }
    }
}

/// The controller for pools in one namespace, or in all with `None`.
async fn run_scope(
    ctx: Arc<Context>,
    namespace: Option<String>,
    triggers: mpsc::UnboundedReceiver<ObjectRef<NomadClientPool>>,
) {
    let pools: Api<NomadClientPool> = match &namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    // Our own status writes must not wake the pool: a reconcile that failed
    // and wrote ActionFailed would run again at once, past its back-off, and
    // a Nomad outage became a purge storm. Spec edits and deletion (which
    // bumps the generation) and finalizer changes do wake it; everything
    // else that matters reaches it through the Nomad watches, the group
    // view and the requeues.
    let (reader, writer) = reflector::store();
    // No back-off of its own here: the controller backs off its trigger
    // streams, and a second layer kept a pool blind for tens of seconds
    // after an API server restart.
    let pool_changes = watcher(pools, watcher::Config::default().any_semantic())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    Controller::for_stream(pool_changes, reader)
        .with_config(ControllerConfig::default().concurrency(16))
        .reconcile_on(UnboundedReceiverStream(triggers))
        .shutdown_on_signal()
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile error");
            }
        })
        .await;
}

/// `tokio::sync::mpsc::UnboundedReceiver` as a `Stream`, without pulling in
/// tokio-stream for one adapter.
mod tokio_stream_shim {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc::UnboundedReceiver;

    pub struct UnboundedReceiverStream<T>(pub UnboundedReceiver<T>);

    impl<T> futures::Stream for UnboundedReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
