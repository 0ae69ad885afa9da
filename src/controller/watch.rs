//! Nomad watches that wake the reconciler when something it cares about
//! changes: the pool's node view (one list, then Nomad's Node event stream;
//! blocking queries on the node list where the stream is unusable, see
//! `nodes`), and one blocking query on the allocations of each node being
//! drained, ended once nothing more can change there (see `alloc_watch`).
//! No sleep loops: a quiet pool costs a re-list every
//! `EVENT_STREAM_LIFETIME`, whatever its size.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{BlockingAllocation, DO_NOT_RETIRE_META};
use crate::controller::alloc_watch::AllocWatchMode;
use crate::controller::plan::AllocFacts;
use crate::controller::trigger::Trigger;
use crate::nomad::{
    ClientStatus, EventFrame, JobType, Node, NodeListStub, NomadClient, NomadError, PoolSelector,
    QueryOptions, QueryResponse, filter::quote,
};

#[cfg(test)]
mod alloc_tests;
mod backoff;
mod by_vm;
mod changed;
mod direct;
mod gone;
mod node_list;
mod nodes;
mod probe;

use backoff::IndexBackoff;
pub use by_vm::NodesByVm;
pub use changed::ChangedNodes;
pub use gone::GoneNodes;
pub use node_list::NodeList;
use nodes::{Regressions, watch_nodes};

/// How many blocking allocations a retirement's status names.
const MAX_BLOCKING_ALLOCATIONS: usize = 10;
/// How long one blocking query waits for a change (Nomad's maximum).
const BLOCKING_WAIT: Duration = Duration::from_secs(300);
/// Reads of node details run at most this many at once, so discovering a
/// pool of thousands does not flood Nomad.
const DETAIL_CONCURRENCY: usize = 8;
/// The longest a failing watch waits before it asks again (client-go's
/// reflector backs off to 30 s as well, before its jitter).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How soon a node whose attributes could not be read is read again.
const DETAIL_RETRY: Duration = Duration::from_secs(5);
/// Load (allocation counts per node) only orders scale-in candidates, so a
/// slightly old answer is fine and saves a large read per selection.
const LOAD_TTL: Duration = Duration::from_secs(60);

/// Pending/running allocation counts per node ID.
pub type Load = Arc<HashMap<String, u32>>;

/// The latest answer of the node-list watch.
#[derive(Clone, Debug)]
pub enum NodesState {
    /// No answer yet.
    Pending,
    Ready(Arc<NodesSnapshot>),
    /// The last query failed; `since` tells how long Nomad has been failing.
    Failed {
        error: Arc<NomadError>,
        since: Instant,
    },
}

#[derive(Debug, Default)]
pub struct NodesSnapshot {
    pub index: u64,
    /// Shared with the watch and with earlier snapshots: a change to one node
    /// of thousands must not copy the others (see `NodeList`).
    pub nodes: NodeList,
    /// Instance IDs from each node's attributes, read once per node (copied
    /// only when one changes).
    pub instance_ids: Arc<HashMap<String, String>>,
    /// Nodes whose Meta sets `nomadpool.dev/do-not-retire=true` (copied
    /// only when one changes): read with each list (a filtered list: the
    /// stub has no Meta) and kept current by the events' full nodes.
    pub opted_out: Arc<HashSet<String>>,
}

impl NodesSnapshot {
    /// The stub of node `id`.
    pub fn node(&self, id: &str) -> Option<&NodeListStub> {
        self.nodes.get(id).map(|n| &**n)
    }
}

/// A pool's watches. Dropping it stops them.
pub struct PoolWatch {
    client: NomadClient,
    trigger: Trigger,
    nodes: watch::Receiver<NodesState>,
    allocs: Mutex<HashMap<String, AllocWatch>>,
    load: Arc<Mutex<LoadCache>>,
    node_task: JoinHandle<()>,
    /// Times the node watch saw Nomad's index go backwards, and how many of
    /// those the pool has acted on.
    regressions: Arc<AtomicU64>,
    regressions_seen: AtomicU64,
    /// Tells the node watch to list again (a parked stream or blocking
    /// query would not notice that the cluster went back).
    relist: Arc<Notify>,
    last_probe: Mutex<Option<Instant>>,
    /// The highest view index the probe was shown since the last
    /// regression: a view listed again after a restore has the cluster's
    /// new, lower index, and compared with that alone the regression would
    /// never show.
    probe_high: Arc<AtomicU64>,
    /// Nodes read back after a write the view did not show.
    direct: direct::DirectReads,
    /// Counts writes Nomad showed and the event stream did not.
    stream_missed: Arc<watch::Sender<u64>>,
    changed: ChangedNodes,
    gone: GoneNodes,
}

struct AllocWatch {
    facts: watch::Receiver<Option<AllocFacts>>,
    ignore_system_jobs: bool,
    /// What the watch is for; its task reads it before each query.
    mode: watch::Sender<AllocWatchMode>,
    task: JoinHandle<()>,
}

impl AllocWatch {
    /// The last answer, unless it was kept for a node that has changed
    /// since (`view_index`: the node's `ModifyIndex` in the view now).
    fn facts(&self, view_index: Option<u64>) -> Option<AllocFacts> {
        match *self.mode.borrow() {
            AllocWatchMode::Settled(at) if view_index != Some(at) => None,
            _ => self.facts.borrow().clone(),
        }
    }
}

impl Drop for PoolWatch {
    fn drop(&mut self) {
        self.node_task.abort();
        for (_, w) in self.allocs.lock().expect("alloc watch lock").drain() {
            w.task.abort();
        }
    }
}

impl PoolWatch {
    /// Start watching the nodes that `filter` selects.
    /// A watch of every node of `client`'s cluster whose wake-ups go
    /// nowhere, for tests that read its views directly.
    #[cfg(test)]
    pub(crate) fn for_tests(client: NomadClient) -> Self {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let pool = kube::runtime::reflector::ObjectRef::new("p").within("ns");
        Self::start(
            client,
            None,
            PoolSelector::default(),
            crate::provider::fake::INSTANCE_ID_ATTRIBUTE,
            Trigger::new(tx, pool),
        )
    }

    pub fn start(
        client: NomadClient,
        filter: Option<String>,
        selector: PoolSelector,
        instance_attribute: &'static str,
        trigger: Trigger,
    ) -> Self {
        let (tx, rx) = watch::channel(NodesState::Pending);
        let regressions = Arc::new(AtomicU64::new(0));
        let relist = Arc::new(Notify::new());
        let stream_missed = Arc::new(watch::Sender::new(0));
        let changed = ChangedNodes::default();
        let gone = GoneNodes::default();
        let node_task = tokio::spawn(watch_nodes(
            client.clone(),
            filter,
            selector,
            instance_attribute,
            tx,
            trigger.clone(),
            Regressions {
                count: regressions.clone(),
                relist: relist.clone(),
            },
            stream_missed.subscribe(),
            (changed.clone(), gone.clone()),
        ));
        Self {
            client,
            trigger,
            nodes: rx,
            allocs: Mutex::new(HashMap::new()),
            load: Arc::default(),
            node_task,
            regressions,
            regressions_seen: AtomicU64::new(0),
            relist,
            last_probe: Mutex::new(None),
            probe_high: Arc::default(),
            direct: Arc::default(),
            stream_missed,
            changed,
            gone,
        }
    }

    /// Whether the event stream reported node `id` deregistered at or
    /// before `index` (a view's), and did not show it since.
    pub fn gone_by(&self, id: &str, index: u64) -> bool {
        self.gone.gone_by(id, index)
    }

    /// The node view, with the nodes read back after a write it did not
    /// show (see `direct`).
    pub fn nodes(&self) -> NodesState {
        let state = self.nodes.borrow().clone();
        match state {
            NodesState::Ready(s) => NodesState::Ready(self.with_direct_reads(s)),
            other => other,
        }
    }

    /// What the allocation watches know now, without changing which nodes
    /// are watched (that happens once per reconcile, on the planned state, so
    /// the set cannot flip between two calls and restart watches in a loop).
    /// An answer kept without a watch counts only while the node is as
    /// `view` shows it was then (see `alloc_watch`).
    pub fn allocation_facts(
        &self,
        ignore_system_jobs: bool,
        view: &NodesSnapshot,
    ) -> HashMap<String, AllocFacts> {
        let allocs = self.allocs.lock().expect("alloc watch lock");
        let settled: HashSet<&str> = allocs
            .iter()
            .filter(|(_, w)| matches!(*w.mode.borrow(), AllocWatchMode::Settled(_)))
            .map(|(id, _)| id.as_str())
            .collect();
        let view_index: HashMap<&str, u64> = view
            .nodes
            .iter()
            .filter(|n| settled.contains(n.id.as_str()))
            .map(|n| (n.id.as_str(), n.modify_index))
            .collect();
        allocs
            .iter()
            .filter(|(_, w)| w.ignore_system_jobs == ignore_system_jobs)
            .filter_map(|(id, w)| {
                let f = w.facts(view_index.get(id.as_str()).copied())?;
                Some((id.clone(), f))
            })
            .collect()
    }

    /// `allocation_facts` of the nodes `ids` only: what the express lane
    /// reads costs the nodes it asks about, not a pass over the pool.
    pub fn allocation_facts_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a str>,
        ignore_system_jobs: bool,
        view: &NodesSnapshot,
    ) -> HashMap<String, AllocFacts> {
        let allocs = self.allocs.lock().expect("alloc watch lock");
        (ids.into_iter())
            .filter_map(|id| {
                let w = allocs.get(id)?;
                if w.ignore_system_jobs != ignore_system_jobs {
                    return None;
                }
                let f = w.facts(view.node(id).map(|n| n.modify_index))?;
                Some((id.to_owned(), f))
            })
            .collect()
    }

    /// Drop every allocation watch; the next `track_allocations` starts them
    /// afresh, and until each answers its node has no facts.
    pub fn restart_allocation_watches(&self) {
        for (_, w) in self.allocs.lock().expect("alloc watch lock").drain() {
            w.task.abort();
        }
    }

    /// Keep allocation watches exactly on the nodes of `modes`, each in its
    /// mode. A watch whose answer was kept for a node as it was (`Settled`)
    /// starts afresh once the node is no longer that.
    pub fn track_allocations(
        &self,
        modes: &HashMap<String, AllocWatchMode>,
        ignore_system_jobs: bool,
    ) {
        let mut allocs = self.allocs.lock().expect("alloc watch lock");
        allocs.retain(|id, w| {
            let keep = modes.get(id).is_some_and(|mode| {
                let was = *w.mode.borrow();
                let node_changed = matches!(was, AllocWatchMode::Settled(_)) && was != *mode;
                w.ignore_system_jobs == ignore_system_jobs && !node_changed
            });
            if keep {
                w.mode
                    .send_if_modified(|m| std::mem::replace(m, modes[id]) != modes[id]);
            } else {
                w.task.abort();
            }
            keep
        });
        for (id, mode) in modes {
            (allocs.entry(id.clone()))
                .or_insert_with(|| self.start_allocation_watch(id, *mode, ignore_system_jobs));
        }
    }

    /// Start the watches of `modes` not running yet, each in its mode,
    /// leaving every other watch as it is, and return the first answers of
    /// those started. The reconcile that sees a drain end uses this to read
    /// the node's allocations before it plans, rather than leave the
    /// decision to the reconcile their answer would wake.
    pub fn start_missing_watches(
        &self,
        modes: &HashMap<String, AllocWatchMode>,
        ignore_system_jobs: bool,
    ) -> Vec<(String, watch::Receiver<Option<AllocFacts>>)> {
        let mut allocs = self.allocs.lock().expect("alloc watch lock");
        let mut started = Vec::new();
        for (id, mode) in modes {
            if !allocs.contains_key(id) {
                let w = self.start_allocation_watch(id, *mode, ignore_system_jobs);
                started.push((id.clone(), w.facts.clone()));
                allocs.insert(id.clone(), w);
            }
        }
        started
    }

    /// The express lane's `start_missing_watches`: also a watch kept for a
    /// drain's status only (its answers wait behind the status lane's few
    /// connections) moves to the mode given, as the next reconcile would
    /// move it once it saw the drain end.
    pub fn gate_watches(&self, modes: &HashMap<String, AllocWatchMode>, ignore_system_jobs: bool) {
        let mut allocs = self.allocs.lock().expect("alloc watch lock");
        for (id, mode) in modes {
            match allocs.get(id) {
                Some(w) => {
                    w.mode.send_if_modified(|m| {
                        let promote =
                            *m == AllocWatchMode::Status && *mode != AllocWatchMode::Status;
                        if promote {
                            *m = *mode;
                        }
                        promote
                    });
                }
                None => {
                    let w = self.start_allocation_watch(id, *mode, ignore_system_jobs);
                    allocs.insert(id.clone(), w);
                }
            }
        }
    }

    fn start_allocation_watch(
        &self,
        id: &str,
        mode: AllocWatchMode,
        ignore_system_jobs: bool,
    ) -> AllocWatch {
        let (tx, rx) = watch::channel(None);
        let (mode, mode_rx) = watch::channel(mode);
        let task = tokio::spawn(watch_allocations(
            self.client.clone(),
            id.to_owned(),
            ignore_system_jobs,
            tx,
            mode_rx,
            self.trigger.clone(),
        ));
        AllocWatch {
            facts: rx,
            ignore_system_jobs,
            mode,
            task,
        }
    }

    /// Pending/running allocation counts per node. Once one answer is in, it
    /// is returned at once and refreshed in the background after `LOAD_TTL`:
    /// the read is large (every live allocation of the cluster) and only
    /// orders scale-in candidates, so no reconcile waits on it twice.
    pub async fn load(&self) -> Result<Load, NomadError> {
        {
            let mut cached = self.load.lock().expect("load lock");
            if let Some((at, load)) = &cached.answer {
                let load = load.clone();
                if at.elapsed() >= LOAD_TTL && !cached.refreshing {
                    cached.refreshing = true;
                    let client = self.client.clone();
                    let cache = self.load.clone();
                    tokio::spawn(async move {
                        let result = read_load(&client).await;
                        let mut cached = cache.lock().expect("load lock");
                        cached.refreshing = false;
                        match result {
                            Ok(load) => cached.answer = Some((Instant::now(), load)),
                            Err(e) => warn!(error = %e, "refreshing allocation counts failed"),
                        }
                    });
                }
                return Ok(load);
            }
        }
        let load = read_load(&self.client).await?;
        self.load.lock().expect("load lock").answer = Some((Instant::now(), load.clone()));
        Ok(load)
    }
}

async fn read_load(client: &NomadClient) -> Result<Load, NomadError> {
    // `unknown` too: such an allocation may still run behind a partition.
    let filter =
        r#"ClientStatus == "pending" or ClientStatus == "running" or ClientStatus == "unknown""#;
    let resp = client
        .allocations(Some(filter), &QueryOptions::default())
        .await?;
    let mut load: HashMap<String, u32> = HashMap::new();
    for a in resp.value {
        *load.entry(a.node_id).or_default() += 1;
    }
    Ok(Arc::new(load))
}

#[derive(Default)]
struct LoadCache {
    answer: Option<(Instant, Load)>,
    refreshing: bool,
}

fn settled_and_empty(mode: AllocWatchMode, facts: &watch::Sender<Option<AllocFacts>>) -> bool {
    matches!(mode, AllocWatchMode::Settled(_))
        && facts.borrow().as_ref().is_some_and(|f| f.live == 0)
}

/// Resolves once the request sent in mode `sent` should be dropped: the
/// watch may end (see `alloc_watch`), or its lane changed. A status-only
/// watch waits in the small status lane, behind parked queries that are
/// answered only when their node changes; once the retirement's next step
/// waits on the node (its drain finished), the request is sent again in the
/// lane the termination decision uses, not left queued there (the scale-in
/// bench had such nodes wait tens of seconds after their jobs ended).
/// Never resolves if the pool's watch is gone.
async fn until_dropped(
    sent: AllocWatchMode,
    mode: &mut watch::Receiver<AllocWatchMode>,
    facts: &watch::Sender<Option<AllocFacts>>,
) {
    let status_only = |m: AllocWatchMode| m == AllocWatchMode::Status;
    loop {
        if mode.changed().await.is_err() {
            return std::future::pending().await;
        }
        let now = *mode.borrow();
        if settled_and_empty(now, facts) || status_only(now) != status_only(sent) {
            return;
        }
    }
}

fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(500), MAX_BACKOFF)
}

async fn watch_allocations(
    client: NomadClient,
    node_id: String,
    ignore_system_jobs: bool,
    tx: watch::Sender<Option<AllocFacts>>,
    mut mode: watch::Receiver<AllocWatchMode>,
    trigger: Trigger,
) {
    let mut index = 0u64;
    let mut backoff = Duration::ZERO;
    let mut backwards = IndexBackoff::default();
    loop {
        let current = *mode.borrow_and_update();
        if settled_and_empty(current, &tx) {
            debug!(node = %node_id, "allocations all terminal on a node that gets no new ones; watch ended");
            return;
        }
        let q = QueryOptions {
            index,
            wait: Some(BLOCKING_WAIT),
            stale: false,
            background: current == AllocWatchMode::Status,
        };
        let answer = tokio::select! {
            answer = client.node_allocations(&node_id, &q) => answer,
            // Dropping the parked query gives its connection back.
            () = until_dropped(current, &mut mode, &tx) => continue,
        };
        match answer {
            Ok(resp) => {
                backoff = Duration::ZERO;
                let pause = backwards.after(index, resp.index);
                index = resp.next_index(index);
                let mut facts = AllocFacts::default();
                for a in resp.value.iter().filter(|a| a.is_live()) {
                    if ignore_system_jobs && a.job_type() == Some(&JobType::System) {
                        continue;
                    }
                    facts.live += 1;
                    if a.client_status == ClientStatus::Unknown {
                        facts.unknown += 1;
                    }
                    if !facts.blocking_jobs.contains(&a.job_id) {
                        facts.blocking_jobs.push(a.job_id.clone());
                    }
                    facts.blocking.push(BlockingAllocation {
                        job_id: a.job_id.clone(),
                        task_group: a.task_group.clone(),
                        allocation_id: a.id.clone(),
                        since: a.modify_time().map(Time),
                    });
                }
                facts.blocking_jobs.sort();
                facts.blocking.sort_by(|x, y| {
                    (&x.since, &x.allocation_id).cmp(&(&y.since, &y.allocation_id))
                });
                facts.blocking.truncate(MAX_BLOCKING_ALLOCATIONS);
                let changed = tx.borrow().as_ref() != Some(&facts);
                if changed {
                    if facts.live == 0 {
                        debug!(node = %node_id, "allocations all terminal");
                    }
                    tx.send_replace(Some(facts));
                    trigger.fire();
                }
                if !pause.is_zero() {
                    debug!(node = %node_id, pause_ms = pause.as_millis() as u64,
                        "Nomad's allocation index went backwards; waiting before reading again");
                    tokio::time::sleep(pause).await;
                }
            }
            Err(e) => {
                warn!(node = %node_id, error = %e, "Nomad allocation query failed");
                backoff = next_backoff(backoff);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}
