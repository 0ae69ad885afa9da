//! Nomad watches that wake the reconciler when something it cares about
//! changes: one blocking query on the pool's node list, and one on the
//! allocations of each node being drained. No sleep loops: a quiet pool costs
//! one request per blocking-query wait (5 minutes), whatever its size.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::api::NomadClientPool;
use crate::controller::plan::AllocFacts;
use crate::nomad::{
    ClientStatus, JobType, Node, NodeListStub, NomadClient, NomadError, PoolSelector, QueryOptions,
    QueryResponse,
};

/// How long one blocking query waits for a change (Nomad's maximum).
const BLOCKING_WAIT: Duration = Duration::from_secs(300);
/// Reads of node details run at most this many at once, so discovering a
/// pool of thousands does not flood Nomad.
const DETAIL_CONCURRENCY: usize = 8;
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
    /// of thousands must not copy the others.
    pub nodes: Vec<Arc<NodeListStub>>,
    /// Instance IDs from each node's attributes, read once per node (copied
    /// only when one changes).
    pub instance_ids: Arc<HashMap<String, String>>,
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
}

struct AllocWatch {
    facts: watch::Receiver<Option<AllocFacts>>,
    ignore_system_jobs: bool,
    task: JoinHandle<()>,
}

/// Wakes the reconciler for one pool.
#[derive(Clone)]
pub struct Trigger {
    tx: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
    pool: ObjectRef<NomadClientPool>,
}

impl Trigger {
    pub fn new(
        tx: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
        pool: ObjectRef<NomadClientPool>,
    ) -> Self {
        Self { tx, pool }
    }
    pub(crate) fn fire(&self) {
        // The controller dedups queued requests for the same pool, so a burst
        // of changes costs one reconcile.
        let _ = self.tx.send(self.pool.clone());
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
        }
    }

    /// While retirements wait on Nomad, check now and then (one small
    /// leader read per `INDEX_PROBE_INTERVAL`, never while the pool is idle)
    /// that Nomad's node table has not gone back behind the view at
    /// `view_index`. After a snapshot restore every parked query waits on an
    /// index the cluster no longer reaches, and the event stream skips the
    /// new, lower-numbered events: without this the pool would sit still
    /// for minutes.
    pub fn probe_index(&self, view_index: u64) {
        {
            let mut last = self.last_probe.lock().expect("probe lock");
            if last.is_some_and(|at| at.elapsed() < INDEX_PROBE_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let client = self.client.clone();
        let regressions = self.regressions.clone();
        let relist = self.relist.clone();
        let trigger = self.trigger.clone();
        tokio::spawn(async move {
            match client.nodes_table_index().await {
                Ok(index) if index < view_index => {
                    warn!(
                        index,
                        view_index, "Nomad's node index went backwards; reading everything again"
                    );
                    regressions.fetch_add(1, Ordering::Relaxed);
                    relist.notify_one();
                    trigger.fire();
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "Nomad index probe failed"),
            }
        });
    }

    /// Whether Nomad's index went backwards since the last call. An
    /// allocation query parked on an index the cluster no longer reaches
    /// would wait out its whole wait (Nomad answers only once the index
    /// passes the one asked for), so the pool restarts those queries.
    pub fn index_went_backwards_since_seen(&self) -> bool {
        let now = self.regressions.load(Ordering::Relaxed);
        self.regressions_seen.swap(now, Ordering::Relaxed) != now
    }

    pub fn nodes(&self) -> NodesState {
        self.nodes.borrow().clone()
    }

    /// What the allocation watches know now, without changing which nodes
    /// are watched (that happens once per reconcile, on the planned state, so
    /// the set cannot flip between two calls and restart watches in a loop).
    pub fn allocation_facts(&self, ignore_system_jobs: bool) -> HashMap<String, AllocFacts> {
        let allocs = self.allocs.lock().expect("alloc watch lock");
        allocs
            .iter()
            .filter(|(_, w)| w.ignore_system_jobs == ignore_system_jobs)
            .filter_map(|(id, w)| w.facts.borrow().clone().map(|f| (id.clone(), f)))
            .collect()
    }

    /// Drop every allocation watch; the next `track_allocations` starts them
    /// afresh, and until each answers its node has no facts.
    pub fn restart_allocation_watches(&self) {
        for (_, w) in self.allocs.lock().expect("alloc watch lock").drain() {
            w.task.abort();
        }
    }

    /// Keep allocation watches exactly on `node_ids`.
    pub fn track_allocations(&self, node_ids: &HashSet<String>, ignore_system_jobs: bool) {
        let mut allocs = self.allocs.lock().expect("alloc watch lock");
        allocs.retain(|id, w| {
            let keep = node_ids.contains(id) && w.ignore_system_jobs == ignore_system_jobs;
            if !keep {
                w.task.abort();
            }
            keep
        });
        for id in node_ids {
            allocs.entry(id.clone()).or_insert_with(|| {
                let (tx, rx) = watch::channel(None);
                let task = tokio::spawn(watch_allocations(
                    self.client.clone(),
                    id.clone(),
                    ignore_system_jobs,
                    tx,
                    self.trigger.clone(),
                ));
                AllocWatch {
                    facts: rx,
                    ignore_system_jobs,
                    task,
                }
            });
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

fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(Duration::from_millis(500), MAX_BACKOFF)
}

/// The node-list watch: one full list, then Nomad's Node event stream, whose
/// payloads carry whole nodes (instance IDs included) so a change costs one
/// small event instead of re-reading the whole pool. Every subscription ends
/// after `EVENT_STREAM_LIFETIME` and the list is read again, which also
/// repairs anything a gap in Nomad's event buffer hid. A Nomad whose stream is
/// unusable (closed at once, or refused) is watched with blocking queries on
/// the node list instead.
async fn watch_nodes(
    client: NomadClient,
    filter: Option<String>,
    selector: PoolSelector,
    instance_attribute: &'static str,
    tx: watch::Sender<NodesState>,
    trigger: Trigger,
    regressions: Regressions,
) {
    let mut w = NodeWatch {
        client,
        filter,
        instance_attribute,
        tx,
        trigger,
        instance_ids: Arc::default(),
        failing_since: None,
        backoff: Duration::ZERO,
        regressions,
    };
    let mut short_streams = 0;
    loop {
        let Some(listed) = w.list(0).await else {
            continue;
        };
        let index = listed.index;
        let mut nodes: BTreeMap<String, Arc<NodeListStub>> = listed
            .value
            .into_iter()
            .map(|n| (n.id.clone(), n))
            .collect();
        if short_streams >= STREAM_FALLBACK_AFTER {
            warn!(
                "the Nomad event stream keeps closing; watching the node list with blocking queries"
            );
            return w.blocking(index).await;
        }
        let started = Instant::now();
        match w.follow(index, &selector, &mut nodes).await {
            Err(e) => debug!(error = %e, "node event stream ended; listing again"),
            Ok(StreamEnd::Closed) => {}
            Ok(StreamEnd::Relist) => continue,
            Ok(StreamEnd::IndexWentBackwards) => {
                warn!("Nomad's index went backwards; listing the nodes again");
                w.regressions.count.fetch_add(1, Ordering::Relaxed);
                w.trigger.fire();
                continue;
            }
        }
        if started.elapsed() < MIN_HEALTHY_STREAM {
            short_streams += 1;
            w.backoff = next_backoff(w.backoff);
            tokio::time::sleep(w.backoff).await;
        } else {
            short_streams = 0;
        }
    }
}

/// Why a subscription ended without an error.
enum StreamEnd {
    Closed,
    /// The stream itself showed the cluster's index going backwards.
    IndexWentBackwards,
    /// The index probe asked for a fresh list.
    Relist,
}

/// How often a busy pool checks that Nomad's index has not gone back.
const INDEX_PROBE_INTERVAL: Duration = Duration::from_secs(10);

/// A stream that ends sooner than this counts as unusable.
const MIN_HEALTHY_STREAM: Duration = Duration::from_secs(5);
/// Unusable streams in a row before falling back to blocking list queries.
const STREAM_FALLBACK_AFTER: u32 = 3;

struct NodeWatch {
    client: NomadClient,
    filter: Option<String>,
    instance_attribute: &'static str,
    tx: watch::Sender<NodesState>,
    trigger: Trigger,
    instance_ids: Arc<HashMap<String, String>>,
    failing_since: Option<Instant>,
    backoff: Duration,
    regressions: Regressions,
}

/// Shared between a pool's node watch and its `PoolWatch`.
struct Regressions {
    /// Times Nomad's index was seen going backwards.
    count: Arc<AtomicU64>,
    relist: Arc<Notify>,
}

impl NodeWatch {
    /// List the pool's nodes (blocking on `index` when non-zero), read the
    /// instance ID of nodes not seen before, and publish. `None` on failure,
    /// after publishing it and backing off.
    async fn list(&mut self, index: u64) -> Option<QueryResponse<Vec<Arc<NodeListStub>>>> {
        let q = QueryOptions {
            index,
            wait: (index > 0).then_some(BLOCKING_WAIT),
            stale: true,
        };
        match self.client.list_nodes(self.filter.as_deref(), &q).await {
            Ok(resp) => {
                self.backoff = Duration::ZERO;
                self.failing_since = None;
                let resp = resp.map(|v| v.into_iter().map(Arc::new).collect::<Vec<_>>());
                let wanted: HashSet<&str> = resp.value.iter().map(|n| n.id.as_str()).collect();
                if self
                    .instance_ids
                    .keys()
                    .any(|id| !wanted.contains(id.as_str()))
                {
                    Arc::make_mut(&mut self.instance_ids)
                        .retain(|id, _| wanted.contains(id.as_str()));
                }
                let missing: Vec<String> = resp
                    .value
                    .iter()
                    .filter(|n| !self.instance_ids.contains_key(&n.id))
                    .map(|n| n.id.clone())
                    .collect();
                self.read_instance_ids(missing).await;
                self.publish(resp.index, resp.value.clone());
                Some(resp)
            }
            Err(e) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                warn!(error = %e, "Nomad node list query failed");
                self.tx.send_replace(NodesState::Failed {
                    error: Arc::new(e),
                    since,
                });
                self.trigger.fire();
                self.backoff = next_backoff(self.backoff);
                tokio::time::sleep(self.backoff).await;
                None
            }
        }
    }

    async fn read_instance_ids(&mut self, ids: Vec<String>) {
        let details = futures::stream::iter(ids)
            .map(|id| {
                let client = self.client.clone();
                async move { (id.clone(), client.node(&id, &QueryOptions::default()).await) }
            })
            .buffer_unordered(DETAIL_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for (id, result) in details {
            match result {
                Ok(resp) => {
                    if let Some(instance) = instance_of(&resp.value, self.instance_attribute) {
                        self.set_instance(&id, instance);
                    }
                }
                // Purged between the list and the read: the next list drops it.
                Err(NomadError::NodeNotFound { .. }) => {}
                Err(e) => {
                    debug!(node = %id, error = %e, "node read failed; retried on the next list")
                }
            }
        }
    }

    fn set_instance(&mut self, node_id: &str, instance: String) {
        if self.instance_ids.get(node_id) != Some(&instance) {
            Arc::make_mut(&mut self.instance_ids).insert(node_id.to_owned(), instance);
        }
    }

    fn publish(&self, index: u64, nodes: Vec<Arc<NodeListStub>>) {
        let snapshot = NodesSnapshot {
            index,
            nodes,
            instance_ids: self.instance_ids.clone(),
        };
        self.tx.send_replace(NodesState::Ready(Arc::new(snapshot)));
        self.trigger.fire();
    }

    /// Apply Node events after `index` to `nodes` until the stream ends.
    async fn follow(
        &mut self,
        index: u64,
        selector: &PoolSelector,
        nodes: &mut BTreeMap<String, Arc<NodeListStub>>,
    ) -> Result<StreamEnd, NomadError> {
        let mut stream = self.client.node_events(index + 1).await?;
        let mut last = index;
        let mut batches = 0u32;
        loop {
            // A node whose attributes could not be read (a failed read at
            // list time) gets no event until it changes: retry it here, or
            // it could never be selected until the next re-list.
            let missing: Vec<String> = nodes
                .keys()
                .filter(|id| !self.instance_ids.contains_key(*id))
                .cloned()
                .collect();
            let relist = self.regressions.relist.clone();
            let next_frame = async {
                tokio::select! {
                    next = stream.next() => next.map(Some),
                    // The probe saw the cluster go back: its counter is
                    // already raised.
                    _ = relist.notified() => Ok(None),
                }
            };
            let next = if missing.is_empty() {
                match next_frame.await? {
                    Some(next) => next,
                    None => return Ok(StreamEnd::Relist),
                }
            } else {
                match tokio::time::timeout(DETAIL_RETRY, next_frame).await {
                    Ok(next) => match next? {
                        Some(next) => next,
                        None => return Ok(StreamEnd::Relist),
                    },
                    Err(_) => {
                        let known = self.instance_ids.len();
                        self.read_instance_ids(missing).await;
                        if self.instance_ids.len() > known {
                            self.publish(last, nodes.values().cloned().collect());
                        }
                        continue;
                    }
                }
            };
            let Some(frame) = next else { break };
            if frame.index > 0 {
                batches += 1;
                // Within one subscription Nomad's indexes only grow; only the
                // first batch may replay what the list already showed (an
                // index past the newest event re-delivers the newest). A
                // later batch at or below what we hold means the cluster went
                // backwards (a snapshot restore, a rebuilt cluster): its
                // events would all be skipped below, so list again.
                if batches > 1 && frame.index <= last {
                    return Ok(StreamEnd::IndexWentBackwards);
                }
            }
            let mut changed = false;
            for ev in frame.events {
                let Some(node) = ev.payload.node else {
                    continue;
                };
                if ev.topic != "Node" || ev.index <= index {
                    continue;
                }
                if ev.kind == "NodeDeregistration" || !selector.matches(&node) {
                    changed |= nodes.remove(&node.id).is_some();
                    if self.instance_ids.contains_key(&node.id) {
                        Arc::make_mut(&mut self.instance_ids).remove(&node.id);
                    }
                } else {
                    if let Some(instance) = instance_of(&node, self.instance_attribute) {
                        self.set_instance(&node.id, instance);
                    }
                    nodes.insert(node.id.clone(), Arc::new(node.to_stub()));
                    changed = true;
                }
                last = last.max(ev.index);
            }
            if changed {
                self.publish(last, nodes.values().cloned().collect());
            }
        }
        Ok(StreamEnd::Closed)
    }

    /// Fallback for a Nomad without a usable event stream: blocking queries
    /// on the node list, one full list per change.
    async fn blocking(mut self, mut index: u64) {
        let relist = self.regressions.relist.clone();
        loop {
            let listed = tokio::select! {
                listed = self.list(index) => listed,
                _ = relist.notified() => {
                    index = 0;
                    continue;
                }
            };
            match listed {
                Some(resp) => index = resp.next_index(index),
                // Retry with a plain read: a blocking query on the old index
                // would leave the pool Failed until the node table changes.
                None => index = 0,
            }
        }
    }
}

fn instance_of(node: &Node, attribute: &str) -> Option<String> {
    node.attribute(attribute).map(str::to_owned)
}

async fn watch_allocations(
    client: NomadClient,
    node_id: String,
    ignore_system_jobs: bool,
    tx: watch::Sender<Option<AllocFacts>>,
    trigger: Trigger,
) {
    let mut index = 0u64;
    let mut backoff = Duration::ZERO;
    loop {
        let q = QueryOptions {
            index,
            wait: Some(BLOCKING_WAIT),
            stale: false,
        };
        match client.node_allocations(&node_id, &q).await {
            Ok(resp) => {
                backoff = Duration::ZERO;
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
                }
                facts.blocking_jobs.sort();
                let changed = tx.borrow().as_ref() != Some(&facts);
                if changed {
                    tx.send_replace(Some(facts));
                    trigger.fire();
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
