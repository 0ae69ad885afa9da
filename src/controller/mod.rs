//! The `NomadClientPool` controller.
//!
//! - `plan`: the retire decisions, pure and unit-tested;
//! - `reconcile`: observe → plan → write-ahead status → side effects;
//! - `watch`: Nomad blocking queries that wake the reconciler;
//! - `connect`: spec and Secrets → Nomad and cloud clients;
//! - `status`: condition bookkeeping.

pub mod connect;
pub mod plan;
pub mod reconcile;
pub mod status;
pub mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::controller::{Action as Requeue, Config as ControllerConfig};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use tokio::sync::mpsc;
use tokio_stream_shim::UnboundedReceiverStream;
use tracing::{info, warn};

use crate::api::NomadClientPool;
use crate::nomad::NomadClient;
use crate::provider::{CloudProvider, GroupState};

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

/// What a pool needs between reconciles: its clients and its watches.
pub struct PoolRuntime {
    pub fingerprint: u64,
    pub address: String,
    pub nomad: NomadClient,
    pub provider: Arc<dyn CloudProvider>,
    pub watch: watch::PoolWatch,
    /// The last group description, reused for `GROUP_TTL`.
    pub group: tokio::sync::Mutex<Option<(std::time::Instant, GroupState)>>,
}

/// A burst of Nomad changes (dozens of reconciles a second during a large
/// scale-in) shares one cloud read instead of one each: cloud describe APIs
/// are rate-limited. Our own mutations drop the cached answer, and the
/// provider re-reads an instance before terminating it, so a slightly older
/// view never causes a wrong termination.
pub const GROUP_TTL: std::time::Duration = std::time::Duration::from_secs(2);

impl PoolRuntime {
    pub async fn describe_group(&self) -> Result<GroupState, crate::provider::ProviderError> {
        let mut cached = self.group.lock().await;
        if let Some((at, g)) = cached.as_ref()
            && at.elapsed() < GROUP_TTL
        {
            return Ok(g.clone());
        }
        let started = std::time::Instant::now();
        let result = self.provider.describe_group().await;
        crate::metrics::metrics().cloud_request("DescribeGroup", result.is_ok(), started.elapsed());
        let g = result?;
        *cached = Some((std::time::Instant::now(), g.clone()));
        Ok(g)
    }

    pub async fn forget_group(&self) {
        *self.group.lock().await = None;
    }
}

pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub pools: Mutex<HashMap<ObjectRef<NomadClientPool>, Arc<PoolRuntime>>>,
    pub trigger: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
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
    warn!(error = %error, "reconcile failed");
    ctx.note_failure(&pool);
    Requeue::requeue(ctx.backoff(&pool))
}

/// Run the controller until the process is told to stop. With a namespace,
/// only pools in that namespace are watched (a namespace-scoped install).
pub async fn run(client: Client, reporter: Reporter, namespace: Option<String>) {
    let pools: Api<NomadClientPool> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        pools: Mutex::new(HashMap::new()),
        trigger: tx,
        failures: Mutex::new(HashMap::new()),
    });
    Controller::new(pools, watcher::Config::default().any_semantic())
        .with_config(ControllerConfig::default().concurrency(16))
        .reconcile_on(UnboundedReceiverStream(rx))
        .shutdown_on_signal()
        .run(reconcile::reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "reconcile error");
            }
        })
        .await;
    info!("controller stopped");
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
