//! Every retirement a pool has: the watch's store of the objects, read
//! through our own writes the store does not show yet.
//!
//! The store trails our writes by a watch event. A reconcile that read a
//! retirement from it before the event arrived would plan on a phase it had
//! already moved past (and create again an object it just created), so each
//! write we make is remembered until the store shows it, or shows something
//! newer, as `own_writes` does for the pool itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::api::{NomadClientPool, NomadClientRetirement};

/// How long a write of ours stands in for the store: the store trails by an
/// event or two, so an entry this old has been overtaken by something we
/// did not see (an object created and deleted again).
const OWN_WRITE_TTL: Duration = Duration::from_secs(60);
/// How often the record of our last writes drops entries past their TTL.
const PRUNE_EVERY: Duration = Duration::from_secs(1);
/// How long a reconcile waits for a store's first list before it says the
/// pool's retirements are not known yet.
const READY_WAIT: Duration = Duration::from_secs(5);

type Key = ObjectRef<NomadClientRetirement>;

/// The stores of every namespace scope the controller watches, and our own
/// writes.
#[derive(Default)]
pub struct Ledgers {
    stores: Mutex<Vec<(Option<String>, Store<NomadClientRetirement>)>>,
    own: Mutex<HashMap<Key, Own>>,
    /// When we last wrote each retirement (kept after the store caught up),
    /// and when entries older than `OWN_WRITE_TTL` were last dropped.
    last_write: Mutex<(HashMap<Key, Instant>, Option<Instant>)>,
    /// Retirements whose end the pool's status already counts but whose
    /// final status is not written yet: the planner must not see (and
    /// count) them again; the next reconcile only writes their end.
    finishing: Mutex<std::collections::HashSet<Key>>,
    /// Our writes in flight that a VM waits on, which the others give way to.
    pub urgent: super::urgent::Urgent,
}

struct Own {
    /// What our last write left; `None` after we deleted the object.
    latest: Option<Arc<NomadClientRetirement>>,
    /// resourceVersions our writes replaced ("" for a create).
    replaced: VecDeque<String>,
    at: Instant,
}

impl Own {
    /// The object we created, for a store that does not show it yet.
    fn created_unseen(&self) -> Option<Arc<NomadClientRetirement>> {
        self.latest
            .clone()
            .filter(|_| self.replaced.contains(&String::new()))
    }
}

/// What stands for `obj` as the store shows it: our last write while the
/// store shows a version that write replaced (nothing if we deleted it),
/// else the store's copy, and our entry is done with.
fn over_stored(
    own: &mut HashMap<Key, Own>,
    key: &Key,
    obj: Arc<NomadClientRetirement>,
) -> Option<Arc<NomadClientRetirement>> {
    let rv = obj.resource_version().unwrap_or_default();
    match own.get(key) {
        Some(o) if o.replaced.contains(&rv) => o.latest.clone(),
        Some(_) => {
            // The store shows our write or something newer.
            own.remove(key);
            Some(obj)
        }
        None => Some(obj),
    }
}

/// Why a pool's retirements cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("no watch of NomadClientRetirements covers namespace {0}")]
    NotWatched(String),
    #[error("the NomadClientRetirement watch of namespace {0} has not listed yet")]
    NotReady(String),
}

impl Ledgers {
    /// The store of one watched scope (`None`: every namespace).
    pub fn register(&self, scope: Option<String>, store: Store<NomadClientRetirement>) {
        self.stores
            .lock()
            .expect("ledger lock")
            .push((scope, store));
    }

    fn store_for(&self, ns: &str) -> Option<Store<NomadClientRetirement>> {
        let stores = self.stores.lock().expect("ledger lock");
        let exact = stores.iter().find(|(s, _)| s.as_deref() == Some(ns));
        exact
            .or_else(|| stores.iter().find(|(s, _)| s.is_none()))
            .map(|(_, store)| store.clone())
    }

    /// Every retirement of `pool` (by `spec.pool`), as our writes left them.
    pub async fn of_pool(
        &self,
        pool: &NomadClientPool,
    ) -> Result<Vec<Arc<NomadClientRetirement>>, LedgerError> {
        let ns = pool.namespace().unwrap_or_default();
        let store = self
            .store_for(&ns)
            .ok_or_else(|| LedgerError::NotWatched(ns.clone()))?;
        tokio::time::timeout(READY_WAIT, store.wait_until_ready())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| LedgerError::NotReady(ns.clone()))?;
        let name = pool.name_any();
        let mine = |r: &NomadClientRetirement| {
            r.spec.pool == name && r.namespace().as_deref() == Some(ns.as_str())
        };
        let stored: Vec<_> = store.state().into_iter().filter(|r| mine(r)).collect();
        Ok(self.overlay(stored, mine))
    }

    /// One retirement as our writes left it; `None` if it is not known (or
    /// its namespace is not watched or not synced yet). The express lane
    /// asks this for each client it decides on: it looks up the one entry
    /// instead of going over every write of the last minute, which was 3 %
    /// of the operator's CPU at 5,000 clients (BENCHMARKS.md, sixteenth
    /// pass). Same answer as `overlay` gives for the object.
    pub fn one(&self, ns: &str, name: &str) -> Option<Arc<NomadClientRetirement>> {
        let store = self.store_for(ns)?;
        let key = ObjectRef::new(name).within(ns);
        let stored = store.get(&key);
        let mut own = self.own.lock().expect("ledger lock");
        if own
            .get(&key)
            .is_some_and(|o| o.at.elapsed() >= OWN_WRITE_TTL)
        {
            own.remove(&key);
        }
        match stored {
            Some(obj) => over_stored(&mut own, &key, obj),
            None => own.get(&key).and_then(Own::created_unseen),
        }
    }

    /// The stored objects, each swapped for our write where the store has
    /// not caught up, plus the objects we created that it does not show.
    fn overlay(
        &self,
        stored: Vec<Arc<NomadClientRetirement>>,
        mine: impl Fn(&NomadClientRetirement) -> bool,
    ) -> Vec<Arc<NomadClientRetirement>> {
        let mut own = self.own.lock().expect("ledger lock");
        own.retain(|_, o| o.at.elapsed() < OWN_WRITE_TTL);
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(stored.len());
        for obj in stored {
            let key = ObjectRef::from_obj(obj.as_ref());
            out.extend(over_stored(&mut own, &key, obj));
            seen.insert(key);
        }
        for (key, o) in own.iter() {
            if seen.contains(key) {
                continue;
            }
            out.extend(o.created_unseen().filter(|l| mine(l)));
        }
        out
    }

    /// Remember a write: `before_rv` is the version it replaced (`None` for
    /// a create), `after` what the API server returned.
    pub fn wrote(&self, before_rv: Option<String>, mut after: NomadClientRetirement) {
        // Kept like the store's copies (see `watch`): without managedFields.
        after.metadata.managed_fields = None;
        let key = ObjectRef::from_obj(&after);
        self.remember(key, before_rv.unwrap_or_default(), Some(Arc::new(after)));
    }

    /// Remember that we deleted (or let go of) the object at `rv`. Every
    /// version we wrote before is gone too: the delete may name an older
    /// copy than our last write (a retirement finished and pruned in one
    /// reconcile), and the store, still showing that last write, must not
    /// bring the object back (its end would be counted twice).
    pub fn deleted(&self, obj: &NomadClientRetirement) {
        let key = ObjectRef::from_obj(obj);
        let last_written = (self.own.lock().expect("ledger lock").get(&key))
            .and_then(|o| o.latest.as_ref()?.resource_version());
        if let Some(rv) = last_written {
            self.remember(key.clone(), rv, None);
        }
        self.remember(key, obj.resource_version().unwrap_or_default(), None);
    }

    /// Whether `r` is exactly what one of our own writes left: its echo
    /// through the watch, which must not wake the pool (it planned that
    /// write). Each retirement's create and finalizer removal woke its pool
    /// once more each; a scale-in of 1,000 ran ~2,000 extra reconciles of a
    /// 5,000-node pool. An echo missed (the store caught up first) only
    /// costs a reconcile.
    pub fn is_own_echo(&self, r: &NomadClientRetirement) -> bool {
        let own = self.own.lock().expect("ledger lock");
        own.get(&ObjectRef::from_obj(r))
            .and_then(|o| o.latest.as_ref())
            .is_some_and(|l| {
                l.resource_version().is_some() && l.resource_version() == r.resource_version()
            })
    }

    /// The end of `r` is counted; its final status is being written.
    pub fn finishing(&self, r: &NomadClientRetirement) {
        let key = ObjectRef::from_obj(r);
        self.finishing.lock().expect("ledger lock").insert(key);
    }

    /// The final status of `r` landed (or the object is gone).
    pub fn finished(&self, r: &NomadClientRetirement) {
        let key = ObjectRef::from_obj(r);
        self.finishing.lock().expect("ledger lock").remove(&key);
    }

    pub fn is_finishing(&self, r: &NomadClientRetirement) -> bool {
        let key = ObjectRef::from_obj(r);
        self.finishing.lock().expect("ledger lock").contains(&key)
    }

    /// Whether this process wrote the retirement within `period`.
    pub fn written_within(&self, r: &NomadClientRetirement, period: Duration) -> bool {
        self.last_write
            .lock()
            .expect("ledger lock")
            .0
            .get(&ObjectRef::from_obj(r))
            .is_some_and(|at| at.elapsed() < period)
    }

    fn remember(&self, key: Key, replaced: String, latest: Option<Arc<NomadClientRetirement>>) {
        {
            let mut guard = self.last_write.lock().expect("ledger lock");
            let (last, pruned) = &mut *guard;
            // Pruned once a second, not on every write: a scan per write was
            // quadratic in the writes of the last minute.
            if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last.retain(|_, at| at.elapsed() < OWN_WRITE_TTL);
                *pruned = Some(Instant::now());
            }
            last.insert(key.clone(), Instant::now());
        }
        let mut own = self.own.lock().expect("ledger lock");
        let o = own.entry(key).or_insert_with(|| Own {
            latest: None,
            replaced: VecDeque::new(),
            at: Instant::now(),
        });
        o.latest = latest;
        o.at = Instant::now();
        o.replaced.push_back(replaced);
        if o.replaced.len() > 16 {
            o.replaced.pop_front();
        }
    }
}

/// Watch the retirements of one scope (`None`: every namespace) into a
/// store the context's ledgers read, and yield the pool each change that
/// matters concerns: a new object (made by hand, or ours), a deletion
/// (which bumps the generation), a finalizer. Our status writes, which
/// change neither, do not wake the pool again.
pub fn watch(
    ctx: &crate::controller::Context,
    scope: Option<String>,
) -> impl futures::Stream<Item = ObjectRef<NomadClientPool>> + Send + 'static {
    use futures::StreamExt;
    use kube::runtime::{Predicate, WatchStreamExt, predicates, reflector, watcher};
    let api: kube::Api<NomadClientRetirement> = match &scope {
        Some(ns) => kube::Api::namespaced(ctx.client.clone(), ns),
        None => kube::Api::all(ctx.client.clone()),
    };
    let (reader, writer) = reflector::store();
    ctx.ledgers.register(scope, reader);
    let ledgers = ctx.ledgers.clone();
    watcher(api, watcher::Config::default().any_semantic())
        .default_backoff()
        // Nothing here reads managedFields, yet they are 40 % of a
        // retirement's JSON (984 of 2,481 bytes in the scale-in bench), held
        // as JSON value trees once per retirement in flight and sent back in
        // every status replace built from the stored copy. A replace without
        // them leaves the server's own untouched.
        .modify(|r| r.metadata.managed_fields = None)
        .reflect(writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        )
        .filter_map(move |r| {
            let wake = r
                .ok()
                .filter(|r| !ledgers.is_own_echo(r))
                .and_then(|r| Some(ObjectRef::new(&r.spec.pool).within(&r.namespace()?)));
            async move { wake }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NomadClientRetirementSpec, RetirementTarget};

    fn at(rv: &str) -> NomadClientRetirement {
        let mut r = NomadClientRetirement::new(
            "r-1",
            NomadClientRetirementSpec {
                pool: "ci".into(),
                target: RetirementTarget {
                    node_name: Some("client-1".into()),
                    ..Default::default()
                },
                reason: crate::api::RetireReason::Replace,
                capacity: None,
                drain: None,
            },
        );
        r.metadata.namespace = Some("ns".into());
        r.metadata.resource_version = Some(rv.into());
        r
    }

    #[test]
    fn only_what_our_last_write_left_is_its_echo() {
        let l = Ledgers::default();
        assert!(!l.is_own_echo(&at("5")), "nothing written yet");
        l.wrote(None, at("5"));
        assert!(l.is_own_echo(&at("5")));
        assert!(!l.is_own_echo(&at("6")), "someone else's change after ours");
        l.wrote(Some("5".into()), at("7"));
        assert!(!l.is_own_echo(&at("5")), "an older version is not the echo");
        assert!(l.is_own_echo(&at("7")));
        l.deleted(&at("7"));
        assert!(
            !l.is_own_echo(&at("7")),
            "deleted: any version seen is news"
        );
    }

    #[test]
    fn what_our_write_returned_is_kept_without_managed_fields() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
        let l = Ledgers::default();
        let mut written = at("7");
        written.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("nomad-pool-operator".into()),
            ..Default::default()
        }]);
        l.wrote(Some("5".into()), written);
        // The store still shows the version we replaced: the overlay gives ours.
        let seen = l.overlay(vec![Arc::new(at("5"))], |_| true);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].resource_version().as_deref(), Some("7"));
        assert_eq!(seen[0].metadata.managed_fields, None);
    }

    #[test]
    fn a_deleted_retirement_stays_hidden_whichever_of_our_versions_the_store_shows() {
        let l = Ledgers::default();
        // Finished (5 → 7), then pruned in the same reconcile through the
        // copy the plan held (5).
        l.wrote(Some("5".into()), at("7"));
        l.deleted(&at("5"));
        for rv in ["5", "7"] {
            let seen = l.overlay(vec![Arc::new(at(rv))], |_| true);
            assert!(seen.is_empty(), "store at {rv} shows a deleted object");
        }
        // Someone else's later version is news.
        assert_eq!(l.overlay(vec![Arc::new(at("9"))], |_| true).len(), 1);
    }

    /// `one` answers what `overlay` answers for the same object, for each
    /// of the store's states (absent, behind our write, caught up, past it)
    /// and each of ours (none, a create, a status write, a delete).
    #[test]
    fn one_agrees_with_the_overlay() {
        use kube::runtime::{reflector, watcher};
        let ours: [fn(&Ledgers); 4] = [
            |_| {},
            |l| l.wrote(None, at("5")),
            |l| l.wrote(Some("5".into()), at("7")),
            |l| {
                l.wrote(Some("5".into()), at("7"));
                l.deleted(&at("7"));
            },
        ];
        for (i, write) in ours.iter().enumerate() {
            for stored in [None, Some("5"), Some("7"), Some("9")] {
                let l = Ledgers::default();
                let (reader, mut writer) = reflector::store::<NomadClientRetirement>();
                if let Some(rv) = stored {
                    writer.apply_watcher_event(&watcher::Event::Apply(at(rv)));
                }
                l.register(None, reader);
                write(&l);
                let rv =
                    |r: Option<Arc<NomadClientRetirement>>| r.and_then(|r| r.resource_version());
                let expected = l.overlay(
                    stored.map(|rv| Arc::new(at(rv))).into_iter().collect(),
                    |_| true,
                );
                assert_eq!(
                    rv(l.one("ns", "r-1")),
                    rv(expected.into_iter().next()),
                    "our writes #{i}, store at {stored:?}"
                );
                assert_eq!(l.one("ns", "r-2"), None, "another name");
            }
        }
    }
}
