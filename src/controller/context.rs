//! What every reconcile shares: the API client, the Event sink, each pool's
//! runtime, the wake-up channel, our own writes and each pool's back-off.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::runtime::reflector::{ObjectRef, Store};
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
    /// The controller's copy of every pool (`watch_pools`): what a step
    /// acting after the plan checks for a newer spec (`spec_moved_on`).
    pools_seen: Mutex<Option<Store<NomadClientPool>>>,
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
            pools_seen: Mutex::new(None),
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

    /// The store the controller reads the pools from.
    pub fn watch_pools(&self, store: Store<NomadClientPool>) {
        *self.pools_seen.lock().expect("pools seen lock") = Some(store);
    }

    /// Whether the controller has seen a newer spec of `pool` than the one
    /// planned from (an edit such as `dryRun` or `paused`, or the pool
    /// deleted): an action started before the pool's status write, which
    /// is otherwise that check, is left to the next plan. Without a
    /// controller (unit tests) nothing is known to be newer.
    pub fn spec_moved_on(&self, pool: &NomadClientPool) -> bool {
        let Some(store) = self.pools_seen.lock().expect("pools seen lock").clone() else {
            return false;
        };
        let seen = store.get(&ObjectRef::from_obj(pool));
        seen.is_none_or(|seen| newer_spec(&seen, pool))
    }
}

/// Whether `seen` is a newer spec than `planned` (a spec edit bumps the
/// generation; a deletion sets its timestamp), not just a newer status.
fn newer_spec(seen: &NomadClientPool, planned: &NomadClientPool) -> bool {
    seen.metadata.generation > planned.metadata.generation
        || (seen.metadata.deletion_timestamp.is_some()
            && planned.metadata.deletion_timestamp.is_none())
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::newer_spec;
    use crate::api::{NomadClientPool, NomadClientPoolSpec};

    fn pool(generation: i64, status: &str) -> NomadClientPool {
        let spec: NomadClientPoolSpec = serde_json::from_value(serde_json::json!({
            "nomad": {"address": "http://127.0.0.1:4646"},
            "selector": {"nodePool": "ci"},
            "provider": {"awsAutoScalingGroup": {"name": "g", "region": "us-east-1"}},
        }))
        .expect("a spec");
        let mut pool = NomadClientPool::new("ci", spec);
        pool.metadata.namespace = Some("ns".into());
        pool.metadata.generation = Some(generation);
        pool.metadata.resource_version = Some(status.into());
        pool
    }

    #[test]
    fn only_a_spec_edit_or_a_deletion_is_a_newer_spec() {
        let planned = pool(3, "100");
        assert!(!newer_spec(&pool(3, "100"), &planned));
        assert!(
            !newer_spec(&pool(3, "140"), &planned),
            "our own status write since the plan"
        );
        assert!(newer_spec(&pool(4, "150"), &planned), "dryRun set, say");
        let mut deleted = pool(3, "160");
        deleted.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
        assert!(newer_spec(&deleted, &planned));
        assert!(
            !newer_spec(&deleted, &deleted),
            "planned from the deleted pool"
        );
    }
}
