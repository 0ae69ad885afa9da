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
    /// The controller's copy of every pool: what a step acting after the
    /// plan checks for a newer spec (`PoolsSeen::spec_moved_on`).
    pub pools_seen: PoolsSeen,
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
            pools_seen: PoolsSeen::default(),
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

/// The stores the controller reads the pools from, one per watched scope
/// (a namespace, or `None` for all of them).
#[derive(Default)]
pub struct PoolsSeen(Mutex<Vec<(Option<String>, Store<NomadClientPool>)>>);

impl PoolsSeen {
    /// The store of one watched scope; a scope started again replaces its
    /// old store.
    pub fn register(&self, scope: Option<String>, store: Store<NomadClientPool>) {
        let mut stores = self.0.lock().expect("pools seen lock");
        stores.retain(|(s, _)| *s != scope);
        stores.push((scope, store));
    }

    /// Whether the controller has seen a newer spec of `pool` than the one
    /// planned from (an edit such as `dryRun` or `paused`, or the pool
    /// deleted): an action started before the pool's status write, which
    /// is otherwise that check, is left to the next plan. Nothing is known
    /// to be newer of a pool no registered scope watches (unit tests).
    pub fn spec_moved_on(&self, pool: &NomadClientPool) -> bool {
        let ns = pool.metadata.namespace.as_deref();
        let store = {
            let stores = self.0.lock().expect("pools seen lock");
            let exact = stores
                .iter()
                .find(|(s, _)| s.is_some() && s.as_deref() == ns);
            let store = exact.or_else(|| stores.iter().find(|(s, _)| s.is_none()));
            store.map(|(_, store)| store.clone())
        };
        let Some(store) = store else {
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

    use kube::runtime::{reflector, watcher};

    use super::{PoolsSeen, newer_spec};
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

    #[test]
    fn each_pool_is_looked_up_in_the_store_of_its_own_scope() {
        let in_ns = |ns: &str, generation| {
            let mut p = pool(generation, "100");
            p.metadata.namespace = Some(ns.into());
            p
        };
        let seen = PoolsSeen::default();
        assert!(!seen.spec_moved_on(&in_ns("a", 3)), "no scope registered");
        for (ns, generation) in [("a", 3), ("b", 5)] {
            let (reader, mut writer) = reflector::store::<NomadClientPool>();
            writer.apply_watcher_event(&watcher::Event::Apply(in_ns(ns, generation)));
            seen.register(Some(ns.into()), reader);
        }
        assert!(!seen.spec_moved_on(&in_ns("a", 3)));
        assert!(
            seen.spec_moved_on(&in_ns("a", 2)),
            "a newer spec in its own scope"
        );
        assert!(
            !seen.spec_moved_on(&in_ns("b", 5)),
            "the last scope registered does not hide the others"
        );
        assert!(
            !seen.spec_moved_on(&in_ns("c", 1)),
            "no scope watches c: nothing known"
        );
        let (reader, _writer) = reflector::store::<NomadClientPool>();
        seen.register(Some("a".into()), reader);
        assert!(
            seen.spec_moved_on(&in_ns("a", 3)),
            "gone from its scope's store: deleted"
        );
    }
}
