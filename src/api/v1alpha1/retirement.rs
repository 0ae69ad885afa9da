//! `NomadClientRetirement` v1alpha1: one client on its way out of a pool.
//!
//! The pool decides who goes (scale-in, `spec.retire`, budget, pauses) and
//! records each decision by creating one of these before it touches the
//! client; the retirement's own status then carries the client through its
//! phases. An admin can list, watch and describe each retirement, create one
//! by hand (the pool adopts it and starts it when the budget allows) and
//! delete one to stop it (its finalizer gives the client back first).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DrainPolicy, GO_DURATION_RULE, RetirePhase, RetireReason};

/// One Nomad client being retired from a `NomadClientPool`.
// Each printer column repeats `type_ = "string"`: not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "nomadpool.dev",
    version = "v1alpha1",
    kind = "NomadClientRetirement",
    plural = "nomadclientretirements",
    shortname = "ncr",
    namespaced,
    status = "NomadClientRetirementStatus",
    derive = "PartialEq",
    doc = "One Nomad client being retired from a NomadClientPool: cordoned, drained, its VM terminated. Delete it before Terminating to give the client back.",
    printcolumn(
        name = "Pool",
        type_ = "string",
        json_path = ".spec.pool",
        description = "The pool the client leaves"
    ),
    printcolumn(
        name = "Node",
        type_ = "string",
        json_path = ".status.nodeName",
        description = "Nomad node name"
    ),
    printcolumn(
        name = "Instance",
        type_ = "string",
        json_path = ".status.instanceID",
        description = "Cloud instance ID"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".spec.reason",
        description = "Why the client is retired"
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the retirement is"
    ),
    printcolumn(
        name = "Allocs",
        type_ = "integer",
        json_path = ".status.allocationsLeft",
        description = "Pending or running allocations left"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("a retirement's spec is immutable: delete it (which gives the client back) and create another"))]
pub struct NomadClientRetirementSpec {
    /// Name of the `NomadClientPool` (same namespace) the client belongs to.
    #[schemars(length(min = 1, max = 253))]
    pub pool: String,

    /// The client to retire.
    pub target: RetirementTarget,

    /// Why the client is retired. A retirement created by hand defaults to
    /// `Replace`.
    #[serde(default = "default_reason")]
    pub reason: RetireReason,

    /// What the group does when the VM goes: `Shrink` lowers its desired
    /// capacity by one, `Replace` lets it launch a new VM. Unset: `Shrink`
    /// for the reasons `ScaleIn` and `Requested`, `Replace` for any other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<CapacityChange>,

    /// This client's drain, where it differs from the pool's `drain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainOverrides>,
}

/// A retirement's own drain settings; each unset field is the pool's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DrainOverrides {
    /// Drain deadline (Go duration such as `30m`) for this client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("drain.deadline must be a positive Go duration such as 45m or 2h"))]
    pub deadline: Option<String>,
    /// Terminate this client's VM this long after its drain deadline even
    /// with allocations still live (counts from a deadline: the pool's, or
    /// the one above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new(GO_DURATION_RULE).message("drain.forceTerminateAfter must be a positive Go duration such as 5m"))]
    pub force_terminate_after: Option<String>,
}

impl DrainOverrides {
    /// The pool's drain with these overrides applied.
    pub fn over(&self, pool: &DrainPolicy) -> DrainPolicy {
        DrainPolicy {
            deadline: self.deadline.clone().or_else(|| pool.deadline.clone()),
            force_terminate_after: (self.force_terminate_after.clone())
                .or_else(|| pool.force_terminate_after.clone()),
            ignore_system_jobs: pool.ignore_system_jobs,
        }
    }
}

fn default_reason() -> RetireReason {
    RetireReason::Replace
}

impl NomadClientRetirementSpec {
    /// Whether terminating the VM lowers the group's desired capacity.
    pub fn decrement(&self) -> bool {
        match self.capacity {
            Some(CapacityChange::Shrink) => true,
            Some(CapacityChange::Replace) => false,
            // The group lowered its capacity itself (or replaces the VM):
            // the operator never terminates a hook's instance. A broken
            // client's VM is replaced, never shrunk away.
            None => !self.reason.replaces(),
        }
    }
}

/// The client a retirement is about: exactly one field is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.nodeName), has(self.nodeID), has(self.instanceID)].filter(x, x).size() == 1").message("target must name exactly one of nodeName, nodeID or instanceID"))]
pub struct RetirementTarget {
    /// Nomad node ID (full UUID).
    #[serde(default, rename = "nodeID", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 36))]
    #[x_kube(validation = Rule::new("self.matches('^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')").message("target.nodeID must be a full Nomad node UUID"))]
    pub node_id: Option<String>,
    /// Nomad node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub node_name: Option<String>,
    /// Cloud instance ID, e.g. `i-0123456789abcdef0`.
    #[serde(
        default,
        rename = "instanceID",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(max = 253))]
    pub instance_id: Option<String>,
}

/// What the instance group does when the retired VM goes.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapacityChange {
    /// The group's desired capacity drops by one.
    Shrink,
    /// The group launches a replacement VM.
    Replace,
}

/// Observed state of one retirement.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NomadClientRetirementStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Where the retirement is. Unset: `Pending`, waiting for the pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<RetirementPhase>,
    /// When the retirement entered its phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase_since: Option<Time>,
    /// Nomad node ID, once the pool resolved the target.
    #[serde(default, rename = "nodeID", skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Nomad node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// Cloud instance ID, once known.
    #[serde(
        default,
        rename = "instanceID",
        skip_serializing_if = "Option::is_none"
    )]
    pub instance_id: Option<String>,
    /// When the pool started the retirement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_at: Option<Time>,
    /// Whether the pool made the client ineligible (it was eligible before),
    /// so giving it back makes it eligible again; otherwise its owner had
    /// cordoned it and it stays ineligible.
    #[serde(default)]
    pub cordoned_by_pool: bool,
    /// When the drain started, as Nomad reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_started_at: Option<Time>,
    /// When Nomad will force the remaining allocations to stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline: Option<Time>,
    /// Pending or running allocations still on the client, as last counted.
    #[serde(default)]
    pub allocations_left: i32,
    /// Allocations that still block the retirement (at most 10).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub blocking_allocations: Vec<BlockingAllocation>,
    /// When the VM's termination was committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated_at: Option<Time>,
    /// When the retirement finished: the node purged, or the client given back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    /// What the retirement waits for, or what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The lifecycle action that holds the VM, for a retirement with reason
    /// `LifecycleHook`: kept here so that a restarted operator completes it
    /// with its token, and never twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_action: Option<LifecycleActionRecord>,
    /// `Progressing`: True while in flight (reason: the phase), False once
    /// finished (reason `Retired` or `Cancelled`). kstatus's abnormal-true
    /// `Reconciling` (pending or in flight) and `Stalled` (reason
    /// `UnknownTarget`: the target names no client of the pool). With reason
    /// `LifecycleHook`, also `LifecycleGlobalTimeout`: False (reason
    /// `DrainDeadlineCapped`) when the hook's global timeout ends the drain
    /// sooner than its own deadline would.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The terminating lifecycle action a retirement's VM waits under.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleActionRecord {
    /// The hook (`LifecycleHookName`).
    #[schemars(length(min = 1, max = 255))]
    pub hook: String,
    /// The action's `LifecycleActionToken` (a UUID), when the hook's
    /// notification gave it; unset, the action is completed by instance ID.
    /// Not a secret (AWS sends it in every notification), but kept out of
    /// Events and logs all the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 36, max = 36))]
    pub token: Option<String>,
    /// When the operator completed the action (CONTINUE), or found it no
    /// longer pending; it is not completed again, by a restarted operator
    /// either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

/// An allocation that keeps a retirement waiting.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlockingAllocation {
    /// Nomad job ID.
    #[serde(rename = "jobID")]
    pub job_id: String,
    /// Task group of the job.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_group: String,
    /// Allocation ID (unset when only the job is known).
    #[serde(
        default,
        rename = "allocationID",
        skip_serializing_if = "String::is_empty"
    )]
    pub allocation_id: String,
    /// When the allocation was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// Phases of a retirement. The in-flight ones are the pool's `RetirePhase`s,
/// each recorded before its action runs; `Retired` and `Cancelled` are final.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum RetirementPhase {
    /// Waiting for the pool: its target resolved and the disruption budget.
    Pending,
    Selected,
    Cordoned,
    Draining,
    Drained,
    Terminating,
    Cancelling,
    /// The VM terminated and the node purged.
    Retired,
    /// Stopped before termination; the client was given back.
    Cancelled,
}

impl RetirementPhase {
    pub const fn as_str(self) -> &'static str {
        match self {
            RetirementPhase::Pending => "Pending",
            RetirementPhase::Selected => "Selected",
            RetirementPhase::Cordoned => "Cordoned",
            RetirementPhase::Draining => "Draining",
            RetirementPhase::Drained => "Drained",
            RetirementPhase::Terminating => "Terminating",
            RetirementPhase::Cancelling => "Cancelling",
            RetirementPhase::Retired => "Retired",
            RetirementPhase::Cancelled => "Cancelled",
        }
    }

    /// The in-flight phase, `None` for `Pending` and the final ones.
    pub const fn in_flight(self) -> Option<RetirePhase> {
        match self {
            RetirementPhase::Selected => Some(RetirePhase::Selected),
            RetirementPhase::Cordoned => Some(RetirePhase::Cordoned),
            RetirementPhase::Draining => Some(RetirePhase::Draining),
            RetirementPhase::Drained => Some(RetirePhase::Drained),
            RetirementPhase::Terminating => Some(RetirePhase::Terminating),
            RetirementPhase::Cancelling => Some(RetirePhase::Cancelling),
            RetirementPhase::Pending | RetirementPhase::Retired | RetirementPhase::Cancelled => {
                None
            }
        }
    }

    pub const fn is_finished(self) -> bool {
        matches!(self, RetirementPhase::Retired | RetirementPhase::Cancelled)
    }
}

impl From<RetirePhase> for RetirementPhase {
    fn from(p: RetirePhase) -> Self {
        match p {
            RetirePhase::Selected => RetirementPhase::Selected,
            RetirePhase::Cordoned => RetirementPhase::Cordoned,
            RetirePhase::Draining => RetirementPhase::Draining,
            RetirePhase::Drained => RetirementPhase::Drained,
            RetirePhase::Terminating => RetirementPhase::Terminating,
            RetirePhase::Cancelling => RetirementPhase::Cancelling,
        }
    }
}

impl std::fmt::Display for RetirementPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl NomadClientRetirement {
    /// The retirement's phase, `Pending` until the pool starts it.
    pub fn phase(&self) -> RetirementPhase {
        self.status
            .as_ref()
            .and_then(|s| s.phase)
            .unwrap_or(RetirementPhase::Pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_names_are_the_serde_names() {
        use RetirementPhase as P;
        for p in [
            P::Pending,
            P::Selected,
            P::Cordoned,
            P::Draining,
            P::Drained,
            P::Terminating,
            P::Cancelling,
            P::Retired,
            P::Cancelled,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.as_str());
            if let Some(f) = p.in_flight() {
                assert_eq!(RetirementPhase::from(f), p);
            }
        }
    }

    #[test]
    fn capacity_follows_the_reason_unless_set() {
        let spec = |reason, capacity| NomadClientRetirementSpec {
            pool: "ci".into(),
            target: RetirementTarget::default(),
            reason,
            capacity,
            drain: None,
        };
        assert!(!spec(RetireReason::Replace, None).decrement());
        assert!(spec(RetireReason::ScaleIn, None).decrement());
        assert!(spec(RetireReason::Requested, None).decrement());
        for r in [
            RetireReason::Expired,
            RetireReason::Drifted,
            RetireReason::Unhealthy,
        ] {
            assert!(!spec(r, None).decrement(), "{r} replaces the VM");
        }
        assert!(!spec(RetireReason::ScaleIn, Some(CapacityChange::Replace)).decrement());
        assert!(spec(RetireReason::Replace, Some(CapacityChange::Shrink)).decrement());
    }
}
