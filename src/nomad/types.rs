//! Nomad wire types, limited to the fields the operator reads or writes.
//!
//! Unknown fields are ignored and string enums keep values they do not know,
//! so a newer Nomad never breaks decoding. Go encodes unset maps and slices
//! as `null` and unset times as `0001-01-01T00:00:00Z`; both decode to empty
//! values here so callers need not care.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines a string enum that round-trips values it does not know as
/// `Other`, rather than failing or collapsing them into one catch-all:
/// `ClientStatus` has a real `unknown` value that must stay distinct.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $wire:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this client does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $wire,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                match s.as_str() {
                    $($wire => Self::$variant,)+
                    _ => Self::Other(s),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self::from)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

wire_enum!(
    /// `Node.Status`. Only `down` is terminal; a down node can come back.
    NodeStatus {
        Initializing => "initializing",
        Ready => "ready",
        Down => "down",
        Disconnected => "disconnected",
    }
);

wire_enum!(
    SchedulingEligibility {
        Eligible => "eligible",
        Ineligible => "ineligible",
    }
);

wire_enum!(
    /// `LastDrain.Status`. Nomad has no `failed` drain status.
    DrainStatus {
        Draining => "draining",
        Complete => "complete",
        Canceled => "canceled",
    }
);

wire_enum!(
    /// `Allocation.ClientStatus`. `Unknown` is Nomad's own value for
    /// allocations on a disconnected node and is not terminal.
    ClientStatus {
        Pending => "pending",
        Running => "running",
        Complete => "complete",
        Failed => "failed",
        Lost => "lost",
        Unknown => "unknown",
    }
);

wire_enum!(
    DesiredStatus {
        Run => "run",
        Stop => "stop",
        Evict => "evict",
    }
);

wire_enum!(
    JobType {
        Service => "service",
        Batch => "batch",
        System => "system",
        SysBatch => "sysbatch",
    }
);

/// Node attribute holding the EC2 instance ID (`client/fingerprint/env_aws.go`).
pub const ATTR_AWS_INSTANCE_ID: &str = "unique.platform.aws.instance-id";
pub const ATTR_GCE_ID: &str = "unique.platform.gce.id";
pub const ATTR_GCE_HOSTNAME: &str = "unique.platform.gce.hostname";
pub const ATTR_GCE_ZONE: &str = "platform.gce.zone";

/// `GET /v1/nodes` entry. The stub has no `DrainStrategy`, `Meta` or full
/// `Attributes`: read the node for those.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeListStub {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub datacenter: String,
    /// Absent before Nomad 1.6.
    #[serde(default)]
    pub node_pool: String,
    #[serde(default)]
    pub node_class: String,
    #[serde(default)]
    pub address: String,
    /// Derived by Nomad as `DrainStrategy != null`.
    #[serde(default)]
    pub drain: bool,
    pub scheduling_eligibility: SchedulingEligibility,
    pub status: NodeStatus,
    #[serde(default)]
    pub status_description: String,
    #[serde(default)]
    pub last_drain: Option<DrainMetadata>,
    pub create_index: u64,
    pub modify_index: u64,
    #[serde(default)]
    pub version: String,
}

impl Node {
    /// The list-stub view of a full node (as `GET /v1/nodes` would show it).
    pub fn to_stub(&self) -> NodeListStub {
        NodeListStub {
            id: self.id.clone(),
            name: self.name.clone(),
            datacenter: self.datacenter.clone(),
            node_pool: self.node_pool.clone(),
            node_class: self.node_class.clone(),
            address: self
                .http_addr
                .rsplit_once(':')
                .map_or(self.http_addr.clone(), |(host, _)| host.to_string()),
            drain: self.drain || self.drain_strategy.is_some(),
            scheduling_eligibility: self.scheduling_eligibility.clone(),
            status: self.status.clone(),
            status_description: self.status_description.clone(),
            last_drain: self.last_drain.clone(),
            create_index: self.create_index,
            modify_index: self.modify_index,
            version: self
                .attributes
                .get("nomad.version")
                .cloned()
                .unwrap_or_default(),
        }
    }
}

/// `GET /v1/node/:id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub datacenter: String,
    #[serde(default)]
    pub node_pool: String,
    #[serde(default)]
    pub node_class: String,
    #[serde(rename = "HTTPAddr", default)]
    pub http_addr: String,
    /// Synthetic field Nomad adds on encode, equal to `drain_strategy.is_some()`.
    #[serde(default)]
    pub drain: bool,
    pub scheduling_eligibility: SchedulingEligibility,
    pub status: NodeStatus,
    #[serde(default)]
    pub status_description: String,
    /// Unix seconds, unlike the RFC 3339 times elsewhere; see
    /// [`Node::status_updated_at`].
    #[serde(default)]
    pub status_updated_at: i64,
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub meta: BTreeMap<String, String>,
    #[serde(default)]
    pub drain_strategy: Option<DrainStrategy>,
    #[serde(default)]
    pub last_drain: Option<DrainMetadata>,
    /// The last 10 node events, oldest first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub events: Vec<NodeEvent>,
    pub create_index: u64,
    pub modify_index: u64,
}

/// A running drain, flat on the wire (Go embeds `DrainSpec`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DrainStrategy {
    /// Negative: forced; zero: no deadline; positive: allocations left at
    /// `force_deadline` are stopped.
    #[serde(with = "duration_ns")]
    pub deadline: SignedDuration,
    #[serde(default)]
    pub ignore_system_jobs: bool,
    /// `None` unless `deadline` is positive.
    #[serde(default, with = "go_time")]
    pub force_deadline: Option<Timestamp>,
    #[serde(default, with = "go_time")]
    pub started_at: Option<Timestamp>,
}

/// `LastDrain`: what the most recent drain did, kept after it ends.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DrainMetadata {
    #[serde(default, with = "go_time")]
    pub started_at: Option<Timestamp>,
    #[serde(default, with = "go_time")]
    pub updated_at: Option<Timestamp>,
    pub status: DrainStatus,
    /// `token:<accessor>` since Nomad 1.8, a bare accessor UUID before.
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub meta: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeEvent {
    pub message: String,
    #[serde(default)]
    pub subsystem: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub details: BTreeMap<String, String>,
    #[serde(default, with = "go_time")]
    pub timestamp: Option<Timestamp>,
    #[serde(default)]
    pub create_index: u64,
}

/// GCE coordinates of a node, enough to address its VM as
/// `zones/<zone>/instances/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GceInstance {
    pub zone: String,
    pub name: String,
    /// Numeric instance ID, when fingerprinted.
    pub id: Option<String>,
}

impl GceInstance {
    pub fn path(&self) -> String {
        format!("zones/{}/instances/{}", self.zone, self.name)
    }
}

impl Node {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    pub fn aws_instance_id(&self) -> Option<&str> {
        self.attribute(ATTR_AWS_INSTANCE_ID)
            .filter(|s| !s.is_empty())
    }

    /// The instance name is the first label of the fingerprinted hostname,
    /// as nomad-autoscaler's GCE plugin derives it.
    pub fn gce_instance(&self) -> Option<GceInstance> {
        let zone = self.attribute(ATTR_GCE_ZONE).filter(|s| !s.is_empty())?;
        let host = self.attribute(ATTR_GCE_HOSTNAME)?;
        let name = host.split('.').next().filter(|s| !s.is_empty())?;
        Some(GceInstance {
            zone: zone.to_owned(),
            name: name.to_owned(),
            id: self.attribute(ATTR_GCE_ID).map(str::to_owned),
        })
    }

    /// The node's Nomad version; the full node has no `Version` field.
    pub fn version(&self) -> Option<&str> {
        self.attribute("nomad.version")
    }

    pub fn is_draining(&self) -> bool {
        self.drain_strategy.is_some()
    }

    pub fn status_updated_at(&self) -> Option<Timestamp> {
        (self.status_updated_at > 0)
            .then(|| Timestamp::from_second(self.status_updated_at).ok())
            .flatten()
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobSummary {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub r#type: Option<JobType>,
}

/// Each flag is a Go `*bool`, so `None` means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DesiredTransition {
    #[serde(default)]
    pub migrate: Option<bool>,
    #[serde(default)]
    pub migrate_disable_placement: Option<bool>,
}

/// Full allocation, as `GET /v1/node/:id/allocations` returns it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(default)]
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// Null in event-stream payloads.
    #[serde(default)]
    pub job: Option<JobSummary>,
    #[serde(default)]
    pub task_group: String,
    pub client_status: ClientStatus,
    pub desired_status: DesiredStatus,
    #[serde(default)]
    pub desired_description: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub desired_transition: DesiredTransition,
    pub create_index: u64,
    pub modify_index: u64,
    /// Unix nanoseconds.
    #[serde(default)]
    pub modify_time: i64,
}

/// `GET /v1/allocations` entry.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AllocationListStub {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    #[serde(default)]
    pub job_type: Option<JobType>,
    pub client_status: ClientStatus,
    pub desired_status: DesiredStatus,
    #[serde(default)]
    pub namespace: String,
    pub create_index: u64,
    pub modify_index: u64,
}

impl ClientStatus {
    /// Whether the allocation still occupies the node, the test Nomad's own
    /// drain monitor uses. `Unknown` is neither running nor terminal.
    pub fn is_pending_or_running(&self) -> bool {
        matches!(self, Self::Pending | Self::Running)
    }

    /// Whether the allocation may still run on its VM: pending, running, or
    /// `unknown` (its node is disconnected, so nobody can say it stopped).
    /// This, not [`Self::is_pending_or_running`], is what a termination must
    /// wait for; `lost` is terminal (Nomad replaced it and the node is down).
    pub fn is_live(&self) -> bool {
        matches!(self, Self::Pending | Self::Running | Self::Unknown)
    }

    /// `complete`, `failed` or `lost`: what a drain waits for.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Complete | Self::Failed | Self::Lost)
    }
}

impl Allocation {
    pub fn is_pending_or_running(&self) -> bool {
        self.client_status.is_pending_or_running()
    }

    /// See [`ClientStatus::is_live`].
    pub fn is_live(&self) -> bool {
        self.client_status.is_live()
    }

    pub fn job_type(&self) -> Option<&JobType> {
        self.job.as_ref()?.r#type.as_ref()
    }

    pub fn modify_time(&self) -> Option<Timestamp> {
        Timestamp::from_nanosecond(i128::from(self.modify_time)).ok()
    }
}

impl AllocationListStub {
    pub fn is_pending_or_running(&self) -> bool {
        self.client_status.is_pending_or_running()
    }

    pub fn job_type(&self) -> Option<&JobType> {
        self.job_type.as_ref()
    }
}

/// Response of the drain, eligibility and purge endpoints. Nomad sends
/// `NodeModifyIndex: 0` for eligibility changes and all zeros for no-ops.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeUpdateResponse {
    #[serde(default)]
    pub index: u64,
    #[serde(rename = "EvalIDs", default, deserialize_with = "null_as_default")]
    pub eval_ids: Vec<String>,
    #[serde(default)]
    pub eval_create_index: u64,
    #[serde(default)]
    pub node_modify_index: u64,
}

/// Drain parameters. Build with [`DrainSpec::with_deadline`],
/// [`DrainSpec::no_deadline`] or [`DrainSpec::force`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DrainSpec {
    /// Sent as nanoseconds. Negative forces the drain (all allocations stop
    /// at once), zero means no deadline.
    #[serde(with = "duration_ns")]
    pub deadline: SignedDuration,
    pub ignore_system_jobs: bool,
}

impl DrainSpec {
    /// Allocations still on the node after `deadline` are stopped.
    /// Saturates at `i64::MAX` nanoseconds (~292 years).
    pub fn with_deadline(deadline: std::time::Duration, ignore_system_jobs: bool) -> Self {
        let deadline = SignedDuration::try_from(deadline).unwrap_or(SignedDuration::MAX);
        // A zero duration would silently mean "no deadline".
        let deadline = deadline.max(SignedDuration::from_nanos(1));
        Self {
            deadline,
            ignore_system_jobs,
        }
    }

    /// Waits for allocations forever; a batch job that never exits blocks it.
    pub fn no_deadline(ignore_system_jobs: bool) -> Self {
        Self {
            deadline: SignedDuration::ZERO,
            ignore_system_jobs,
        }
    }

    /// Stops every allocation now, as `nomad node drain -force` does.
    pub fn force(ignore_system_jobs: bool) -> Self {
        Self {
            deadline: SignedDuration::from_secs(-1),
            ignore_system_jobs,
        }
    }
}

/// Body of `POST /v1/node/:id/drain`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DrainRequest {
    /// `None` cancels a running drain.
    pub drain_spec: Option<DrainSpec>,
    /// Only used when cancelling: make the node eligible again.
    pub mark_eligible: bool,
    /// Stored in `LastDrain.Meta`; an empty map keeps the previous meta.
    pub meta: BTreeMap<String, String>,
}

/// Go's `encoding/json` treats `null` as "leave the zero value"; serde does
/// not, so nullable maps, slices and structs go through this.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `time.Duration` is integer nanoseconds on the wire.
mod duration_ns {
    use jiff::SignedDuration;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &SignedDuration, s: S) -> Result<S::Ok, S::Error> {
        let ns = i64::try_from(d.as_nanos()).unwrap_or(if d.is_negative() {
            i64::MIN
        } else {
            i64::MAX
        });
        s.serialize_i64(ns)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SignedDuration, D::Error> {
        i64::deserialize(d).map(SignedDuration::from_nanos)
    }
}

/// RFC 3339 `time.Time`, with `null` and Go's zero time both meaning unset.
mod go_time {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer};

    const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800; // 0001-01-01T00:00:00Z

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        Ok(Option::<Timestamp>::deserialize(d)?.filter(|t| t.as_second() > GO_ZERO_TIME_SECONDS))
    }
}

#[cfg(test)]
mod tests;
