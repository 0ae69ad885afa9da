//! Cluster state: nodes, allocations, jobs, a Raft-like index, per-table and
//! per-node change notification, and the simulated-time event queue.
//!
//! Everything lives in one [`Cluster`] behind an `RwLock`. Writers bump the
//! global index once per logical write (like one Raft apply), and notify:
//! the `nodes` / `allocs` table watches, and the per-node watches that
//! blocking queries on one node wait on. A blocking query therefore wakes
//! only when the data it reads changed, not on every write.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, OnceLock};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::sync::watch;

use crate::clock::{NANOS_PER_SEC, rfc3339, rfc3339_secs};
use crate::events::EventBroker;
use crate::wire::{
    self, Allocation, DesiredTransition, Job, Node, NodeEvent, StrMap, TaskEvent, TaskState,
};

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
    #[error("invalid scheduling eligibility {0:?}")]
    InvalidEligibility(String),
    #[error("can not set node's scheduling eligibility to eligible while it is draining")]
    EligibleWhileDraining,
    #[error("alloc not found")]
    AllocNotFound,
    #[error("{0}")]
    BadRequest(String),
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

/// A job to register (or look up, when one with that ID exists in the
/// namespace).
#[derive(Debug, Clone)]
pub struct JobSpec<'a> {
    /// `None`: a generated `<type>-<n>` ID.
    pub id: Option<String>,
    pub namespace: &'a str,
    pub job_type: &'a str,
    pub pool: &'a str,
    pub count: u32,
    pub max_parallel: u32,
    pub group: GroupSpec,
}

/// Task-group settings of a job the simulator models.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupSpec {
    /// The task's `kill_timeout`.
    pub kill_timeout_ns: i64,
    /// `disconnect { lost_after }` / `max_client_disconnect`.
    pub lost_after_ns: Option<i64>,
}

impl Default for GroupSpec {
    fn default() -> Self {
        GroupSpec {
            kill_timeout_ns: DEFAULT_KILL_TIMEOUT_NS,
            lost_after_ns: None,
        }
    }
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

#[derive(Debug, Clone, Serialize)]
pub struct ViolationAlloc {
    #[serde(rename = "alloc_id")]
    pub alloc_id: String,
    pub job_id: String,
    pub job_type: String,
    pub client_status: String,
}

/// A node that went away (VM killed, or purged) while it still had a pending
/// or running allocation.
#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub node_id: String,
    pub node_name: String,
    pub instance_id: Option<String>,
    /// `killed` or `purged`.
    pub kind: String,
    pub allocs: Vec<ViolationAlloc>,
    pub sim_time: String,
    pub sim_time_ns: i64,
    pub index: u64,
}

#[derive(Debug, Clone)]
pub struct Workload {
    pub id: String,
    pub namespace: String,
    pub node_pool: String,
    pub rate_per_min: f64,
    pub min_ns: i64,
    pub max_ns: i64,
    pub submitted: u64,
}

pub struct NodeWatch {
    pub node: watch::Sender<u64>,
    pub allocs: watch::Sender<u64>,
}

pub struct Cluster {
    pub cfg: ClusterConfig,
    pub index: u64,
    pub nodes_index: u64,
    pub allocs_index: u64,
    pub nodes: BTreeMap<String, NodeRec>,
    pub allocs: BTreeMap<String, AllocRec>,
    pub allocs_by_node: HashMap<String, Vec<String>>,
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

/// Registration parameters of one node (control surface and scenario file).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct NodeSpec {
    pub name: Option<String>,
    pub node_pool: Option<String>,
    pub node_class: Option<String>,
    pub datacenter: Option<String>,
    pub meta: Option<StrMap>,
    pub attributes: Option<StrMap>,
    /// `aws` (default), `gce` or `none`.
    pub cloud: Option<String>,
    pub instance_id: Option<String>,
    pub availability_zone: Option<String>,
    pub slots: Option<u32>,
}

/// A namespace (`structs.Namespace`; only what the simulator uses).
#[derive(Debug, Clone)]
pub struct NamespaceRec {
    pub name: String,
    pub description: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl NamespaceRec {
    pub fn to_json(&self) -> serde_json::Value {
        let mut h = Vec::new();
        h.extend_from_slice(self.name.as_bytes());
        h.extend_from_slice(self.description.as_bytes());
        serde_json::json!({
            "Name": self.name,
            "Description": self.description,
            "Quota": "",
            "Capabilities": null,
            "NodePoolConfiguration": null,
            "VaultConfiguration": null,
            "ConsulConfiguration": null,
            "Meta": null,
            "Hash": crate::acl::base64(&crate::acl::blake2b_256(&h)),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
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

    // ---- change notification ----

    /// Records that `node_id`'s node object changed at `idx`.
    fn node_changed(&mut self, node_id: &str, idx: u64, event_type: Option<&'static str>) {
        self.nodes_index = idx;
        self.nodes_tx.send_replace(idx);
        if let Some(rec) = self.nodes.get_mut(node_id) {
            rec.node.modify_index = idx;
            rec.node.drain = rec.node.drain_strategy.is_some();
        }
        if let Some(w) = self.watches.get(node_id) {
            w.node.send_replace(idx);
        }
        if let Some(t) = event_type
            && let Some(rec) = self.nodes.get(node_id)
        {
            self.events.publish_node(idx, t, &rec.node);
        }
        self.update_sched(node_id);
    }

    /// Publishes an `Allocation` event for the allocation as it is now.
    fn alloc_event(&mut self, id: &str, kind: &'static str, idx: u64) {
        if let Some(a) = self.allocs.get(id) {
            self.events.publish_alloc(idx, kind, &a.alloc);
        }
    }

    fn allocs_changed(&mut self, node_id: &str, idx: u64) {
        self.allocs_index = idx;
        self.allocs_tx.send_replace(idx);
        if let Some(w) = self.watches.get(node_id) {
            w.allocs.send_replace(idx);
        }
    }

    fn push_node_event(
        &mut self,
        node_id: &str,
        idx: u64,
        subsystem: &str,
        msg: &str,
        details: Option<StrMap>,
    ) {
        let now = self.now;
        if let Some(rec) = self.nodes.get_mut(node_id) {
            rec.node.events.push(NodeEvent {
                message: msg.into(),
                subsystem: subsystem.into(),
                details,
                timestamp: rfc3339(now),
                create_index: idx,
            });
            let n = rec.node.events.len();
            if n > MAX_NODE_EVENTS {
                rec.node.events.drain(0..n - MAX_NODE_EVENTS);
            }
        }
    }

    // ---- scheduler index ----

    fn schedulable(rec: &NodeRec) -> bool {
        rec.node.status == "ready"
            && rec.node.scheduling_eligibility == "eligible"
            && rec.node.drain_strategy.is_none()
            && rec.used_slots < rec.slots
    }

    fn update_sched(&mut self, node_id: &str) {
        let Some(rec) = self.nodes.get_mut(node_id) else {
            return;
        };
        let want = Self::schedulable(rec).then(|| (rec.node.node_pool.clone(), rec.used_slots));
        if want == rec.sched_key {
            return;
        }
        if want.is_some() {
            self.sched_dirty = true;
        }
        let old = std::mem::replace(&mut rec.sched_key, want.clone());
        if let Some((pool, used)) = old
            && let Some(set) = self.sched.get_mut(&pool)
        {
            set.remove(&(used, node_id.to_string()));
        }
        if let Some((pool, used)) = want {
            self.sched
                .entry(pool)
                .or_default()
                .insert((used, node_id.to_string()));
        }
    }

    /// Least-loaded schedulable node of `pool` whose datacenter the job allows.
    pub(crate) fn pick_node(&self, job: &Job) -> Option<String> {
        let pools: Vec<&String> = if job.node_pool == "all" {
            self.sched.keys().collect()
        } else {
            vec![&job.node_pool]
        };
        let any_dc = job.datacenters.iter().any(|d| d == "*");
        let mut best: Option<&(u32, String)> = None;
        for p in pools {
            let Some(set) = self.sched.get(p) else {
                continue;
            };
            for entry in set.iter() {
                let ok = any_dc
                    || self
                        .nodes
                        .get(&entry.1)
                        .is_some_and(|r| job.datacenters.contains(&r.node.datacenter));
                if ok {
                    if best.is_none_or(|b| entry.0 < b.0) {
                        best = Some(entry);
                    }
                    break;
                }
            }
        }
        best.map(|(_, id)| id.clone())
    }

    // ---- nodes ----

    pub fn register_node(&mut self, spec: &NodeSpec) -> (String, Option<String>) {
        self.node_seq += 1;
        let n = self.node_seq;
        let id = self.uuid();
        let now = self.now;
        let dc = spec
            .datacenter
            .clone()
            .unwrap_or_else(|| self.cfg.datacenter.clone());
        let pool = spec.node_pool.clone().unwrap_or_else(|| "default".into());
        let class = spec.node_class.clone().unwrap_or_default();
        let name = spec
            .name
            .clone()
            .unwrap_or_else(|| format!("nomad-client-{n}"));
        let ip = format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
        let mut attrs: StrMap = [
            ("arch", "amd64"),
            ("cpu.arch", "amd64"),
            ("cpu.numcores", "4"),
            ("cpu.totalcompute", "8000"),
            ("driver.docker", "1"),
            ("driver.exec", "1"),
            ("driver.raw_exec", "1"),
            ("kernel.name", "linux"),
            ("kernel.version", "6.8.0-1019-aws"),
            ("memory.totalbytes", "16571674624"),
            ("nomad.revision", "nomad-sim"),
            ("nomad.version", self.cfg.nomad_version),
            ("os.name", "ubuntu"),
            ("os.version", "24.04"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        attrs.insert("unique.hostname".into(), name.clone());
        attrs.insert("unique.network.ip-address".into(), ip.clone());
        attrs.insert("unique.advertise.address".into(), format!("{ip}:4646"));
        let mut links = StrMap::new();
        let cloud = spec.cloud.clone().unwrap_or_else(|| "aws".into());
        let instance_id = match cloud.as_str() {
            "aws" => {
                let iid = spec.instance_id.clone().unwrap_or_else(|| {
                    let b: [u8; 9] = self.rng.random();
                    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
                    format!("i-{}", &h[..17])
                });
                let az = spec.availability_zone.clone().unwrap_or_else(|| {
                    ["us-east-1a", "us-east-1b", "us-east-1c"][(n % 3) as usize].into()
                });
                attrs.insert("unique.platform.aws.instance-id".into(), iid.clone());
                attrs.insert(
                    "platform.aws.placement.availability-zone".into(),
                    az.clone(),
                );
                attrs.insert("platform.aws.instance-type".into(), "m5.xlarge".into());
                attrs.insert("platform.aws.ami-id".into(), "ami-0abcdef1234567890".into());
                attrs.insert(
                    "platform.aws.instance-life-cycle".into(),
                    "on-demand".into(),
                );
                let host = format!("ip-{}.ec2.internal", ip.replace('.', "-"));
                attrs.insert("unique.platform.aws.hostname".into(), host.clone());
                attrs.insert("unique.platform.aws.local-hostname".into(), host);
                attrs.insert("unique.platform.aws.local-ipv4".into(), ip.clone());
                links.insert("aws.ec2".into(), format!("{az}.{iid}"));
                Some(iid)
            }
            "gce" => {
                let gid = spec.instance_id.clone().unwrap_or_else(|| {
                    format!("{}", self.rng.random_range(10u64.pow(18)..10u64.pow(19)))
                });
                let zone = spec
                    .availability_zone
                    .clone()
                    .unwrap_or_else(|| ["us-central1-a", "us-central1-b"][(n % 2) as usize].into());
                attrs.insert("unique.platform.gce.id".into(), gid.clone());
                attrs.insert(
                    "unique.platform.gce.hostname".into(),
                    format!("{name}.c.project.internal"),
                );
                attrs.insert("platform.gce.zone".into(), zone);
                attrs.insert("platform.gce.machine-type".into(), "n2-standard-4".into());
                attrs.insert(
                    "platform.gce.cpu-platform".into(),
                    "Intel Cascade Lake".into(),
                );
                attrs.insert("platform.gce.scheduling.preemptible".into(), "false".into());
                attrs.insert(
                    "platform.gce.scheduling.automatic-restart".into(),
                    "true".into(),
                );
                attrs.insert(
                    "platform.gce.scheduling.on-host-maintenance".into(),
                    "MIGRATE".into(),
                );
                links.insert("gce".into(), gid.clone());
                Some(gid)
            }
            _ => spec.instance_id.clone(),
        };
        if let Some(extra) = &spec.attributes {
            for (k, v) in extra {
                attrs.insert(k.clone(), v.clone());
            }
        }
        let meta = spec.meta.clone().unwrap_or_else(|| {
            [
                (
                    "connect.gateway_image",
                    "docker.io/envoyproxy/envoy:v1.29.4",
                ),
                ("connect.log_level", "info"),
                ("connect.proxy_concurrency", "1"),
                (
                    "connect.sidecar_image",
                    "docker.io/envoyproxy/envoy:v1.29.4",
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        });
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&dc, &pool, &class, &meta).hash(&mut h);
        let idx = self.next_index();
        let ts = rfc3339(now);
        let node = Node {
            id: id.clone(),
            secret_id: String::new(),
            datacenter: dc,
            name,
            cgroup_parent: "nomad.slice".into(),
            http_addr: format!("{ip}:4646"),
            tls_enabled: false,
            attributes: attrs,
            node_resources: shared_resources().0.clone(),
            reserved_resources: shared_resources().1.clone(),
            links: if links.is_empty() { None } else { Some(links) },
            meta: Some(meta),
            node_class: class,
            node_pool: pool,
            computed_class: format!("v1:{}", h.finish()),
            drain_strategy: None,
            scheduling_eligibility: "eligible".into(),
            status: "ready".into(),
            status_description: String::new(),
            status_updated_at: now.div_euclid(NANOS_PER_SEC),
            events: vec![NodeEvent {
                message: "Node registered".into(),
                subsystem: "Cluster".into(),
                details: None,
                timestamp: ts.clone(),
                create_index: idx,
            }],
            drivers: wire::default_drivers(&ts),
            csi_controller_plugins: None,
            csi_node_plugins: None,
            host_volumes: None,
            gc_volumes_on_node_gc: false,
            host_networks: None,
            last_drain: None,
            node_max_allocs: 0,
            identity_signing_key_id: String::new(),
            last_missed_heartbeat_index: 0,
            last_alloc_update_index: 0,
            create_index: idx,
            modify_index: idx,
            drain: false,
        };
        let slots = spec.slots.unwrap_or(self.cfg.default_slots);
        self.insert_node(NodeRec {
            node,
            alive: true,
            connected: true,
            instance_id: instance_id.clone(),
            slots,
            used_slots: 0,
            hb_gen: 0,
            drain_gen: 0,
            sched_key: None,
        });
        self.node_changed(&id, idx, Some("NodeRegistration"));
        self.place_system_jobs(&id);
        (id, instance_id)
    }

    fn insert_node(&mut self, rec: NodeRec) {
        let id = rec.node.id.clone();
        self.watches.entry(id.clone()).or_insert_with(|| NodeWatch {
            node: watch::Sender::new(0),
            allocs: watch::Sender::new(0),
        });
        self.nodes.insert(id, rec);
    }

    pub fn node_allocs(&self, node_id: &str) -> impl Iterator<Item = &AllocRec> {
        self.allocs_by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocs.get(id))
    }

    fn record_violation(&mut self, node_id: &str, kind: &str) {
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        let allocs: Vec<ViolationAlloc> = self
            .node_allocs(node_id)
            // `unknown`: the client could not report, but the tasks run.
            .filter(|a| a.alloc.pending_or_running() || a.alloc.client_status == "unknown")
            .map(|a| ViolationAlloc {
                alloc_id: a.alloc.id.clone(),
                job_id: a.alloc.job.id.clone(),
                job_type: a.alloc.job.job_type.clone(),
                client_status: a.alloc.client_status.clone(),
            })
            .collect();
        if allocs.is_empty() {
            return;
        }
        self.violations.push(Violation {
            node_id: node_id.to_string(),
            node_name: rec.node.name.clone(),
            instance_id: rec.instance_id.clone(),
            kind: kind.into(),
            allocs,
            sim_time: rfc3339(self.now),
            sim_time_ns: self.now,
            index: self.index,
        });
    }

    /// The VM is gone: the client stops heartbeating and its tasks die with
    /// it. The servers notice only after the heartbeat TTL plus grace.
    pub fn kill_node(&mut self, node_id: &str) -> Result<(), StateError> {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let now = self.now;
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        if !rec.alive {
            return Ok(());
        }
        rec.alive = false;
        rec.hb_gen += 1;
        let gen_ = rec.hb_gen;
        let down = rec.node.status == "down";
        self.record_violation(node_id, "killed");
        if !down {
            self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
        }
        Ok(())
    }

    /// The client comes back (VM restarted, or agent restarted). It keeps its
    /// node ID, drain strategy, eligibility and `LastDrain`. A client that
    /// is still cut off from the servers (`/sim/nodes/:id/disconnect`) is
    /// not heard from until it reconnects.
    pub fn restart_node(&mut self, node_id: &str) -> Result<(), StateError> {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let now = self.now;
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        rec.alive = true;
        rec.hb_gen += 1;
        let gen_ = rec.hb_gen;
        if !rec.connected {
            if rec.node.status != "down" {
                self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
            }
            return Ok(());
        }
        self.heartbeat_resumed(node_id, true);
        Ok(())
    }

    /// A network partition: the VM and its tasks keep running, the client
    /// stops heartbeating and cannot report allocation updates. The servers
    /// notice after the heartbeat TTL plus grace (`nomad/heartbeat.go`).
    pub fn disconnect_node(&mut self, node_id: &str) -> Result<(), StateError> {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let now = self.now;
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        if !rec.connected {
            return Ok(());
        }
        rec.connected = false;
        if !rec.alive {
            return Ok(()); // not heartbeating anyway; its timer is running
        }
        rec.hb_gen += 1;
        let gen_ = rec.hb_gen;
        if rec.node.status != "down" {
            self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
        }
        Ok(())
    }

    /// The partition heals: heartbeats get through again.
    pub fn reconnect_node(&mut self, node_id: &str) -> Result<(), StateError> {
        let rec = self
            .nodes
            .get_mut(node_id)
            .ok_or(StateError::NodeNotFound)?;
        if rec.connected {
            return Ok(());
        }
        rec.connected = true;
        if !rec.alive {
            return Ok(()); // the VM is gone: nothing heartbeats
        }
        rec.hb_gen += 1;
        self.heartbeat_resumed(node_id, false);
        Ok(())
    }

    /// The first heartbeat (or, after a restart, registration) of a client
    /// the servers had not heard from, following `Node.UpdateStatus`
    /// (`nomad/node_endpoint.go`): `down` becomes `ready` with a node event;
    /// `disconnected` becomes `initializing`, then the client syncs its
    /// allocations (`unknown` ones report `running` again) and its next
    /// heartbeat makes it `ready`.
    fn heartbeat_resumed(&mut self, node_id: &str, registered: bool) {
        let now = self.now;
        let ttl = self.cfg.heartbeat_ttl_ns;
        let rec = &self.nodes[node_id];
        let gen_ = rec.hb_gen;
        let status = rec.node.status.clone();
        let has_unknown = self
            .node_allocs(node_id)
            .any(|a| a.alloc.client_status == "unknown");
        match status.as_str() {
            "down" => {
                let idx = self.next_index();
                let rec = self.nodes.get_mut(node_id).unwrap();
                rec.node.status = "ready".into();
                rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
                rec.node.last_missed_heartbeat_index = 0;
                // Register (a restarted agent) writes "Node re-registered"
                // (state_store.go); a heartbeat from a down node writes
                // NodeHeartbeatEventReregistered (node_endpoint.go).
                let (msg, ev) = if registered {
                    ("Node re-registered", "NodeRegistration")
                } else {
                    ("Node reregistered by heartbeat", "NodeStreamEvent")
                };
                self.push_node_event(node_id, idx, "Cluster", msg, None);
                self.node_changed(node_id, idx, Some(ev));
                self.place_system_jobs(node_id);
            }
            "disconnected" => {
                let idx = self.next_index();
                let rec = self.nodes.get_mut(node_id).unwrap();
                rec.node.status = "initializing".into();
                rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
                self.node_changed(node_id, idx, Some("NodeStreamEvent"));
                self.timer(
                    now + CLIENT_SYNC_DELAY_NS,
                    Timer::ReconnectSync(node_id.into(), gen_),
                );
                self.timer(now + ttl, Timer::ReconnectReady(node_id.into(), gen_));
                return;
            }
            _ => {}
        }
        if has_unknown {
            self.timer(
                now + CLIENT_SYNC_DELAY_NS,
                Timer::ReconnectSync(node_id.into(), gen_),
            );
        } else {
            self.rearm_client(node_id);
        }
    }

    /// Re-arms the client-side progress of allocations that was frozen while
    /// the client could not report: starts, finishes, and stops (which take
    /// the job's kill_timeout from now).
    fn rearm_client(&mut self, node_id: &str) {
        let now = self.now;
        let ids: Vec<String> = self
            .node_allocs(node_id)
            .map(|a| a.alloc.id.clone())
            .collect();
        for id in ids {
            let a = &self.allocs[&id];
            if a.alloc.client_terminal() {
                continue;
            }
            if a.alloc.desired_status != "run" {
                let kill = a.alloc.job.kill_timeout_ns;
                self.timer(now + kill, Timer::AllocStopped(id));
            } else if a.alloc.client_status == "pending" {
                self.timer(now + START_DELAY_NS, Timer::AllocStart(id));
            } else if let Some(f) = a.finish_at {
                self.timer(f.max(now), Timer::AllocFinish(id));
            }
        }
    }

    /// The client's allocation sync after a reconnect (`Node.UpdateAlloc`):
    /// its `unknown` allocations report `running` again; then the reconnect
    /// evaluation keeps each original and stops its replacements
    /// (`reconcile_cluster.go` `computeReconnecting`: the default
    /// `best_score` picker keeps the original when neither has a better
    /// score, which is always the case here).
    fn on_reconnect_sync(&mut self, node_id: &str, gen_: u64) {
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        if rec.hb_gen != gen_ || !rec.heartbeating() {
            return;
        }
        let unknown: Vec<String> = self
            .node_allocs(node_id)
            .filter(|a| a.alloc.client_status == "unknown")
            .map(|a| a.alloc.id.clone())
            .collect();
        if !unknown.is_empty() {
            let idx = self.next_index();
            for id in &unknown {
                let a = self.allocs.get_mut(id).unwrap();
                a.unknown_since = None;
                self.set_client_status(id, "running", "Tasks are running", idx);
            }
            self.allocs_changed(node_id, idx);
            let mut stop: Vec<String> = Vec::new();
            for id in &unknown {
                let a = &self.allocs[id];
                if a.alloc.desired_status != "run" {
                    continue; // the client stops it (rearm_client below)
                }
                let mut next = a.alloc.next_allocation.clone();
                while let Some(r) = self.allocs.get(&next) {
                    if r.alloc.desired_status == "run" {
                        stop.push(r.alloc.id.clone());
                    }
                    next = r.alloc.next_allocation.clone();
                }
            }
            if !stop.is_empty() {
                let idx = self.next_index();
                for r in stop {
                    self.stop_alloc(
                        &r,
                        "alloc not needed due to disconnected client reconnect",
                        false,
                        idx,
                    );
                }
            }
        }
        self.rearm_client(node_id);
    }

    /// The client's next heartbeat after its allocation sync: `initializing`
    /// becomes `ready` (no node event; `LastMissedHeartbeatIndex` is reset).
    fn on_reconnect_ready(&mut self, node_id: &str, gen_: u64) {
        let now = self.now;
        let Some(rec) = self.nodes.get_mut(node_id) else {
            return;
        };
        if rec.hb_gen != gen_ || !rec.heartbeating() || rec.node.status != "initializing" {
            return;
        }
        rec.node.status = "ready".into();
        rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
        rec.node.last_missed_heartbeat_index = 0;
        let idx = self.next_index();
        self.node_changed(node_id, idx, Some("NodeStreamEvent"));
        self.place_system_jobs(node_id);
        self.reconcile_drain(node_id);
    }

    pub fn purge_node(&mut self, node_id: &str) -> Result<(u64, Option<Vec<String>>), StateError> {
        if !self.nodes.contains_key(node_id) {
            return Err(StateError::NodeNotFound);
        }
        self.record_violation(node_id, "purged");
        let (idx, rec) = self.remove_node(node_id);
        // Evaluations for the jobs that had allocations there; the scheduler
        // then marks those allocations lost and replaces them.
        let jobs: BTreeSet<String> = self
            .node_allocs(node_id)
            .filter(|a| !a.alloc.terminal())
            .map(|a| a.alloc.job.id.clone())
            .collect();
        let eval_ids: Vec<String> = jobs.iter().map(|_| self.uuid()).collect();
        self.lose_allocs(node_id, "alloc is lost since its node is down");
        if rec.alive {
            // "Nodes can still join the cluster if they are alive": the client
            // re-registers on its next heartbeat.
            let at = self.now + self.cfg.heartbeat_ttl_ns;
            self.purged_alive.insert(node_id.to_string(), rec);
            self.timer(at, Timer::Reregister(node_id.to_string()));
        }
        Ok((
            idx,
            if eval_ids.is_empty() {
                None
            } else {
                Some(eval_ids)
            },
        ))
    }

    /// Deletes the node from state (Raft `NodeDeregister`).
    fn remove_node(&mut self, node_id: &str) -> (u64, NodeRec) {
        let idx = self.next_index();
        let mut rec = self.nodes.remove(node_id).unwrap();
        rec.node.modify_index = idx;
        self.events
            .publish_node(idx, "NodeDeregistration", &rec.node);
        if let Some((pool, used)) = rec.sched_key.take()
            && let Some(set) = self.sched.get_mut(&pool)
        {
            set.remove(&(used, node_id.to_string()));
        }
        self.nodes_index = idx;
        self.nodes_tx.send_replace(idx);
        if let Some(w) = self.watches.get(node_id) {
            w.node.send_replace(idx);
        }
        (idx, rec)
    }

    /// Node garbage collection (`core_sched.go` `nodeGC`): only `down` nodes
    /// whose allocations are all terminal. Returns whether it was collected.
    pub fn gc_node(&mut self, node_id: &str) -> bool {
        let Some(rec) = self.nodes.get(node_id) else {
            return false;
        };
        if rec.node.status != "down" || self.node_allocs(node_id).any(|a| !a.alloc.terminal()) {
            return false;
        }
        self.remove_node(node_id);
        true
    }

    /// `PUT /v1/system/gc`: collects eligible nodes now, ignoring the
    /// threshold.
    pub fn force_gc(&mut self) -> usize {
        let down: Vec<String> = self
            .nodes
            .values()
            .filter(|r| r.node.status == "down")
            .map(|r| r.node.id.clone())
            .collect();
        down.iter().filter(|id| self.gc_node(id)).count()
    }

    /// Marks every non-terminal allocation on the node `lost` and asks for
    /// replacements of service and batch allocations.
    fn lose_allocs(&mut self, node_id: &str, desc: &str) {
        let ids: Vec<String> = self
            .node_allocs(node_id)
            .filter(|a| !a.alloc.client_terminal())
            // An `unknown` allocation already told to stop is server-terminal:
            // the reconciler skips it, so it stays `unknown`.
            .filter(|a| !(a.alloc.client_status == "unknown" && a.alloc.desired_status != "run"))
            .map(|a| a.alloc.id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let idx = self.next_index();
        for id in ids {
            let replace = {
                let a = &self.allocs[&id];
                a.alloc.desired_status == "run"
                    && !is_system(&a.alloc.job.job_type)
                    && !self.has_live_replacement(&id)
            };
            self.set_client_status(&id, "lost", "", idx);
            let now = self.now;
            let a = self.allocs.get_mut(&id).unwrap();
            a.alloc.desired_status = "stop".into();
            a.alloc.desired_description = desc.into();
            a.alloc.modify_time = now;
            // The scheduler's plan marks them lost.
            self.events.publish_alloc(idx, "PlanResult", &a.alloc);
            if replace {
                let p = Placement {
                    job: a.alloc.job.clone(),
                    index_in_job: 0,
                    previous: Some(id.clone()),
                    duration_ns: a.duration_ns,
                    node: None,
                };
                self.enqueue(p);
            }
        }
        self.allocs_changed(node_id, idx);
    }

    fn set_client_status(&mut self, id: &str, status: &str, desc: &str, idx: u64) {
        let now = self.now;
        let Some(a) = self.allocs.get_mut(id) else {
            return;
        };
        a.alloc.client_status = status.into();
        a.alloc.client_description = desc.into();
        a.alloc.modify_index = idx;
        a.alloc.alloc_modify_index = idx;
        a.alloc.modify_time = now;
        let terminal = a.alloc.client_terminal();
        for ts in a.alloc.task_states.values_mut() {
            match status {
                "running" => {
                    ts.state = "running";
                    ts.started_at = Some(rfc3339(now));
                    ts.events
                        .push(TaskEvent::new("Started", now, "Task started by client"));
                }
                "complete" | "failed" | "lost" => {
                    ts.state = "dead";
                    ts.failed = status == "failed";
                    ts.finished_at = Some(rfc3339(now));
                    let (k, m) = match status {
                        "complete" => ("Terminated", "Exit Code: 0"),
                        "failed" => ("Terminated", "Exit Code: 1"),
                        _ => ("Killed", "Task lost"),
                    };
                    let mut e = TaskEvent::new(k, now, m);
                    e.exit_code = i64::from(status == "failed");
                    ts.events.push(e);
                }
                _ => {}
            }
            let n = ts.events.len();
            if n > 10 {
                ts.events.drain(0..n - 10);
            }
        }
        if status != "lost" {
            // The client's Node.UpdateAlloc.
            self.events
                .publish_alloc(idx, "AllocationUpdated", &a.alloc);
        }
        if terminal && a.counted {
            a.counted = false;
            let node_id = a.alloc.node_id.clone();
            if let Some(rec) = self.nodes.get_mut(&node_id) {
                rec.used_slots = rec.used_slots.saturating_sub(1);
            }
            self.update_sched(&node_id);
        }
    }

    // ---- allocations ----

    /// Creates a namespace (`POST /sim/namespaces`); an existing one keeps
    /// its create index and gets the new description.
    pub fn upsert_namespace(&mut self, name: &str, description: &str) -> Result<u64, StateError> {
        // structs.Namespace.Validate: validNamespaceName.
        let ok = (1..=128).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(StateError::BadRequest(format!(
                "invalid name {name:?}. Must match regex ^[a-zA-Z0-9-]{{1,128}}$"
            )));
        }
        let idx = self.next_index();
        let rec = self
            .namespaces
            .entry(name.to_string())
            .or_insert_with(|| NamespaceRec {
                name: name.into(),
                description: String::new(),
                create_index: idx,
                modify_index: idx,
            });
        rec.description = description.into();
        rec.modify_index = idx;
        self.namespaces_index = idx;
        Ok(idx)
    }

    pub fn new_job(&mut self, spec: JobSpec<'_>) -> Arc<Job> {
        let JobSpec {
            id,
            namespace,
            job_type,
            pool,
            count,
            max_parallel,
            group,
        } = spec;
        self.job_seq += 1;
        let id = id.unwrap_or_else(|| format!("{job_type}-{}", self.job_seq));
        let key = Job::key_of(namespace, &id);
        if let Some(j) = self.jobs.get(&key) {
            return j.clone();
        }
        let job = Arc::new(Job {
            id: id.clone(),
            job_type: job_type.into(),
            namespace: namespace.into(),
            region: self.cfg.region.clone(),
            datacenters: vec!["*".into()],
            node_pool: pool.into(),
            priority: 50,
            count,
            max_parallel: max_parallel.max(1),
            min_healthy_time_ns: 10 * NANOS_PER_SEC,
            kill_timeout_ns: group.kill_timeout_ns,
            lost_after_ns: group.lost_after_ns,
            create_index: self.index,
            submit_time: self.now,
            json: Arc::new(OnceLock::new()),
        });
        self.jobs.insert(key, job.clone());
        if is_system(job_type) {
            self.system_jobs.push(job.clone());
        }
        job
    }

    /// Places the system jobs that fit this node (system scheduler).
    fn place_system_jobs(&mut self, node_id: &str) {
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        if rec.node.status != "ready"
            || rec.node.scheduling_eligibility != "eligible"
            || rec.node.drain_strategy.is_some()
        {
            return;
        }
        let pool = rec.node.node_pool.clone();
        let have: HashSet<String> = self
            .node_allocs(node_id)
            .filter(|a| !a.alloc.terminal())
            .map(|a| a.alloc.job.key())
            .collect();
        let jobs: Vec<Arc<Job>> = self
            .system_jobs
            .iter()
            .filter(|j| (j.node_pool == pool || j.node_pool == "all") && !have.contains(&j.key()))
            .cloned()
            .collect();
        for job in jobs {
            let p = Placement {
                job,
                index_in_job: 0,
                previous: None,
                duration_ns: None,
                node: Some(node_id.into()),
            };
            self.create_alloc(node_id, &p);
        }
    }

    /// Submits a system job: one allocation on every fitting node.
    pub fn submit_system_job(&mut self, job: Arc<Job>) -> Vec<String> {
        let ids: Vec<String> = self
            .nodes
            .values()
            .filter(|r| r.node.node_pool == job.node_pool || job.node_pool == "all")
            .map(|r| r.node.id.clone())
            .collect();
        let before = self.allocs.len();
        for id in ids {
            self.place_system_jobs(&id);
        }
        let _ = before;
        self.job_allocs.get(&job.key()).cloned().unwrap_or_default()
    }

    /// Creates an allocation on `node_id` (status `pending`).
    pub(crate) fn create_alloc(&mut self, node_id: &str, p: &Placement) -> String {
        let idx = self.next_index();
        let now = self.now;
        let id = self.uuid();
        let eval_id = self.uuid();
        let rec = self
            .nodes
            .get_mut(node_id)
            .expect("placing on a known node");
        let counted = !is_system(&p.job.job_type);
        if counted {
            rec.used_slots += 1;
        }
        let node_name = rec.node.name.clone();
        let mut ts = TaskState {
            state: "pending",
            failed: false,
            restarts: 0,
            last_restart: None,
            started_at: None,
            finished_at: None,
            events: vec![TaskEvent::new("Received", now, "Task received by client")],
            task_handle: None,
        };
        ts.events.push({
            let mut e = TaskEvent::new("Task Setup", now, "Building Task Directory");
            e.message = "Building Task Directory";
            e
        });
        let alloc = Allocation {
            id: id.clone(),
            namespace: p.job.namespace.clone(),
            eval_id,
            name: format!("{}.{}[{}]", p.job.id, p.job.task_group(), p.index_in_job),
            node_id: node_id.into(),
            node_name,
            job: p.job.clone(),
            task_group: p.job.task_group().into(),
            desired_status: "run".into(),
            desired_description: String::new(),
            desired_transition: DesiredTransition::default(),
            client_status: "pending".into(),
            client_description: "No tasks have started".into(),
            task_states: wire::TaskStates(vec![("task".to_string(), ts)]),
            deployment_status: None,
            previous_allocation: p.previous.clone().unwrap_or_default(),
            next_allocation: String::new(),
            create_index: idx,
            modify_index: idx,
            alloc_modify_index: idx,
            create_time: now,
            modify_time: now,
        };
        if let Some(prev) = &p.previous
            && let Some(pa) = self.allocs.get_mut(prev)
        {
            pa.alloc.next_allocation = id.clone();
            pa.alloc.modify_index = idx;
            let pn = pa.alloc.node_id.clone();
            self.alloc_event(prev, "PlanResult", idx);
            self.allocs_changed(&pn, idx);
        }
        self.allocs.insert(
            id.clone(),
            AllocRec {
                alloc,
                duration_ns: p.duration_ns,
                finish_at: None,
                counted,
                migrating: false,
                unknown_since: None,
            },
        );
        self.allocs_by_node
            .entry(node_id.into())
            .or_default()
            .push(id.clone());
        self.job_allocs
            .entry(p.job.key())
            .or_default()
            .push(id.clone());
        self.update_sched(node_id);
        self.alloc_event(&id, "PlanResult", idx);
        self.allocs_changed(node_id, idx);
        self.timer(now + START_DELAY_NS, Timer::AllocStart(id.clone()));
        id
    }

    /// Client reports the allocation finished (`complete`) or failed.
    pub fn finish_alloc(&mut self, id: &str, failed: bool) -> Result<(), StateError> {
        let a = self.allocs.get(id).ok_or(StateError::AllocNotFound)?;
        if a.alloc.client_terminal() {
            return Ok(());
        }
        let node_id = a.alloc.node_id.clone();
        let idx = self.next_index();
        let (st, desc) = if failed {
            ("failed", "Failed tasks")
        } else {
            ("complete", "All tasks have completed")
        };
        self.set_client_status(id, st, desc, idx);
        self.allocs_changed(&node_id, idx);
        self.reconcile_drain(&node_id);
        Ok(())
    }

    /// Stops an allocation as the scheduler does for a migration: the
    /// caller has already set `DesiredTransition`.
    pub(crate) fn stop_alloc(&mut self, id: &str, desc: &str, replace: bool, idx: u64) {
        let now = self.now;
        let Some(a) = self.allocs.get_mut(id) else {
            return;
        };
        if a.alloc.desired_status != "run" {
            return;
        }
        a.alloc.desired_status = "stop".into();
        a.alloc.desired_description = desc.into();
        a.alloc.modify_index = idx;
        a.alloc.alloc_modify_index = idx;
        a.alloc.modify_time = now;
        let node_id = a.alloc.node_id.clone();
        let live = !a.alloc.client_terminal();
        self.events.publish_alloc(idx, "PlanResult", &a.alloc);
        let kill = a.alloc.job.kill_timeout_ns;
        let p = Placement {
            job: a.alloc.job.clone(),
            index_in_job: 0,
            previous: Some(id.to_string()),
            duration_ns: a.duration_ns,
            node: None,
        };
        // An allocation that already has a replacement (an `unknown` one on a
        // disconnected node) is not replaced again.
        if replace && !self.has_live_replacement(id) {
            self.enqueue(p);
        }
        // The client keeps the task running for its kill_timeout; a client
        // that cannot be reached learns of the stop only when it is back.
        let reachable = self.nodes.get(&node_id).is_some_and(|n| n.heartbeating());
        if live && reachable {
            self.timer(now + kill, Timer::AllocStopped(id.to_string()));
        }
        self.allocs_changed(&node_id, idx);
    }

    pub(crate) fn mark_migrate(&mut self, id: &str, disable_placement: bool, idx: u64) {
        let now = self.now;
        if let Some(a) = self.allocs.get_mut(id) {
            a.alloc.desired_transition.migrate = Some(true);
            if disable_placement {
                a.alloc.desired_transition.migrate_disable_placement = Some(true);
            }
            a.alloc.modify_index = idx;
            a.alloc.modify_time = now;
            let n = a.alloc.node_id.clone();
            // The drainer's Node.UpdateAllocDesiredTransition.
            self.events
                .publish_alloc(idx, "AllocationUpdateDesiredStatus", &a.alloc);
            self.allocs_changed(&n, idx);
        }
    }

    // ---- time ----

    /// Processes every timer due at or before `now`, then the scheduler and
    /// the workload generators. Returns the number of timers handled.
    pub fn advance_to(&mut self, now: i64, max_timers: usize) -> usize {
        // Never move simulated time backwards (a tick may race with a jump).
        let now = now.max(self.now);
        let start = self.now;
        if self.sched_dirty {
            self.schedule_pending();
        }
        let mut n = 0;
        loop {
            let due = matches!(self.timers.peek(), Some(Reverse((at, _, _))) if *at <= now);
            if !due {
                break;
            }
            if n >= max_timers {
                // Out of budget: stop at the last handled timer's time so
                // the next call continues from there, not from `now`.
                self.events.flush();
                return n;
            }
            let Reverse((at, _, t)) = self.timers.pop().unwrap();
            // Handle each timer at its own due time so timestamps and the
            // timers it schedules are exact.
            self.now = at.clamp(start, now);
            self.fire(t);
            if self.sched_dirty {
                self.schedule_pending();
            }
            n += 1;
        }
        self.now = now;
        self.schedule_pending();
        self.events.flush();
        n
    }

    fn fire(&mut self, t: Timer) {
        match t {
            Timer::AllocStart(id) => self.on_alloc_start(&id),
            Timer::AllocFinish(id) => {
                let ok = self.allocs.get(&id).is_some_and(|a| {
                    a.alloc.client_status == "running"
                        && self
                            .nodes
                            .get(&a.alloc.node_id)
                            .is_some_and(|n| n.heartbeating())
                });
                if ok {
                    let _ = self.finish_alloc(&id, false);
                }
            }
            Timer::AllocStopped(id) => {
                let Some(a) = self.allocs.get(&id) else {
                    return;
                };
                let alive = self
                    .nodes
                    .get(&a.alloc.node_id)
                    .is_some_and(|n| n.heartbeating());
                if a.alloc.client_terminal() || !alive {
                    return;
                }
                let node_id = a.alloc.node_id.clone();
                let idx = self.next_index();
                self.set_client_status(&id, "complete", "All tasks have completed", idx);
                self.allocs_changed(&node_id, idx);
                self.reconcile_drain(&node_id);
            }
            Timer::MigrateStop(id) => {
                let Some(a) = self.allocs.get(&id) else {
                    return;
                };
                let replace = !a
                    .alloc
                    .desired_transition
                    .migrate_disable_placement
                    .unwrap_or(false)
                    && !is_system(&a.alloc.job.job_type);
                let idx = self.next_index();
                self.stop_alloc(&id, "alloc is being migrated", replace, idx);
            }
            Timer::ReplacementHealthy(id) => {
                let Some(a) = self.allocs.get(&id) else {
                    return;
                };
                if a.alloc.client_status != "running" {
                    return;
                }
                let prev = a.alloc.previous_allocation.clone();
                if let Some(p) = self.allocs.get_mut(&prev) {
                    p.migrating = false;
                    let n = p.alloc.node_id.clone();
                    self.reconcile_drain(&n);
                }
            }
            Timer::Heartbeat(node_id, gen_) => self.on_heartbeat_expired(&node_id, gen_),
            Timer::DisconnectExpire(id) => self.on_disconnect_expire(&id),
            Timer::ReconnectSync(node_id, gen_) => self.on_reconnect_sync(&node_id, gen_),
            Timer::ReconnectReady(node_id, gen_) => self.on_reconnect_ready(&node_id, gen_),
            Timer::DrainDeadline(node_id, gen_) => self.on_drain_deadline(&node_id, gen_),
            Timer::DrainReconcile(node_id) => self.reconcile_drain(&node_id),
            Timer::Workload(id) => self.on_workload(&id),
            Timer::NodeGc(id, gen_) => {
                if self.nodes.get(&id).is_some_and(|r| r.hb_gen == gen_) {
                    self.gc_node(&id);
                }
            }
            Timer::Reregister(node_id) => {
                if self.nodes.contains_key(&node_id) {
                    return;
                }
                let Some(mut rec) = self.purged_alive.remove(&node_id) else {
                    return;
                };
                if !rec.heartbeating() {
                    return;
                }
                let idx = self.next_index();
                let now = self.now;
                rec.node.events.clear();
                rec.node.drain_strategy = None;
                rec.node.last_drain = None;
                rec.node.scheduling_eligibility = "eligible".into();
                rec.node.status = "ready".into();
                rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
                rec.node.create_index = idx;
                rec.used_slots = 0;
                rec.sched_key = None;
                self.insert_node(rec);
                self.push_node_event(&node_id, idx, "Cluster", "Node registered", None);
                self.node_changed(&node_id, idx, Some("NodeRegistration"));
            }
        }
    }

    fn on_alloc_start(&mut self, id: &str) {
        let Some(a) = self.allocs.get(id) else {
            return;
        };
        let alive = self
            .nodes
            .get(&a.alloc.node_id)
            .is_some_and(|n| n.heartbeating());
        if a.alloc.client_status != "pending" || !alive {
            return;
        }
        let node_id = a.alloc.node_id.clone();
        let stopped = a.alloc.desired_status != "run";
        let idx = self.next_index();
        let now = self.now;
        if stopped {
            self.set_client_status(id, "complete", "All tasks have completed", idx);
            self.allocs_changed(&node_id, idx);
            self.reconcile_drain(&node_id);
            return;
        }
        self.set_client_status(id, "running", "Tasks are running", idx);
        let a = self.allocs.get_mut(id).unwrap();
        let is_service = a.alloc.job.job_type == "service";
        if is_service {
            a.alloc.deployment_status = Some(wire::DeploymentStatus {
                healthy: Some(true),
                timestamp: rfc3339(now),
                canary: false,
                modify_index: idx,
            });
        }
        let replacement = !a.alloc.previous_allocation.is_empty();
        let min_healthy = a.alloc.job.min_healthy_time_ns;
        if let Some(d) = a.duration_ns {
            a.finish_at = Some(now + d);
            self.timer(now + d, Timer::AllocFinish(id.to_string()));
        }
        if replacement {
            self.timer(now + min_healthy, Timer::ReplacementHealthy(id.to_string()));
        }
        self.allocs_changed(&node_id, idx);
    }

    /// The heartbeat TTL plus grace ran out (`heartbeat.go`
    /// `invalidateHeartbeat` and `disconnectState`): the node becomes
    /// `disconnected` if one of its allocations tolerates a disconnect
    /// (`disconnect.lost_after`), wants to run and has not expired, else
    /// `down`. Both write the node event `Node heartbeat missed` (subsystem
    /// `Cluster`). A disconnected node's heartbeat timer is reset, so this
    /// repeats (with a new event each time) until it goes down.
    fn on_heartbeat_expired(&mut self, node_id: &str, gen_: u64) {
        let (ttl, grace) = (self.cfg.heartbeat_ttl_ns, self.cfg.heartbeat_grace_ns);
        let Some(rec) = self.nodes.get(node_id) else {
            return;
        };
        if rec.heartbeating() || rec.hb_gen != gen_ || rec.node.status == "down" {
            return;
        }
        let now = self.now;
        let was = rec.node.status.clone();
        let pending_reconnect = was != "initializing"
            && self.node_allocs(node_id).any(|a| {
                a.alloc.job.lost_after_ns.is_some()
                    && a.alloc.desired_status == "run"
                    && !a.expired(now)
            });
        let idx = self.next_index();
        let rec = self.nodes.get_mut(node_id).unwrap();
        let responsive = !matches!(was.as_str(), "down" | "disconnected");
        if responsive {
            rec.node.last_missed_heartbeat_index = idx;
        }
        rec.node.status_updated_at = now.div_euclid(NANOS_PER_SEC);
        if pending_reconnect {
            rec.node.status = "disconnected".into();
            self.push_node_event(node_id, idx, "Cluster", "Node heartbeat missed", None);
            self.node_changed(node_id, idx, Some("NodeStreamEvent"));
            if was != "disconnected" {
                self.disconnect_allocs(node_id);
            }
            self.timer(now + ttl + grace, Timer::Heartbeat(node_id.into(), gen_));
            self.reconcile_drain(node_id);
            return;
        }
        rec.node.status = "down".into();
        self.push_node_event(node_id, idx, "Cluster", "Node heartbeat missed", None);
        self.node_changed(node_id, idx, Some("NodeStreamEvent"));
        self.lose_allocs(node_id, "alloc is lost since its node is down");
        self.reconcile_drain(node_id);
        // Automatic node GC after node_gc_threshold (24h) if still down.
        let at = self.now + NODE_GC_THRESHOLD_NS;
        self.timer(at, Timer::NodeGc(node_id.to_string(), gen_));
    }

    /// The scheduler's evaluation for a node that became `disconnected`
    /// (`reconciler/filters.go` `filterByTainted`, `computeDisconnecting`):
    /// running allocations that tolerate a disconnect become `unknown`
    /// (`alloc is unknown since its node is disconnected`) and are replaced
    /// elsewhere; pending ones and those without a tolerance are `lost` and
    /// replaced. Allocations already told to stop are left alone (the
    /// reconciler skips server-terminal allocations).
    fn disconnect_allocs(&mut self, node_id: &str) {
        let now = self.now;
        let ids: Vec<(String, bool)> = self
            .node_allocs(node_id)
            .filter(|a| !a.alloc.client_terminal() && a.alloc.desired_status == "run")
            .map(|a| {
                let tolerant =
                    a.alloc.job.lost_after_ns.is_some() && a.alloc.client_status == "running";
                (a.alloc.id.clone(), tolerant)
            })
            .collect();
        if ids.is_empty() {
            return;
        }
        let idx = self.next_index();
        for (id, tolerant) in ids {
            let a = &self.allocs[&id];
            let replace = !is_system(&a.alloc.job.job_type);
            let placement = Placement {
                job: a.alloc.job.clone(),
                index_in_job: 0,
                previous: Some(id.clone()),
                duration_ns: a.duration_ns,
                node: None,
            };
            if tolerant {
                let lost_after = a.alloc.job.lost_after_ns.unwrap_or(0);
                self.set_client_status(
                    &id,
                    "unknown",
                    "alloc is unknown since its node is disconnected",
                    idx,
                );
                self.allocs.get_mut(&id).unwrap().unknown_since = Some(now);
                self.timer(now + lost_after, Timer::DisconnectExpire(id.clone()));
            } else {
                self.set_client_status(&id, "lost", "", idx);
                let a = self.allocs.get_mut(&id).unwrap();
                a.alloc.desired_status = "stop".into();
                a.alloc.desired_description = "alloc is lost since its node is down".into();
            }
            if replace {
                self.enqueue(placement);
            }
        }
        self.allocs_changed(node_id, idx);
    }

    /// `disconnect.lost_after` ran out for an `unknown` allocation that
    /// still wants to run: the follow-up evaluation marks it `lost`
    /// (its replacement was placed at the disconnect).
    fn on_disconnect_expire(&mut self, id: &str) {
        let now = self.now;
        let Some(a) = self.allocs.get(id) else {
            return;
        };
        if a.alloc.client_status != "unknown" || a.alloc.desired_status != "run" || !a.expired(now)
        {
            return;
        }
        let node_id = a.alloc.node_id.clone();
        let replace = !is_system(&a.alloc.job.job_type) && !self.has_live_replacement(id);
        let idx = self.next_index();
        self.set_client_status(id, "lost", "", idx);
        let a = self.allocs.get_mut(id).unwrap();
        a.alloc.desired_status = "stop".into();
        a.alloc.desired_description = "alloc is lost since its node is down".into();
        if replace {
            let p = Placement {
                job: a.alloc.job.clone(),
                index_in_job: 0,
                previous: Some(id.to_string()),
                duration_ns: a.duration_ns,
                node: None,
            };
            self.enqueue(p);
        }
        self.allocs_changed(&node_id, idx);
        self.reconcile_drain(&node_id);
    }

    /// Whether a replacement of `id` (following `NextAllocation`) still
    /// wants to run.
    pub(crate) fn has_live_replacement(&self, id: &str) -> bool {
        let mut next = self
            .allocs
            .get(id)
            .map(|a| a.alloc.next_allocation.clone())
            .unwrap_or_default();
        let mut hops = 0;
        while let Some(r) = self.allocs.get(&next) {
            if r.alloc.desired_status == "run" {
                return true;
            }
            next = r.alloc.next_allocation.clone();
            hops += 1;
            if hops > 1000 {
                break;
            }
        }
        false
    }

    // ---- workload ----

    /// Starts a steady stream of batch jobs: one every `60 / rate` simulated
    /// seconds, each running for a uniform random duration in [min, max].
    pub fn add_workload(
        &mut self,
        namespace: &str,
        pool: &str,
        rate_per_min: f64,
        min_ns: i64,
        max_ns: i64,
    ) -> String {
        self.workload_seq += 1;
        let id = format!("workload-{}", self.workload_seq);
        self.workloads.push(Workload {
            id: id.clone(),
            namespace: namespace.into(),
            node_pool: pool.into(),
            rate_per_min,
            min_ns,
            max_ns: max_ns.max(min_ns),
            submitted: 0,
        });
        if rate_per_min > 0.0 {
            let at = self.now + (60.0 * NANOS_PER_SEC as f64 / rate_per_min) as i64;
            self.timer(at, Timer::Workload(id.clone()));
        }
        id
    }

    fn on_workload(&mut self, id: &str) {
        let Some(w) = self.workloads.iter_mut().find(|w| w.id == id) else {
            return; // stopped
        };
        w.submitted += 1;
        let (pool, min, max, rate) = (w.node_pool.clone(), w.min_ns, w.max_ns, w.rate_per_min);
        let ns = w.namespace.clone();
        let d = if max > min {
            self.rng.random_range(min..=max)
        } else {
            min
        };
        let job = self.new_job(JobSpec {
            id: None,
            namespace: &ns,
            job_type: "batch",
            pool: &pool,
            count: 1,
            max_parallel: 1,
            group: GroupSpec::default(),
        });
        self.enqueue(Placement {
            job,
            index_in_job: 0,
            previous: None,
            duration_ns: Some(d),
            node: None,
        });
        let at = self.now + (60.0 * NANOS_PER_SEC as f64 / rate) as i64;
        self.timer(at, Timer::Workload(id.to_string()));
    }
}

type SharedRes = (wire::Shared, wire::Shared);
static RESOURCES: OnceLock<SharedRes> = OnceLock::new();
fn shared_resources() -> &'static SharedRes {
    RESOURCES.get_or_init(|| {
        (
            wire::default_node_resources(),
            wire::default_reserved_resources(),
        )
    })
}

/// Drain-related timestamps.
/// `ForceDeadline`: a zero `time.Time` when `Deadline <= 0`, which Nomad's
/// HTTP encoder (go-msgpack's JSON handle, time as a builtin) writes as
/// `null`, not Go `encoding/json`'s `"0001-01-01T00:00:00Z"`.
pub fn force_deadline(now: i64, deadline: i64) -> Option<String> {
    if deadline > 0 {
        Some(rfc3339(now + deadline))
    } else {
        None
    }
}

pub fn drain_ts(now: i64) -> String {
    rfc3339_secs(now)
}

impl Cluster {
    pub(crate) fn drain_gen_bump(&mut self, node_id: &str) -> u64 {
        let rec = self.nodes.get_mut(node_id).unwrap();
        rec.drain_gen += 1;
        rec.drain_gen
    }

    pub(crate) fn drain_gen(&self, node_id: &str) -> u64 {
        self.nodes.get(node_id).map(|r| r.drain_gen).unwrap_or(0)
    }

    pub(crate) fn schedule_timer_deadline(&mut self, node_id: &str, at: i64, gen_: u64) {
        self.timer(at, Timer::DrainDeadline(node_id.into(), gen_));
    }

    pub(crate) fn schedule_reconcile(&mut self, node_id: &str) {
        let now = self.now;
        self.timer(now, Timer::DrainReconcile(node_id.into()));
    }

    pub(crate) fn schedule_migrate_stop(&mut self, alloc_id: &str) {
        let now = self.now;
        self.timer(
            now + MIGRATE_STOP_DELAY_NS,
            Timer::MigrateStop(alloc_id.into()),
        );
    }

    pub(crate) fn set_migrating(&mut self, alloc_id: &str, v: bool) {
        if let Some(a) = self.allocs.get_mut(alloc_id) {
            a.migrating = v;
        }
    }

    pub(crate) fn job_in_flight(&self, job_id: &str) -> u32 {
        self.job_allocs
            .get(job_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocs.get(id))
            .filter(|a| a.migrating)
            .count() as u32
    }

    pub(crate) fn bump(&mut self) -> u64 {
        self.next_index()
    }

    pub(crate) fn emit_node_change(&mut self, node_id: &str, idx: u64, ev: Option<&'static str>) {
        self.node_changed(node_id, idx, ev);
    }

    pub(crate) fn add_node_event(
        &mut self,
        node_id: &str,
        idx: u64,
        subsystem: &str,
        msg: &str,
        details: Option<StrMap>,
    ) {
        self.push_node_event(node_id, idx, subsystem, msg, details);
    }

    pub(crate) fn place_system(&mut self, node_id: &str) {
        self.place_system_jobs(node_id);
    }

    /// A copy of what reads see (nodes, allocations, table indexes), frozen:
    /// the state of a follower that stopped applying the Raft log here.
    pub fn read_snapshot(&self) -> Cluster {
        let mut c = Cluster::new(self.cfg.clone(), self.index);
        c.nodes = self.nodes.clone();
        c.allocs = self.allocs.clone();
        c.allocs_by_node = self.allocs_by_node.clone();
        c.nodes_index = self.nodes_index;
        c.allocs_index = self.allocs_index;
        c.now = self.now;
        c
    }

    /// Moves the whole cluster's Raft index back by `by` (at least to 1), as
    /// a cluster rebuilt from an older snapshot would be: table indexes and
    /// every object's indexes are clamped to the new index, and later writes
    /// continue from it. Blocked queries are woken; they re-check and keep
    /// waiting while the index is not above theirs (`nomad/rpc.go`
    /// `blockingRPC`). Returns the new index.
    pub fn rewind(&mut self, by: u64) -> u64 {
        let new = self.index.saturating_sub(by).max(1);
        self.index = new;
        self.nodes_index = self.nodes_index.min(new);
        self.allocs_index = self.allocs_index.min(new);
        for rec in self.nodes.values_mut() {
            let n = &mut rec.node;
            n.create_index = n.create_index.min(new);
            n.modify_index = n.modify_index.min(new);
            n.last_missed_heartbeat_index = n.last_missed_heartbeat_index.min(new);
            for e in n.events.iter_mut() {
                e.create_index = e.create_index.min(new);
            }
        }
        for a in self.allocs.values_mut() {
            let x = &mut a.alloc;
            x.create_index = x.create_index.min(new);
            x.modify_index = x.modify_index.min(new);
            x.alloc_modify_index = x.alloc_modify_index.min(new);
        }
        self.nodes_tx.send_replace(self.nodes_index);
        self.allocs_tx.send_replace(self.allocs_index);
        for w in self.watches.values() {
            w.node.send_replace(new);
            w.allocs.send_replace(new);
        }
        new
    }

    /// Counts for `/sim/stats`.
    pub fn counts(&self) -> serde_json::Value {
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_elig: BTreeMap<String, u64> = BTreeMap::new();
        let (mut draining, mut dead_vms, mut partitioned) = (0u64, 0u64, 0u64);
        for r in self.nodes.values() {
            *by_status.entry(r.node.status.clone()).or_default() += 1;
            *by_elig
                .entry(r.node.scheduling_eligibility.clone())
                .or_default() += 1;
            if r.node.drain_strategy.is_some() {
                draining += 1;
            }
            if !r.alive {
                dead_vms += 1;
            }
            if !r.connected {
                partitioned += 1;
            }
        }
        let mut allocs_by: BTreeMap<String, u64> = BTreeMap::new();
        for a in self.allocs.values() {
            *allocs_by.entry(a.alloc.client_status.clone()).or_default() += 1;
        }
        serde_json::json!({
            "index": self.index,
            "nodes": {
                "total": self.nodes.len(),
                "by_status": by_status,
                "by_eligibility": by_elig,
                "draining": draining,
                "vm_gone": dead_vms,
                "partitioned": partitioned,
            },
            "allocations": {
                "total": self.allocs.len(),
                "by_client_status": allocs_by,
                "blocked_placements": self.blocked(),
            },
            "violations": self.violations.len(),
            "workloads": self.workloads.iter().map(|w| serde_json::json!({
                "id": w.id, "node_pool": w.node_pool, "rate_per_min": w.rate_per_min,
                "submitted": w.submitted})).collect::<Vec<_>>(),
        })
    }
}

mod vm;
#[cfg(test)]
mod tests {
    use super::*;

    /// Processing in budget-limited slices gives the same result as one
    /// call: a slice that runs out of budget must not jump to the target.
    #[test]
    fn sliced_advance_matches_single_advance() {
        let run = |budget: usize| {
            let mut c = Cluster::new(
                ClusterConfig {
                    seed: Some(1),
                    ..ClusterConfig::default()
                },
                1,
            );
            for _ in 0..10 {
                c.register_node(&NodeSpec::default());
            }
            c.add_workload(
                "default",
                "default",
                600.0,
                5 * NANOS_PER_SEC,
                50 * NANOS_PER_SEC,
            );
            let target = 300 * NANOS_PER_SEC;
            while c.advance_to(target, budget) >= budget {}
            let running = c
                .allocs
                .values()
                .filter(|a| a.alloc.client_status == "running")
                .count();
            (running, c.allocs.len(), c.blocked())
        };
        let whole = run(usize::MAX);
        assert!(whole.0 >= 36, "slots busy: {whole:?}");
        assert_eq!(run(7), whole);
    }
}
