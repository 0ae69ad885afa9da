//! Nodes: `structs.Node` as `GET /v1/node/:id` and the event stream carry
//! it, the list stub, the drain strategy and `LastDrain` metadata, node
//! events, and the static resources and drivers every simulated client
//! reports.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Value, json};

use super::{Shared, StrMap};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DrainStrategy {
    /// ns; < 0 force, 0 no deadline, > 0 deadline.
    pub deadline: i64,
    pub ignore_system_jobs: bool,
    /// RFC 3339; `null` (the zero time as Nomad's HTTP JSON encodes it) when
    /// `Deadline <= 0`.
    pub force_deadline: Option<String>,
    pub started_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrainMetadata {
    #[serde(rename = "StartedAt")]
    pub started_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "Meta")]
    pub meta: Option<StrMap>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeEvent {
    pub message: String,
    pub subsystem: String,
    pub details: Option<StrMap>,
    pub timestamp: String,
    pub create_index: u64,
}

/// Full `structs.Node` as `GET /v1/node/:id` returns it (sanitized:
/// `SecretID` is empty), including the synthetic `Drain` bool that Nomad's
/// JSON encoding extension adds.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CgroupParent")]
    pub cgroup_parent: String,
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    #[serde(rename = "TLSEnabled")]
    pub tls_enabled: bool,
    #[serde(rename = "Attributes")]
    pub attributes: StrMap,
    #[serde(rename = "NodeResources")]
    pub node_resources: Shared,
    #[serde(rename = "ReservedResources")]
    pub reserved_resources: Shared,
    #[serde(rename = "Links")]
    pub links: Option<StrMap>,
    #[serde(rename = "Meta")]
    pub meta: Option<StrMap>,
    #[serde(rename = "NodeClass")]
    pub node_class: String,
    #[serde(rename = "NodePool")]
    pub node_pool: String,
    #[serde(rename = "ComputedClass")]
    pub computed_class: String,
    #[serde(rename = "DrainStrategy")]
    pub drain_strategy: Option<DrainStrategy>,
    #[serde(rename = "SchedulingEligibility")]
    pub scheduling_eligibility: String,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "StatusDescription")]
    pub status_description: String,
    /// Unix seconds.
    #[serde(rename = "StatusUpdatedAt")]
    pub status_updated_at: i64,
    #[serde(rename = "Events")]
    pub events: Vec<NodeEvent>,
    #[serde(rename = "Drivers")]
    pub drivers: Shared,
    #[serde(rename = "CSIControllerPlugins")]
    pub csi_controller_plugins: Option<Value>,
    #[serde(rename = "CSINodePlugins")]
    pub csi_node_plugins: Option<Value>,
    #[serde(rename = "HostVolumes")]
    pub host_volumes: Option<Value>,
    #[serde(rename = "GCVolumesOnNodeGC")]
    pub gc_volumes_on_node_gc: bool,
    #[serde(rename = "HostNetworks")]
    pub host_networks: Option<Value>,
    #[serde(rename = "LastDrain")]
    pub last_drain: Option<DrainMetadata>,
    #[serde(rename = "NodeMaxAllocs")]
    pub node_max_allocs: i64,
    #[serde(rename = "IdentitySigningKeyID")]
    pub identity_signing_key_id: String,
    #[serde(rename = "LastMissedHeartbeatIndex")]
    pub last_missed_heartbeat_index: u64,
    #[serde(rename = "LastAllocUpdateIndex")]
    pub last_alloc_update_index: u64,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
    /// Synthetic: `DrainStrategy != nil` (nomad/structs/extensions.go).
    #[serde(rename = "Drain")]
    pub drain: bool,
}

/// `structs.NodeListStub`, borrowed from a [`Node`].
#[derive(Debug, Serialize)]
pub struct NodeListStub<'a> {
    #[serde(rename = "Address")]
    pub address: &'a str,
    #[serde(rename = "ID")]
    pub id: &'a str,
    #[serde(rename = "Attributes", skip_serializing_if = "Option::is_none")]
    pub attributes: Option<StrMap>,
    #[serde(rename = "Datacenter")]
    pub datacenter: &'a str,
    #[serde(rename = "Name")]
    pub name: &'a str,
    #[serde(rename = "NodeClass")]
    pub node_class: &'a str,
    #[serde(rename = "NodePool")]
    pub node_pool: &'a str,
    #[serde(rename = "Version")]
    pub version: &'a str,
    #[serde(rename = "Drain")]
    pub drain: bool,
    #[serde(rename = "SchedulingEligibility")]
    pub scheduling_eligibility: &'a str,
    #[serde(rename = "Status")]
    pub status: &'a str,
    #[serde(rename = "StatusDescription")]
    pub status_description: &'a str,
    #[serde(rename = "Drivers")]
    pub drivers: &'a Shared,
    #[serde(rename = "HostVolumes")]
    pub host_volumes: &'a Option<Value>,
    #[serde(rename = "NodeResources", skip_serializing_if = "Option::is_none")]
    pub node_resources: Option<&'a Shared>,
    #[serde(rename = "ReservedResources", skip_serializing_if = "Option::is_none")]
    pub reserved_resources: Option<&'a Shared>,
    #[serde(rename = "LastDrain")]
    pub last_drain: &'a Option<DrainMetadata>,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl Node {
    pub fn stub(&self, resources: bool, os: bool) -> NodeListStub<'_> {
        let address = self
            .http_addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.http_addr);
        NodeListStub {
            address,
            id: &self.id,
            attributes: if os {
                let mut m = StrMap::new();
                if let Some(v) = self.attributes.get("os.name") {
                    m.insert("os.name".into(), v.clone());
                }
                Some(m)
            } else {
                None
            },
            datacenter: &self.datacenter,
            name: &self.name,
            node_class: &self.node_class,
            node_pool: &self.node_pool,
            version: self
                .attributes
                .get("nomad.version")
                .map(String::as_str)
                .unwrap_or(""),
            drain: self.drain_strategy.is_some(),
            scheduling_eligibility: &self.scheduling_eligibility,
            status: &self.status,
            status_description: &self.status_description,
            drivers: &self.drivers,
            host_volumes: &self.host_volumes,
            node_resources: resources.then_some(&self.node_resources),
            reserved_resources: resources.then_some(&self.reserved_resources),
            last_drain: &self.last_drain,
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

/// Static parts of a simulated client node.
pub fn default_node_resources() -> Shared {
    Shared(Arc::new(json!({
        "Cpu": {"CpuShares": 8000, "TotalCpuCores": 4, "ReservableCpuCores": null},
        "Memory": {"MemoryMB": 15803},
        "Disk": {"DiskMB": 50000},
        "Networks": [{"CIDR": "", "DNS": null, "Device": "eth0", "DynamicPorts": null, "IP": "",
                      "MBits": 1000, "Mode": "host", "ReservedPorts": null}],
        "NodeNetworks": [{"Addresses": null, "Device": "eth0", "MacAddress": "",
                          "Mode": "host", "Speed": 1000}],
        "Devices": null,
        "MinDynamicPort": 20000,
        "MaxDynamicPort": 32000
    })))
}

pub fn default_reserved_resources() -> Shared {
    Shared(Arc::new(json!({
        "Cpu": {"CpuShares": 0, "ReservedCpuCores": null},
        "Memory": {"MemoryMB": 0},
        "Disk": {"DiskMB": 0},
        "Networks": {"ReservedHostPorts": ""}
    })))
}

pub fn default_drivers(ts: &str) -> Shared {
    Shared(Arc::new(json!({
        "docker": {"Attributes": {"driver.docker": "true", "driver.docker.version": "27.3.1"},
                   "Detected": true, "HealthDescription": "Healthy", "Healthy": true, "UpdateTime": ts},
        "exec": {"Attributes": {"driver.exec": "true"},
                 "Detected": true, "HealthDescription": "Healthy", "Healthy": true, "UpdateTime": ts},
        "raw_exec": {"Attributes": {"driver.raw_exec": "true"},
                 "Detected": true, "HealthDescription": "Healthy", "Healthy": true, "UpdateTime": ts},
        "java": {"Attributes": null,
                 "Detected": false, "HealthDescription": "", "Healthy": false, "UpdateTime": ts}
    })))
}
