//! What every reconcile shares: the API client, the Event sink, each pool's
//! runtime, the wake-up channel, our own writes and each pool's back-off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use super::own_writes::OwnWrites;
use super::retirement::Ledgers;
use super::runtime::PoolRuntime;
use super::{authority, events};
use crate::api::NomadClientPool;
use crate::provider::Connector;

pub struct Context {
    pub client: Client,
    pub events: events::EventSink,
    pub pools: Mutex<HashMap<ObjectRef<NomadClientPool>, Arc<PoolRuntime>>>,
    pub trigger: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
    pub own_writes: OwnWrites,
    /// Every pool's retirement objects.
    pub ledgers: Arc<Ledgers>,
    /// Namespaces whose pools may use the operator's own cloud identity.
    pub ambient: authority::AmbientCredentials,
    /// Builds each pool's cloud provider: the real clouds, or a test's fake.
    pub connector: Arc<dyn Connector>,
    failures: Mutex<HashMap<ObjectRef<NomadClientPool>, u32>>,
    /// How far apart each pool's reconciles are spaced beyond
    /// `--min-reconcile-interval-ms`, while its express lane is armed (see
    /// `reconcile::express`): set by each reconcile from its own duration.
    spacing: Mutex<HashMap<ObjectRef<NomadClientPool>, Duration>>,
}

impl Context {
    /// A context and the receiving end of its wake-ups (the pools that the
    /// Nomad and cloud watches ask to have reconciled).
    pub fn new(
        client: Client,
        events: events::EventSink,
        ambient: authority::AmbientCredentials,
        connector: Arc<dyn Connector>,
    ) -> (
        Arc<Self>,
        mpsc::UnboundedReceiver<ObjectRef<NomadClientPool>>,
    ) {
        let (trigger, woken) = mpsc::unbounded_channel();
        let ctx = Context {
            client,
            events,
            pools: Mutex::new(HashMap::new()),
            trigger,
            own_writes: OwnWrites::default(),
            ledgers: Arc::default(),
            ambient,
            connector,
            failures: Mutex::new(HashMap::new()),
            spacing: Mutex::new(HashMap::new()),
        };
        (Arc::new(ctx), woken)
    }

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
    /// Space `pool`'s reconciles at least `spacing` apart (`None`: by the
    /// minimum interval alone).
    pub fn set_spacing(&self, pool: &ObjectRef<NomadClientPool>, spacing: Option<Duration>) {
        let mut all = self.spacing.lock().expect("spacing lock");
        match spacing {
            Some(d) => all.insert(pool.clone(), d),
            None => all.remove(pool),
        };
    }

    pub fn spacing(&self, pool: &ObjectRef<NomadClientPool>) -> Duration {
        let all = self.spacing.lock().expect("spacing lock");
        all.get(pool).copied().unwrap_or_default()
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
