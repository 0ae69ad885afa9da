//! The retire decisions as one pure function: what the pool looks like now in,
//! the next write-ahead status and the side effects to run out.
//!
//! Nothing here does I/O, so every transition, the budget arithmetic and the
//! selection policies are unit-tested (and property-tested) without Nomad or a
//! cloud. `reconcile` persists `Plan::retiring` *before* it runs `Plan::actions`:
//! an action is always named in status before it happens, so a controller killed
//! between the two re-issues an idempotent action instead of forgetting it.
//!
//! `plan` below reads as its steps; each is a function in the room named for it:
//! 1. `advance`: every tracked retirement moves on by its phase (`terminate`
//!    for Draining and Drained, where the VM's fate is decided; `departed`
//!    for clients that left the selector);
//! 2. `adopt`: this pool's drains that status lost are tracked again;
//! 3. to 5. `select`: the budget, the clients `spec.retire` names and the
//!    scale-in selection; `capacity`: the scale-up and the limits of the
//!    pool's size;
//!    5b. `renew`: clients past `maxNodeAge` or drifted from the group's
//!    launch spec are replaced with what the budget leaves;
//! 6. `release`: what the spec no longer wants goes back to service;
//!
//! then `identity` reports VMs shared by nodes or without a client, and
//! `retired` keeps the records of named clients. The facts it reads are in
//! `view`; `unavailable` counts clients out of service against the budget;
//! `budgets` holds `disruption.budgets` (windows, rates) and the record of
//! recent starts the rates count.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{
    DisruptionStatus, PlannedRetirement, RetirePhase, RetireReason, RetireTarget, RetiredNode,
    RetiringNode, SelectionPolicy,
};
use crate::provider::{GroupState, Lifecycle, preflight_with};

mod adopt;
mod advance;
pub mod budgets;
mod capacity;
mod departed;
mod go_duration;
mod hooks;
mod identity;
pub mod lane;
mod release;
mod remediation;
mod renew;
mod retired;
mod select;
mod terminate;
mod unavailable;
mod view;

/// What a drain's Meta records, as the planner sees it in `NodeFacts`
/// and names it in `Action::Drain`.
pub use super::drain_meta::DrainMark;
use advance::advance;
pub use go_duration::parse_go_duration;
pub use identity::{
    InstanceNode, InstanceNodes, describe_shared, shared_instances, vms_without_client,
};
// The planner's tests recover lost status from what the codec wrote.
#[cfg(test)]
use super::drain_meta::{META_POOL_UID, drain_meta, read_drain_meta, read_drain_meta_of};
use release::cancel;
use select::Selection;
pub use select::budget;
pub use view::{
    AllocFacts, AllocationVisibility, LastDrainStatus, NodeFacts, NodeStatus, PoolView,
};

/// How many blocking job IDs a status entry lists: enough for a human to act on.
const MAX_BLOCKING_JOBS: usize = 5;

/// A side effect for `reconcile` to run, after status is persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Cordon {
        node_id: String,
    },
    Drain {
        node_id: String,
        /// Written into the drain's Meta, for adoption.
        mark: DrainMark,
    },
    /// Cancel our drain (if any) and make the node eligible again when we cordoned it.
    Release {
        node_id: String,
        mark_eligible: bool,
    },
    Terminate {
        node_id: String,
        instance_id: String,
        decrement: bool,
        /// Planned on the step into `Terminating`, so the write-ahead status
        /// proves no earlier call: the provider may skip its re-read.
        first_attempt: bool,
    },
    Purge {
        node_id: String,
    },
    SetDesiredCapacity {
        desired: u32,
    },
    /// Let a VM the pool's lifecycle hook holds go (CONTINUE): its client
    /// is drained, or it has none.
    CompleteLifecycleAction {
        instance_id: String,
        node_id: Option<String>,
    },
}

impl Action {
    /// The Nomad node an action is about, for log spans.
    pub fn node_id(&self) -> Option<&str> {
        match self {
            Action::Cordon { node_id }
            | Action::Drain { node_id, .. }
            | Action::Release { node_id, .. }
            | Action::Terminate { node_id, .. }
            | Action::Purge { node_id } => Some(node_id),
            Action::CompleteLifecycleAction { node_id, .. } => node_id.as_deref(),
            Action::SetDesiredCapacity { .. } => None,
        }
    }

    /// Whether the status must name this action before it runs. A purge
    /// needs no record: it is planned only for a node whose VM is gone and
    /// which Nomad reports down, so repeating it after a crash, or running it
    /// from a stale copy of the pool, is harmless.
    pub fn needs_write_ahead(&self) -> bool {
        // A completion is planned only for a client drained (its record in
        // Terminating) or for a VM no client reports: repeating it is
        // harmless, the cloud answers "no active action".
        !matches!(
            self,
            Action::Purge { .. } | Action::CompleteLifecycleAction { .. }
        )
    }
}

/// Kubernetes Event to publish: a retirement's start and end, and what is
/// not routine (warnings, cancellations, adoptions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanEvent {
    pub warning: bool,
    /// The node the event is about, so events about different nodes are
    /// never folded into one series.
    pub node: Option<String>,
    pub reason: &'static str,
    pub message: String,
}

/// Why the pool is not progressing as asked, for the conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocker {
    /// `disruption.maxUnavailable` clients are already in flight.
    BudgetExhausted {
        in_flight: u32,
        budget: u32,
    },
    /// The cloud would refuse to remove the candidates.
    Preflight(String),
    /// `selectionPolicy: Empty` and no client is empty.
    NoEmptyNodes,
    /// A `spec.retire` entry matches no client of the pool.
    UnknownRetireTarget(String),
    /// Drained clients are not terminated: the token may not see all their
    /// allocations (the message says what is missing).
    AllocationsHidden(String),
    Paused,
    /// The selector matches no live client, but the pool should have some.
    NoClientsMatch {
        desired: u32,
    },
    /// `replicas` is above the group's MaxSize: the group is not grown past it.
    ReplicasAboveMaxSize {
        replicas: u32,
        max_size: u32,
        group: String,
    },
    /// VMs reported by more than one live node (`i-1 (a, b); ...`): never selected.
    SharedInstance(String),
    /// In-service VMs that no ready client of the pool reports.
    VmsWithoutClient(Vec<String>),
    /// A `disruption.budgets` entry (a window with `maxUnavailable: 0`
    /// included) allows no more clients out of service now; the message
    /// says which and until when.
    DisruptionBudget {
        in_flight: u32,
        message: String,
    },
    /// A budget's rate allows no more voluntary starts now.
    RateLimited(String),
    /// `spec.maxNodeAge` is set but the cloud provider cannot read VM
    /// launch times: no client is replaced for its age.
    LaunchTimesUnknown,
    /// A budget the controller cannot evaluate (a schedule or time zone
    /// that does not parse): voluntary retirements wait, fail safe.
    InvalidBudget(String),
    /// More clients are unhealthy (down, disconnected or unregistered on
    /// an in-service VM, or being replaced) than `remediation.maxUnhealthy`
    /// allows: nothing new is remediated until fewer are.
    TooManyUnhealthy {
        unhealthy: u32,
        allowed: u32,
    },
    /// A scale-in needs `short` more clients than it can choose because
    /// `opted_out` clients carry `nomadpool.dev/do-not-retire=true`.
    DoNotRetire {
        short: u32,
        opted_out: u32,
    },
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The next `status.retiring`: write it before running `actions`.
    pub retiring: Vec<RetiringNode>,
    pub actions: Vec<Action>,
    pub events: Vec<PlanEvent>,
    /// Dry-run preview of the retirements that would start.
    pub preview: Vec<PlannedRetirement>,
    pub blockers: Vec<Blocker>,
    /// Retirements that finished in this step.
    pub retired: u32,
    /// The next `status.retired`.
    pub retired_nodes: Vec<RetiredNode>,
    /// `spec.retire` entries whose client this pool already retired.
    pub done_targets: Vec<String>,
    /// Seconds from selection to retirement, for each retirement finished now.
    pub retire_seconds: Vec<f64>,
    /// Seconds from drain start to drained, for each client drained now.
    pub drain_wait_seconds: Vec<f64>,
    /// Target size of the pool (`replicas`, or the group's desired capacity).
    pub desired_nodes: u32,
    /// The planner had to select clients but `PoolView::load` was absent:
    /// fetch it and plan again.
    pub needs_load: bool,
    /// The next `status.disruption`; `None` without `disruption.budgets`.
    pub disruption: Option<DisruptionStatus>,
    /// When the budgets next change what they allow (a window opens or
    /// closes, a counted start leaves its period): plan again by then.
    pub budgets_change: Option<Timestamp>,
    /// When a remediation grace (`unhealthyAfter`, `purgeDownAfter`) next
    /// ends: plan again by then.
    pub wake: Option<Timestamp>,
    /// Clients unhealthy now (see `remediation::unhealthy_count`).
    pub unhealthy: u32,
    /// VMs past `remediation.unregisteredAfter` that no retirement covers:
    /// the cluster-wide read of the nodes on them is needed (or kept) at
    /// the termination gate before one is created.
    pub unregistered_checks: Vec<String>,
}

impl Plan {
    /// Plan again by `at` at the latest.
    fn wake_by(&mut self, at: Timestamp) {
        self.wake = Some(self.wake.map_or(at, |w| w.min(at)));
    }

    fn event(&mut self, node: Option<&str>, reason: &'static str, message: String) {
        self.events.push(PlanEvent {
            warning: false,
            node: node.map(str::to_owned),
            reason,
            message,
        });
    }
    fn warn(&mut self, node: &str, reason: &'static str, message: String) {
        self.events.push(PlanEvent {
            warning: true,
            node: Some(node.to_owned()),
            reason,
            message,
        });
    }
}

/// `75.4` as `1m15s`, for messages people read.
fn human_seconds(seconds: f64) -> String {
    let s = seconds.round().max(0.0) as u64;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

fn ts(t: Timestamp) -> Time {
    Time(t)
}

/// The instance's lifecycle state in the group the view read.
fn instance_in_group(view: &PoolView<'_>, instance_id: &str) -> Option<Lifecycle> {
    view.lifecycle_of(instance_id)
}

fn still_counted(lifecycle: &Option<Lifecycle>) -> bool {
    lifecycle.as_ref().is_some_and(Lifecycle::counted)
}

/// Decrements committed in status that the group's desired capacity does not
/// reflect yet: every scale-in entry before termination, and terminating ones
/// whose instance is still in service (the terminate call has not landed).
fn pending_decrements(tracked: &[RetiringNode], view: &PoolView<'_>) -> u32 {
    tracked
        .iter()
        .filter(|r| r.decrement && r.phase != RetirePhase::Cancelling)
        .filter(|r| match r.phase {
            RetirePhase::Terminating => r
                .instance_id
                .as_deref()
                .is_some_and(|id| still_counted(&instance_in_group(view, id))),
            _ => true,
        })
        .count() as u32
}

fn target_matches(t: &RetireTarget, n: &NodeFacts) -> bool {
    t.node_name.as_deref() == Some(n.name.as_str())
        || t.node_id.as_deref() == Some(n.id.as_str())
        || (t.instance_id.is_some() && t.instance_id == n.instance_id)
}

pub fn target_label(t: &RetireTarget) -> String {
    t.node_name
        .as_deref()
        .map(|n| format!("nodeName {n}"))
        .or_else(|| t.node_id.as_deref().map(|n| format!("nodeID {n}")))
        .or_else(|| t.instance_id.as_deref().map(|n| format!("instanceID {n}")))
        .unwrap_or_default()
}

/// Decide the next step for the pool. Each step is one function; a later
/// step sees what the earlier ones decided (`next`, the next status).
pub fn plan(view: &PoolView<'_>) -> Plan {
    let mut plan = Plan::default();
    // Looked up by ID only; a BTreeMap sorted 5,000 IDs on every reconcile.
    let nodes: HashMap<&str, &NodeFacts> = (view.outside.iter().chain(view.nodes))
        .map(|n| (n.id.as_str(), n))
        .collect();
    // A dry run touches nothing: retirements in flight wait where they are,
    // lost drains stay lost and nothing is given back.
    let dry_run = view.spec.disruption.dry_run;

    // 1. Advance every tracked retirement by what was observed.
    let mut next = if dry_run {
        view.tracked.to_vec()
    } else {
        advance_tracked(view, &nodes, &mut plan)
    };
    // 2. Adopt this pool's drains that status lost; retire the VMs the
    // group's lifecycle hook holds (the group decided: no budget).
    if !dry_run {
        adopt::lost_drains(view, &mut next, &mut plan);
        hooks::discover(view, &mut next, &mut plan);
    }
    // 2c. Replace clients that stay down while their VM runs, and VMs no
    // client registered on (within the remediation cap, not the budgets);
    // purge nodes whose VM is gone.
    let mut cap = remediation::cap(view, &next);
    remediation::start(view, &mut cap, &mut next, &mut plan);
    remediation::start_unregistered(view, &mut cap, &mut next, &mut plan);
    if !dry_run {
        remediation::purge_vanished(view, &next, &mut plan);
    }
    // 3. The pool's size and budget, and what holds them back.
    let mut selection = Selection::new(view, &next, &mut plan);
    // 4. Explicit retirements named in the spec.
    selection.named(view, &mut next, &mut plan);
    // 5. Scale toward `replicas`.
    if let Some(replicas) = view.spec.replicas {
        let replicas = replicas.max(0) as u32;
        let effective = view
            .group
            .desired_capacity
            .saturating_sub(selection.pending);
        if effective > replicas {
            selection.scale_in(view, effective - replicas, replicas, &mut next, &mut plan);
        } else if effective < replicas {
            capacity::scale_up(view, replicas, replicas - effective, &mut next, &mut plan);
        }
    }
    // 5b. Replace expired and drifted clients with what the budget leaves.
    selection.renew(view, &mut next, &mut plan);
    // 6. Anything tracked that the spec no longer wants retired goes back.
    if !dry_run {
        release::unwanted(view, &nodes, &mut next, &mut plan);
    }
    report(view, next, plan)
}

/// Step 1: the next step of every tracked retirement; finished ones drop out.
fn advance_tracked(
    view: &PoolView<'_>,
    nodes: &HashMap<&str, &NodeFacts>,
    plan: &mut Plan,
) -> Vec<RetiringNode> {
    let mut next = Vec::with_capacity(view.tracked.len());
    for entry in view.tracked {
        let force_after = force_after(view, &entry.node_id);
        if !entry.reason.has_node() {
            next.extend(remediation::advance_unregistered(entry, view, plan));
        } else if departed::is_outside(view, entry) {
            next.extend(departed::step(view, nodes, entry, force_after, plan));
        } else if let Some(kept) = advance(view, nodes, entry, force_after, plan) {
            next.push(kept);
        }
    }
    next
}

/// The client's `drain.forceTerminateAfter`, parsed.
fn force_after(view: &PoolView<'_>, node_id: &str) -> Option<SignedDuration> {
    (view.drain_of(node_id).force_terminate_after)
        .as_deref()
        .and_then(parse_go_duration)
}

/// The last step: what the pool's nodes and VMs show that no retirement
/// explains, and the next status.
fn report(view: &PoolView<'_>, next: Vec<RetiringNode>, mut plan: Plan) -> Plan {
    identity::report_shared(view, &mut plan);
    identity::report_clientless(view, &next, &mut plan);
    plan.unhealthy = remediation::unhealthy_count(view, &next);
    // Written with the status that records the starts of this plan.
    if let Some((disruption, change)) = budgets::after_plan(view, &next) {
        plan.disruption = Some(disruption);
        plan.budgets_change = change;
    }
    plan.retiring = next;
    plan.retired_nodes = retired::keep_named(view, std::mem::take(&mut plan.retired_nodes));
    plan
}

#[cfg(test)]
mod tests;
