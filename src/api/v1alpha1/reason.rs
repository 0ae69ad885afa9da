//! A retirement's phase and reason: the words status, the drain Meta,
//! Events and metric labels all share.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Phases of a retirement, in order. Each is recorded before its action runs.
#[derive(
    JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash,
)]
pub enum RetirePhase {
    /// Chosen; about to be made ineligible. Only a broken client (nothing
    /// to drain) is recorded here; the others start in `Cordoned`.
    Selected,
    /// About to be drained, which makes the client ineligible for new work
    /// at once; waiting to see the drain running.
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
    /// Its VM is older than `spec.maxNodeAge`: replaced, the group keeps
    /// its size.
    Expired,
    /// Its VM runs another launch template version, launch configuration
    /// or instance template than the group launches now
    /// (`spec.replaceDrifted`): replaced, the group keeps its size.
    Drifted,
    /// Nomad reports the client `down` (or `disconnected`) for longer than
    /// `remediation.unhealthyAfter` while its VM is still in service: the VM
    /// is replaced (the group launches a new one). Obeys
    /// `remediation.maxUnhealthy`, not the disruption budgets.
    Unhealthy,
    /// An in-service VM of the group that no Nomad node (of the pool or any
    /// other) reported for `remediation.unregisteredAfter`: replaced.
    /// Obeys `remediation.maxUnhealthy` with `Unhealthy`.
    Unregistered,
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
            RetireReason::Expired => "Expired",
            RetireReason::Drifted => "Drifted",
            RetireReason::Unhealthy => "Unhealthy",
            RetireReason::Unregistered => "Unregistered",
        }
    }

    /// Every reason, for reading one back by its name.
    pub const ALL: [RetireReason; 8] = [
        RetireReason::ScaleIn,
        RetireReason::Requested,
        RetireReason::Replace,
        RetireReason::LifecycleHook,
        RetireReason::Expired,
        RetireReason::Drifted,
        RetireReason::Unhealthy,
        RetireReason::Unregistered,
    ];

    /// Whether the group launches a VM in place of the one retired (its
    /// desired capacity is not lowered): the pool keeps its size.
    pub const fn replaces(self) -> bool {
        match self {
            RetireReason::ScaleIn | RetireReason::Requested => false,
            RetireReason::Replace
            | RetireReason::LifecycleHook
            | RetireReason::Expired
            | RetireReason::Drifted
            | RetireReason::Unhealthy
            | RetireReason::Unregistered => true,
        }
    }
}

impl RetireReason {
    /// Whether `disruption.budgets` (their windows and rates) govern the
    /// reason: every retirement the pool chooses to start. A retirement the
    /// group's lifecycle hook asks for is not the pool's choice: the group
    /// terminates the VM either way. Broken clients (and VMs whose client
    /// never registered) obey the remediation cap instead.
    pub const fn is_voluntary(self) -> bool {
        match self {
            RetireReason::ScaleIn
            | RetireReason::Requested
            | RetireReason::Replace
            | RetireReason::Expired
            | RetireReason::Drifted => true,
            RetireReason::LifecycleHook | RetireReason::Unhealthy | RetireReason::Unregistered => {
                false
            }
        }
    }

    /// Whether the reason replaces a client that is broken rather than
    /// healthy: such retirements obey `remediation.maxUnhealthy` (counted
    /// together, whichever of these reasons) instead of the budgets.
    pub const fn is_remediation(self) -> bool {
        matches!(self, RetireReason::Unhealthy | RetireReason::Unregistered)
    }

    /// Whether a retirement for the reason has a Nomad node. One for a VM
    /// no client registered on has none: the planner tracks it by its
    /// instance ID, and no Nomad call is ever made for it.
    pub const fn has_node(self) -> bool {
        !matches!(self, RetireReason::Unregistered)
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
        for r in R::ALL {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str(), "{r}");
            assert_eq!(r.to_string(), format!("{r:?}"));
        }
    }
}
