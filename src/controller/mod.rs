//! The `NomadClientPool` controller: the wiring here, each concern in its room.
//!
//! One reconcile (`reconcile`, a table of contents) goes observe → plan →
//! persist the write-ahead status → act → report:
//! - `reconcile/observe`: the Nomad and cloud views as planner facts, and the
//!   re-plan on a fresh group read or the nodes' load;
//! - `plan`: the retire decisions, pure and unit-tested; `drain_meta`: how a
//!   drain records the retirement it belongs to (in Nomad's drain `Meta`);
//! - `reconcile/persist`: the records written before any side effect: each
//!   client's `NomadClientRetirement` (see `retirement`), then the pool's status;
//! - `reconcile/act`: the side effects, with typed [`reconcile::ActionError`]s;
//! - `reconcile/report`: status after trouble or failures, Events, metrics;
//! - `reconcile/cleanup`: what a deleted pool gives back (the finalizer).
//!
//! What the reconciles share and keep:
//! - `context`: the shared context and per-pool back-off; `error`: why a
//!   reconcile fails; `trigger`: wake-ups, at most one per pool per
//!   `--min-reconcile-interval`;
//! - `runtime`: a pool's clients and watches, built by `connect` (spec and
//!   Secrets → Nomad config and a `provider::ProviderConfig`) and
//!   `secret_use` (which Secrets a pool may use, by their label);
//! - `own_writes`: our status writes, read back before the cache shows them;
//!   `write_log`: our Nomad writes, until the node view shows them;
//! - `watch`: the node view (Nomad's event stream) and allocation watches;
//!   `alloc_watch`: which nodes get one; `visibility`: whether the token sees
//!   every allocation; `siblings`: every node on a VM at the termination gate;
//!   `group`: the cloud group as last read; `outside`: tracked nodes the
//!   selector no longer matches;
//! - `authority`: which pools may use the operator's cloud identity and a group;
//! - `conditions` and `status`: what the conditions say, and their bookkeeping;
//!   `batching`: whether the batches `batchTerminations` asks for run;
//!   `readiness`: capacity that is missing; `resends`: drains Nomad ignores;
//! - `events`: Kubernetes Events, published off the reconcile path.

pub mod alloc_watch;
pub mod authority;
pub mod batching;
pub mod clientless;
pub mod conditions;
pub mod connect;
pub mod context;
pub mod drain_meta;
pub mod error;
pub mod events;
pub mod group;
pub mod hooks;
pub mod kstatus;
pub mod outside;
pub mod own_writes;
pub mod plan;
pub mod readiness;
pub mod reconcile;
pub mod resends;
pub mod retirement;
pub mod runtime;
pub mod secret_use;
pub mod siblings;
pub mod status;
pub mod trigger;
pub mod unhealthy;
pub mod visibility;
pub mod watch;
pub mod write_log;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, reflector, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tracing::{info, warn};

pub use context::Context;
pub use error::Error;
pub use runtime::PoolRuntime;

use crate::api::NomadClientPool;
use crate::provider::Clouds;
use trigger::stream::UnboundedReceiverStream;

/// The name the API server records this operator's writes under
/// (`managedFields`, as `kubectl get --show-managed-fields` shows them);
/// a write that names none is recorded as `unknown`.
pub const FIELD_MANAGER: &str = "nomad-pool-operator";

/// A create or replace by this operator.
pub fn post_params() -> kube::api::PostParams {
    kube::api::PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

/// A patch by this operator.
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
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
    min_reconcile_interval: Duration,
) {
    let events = events::EventSink::start(client.clone(), reporter);
    let (ctx, rx) = Context::new(client, events, ambient, Arc::new(Clouds));
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
    tokio::spawn(route_triggers(
        rx,
        routes,
        min_reconcile_interval,
        ctx.clone(),
    ));
    futures::future::join_all(controllers).await;
    info!("controller stopped");
}

async fn route_triggers(
    mut rx: mpsc::UnboundedReceiver<ObjectRef<NomadClientPool>>,
    routes: HashMap<Option<String>, mpsc::UnboundedSender<ObjectRef<NomadClientPool>>>,
    min_interval: Duration,
    ctx: Arc<Context>,
) {
    let route = |pool: ObjectRef<NomadClientPool>| {
        let tx = routes.get(&pool.namespace).or_else(|| routes.get(&None));
        if let Some(tx) = tx {
            let _ = tx.send(pool);
        }
    };
    let mut throttle = trigger::Throttle::new(min_interval);
    let (due_tx, mut due) = mpsc::unbounded_channel();
    loop {
        tokio::select! {
            pool = rx.recv() => match pool.map(|p| {
                let spacing = ctx.spacing(&p);
                (throttle.offer_spaced(&p, tokio::time::Instant::now(), spacing), p)
            }) {
                // Every watch is gone: so is the process's controller.
                None => break,
                Some((trigger::Pass::Now, pool)) => route(pool),
                Some((trigger::Pass::At(at), pool)) => {
                    let due_tx = due_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep_until(at).await;
                        let _ = due_tx.send(pool);
                    });
                }
                Some((trigger::Pass::Merged, _)) => {}
            },
            Some(pool) = due.recv() => {
                throttle.release(&pool, tokio::time::Instant::now());
                route(pool);
            }
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
    ctx.pools_seen.register(namespace.clone(), reader.clone());
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
    // Each pool's retirement objects: the store the reconciles read them
    // from, and the changes that wake their pool (one made by hand, one
    // deleted, a finalizer); our own status writes do not. Those wake-ups
    // pass the throttle as the Nomad watches' do: our own finalizer
    // removals, whose events can arrive before their answer tells they are
    // ours, otherwise started a reconcile at once after each one that
    // finished retirements, past the pool's spacing: 138 reconciles of the
    // 5,000-client benchmark's scale-in became 58-65 (BENCHMARKS.md,
    // thirteenth pass).
    let retirements = retirement::ledger::watch(&ctx, namespace.clone());
    let trigger = ctx.trigger.clone();
    let forward = tokio::spawn(retirements.for_each(move |pool| {
        let _ = trigger.send(pool);
        futures::future::ready(())
    }));
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
    forward.abort();
}
