//! `NomadClientPool` v1alpha1: the declarative description of a pool of Nomad
//! clients whose VMs live in one cloud instance group.
//!
//! Every cross-field rule that the API server can check is a CEL rule here, so
//! `kubectl apply` of a bad spec fails with a message saying what to fix; the
//! controller only reports what needs the outside world (Nomad, the cloud).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod disruption;
mod lifecycle_hook;
mod provider;
mod retirement;
pub use disruption::*;
pub use lifecycle_hook::*;
pub use provider::*;
pub use retirement::*;

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

/// Connection to the Nomad HTTP API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tls) || self.address.startsWith('https://')").message("nomad.tls is set but nomad.address is not https://; use an https:// address or remove tls"))]
pub struct NomadConnection {
    /// Address of a Nomad agent, e.g. `https://nomad.service.consul:4646`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/]+/?$')").message("nomad.address must be a URL like https://nomad.example:4646 (scheme, host and port, no path)"))]
    pub address: String,

    /// Nomad region to address; the agent's own region when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// Secret (in the pool's namespace) holding the Nomad ACL token. The key
    /// defaults to `token`. The token needs `node:write` and namespace `read-job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,

    /// TLS settings for an https:// address. Verification is always on unless
    /// `insecureSkipVerify` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NomadTls>,
}

/// A key in a Secret in the pool's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret; each reference documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Secret in the pool's namespace, read with well-known keys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// TLS for the Nomad connection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.insecureSkipVerify && has(self.caSecretRef))").message("nomad.tls.insecureSkipVerify turns verification off, so caSecretRef would be ignored; remove one of them"))]
pub struct NomadTls {
    /// CA bundle (PEM) that signed the Nomad servers' certificates; key
    /// defaults to `ca.crt`. When set, only this CA is trusted, as with
    /// Nomad's own `NOMAD_CACERT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,

    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) presented as the
    /// client certificate, for Nomad agents with `verify_https_client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretRef>,

    /// Name to verify the server certificate against, when it differs from
    /// the address's host (Nomad's default certificates name `server.<region>.nomad`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,

    /// Do not verify the server's certificate. Only for experiments.
    #[serde(default)]
    pub insecure_skip_verify: bool,
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

/// Observed state of the pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NomadClientPoolStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Target client count: `spec.replicas`, or the group's desired capacity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_nodes: Option<i32>,
    /// The instance group's desired capacity as last read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_desired_capacity: Option<i32>,
    /// Nomad clients in the pool that are not down.
    #[serde(default)]
    pub nodes: i32,
    /// Clients ready and eligible for scheduling.
    #[serde(default)]
    pub ready_nodes: i32,
    /// Clients selected, cordoned, draining or drained by this pool.
    #[serde(default)]
    pub draining_nodes: i32,
    /// Clients whose VM termination has been committed.
    #[serde(default)]
    pub terminating_nodes: i32,
    /// Clients retired by this pool since it was created.
    #[serde(default)]
    pub retired_total: i64,
    /// The finished retirements `retiredTotal` already counts (those whose
    /// objects may still exist): bookkeeping that keeps the count exact
    /// across restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counted_retirements: Vec<String>,
    /// Deprecated, always empty: before `NomadClientRetirement` existed the
    /// clients in flight were listed here. A pool that still holds entries
    /// from that version has them turned into retirement objects on its
    /// first reconcile, which then empties the list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring: Vec<RetiringNode>,
    /// Retirements of this pool in flight (started and not finished).
    #[serde(default)]
    pub retirements_in_flight: i32,
    /// Retirements created by hand that wait for the pool's budget.
    #[serde(default)]
    pub retirements_pending: i32,
    /// The oldest retirements in flight (at most five) and what each waits
    /// for; `kubectl get ncr -l nomadpool.dev/pool=NAME` lists them all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub oldest_retirements: Vec<RetirementSummary>,
    /// Clients a `spec.retire` entry named that this pool has retired, kept
    /// while the spec still names them: such an entry is done, not unknown,
    /// and is never applied again (to a later client with the same name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredNode>,
    /// With `disruption.dryRun`: what the controller would do now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<PlannedRetirement>,
    /// With `disruption.budgets`: the budget that applies now, what it
    /// allows and when the next window opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption: Option<DisruptionStatus>,
    /// `Ready`, `Progressing` and `Degraded`, with reasons such as
    /// NomadUnreachable, Unauthorized, ProviderError, InvalidSpec, BudgetExhausted.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// One client on its way out of the pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetiringNode {
    /// Nomad node ID.
    #[serde(rename = "nodeID")]
    pub node_id: String,
    /// Nomad node name.
    pub node_name: String,
    /// Cloud instance ID, once known.
    #[serde(
        default,
        rename = "instanceID",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
    /// Where the client is in the retire lifecycle.
    pub phase: RetirePhase,
    /// When the client entered this phase.
    pub since: Time,
    /// When the client was selected for retirement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_at: Option<Time>,
    /// Why the client is being retired.
    pub reason: RetireReason,
    /// Whether terminating shrinks the group (scale-in) or lets it launch a
    /// replacement.
    pub decrement: bool,
    /// Whether this pool made the client ineligible, so cancelling knows
    /// whether to make it eligible again.
    #[serde(default)]
    pub cordoned_by_pool: bool,
    /// When the drain started, as Nomad reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_started_at: Option<Time>,
    /// When Nomad will force the remaining allocations to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<Time>,
    /// Pending or running allocations still on the client, as last counted:
    /// live for drains the next step waits on and the 32 longest-running
    /// ones (a watch each); for other drains, from when the client was
    /// selected or last watched.
    #[serde(default)]
    pub allocations_left: i32,
    /// Job IDs of (up to five of) the allocations still blocking the retirement.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocking_jobs: Vec<String>,
    /// What the controller is waiting for, or what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One retirement in flight, as the pool's summary shows it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetirementSummary {
    /// The `NomadClientRetirement`'s name.
    pub name: String,
    /// Nomad node name.
    pub node_name: String,
    pub phase: RetirePhase,
    /// When it entered the phase.
    pub since: Time,
    /// Pending or running allocations left.
    #[serde(default)]
    pub allocations_left: i32,
    /// What it waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A client retired because `spec.retire` named it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetiredNode {
    /// Nomad node ID.
    #[serde(rename = "nodeID")]
    pub node_id: String,
    /// Nomad node name.
    pub node_name: String,
    /// Cloud instance ID.
    #[serde(
        default,
        rename = "instanceID",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
    /// When the retirement finished.
    pub retired_at: Time,
}

/// A retirement the controller would start, shown in dry-run mode.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedRetirement {
    /// Nomad node ID.
    #[serde(rename = "nodeID")]
    pub node_id: String,
    /// Nomad node name.
    pub node_name: String,
    /// Why it would be retired.
    pub reason: RetireReason,
    /// Pending or running allocations on it now.
    pub allocations: i32,
}

/// Phases of a retirement, in order. Each is recorded before its action runs.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum RetirePhase {
    /// Chosen; about to be made ineligible.
    Selected,
    /// Ineligible for new work; about to be drained.
    Cordoned,
    /// Drain sent; waiting for Nomad and for every allocation to stop.
    Draining,
    /// Drain complete and nothing pending or running; about to terminate.
    Drained,
    /// VM termination committed; waiting for the VM to go and the Nomad node to turn down.
    Terminating,
    /// Being returned to service: drain cancelled, made eligible again.
    Cancelling,
}

/// Why a client is retired.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetireReason {
    /// `spec.replicas` is below the group's size.
    ScaleIn,
    /// Named in `spec.retire`, group shrinks.
    Requested,
    /// Named in `spec.retire` with `replace: true`.
    Replace,
    /// The group is terminating the VM itself and its lifecycle hook holds
    /// it in `Terminating:Wait`: never refused by the budget.
    LifecycleHook,
}

// The names below are the serde names (what `status` records), spelled out:
// the drain Meta, events and metric labels use them too, so they must not
// depend on `Debug` output.
impl RetirePhase {
    /// The phase's name, as `status.retiring[].phase` records it.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetirePhase::Selected => "Selected",
            RetirePhase::Cordoned => "Cordoned",
            RetirePhase::Draining => "Draining",
            RetirePhase::Drained => "Drained",
            RetirePhase::Terminating => "Terminating",
            RetirePhase::Cancelling => "Cancelling",
        }
    }
}

impl std::fmt::Display for RetirePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RetireReason {
    /// The reason's name, as `status.retiring[].reason` and the drain Meta
    /// record it.
    pub const fn as_str(self) -> &'static str {
        match self {
            RetireReason::ScaleIn => "ScaleIn",
            RetireReason::Requested => "Requested",
            RetireReason::Replace => "Replace",
            RetireReason::LifecycleHook => "LifecycleHook",
        }
    }
}

impl RetireReason {
    /// Whether `disruption.budgets` (their windows and rates) govern the
    /// reason: every retirement the pool chooses to start. A retirement the
    /// group's lifecycle hook asks for is not the pool's choice: the group
    /// terminates the VM either way.
    pub const fn is_voluntary(self) -> bool {
        match self {
            RetireReason::ScaleIn | RetireReason::Requested | RetireReason::Replace => true,
            RetireReason::LifecycleHook => false,
        }
    }
}

impl std::fmt::Display for RetireReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `as_str` names each phase and reason exactly as serde writes it into
    /// status, so every place that shows one says the same word.
    #[test]
    fn names_are_the_serde_names() {
        use RetirePhase as P;
        for p in [
            P::Selected,
            P::Cordoned,
            P::Draining,
            P::Drained,
            P::Terminating,
            P::Cancelling,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str(), "{p}");
            assert_eq!(p.to_string(), format!("{p:?}"));
        }
        use RetireReason as R;
        for r in [R::ScaleIn, R::Requested, R::Replace, R::LifecycleHook] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str(), "{r}");
            assert_eq!(r.to_string(), format!("{r:?}"));
        }
    }
}
