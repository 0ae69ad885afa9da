//! Cluster state: nodes, allocations, jobs, a Raft-like index, per-table and
//! per-node change notification, and the simulated-time event queue.
//!
//! Everything lives in one [`Cluster`] behind an `RwLock`. Writers bump the
//! global index once per logical write (like one Raft apply), and notify:
//! the `nodes` / `allocs` table watches, and the per-node watches that
//! blocking queries on one node wait on. A blocking query therefore wakes
//! only when the data it reads changed, not on every write.
//!
//! This file holds the records, the timing constants and the index and
//! timer primitives every write uses. The operations live in one room per
//! area, all of them `impl Cluster` blocks over the same state:
//!
//! - `nodes`: registration, purge, node GC;
//! - `heartbeats`: VM kill and restart, partitions, heartbeat expiry,
//!   disconnect and reconnect;
//! - `allocations`: placement, client status reports, stops, migrations;
//! - `jobs`: job registration, system jobs, workload generators;
//! - `namespaces`: the namespace table;
//! - `drain`: what `crate::drainer` needs from the cluster;
//! - `time`: the timer queue and what each timer does;
//! - `notify`: index bumps, watches and events after each write;
//! - `sched_index`: schedulable nodes per pool, for `crate::scheduler`;
//! - `raft`: read snapshots and index rewinds (faults);
//! - `report`: safety violations and `/sim/stats` counts;
//! - `vm`: VMs running one or more clients (control surface).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use crate::clock::NANOS_PER_SEC;
use crate::events::EventBroker;
use crate::wire::{Allocation, Job, Node};

mod allocations;
mod drain;
mod heartbeats;
mod jobs;
mod namespaces;
mod nodes;
mod notify;
mod raft;
mod report;
mod sched_index;
mod time;
mod vm;

pub use drain::{drain_ts, force_deadline};
pub use jobs::{GroupSpec, JobSpec, Workload};
pub use namespaces::NamespaceRec;
pub use nodes::NodeSpec;
pub use report::{Violation, ViolationAlloc};

/// Delay between placement and `running` (client pulls and starts tasks).
pub const START_DELAY_NS: i64 = NANOS_PER_SEC;
/// Delay between the drainer's `DesiredTransition.Migrate` write and the
/// scheduler's stop + replacement (Nomad batches drainer writes over 1 s and
/// then runs an evaluation), so the two steps are separately observable.
pub const MIGRATE_STOP_DELAY_NS: i64 = NANOS_PER_SEC / 2;
/// A task's `kill_timeout` when the job does not set one
/// (`structs.DefaultKillTimeout`): a stopped allocation stays `running` on
/// the client this long before it reports `complete`.
pub const DEFAULT_KILL_TIMEOUT_NS: i64 = 5 * NANOS_PER_SEC;
/// Delay between a client's heartbeat getting through again and its
/// allocation sync (`client.allocSyncIntv`, 200 ms).
pub const CLIENT_SYNC_DELAY_NS: i64 = NANOS_PER_SEC / 5;
/// `node_gc_threshold` default.
pub const NODE_GC_THRESHOLD_NS: i64 = 24 * 3600 * NANOS_PER_SEC;
/// Nomad keeps the last 10 node events (`MaxRetainedNodeEvents`).
pub const MAX_NODE_EVENTS: usize = 10;

/// Settings that shape the simulated cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub region: String,
    pub datacenter: String,
    pub heartbeat_ttl_ns: i64,
    pub heartbeat_grace_ns: i64,
    pub default_slots: u32,
    pub acls_enabled: bool,
    pub event_buffer_size: usize,
    pub seed: Option<u64>,
    /// The `nomad.version` attribute of registered nodes.
    pub nomad_version: &'static str,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            region: "global".into(),
            datacenter: "dc1".into(),
            heartbeat_ttl_ns: 10 * NANOS_PER_SEC,
            heartbeat_grace_ns: 10 * NANOS_PER_SEC,
            default_slots: 4,
            acls_enabled: false,
            event_buffer_size: 100,
            seed: None,
            nomad_version: "1.11.3",
        }
    }
}

/// Errors of cluster operations. `Display` is the exact plain-text body that
/// Nomad sends, so the HTTP layer only picks the status code.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StateError {
    #[error("node not found")]
    NodeNotFound,
    #[error("invalid scheduling eligibility {}", crate::goquote::go_quote(.0))]
    InvalidEligibility(String),
    #[error("can not set node's scheduling eligibility to eligible while it is draining")]
    EligibleWhileDraining,
    #[error("alloc not found")]
    AllocNotFound,
    /// `structs.Namespace.Validate`'s name check.
    #[error(
        "invalid name {}. Must match regex ^[a-zA-Z0-9-]{{1,128}}$",
        crate::goquote::go_quote(.name)
    )]
    InvalidNamespaceName { name: String },
    /// A VM action the control surface does not know.
    #[error("unknown action {action}")]
    UnknownVmAction { action: String },
}

#[derive(Debug, Clone)]
pub struct NodeRec {
    pub node: Node,
    /// The VM exists (its tasks run).
    pub alive: bool,
    /// The client can reach the servers (no network partition). It
    /// heartbeats and reports allocation updates only when `alive` and
    /// `connected`.
    pub connected: bool,
    pub instance_id: Option<String>,
    pub slots: u32,
    pub used_slots: u32,
    hb_gen: u64,
    drain_gen: u64,
    sched_key: Option<(String, u32)>,
}

#[derive(Debug, Clone)]
pub struct AllocRec {
    pub alloc: Allocation,
    /// Simulated run time; `None` runs until finished through the control API.
    pub duration_ns: Option<i64>,
    pub finish_at: Option<i64>,
    /// Counts against the node's slots until client-terminal.
    counted: bool,
    /// Marked for migration and its replacement is not yet healthy
    /// (limits parallel migrations to the job's `max_parallel`).
    migrating: bool,
    /// When the scheduler marked it `unknown` (its `AllocStates` entry).
    pub unknown_since: Option<i64>,
}

impl NodeRec {
    /// The client heartbeats and reports: its VM runs and it can reach the
    /// servers.
    pub fn heartbeating(&self) -> bool {
        self.alive && self.connected
    }
}

impl AllocRec {
    /// `(*Allocation).Expired`: `unknown` for longer than the group's
    /// `disconnect.lost_after`.
    pub fn expired(&self, now: i64) -> bool {
        match (self.unknown_since, self.alloc.job.lost_after_ns) {
            (Some(since), Some(l)) if self.alloc.client_status == "unknown" => since + l <= now,
            _ => false,
        }
    }
}

/// A request to place one allocation (Nomad creates allocations only once
/// they are placed; until then the job's evaluation is "blocked").
#[derive(Debug, Clone)]
pub struct Placement {
    pub job: Arc<Job>,
    pub index_in_job: u32,
    pub previous: Option<String>,
    pub duration_ns: Option<i64>,
    pub node: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    AllocStart(String),
    AllocFinish(String),
    AllocStopped(String),
    MigrateStop(String),
    ReplacementHealthy(String),
    Heartbeat(String, u64),
    DisconnectExpire(String),
    ReconnectSync(String, u64),
    ReconnectReady(String, u64),
    DrainDeadline(String, u64),
    DrainReconcile(String),
    Reregister(String),
    Workload(String),
    NodeGc(String, u64),
}

pub struct NodeWatch {
    pub node: watch::Sender<u64>,
    pub allocs: watch::Sender<u64>,
}

/// Node attributes whose values are indexed: the instance IDs a VM's
/// nodes are listed by (`Attributes["unique.platform.aws.instance-id"] ==
/// "i-1" or ...`, the operator's reads of the nodes on a VM).
pub const INDEXED_ATTRIBUTES: [&str; 2] =
    ["unique.platform.aws.instance-id", "unique.platform.gce.id"];

pub struct Cluster {
    pub cfg: ClusterConfig,
    pub index: u64,
    pub nodes_index: u64,
    pub allocs_index: u64,
    pub nodes: BTreeMap<String, NodeRec>,
    pub allocs: BTreeMap<String, AllocRec>,
    pub allocs_by_node: HashMap<String, Vec<String>>,
    /// Instance ID -> the nodes that report it (`nodes_on_vm`, which the
    /// bench's recorder asks once per terminated VM of 20,000).
    nodes_by_vm: HashMap<String, BTreeSet<String>>,
    /// (attribute, value) -> the nodes reporting it, for
    /// [`INDEXED_ATTRIBUTES`].
    nodes_by_attribute: HashMap<(&'static str, String), BTreeSet<String>>,
    job_allocs: HashMap<String, Vec<String>>,
    /// By [`Job::key`] (namespace and ID).
    pub jobs: HashMap<String, Arc<Job>>,
    /// Namespace name -> (description, create index, modify index).
    pub namespaces: BTreeMap<String, NamespaceRec>,
    pub namespaces_index: u64,
    system_jobs: Vec<Arc<Job>>,
    /// Placements waiting for capacity, FIFO per node pool.
    pub queue: HashMap<String, VecDeque<Placement>>,
    /// Placements pinned to one node, waiting for it to have room.
    pub pinned: Vec<Placement>,
    sched: HashMap<String, BTreeSet<(u32, String)>>,
    timers: BinaryHeap<Reverse<(i64, u64, Timer)>>,
    timer_seq: u64,
    purged_alive: HashMap<String, NodeRec>,
    pub violations: Vec<Violation>,
    pub workloads: Vec<Workload>,
    rng: StdRng,
    pub node_seq: u64,
    job_seq: u64,
    workload_seq: u64,
    pub events: EventBroker,
    pub watches: HashMap<String, NodeWatch>,
    pub nodes_tx: watch::Sender<u64>,
    pub allocs_tx: watch::Sender<u64>,
    /// Simulated "now" of the current write, set by the caller.
    pub now: i64,
    /// Something that can unblock a queued placement happened.
    pub(crate) sched_dirty: bool,
}

pub fn is_system(job_type: &str) -> bool {
    job_type == "system"
}

impl Cluster {
    pub fn new(cfg: ClusterConfig, start_index: u64) -> Cluster {
        let rng = match cfg.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let events = EventBroker::new(cfg.event_buffer_size);
        Cluster {
            cfg,
            index: start_index,
            nodes_index: start_index,
            allocs_index: start_index,
            nodes: BTreeMap::new(),
            allocs: BTreeMap::new(),
            allocs_by_node: HashMap::new(),
            nodes_by_vm: HashMap::new(),
            nodes_by_attribute: HashMap::new(),
            job_allocs: HashMap::new(),
            jobs: HashMap::new(),
            // state_store.go namespaceInit: `default` at index 1.
            namespaces: [(
                "default".to_string(),
                NamespaceRec {
                    name: "default".into(),
                    description: "Default shared namespace".into(),
                    create_index: 1,
                    modify_index: 1,
                },
            )]
            .into_iter()
            .collect(),
            namespaces_index: 1,
            system_jobs: Vec::new(),
            queue: HashMap::new(),
            pinned: Vec::new(),
            sched: HashMap::new(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            purged_alive: HashMap::new(),
            violations: Vec::new(),
            workloads: Vec::new(),
            rng,
            node_seq: 0,
            job_seq: 0,
            workload_seq: 0,
            events,
            watches: HashMap::new(),
            nodes_tx: watch::Sender::new(start_index),
            allocs_tx: watch::Sender::new(start_index),
            now: 0,
            sched_dirty: false,
        }
    }

    pub fn uuid(&mut self) -> String {
        let b: [u8; 16] = self.rng.random();
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        )
    }

    fn next_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Queues a placement for the scheduler.
    pub fn enqueue(&mut self, p: Placement) {
        if p.node.is_some() {
            self.pinned.push(p);
        } else {
            self.queue
                .entry(p.job.node_pool.clone())
                .or_default()
                .push_back(p);
        }
        self.sched_dirty = true;
    }

    fn timer(&mut self, at: i64, t: Timer) {
        self.timer_seq += 1;
        self.timers.push(Reverse((at, self.timer_seq, t)));
    }

    pub fn next_timer_at(&self) -> Option<i64> {
        self.timers.peek().map(|Reverse((at, _, _))| *at)
    }
}
