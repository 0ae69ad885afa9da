//! Nodes as the servers see them: registration (with the attributes a real
//! AWS or GCE client fingerprints), the allocations on a node, purge
//! (`Node.Deregister`), and node garbage collection. What happens when a
//! client stops or resumes heartbeating is `heartbeats`.

use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use rand::Rng;
use tokio::sync::watch;

use crate::clock::{NANOS_PER_SEC, rfc3339};
use crate::wire::{self, Node, NodeEvent, StrMap};

use super::*;

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

impl Cluster {
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
        let mut attrs = self.base_attributes(&name, &ip);
        let mut links = StrMap::new();
        let cloud = spec.cloud.clone().unwrap_or_else(|| "aws".into());
        let instance_id = match cloud.as_str() {
            "aws" => Some(self.aws_fingerprint(spec, n, &ip, &mut attrs, &mut links)),
            "gce" => Some(self.gce_fingerprint(spec, n, &name, &mut attrs, &mut links)),
            _ => spec.instance_id.clone(),
        };
        if let Some(extra) = &spec.attributes {
            for (k, v) in extra {
                attrs.insert(k.clone(), v.clone());
            }
        }
        let meta = spec.meta.clone().unwrap_or_else(default_meta);
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

    /// What every simulated client fingerprints, whatever its cloud.
    fn base_attributes(&self, name: &str, ip: &str) -> StrMap {
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
        attrs.insert("unique.hostname".into(), name.to_string());
        attrs.insert("unique.network.ip-address".into(), ip.to_string());
        attrs.insert("unique.advertise.address".into(), format!("{ip}:4646"));
        attrs
    }

    /// The attributes and link an AWS client fingerprints (EC2 metadata).
    /// Its instance ID.
    fn aws_fingerprint(
        &mut self,
        spec: &NodeSpec,
        n: u64,
        ip: &str,
        attrs: &mut StrMap,
        links: &mut StrMap,
    ) -> String {
        let iid = spec.instance_id.clone().unwrap_or_else(|| {
            let b: [u8; 9] = self.rng.random();
            let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("i-{}", &h[..17])
        });
        let az = spec
            .availability_zone
            .clone()
            .unwrap_or_else(|| ["us-east-1a", "us-east-1b", "us-east-1c"][(n % 3) as usize].into());
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
        attrs.insert("unique.platform.aws.local-ipv4".into(), ip.to_string());
        links.insert("aws.ec2".into(), format!("{az}.{iid}"));
        iid
    }

    /// The attributes and link a GCE client fingerprints (the metadata
    /// server). Its instance ID.
    fn gce_fingerprint(
        &mut self,
        spec: &NodeSpec,
        n: u64,
        name: &str,
        attrs: &mut StrMap,
        links: &mut StrMap,
    ) -> String {
        let gid = spec
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("{}", self.rng.random_range(10u64.pow(18)..10u64.pow(19))));
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
        gid
    }

    pub(super) fn insert_node(&mut self, rec: NodeRec) {
        let id = rec.node.id.clone();
        self.watches.entry(id.clone()).or_insert_with(|| NodeWatch {
            node: watch::Sender::new(0),
            allocs: watch::Sender::new(0),
        });
        if let Some(iid) = &rec.instance_id {
            self.nodes_by_vm
                .entry(iid.clone())
                .or_default()
                .insert(id.clone());
        }
        for key in INDEXED_ATTRIBUTES {
            if let Some(v) = rec.node.attributes.get(key) {
                let nodes = self.nodes_by_attribute.entry((key, v.clone()));
                nodes.or_default().insert(id.clone());
            }
        }
        self.nodes.insert(id, rec);
    }

    /// The nodes whose attribute `key` is one of `values`, in ID order;
    /// `None` when `key` is not indexed ([`INDEXED_ATTRIBUTES`]).
    pub fn nodes_with_attribute(
        &self,
        key: &str,
        values: &HashSet<String>,
    ) -> Option<BTreeSet<&str>> {
        let key = *INDEXED_ATTRIBUTES.iter().find(|k| **k == key)?;
        let mut ids = BTreeSet::new();
        for v in values {
            if let Some(nodes) = self.nodes_by_attribute.get(&(key, v.clone())) {
                ids.extend(nodes.iter().map(String::as_str));
            }
        }
        Some(ids)
    }

    pub fn node_allocs(&self, node_id: &str) -> impl Iterator<Item = &AllocRec> {
        self.allocs_by_node
            .get(node_id)
            .into_iter()
            .flatten()
            .filter_map(|id| self.allocs.get(id))
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
        if let Some(iid) = &rec.instance_id
            && let Some(ids) = self.nodes_by_vm.get_mut(iid)
        {
            ids.remove(node_id);
            if ids.is_empty() {
                self.nodes_by_vm.remove(iid);
            }
        }
        for key in INDEXED_ATTRIBUTES {
            if let Some(v) = rec.node.attributes.get(key) {
                let entry = (key, v.clone());
                if let Some(ids) = self.nodes_by_attribute.get_mut(&entry) {
                    ids.remove(node_id);
                    if ids.is_empty() {
                        self.nodes_by_attribute.remove(&entry);
                    }
                }
            }
        }
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

/// The `meta` of a client that sets none: what Nomad's Consul Connect
/// defaults put there.
fn default_meta() -> StrMap {
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
}
