//! `NomadClientPool` v1alpha1: the declarative description of a pool of Nomad
//! clients whose VMs live in one cloud instance group.
//!
//! Every cross-field rule that the API server can check is a CEL rule here, so
//! `kubectl apply` of a bad spec fails with a message saying what to fix; the
//! controller only reports what needs the outside world (Nomad, the cloud).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod connection;
mod disruption;
mod lifecycle_hook;
mod provider;
mod reason;
mod remediation;
mod retirement;
mod status;
pub use connection::*;
pub use disruption::*;
pub use lifecycle_hook::*;
pub use provider::*;
pub use reason::*;
pub use remediation::*;
pub use retirement::*;
pub use status::*;

/// A Go duration string as Nomad and Kubernetes use them (`90s`, `30m`, `1h30m`).
const GO_DURATION_RULE: &str = r"self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) > duration('0s')";

/// A pool of Nomad clients whose VMs belong to one cloud instance group.
///
/// The controller keeps the group at `replicas` and retires clients safely:
/// cordon, drain, wait until no allocation is pending or running, terminate
/// the VM, purge the Nomad node. Deleting the pool never terminates VMs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nomadpool.dev",
    version = "v1alpha1",
    kind = "NomadClientPool",
    plural = "nomadclientpools",
    shortname = "ncp",
    namespaced,
    status = "NomadClientPoolStatus",
    derive = "PartialEq",
    doc = "A pool of Nomad clients whose VMs belong to one cloud instance group, retired safely (cordon, drain, wait, terminate).",
    printcolumn(name = "Desired", type_ = "integer", json_path = ".status.desiredNodes", description = "Target number of clients"),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyNodes", description = "Clients ready and eligible"),
    printcolumn(name = "Draining", type_ = "integer", json_path = ".status.drainingNodes", description = "Clients cordoned or draining"),
    printcolumn(name = "Terminating", type_ = "integer", json_path = ".status.terminatingNodes", description = "Clients whose VM is being terminated"),
    printcolumn(name = "Status", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason", description = "Why the pool is or is not Ready"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // `-o wide`: what the disruption budgets allow now and when that changes
    // (a time as text: a `date` column shows a future time as "<invalid>").
    printcolumn(name = "Allowed", type_ = "integer", json_path = ".status.disruption.allowed", description = "Clients the disruption budgets allow out of service now", priority = "1"),
    printcolumn(name = "Starts-Left", type_ = "integer", json_path = ".status.disruption.startsAllowed", description = "Voluntary retirements the budgets' rates still allow to start now", priority = "1"),
    printcolumn(name = "Next-Window", type_ = "string", json_path = ".status.disruption.nextWindowOpens", description = "When the next window of a scheduled disruption budget opens", priority = "1"),
    validation = Rule::new("!has(self.spec.replicas) || !has(self.spec.retire) || self.spec.retire.all(r, r.replace)").message("retire[].replace: false needs spec.replicas unset: with replicas set the pool grows back to replicas; lower replicas instead"),
)]
#[serde(rename_all = "camelCase")]
pub struct NomadClientPoolSpec {
    /// How to reach the Nomad HTTP API.
    pub nomad: NomadConnection,

    /// Which Nomad clients belong to the pool. Every field that is set must match.
    pub selector: PoolSelector,

    /// The cloud instance group that holds the clients' VMs.
    pub provider: ProviderSpec,

    /// Desired number of clients. Lowering it retires clients; raising it first
    /// cancels retirements in flight (newest first), then grows the group.
    /// Unset: the group's size is managed elsewhere and only `retire` acts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,

    /// Clients to retire explicitly, by node name, node ID or instance ID.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 200))]
    #[x_kube(validation = Rule::new("self.all(a, self.exists_one(b, a == b))").message("retire lists the same client twice"))]
    pub retire: Vec<RetireTarget>,

    /// How each client is drained.
    #[serde(default)]
    pub drain: DrainPolicy,

    /// How much of the pool may be disrupted at once, and which clients go first.
    #[serde(default)]
    pub disruption: DisruptionPolicy,

    /// Replace clients whose VM is older than this (a Go duration such as
    /// `720h`), oldest first, within `disruption`'s budgets: each is
    /// cordoned, drained and its VM terminated without lowering the
    /// group's size, so the group launches a new one. Unset: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("maxNodeAge must be a positive Go duration such as 720h or 168h30m"))]
    pub max_node_age: Option<String>,

    /// Replace clients whose VM was launched from another launch template
    /// version, launch configuration or instance template than the group
    /// launches from now (`$Latest`/`$Default` resolved), within
    /// `disruption`'s budgets, as `maxNodeAge` does. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_drifted: bool,

    /// Replacing clients that stay down while their VM runs, and purging
    /// nodes whose VM is gone. Unset: neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remediation: Option<RemediationPolicy>,

    /// How many finished `NomadClientRetirement`s (retired or cancelled) are
    /// kept for history; the oldest beyond it are deleted. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub retirement_history_limit: Option<i32>,
}

impl NomadClientPoolSpec {
    /// `retirementHistoryLimit`, defaulted.
    pub fn history_limit(&self) -> usize {
        self.retirement_history_limit.unwrap_or(20).max(0) as usize
    }
}

/// Which Nomad clients form the pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.nodePool) || has(self.nodeClass) || size(self.datacenters) > 0 || size(self.meta) > 0").message("selector must set at least one of nodePool, nodeClass, datacenters or meta: an empty selector would take every Nomad client in the cluster"))]
pub struct PoolSelector {
    /// Nomad node pool (`NodePool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_pool: Option<String>,
    /// Nomad node class (`NodeClass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_class: Option<String>,
    /// Datacenters; a client in any of them matches.
    #[serde(default)]
    pub datacenters: Vec<String>,
    /// Client `meta` entries that must all match exactly.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

/// One client to retire explicitly.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.nodeName), has(self.nodeID), has(self.instanceID)].filter(x, x).size() == 1").message("each retire entry must name exactly one of nodeName, nodeID or instanceID"))]
pub struct RetireTarget {
    /// Nomad node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Nomad node ID (full UUID).
    #[serde(default, rename = "nodeID", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')").message("retire[].nodeID must be a full Nomad node UUID"))]
    pub node_id: Option<String>,
    /// Cloud instance ID: AWS `i-0123456789abcdef0`, or a GCE VM id (the
    /// Nomad attribute `unique.platform.gce.id`).
    #[serde(
        default,
        rename = "instanceID",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
    /// Replace the VM (the group launches a new one) instead of shrinking the
    /// group by one.
    #[serde(default = "default_true")]
    pub replace: bool,
}

fn default_true() -> bool {
    true
}

/// How each client is drained.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.forceTerminateAfter) || has(self.deadline)").message("drain.forceTerminateAfter counts from the drain deadline; set drain.deadline too"))]
pub struct DrainPolicy {
    /// Drain deadline (Go duration such as `30m`). When it passes, Nomad stops
    /// what is still running. Unset: wait for every job to finish, however long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("drain.deadline must be a positive Go duration such as 45m or 2h"))]
    pub deadline: Option<String>,

    /// Leave system jobs running during the drain (they stop with the VM).
    #[serde(default)]
    pub ignore_system_jobs: bool,

    /// Terminate the VM even though allocations are still pending or running
    /// this long after the drain deadline. Unset (the default): never
    /// terminate a VM that still runs anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("drain.forceTerminateAfter must be a positive Go duration such as 5m"))]
    pub force_terminate_after: Option<String>,
}

/// How much of the pool may be disrupted at once, and which clients go first.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionPolicy {
    /// Most clients cordoned, draining or terminating at once: a count, or a
    /// percentage of the pool (rounded down, at least 1). Default `10%`.
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("type(self) == int ? self >= 1 : self.matches('^([1-9][0-9]?|100)%$')").message("disruption.maxUnavailable must be a count of at least 1 or a percentage from 1% to 100%"))]
    pub max_unavailable: IntOrString,

    /// Which clients a scale-in retires first.
    #[serde(default)]
    pub selection_policy: SelectionPolicy,

    /// Start no new retirement; those in flight continue.
    #[serde(default)]
    pub paused: bool,

    /// Compute and show the plan in status, touch nothing.
    #[serde(default)]
    pub dry_run: bool,

    /// Limits on voluntary retirements (scale-in, `retire`, hand-made
    /// retirements) beyond `maxUnavailable`: always, or in the windows of a
    /// cron schedule, and at most N started per period. The most
    /// restrictive budget that applies counts. Retirements the group's
    /// lifecycle hook asks for are never refused. Unset: only
    /// `maxUnavailable` applies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub budgets: Vec<DisruptionBudget>,
}

impl Default for DisruptionPolicy {
    fn default() -> Self {
        Self {
            max_unavailable: default_max_unavailable(),
            selection_policy: SelectionPolicy::default(),
            paused: false,
            dry_run: false,
            budgets: Vec::new(),
        }
    }
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::String("10%".into())
}

/// Order in which a scale-in picks clients.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SelectionPolicy {
    /// Fewest pending or running allocations first, then oldest.
    #[default]
    LeastBusy,
    /// Only clients with no pending or running allocation; waits for them.
    Empty,
    /// Oldest clients first.
    Oldest,
    /// Newest clients first.
    Newest,
}
