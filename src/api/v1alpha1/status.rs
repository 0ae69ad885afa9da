//! What the controller observed and is doing: `NomadClientPool.status`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{DisruptionStatus, RetirePhase, RetireReason};

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
    /// Clients down or disconnected on a VM still in service, or being
    /// replaced for it (see `spec.remediation`).
    #[serde(default)]
    pub unhealthy_nodes: i32,
    /// Live clients whose Meta sets `nomadpool.dev/do-not-retire=true`: no
    /// scale-in (or other voluntary retirement) takes them.
    #[serde(default)]
    pub do_not_retire_nodes: i32,
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
    /// NomadUnreachable, Unauthorized, ProviderError, InvalidSpec, BudgetExhausted;
    /// and kstatus's abnormal-true `Reconciling` (work in flight) and
    /// `Stalled` (no progress until a human changes something).
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
    /// The VM, for a retirement that has no node (reason `Unregistered`:
    /// the node fields are empty).
    #[serde(
        default,
        rename = "instanceID",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
}
