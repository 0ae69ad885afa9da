//! The retire decisions as one pure function: what the pool looks like now in,
//! the next write-ahead status and the side effects to run out.
//!
//! Nothing here does I/O, so every transition, the budget arithmetic and the
//! selection policies are unit-tested (and property-tested) without Nomad or a
//! cloud. `reconcile` persists `Plan::retiring` *before* it runs `Plan::actions`:
//! an action is always named in status before it happens, so a controller killed
//! between the two re-issues an idempotent action instead of forgetting it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{
    PlannedRetirement, RetirePhase, RetireReason, RetireTarget, RetiredNode, RetiringNode,
    SelectionPolicy,
};
use crate::provider::{GroupState, Lifecycle, preflight_with};

mod advance;
mod capacity;
mod departed;
mod go_duration;
mod identity;
mod meta;
mod retired;
mod select;
mod unavailable;
mod view;

use advance::{advance, cancel};
pub use go_duration::parse_go_duration;
pub use identity::{
    InstanceNode, InstanceNodes, describe_shared, shared_instances, vms_without_client,
};
pub use meta::{
    META_CORDONED_BY_POOL, META_POOL, META_POOL_UID, META_REASON, drain_meta, read_drain_meta,
    read_drain_meta_of,
};
use select::{check_preflight, choose, preview, select, wants_more};
pub use view::{
    AllocFacts, AllocationVisibility, DrainMark, LastDrainStatus, NodeFacts, NodeStatus, PoolView,
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
            Action::SetDesiredCapacity { .. } => None,
        }
    }

    /// Whether the status must name this action before it runs. A purge
    /// needs no record: it is planned only for a node whose VM is gone and
    /// which Nomad reports down, so repeating it after a crash, or running it
    /// from a stale copy of the pool, is harmless.
    pub fn needs_write_ahead(&self) -> bool {
        !matches!(self, Action::Purge { .. })
    }
}

/// Kubernetes Event to publish: one per phase change.
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
}

impl Plan {
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

/// The most clients that may be in flight at once.
pub fn budget(max_unavailable: &IntOrString, pool_size: u32) -> u32 {
    match max_unavailable {
        IntOrString::Int(n) => (*n).max(1) as u32,
        IntOrString::String(s) => {
            let pct: u32 = s.trim_end_matches('%').parse().unwrap_or(10).min(100);
            // Rounded down like a Deployment's maxUnavailable, but never 0: a
            // zero budget would stall a small pool forever; `paused` says that.
            (pool_size * pct / 100).max(1)
        }
    }
}

fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    to.duration_since(from).as_secs_f64().max(0.0)
}

fn ts(t: Timestamp) -> Time {
    Time(t)
}

/// Whether the instance still counts in the group's desired capacity.
fn instance_in_group(group: &GroupState, instance_id: &str) -> Option<Lifecycle> {
    group
        .instances
        .iter()
        .find(|i| i.id == instance_id)
        .map(|i| i.lifecycle.clone())
}

fn still_counted(lifecycle: &Option<Lifecycle>) -> bool {
    matches!(
        lifecycle,
        Some(Lifecycle::Pending | Lifecycle::InService | Lifecycle::Standby)
    )
}

/// Decrements committed in status that the group's desired capacity does not
/// reflect yet: every scale-in entry before termination, and terminating ones
/// whose instance is still in service (the terminate call has not landed).
fn pending_decrements(tracked: &[RetiringNode], group: &GroupState) -> u32 {
    tracked
        .iter()
        .filter(|r| r.decrement && r.phase != RetirePhase::Cancelling)
        .filter(|r| match r.phase {
            RetirePhase::Terminating => r
                .instance_id
                .as_deref()
                .is_some_and(|id| still_counted(&instance_in_group(group, id))),
            _ => true,
        })
        .count() as u32
}

fn target_matches(t: &RetireTarget, n: &NodeFacts) -> bool {
    t.node_name.as_deref() == Some(n.name.as_str())
        || t.node_id.as_deref() == Some(n.id.as_str())
        || (t.instance_id.is_some() && t.instance_id == n.instance_id)
}

fn target_label(t: &RetireTarget) -> String {
    t.node_name
        .as_deref()
        .map(|n| format!("nodeName {n}"))
        .or_else(|| t.node_id.as_deref().map(|n| format!("nodeID {n}")))
        .or_else(|| t.instance_id.as_deref().map(|n| format!("instanceID {n}")))
        .unwrap_or_default()
}

/// Decide the next step for the pool.
pub fn plan(view: &PoolView<'_>) -> Plan {
    let spec = view.spec;
    let mut plan = Plan::default();
    let nodes: BTreeMap<&str, &NodeFacts> = (view.outside.iter().chain(view.nodes))
        .map(|n| (n.id.as_str(), n))
        .collect();
    let force_after = spec
        .drain
        .force_terminate_after
        .as_deref()
        .and_then(parse_go_duration);

    // 1. Advance every tracked retirement by what was observed. A dry run
    //    touches nothing, so retirements in flight wait where they are.
    let dry_run = spec.disruption.dry_run;
    let mut next: Vec<RetiringNode> = Vec::with_capacity(view.tracked.len());
    for entry in view.tracked {
        if dry_run {
            next.push(entry.clone());
        } else if departed::is_outside(view, entry) {
            next.extend(departed::step(view, &nodes, entry, force_after, &mut plan));
        } else if let Some(kept) = advance(view, &nodes, entry, force_after, &mut plan) {
            next.push(kept);
        }
    }

    // 2. Adopt this pool's drains that status lost (status written by an older
    //    controller, or a status update that never landed before a crash).
    let tracked_ids: BTreeSet<String> = next.iter().map(|r| r.node_id.clone()).collect();
    for n in view.nodes.iter().filter(|_| !dry_run) {
        let Some(mark) = &n.last_drain_mark else {
            continue;
        };
        let in_progress =
            n.draining || (!n.eligible && n.last_drain == Some(LastDrainStatus::Complete));
        if !in_progress || n.status == NodeStatus::Down || tracked_ids.contains(&n.id) {
            continue;
        }
        // The spec's word on the client wins over the mark: a client named
        // now is retired the way the spec names it.
        let target = spec.retire.iter().find(|t| target_matches(t, n));
        let reason = match target {
            Some(t) if t.replace => RetireReason::Replace,
            Some(_) => RetireReason::Requested,
            None => mark.reason,
        };
        // Nomad keeps a completed drain's Meta, and cancelling a completed
        // drain changes nothing in it. So a client this pool gave back after
        // its drain finished, and left ineligible because someone else had
        // cordoned it, still looks like a drain of ours awaiting its
        // terminate. The spec no longer naming it is what tells them apart.
        let given_back = !n.draining && reason != RetireReason::ScaleIn && target.is_none();
        if given_back && !mark.cordoned_by_pool {
            continue;
        }
        plan.event(
            Some(&n.name),
            "AdoptedDrain",
            format!(
                "adopted drain of node {} started earlier by this pool (or an earlier pool of the same name)",
                n.name
            ),
        );
        next.push(RetiringNode {
            node_id: n.id.clone(),
            node_name: n.name.clone(),
            instance_id: n.instance_id.clone(),
            phase: RetirePhase::Draining,
            since: ts(view.now),
            selected_at: Some(ts(n.last_drain_started.unwrap_or(view.now))),
            reason,
            // A VM terminated before the status was lost (or by a deleted
            // pool of this name): its decrement is in the desired capacity.
            decrement: reason != RetireReason::Replace
                && (n.instance_id.as_deref())
                    .is_none_or(|i| still_counted(&instance_in_group(view.group, i))),
            cordoned_by_pool: mark.cordoned_by_pool,
            drain_started_at: n.last_drain_started.map(ts),
            drain_deadline: None,
            allocations_left: 0,
            blocking_jobs: vec![],
            message: Some("adopted: this pool's drain, from a lost status or a pool deleted and created again".into()),
        });
    }

    // 3. Explicit retirements named in the spec.
    let live_nodes: Vec<&NodeFacts> = view
        .nodes
        .iter()
        .filter(|n| n.status != NodeStatus::Down)
        .collect();
    let pool_size = live_nodes.len() as u32;
    let budget = budget(&spec.disruption.max_unavailable, pool_size);
    // Clients out of service, whoever took them out, against the budget.
    let in_flight = |next: &[RetiringNode]| unavailable::count(view, next);
    let mut pending = pending_decrements(&next, view.group);
    let group_desired = view.group.desired_capacity;
    plan.desired_nodes = spec
        .replicas
        .map(|r| r.max(0) as u32)
        .unwrap_or(group_desired.saturating_sub(pending));
    plan.blockers
        .extend(capacity::blockers(view, pool_size, plan.desired_nodes));

    let mut candidates_taken: BTreeSet<String> = next.iter().map(|r| r.node_id.clone()).collect();
    let start_allowed = !spec.disruption.paused;
    if spec.disruption.paused && wants_more(view, &next, pending) {
        plan.blockers.push(Blocker::Paused);
    }

    for target in &spec.retire {
        if retired::is_done(target, view, &plan.retired_nodes) {
            plan.done_targets.push(target_label(target));
            continue;
        }
        let Some(node) = view.nodes.iter().find(|n| target_matches(target, n)) else {
            plan.blockers
                .push(Blocker::UnknownRetireTarget(target_label(target)));
            continue;
        };
        if candidates_taken.contains(&node.id)
            || node.status == NodeStatus::Down
            || identity::on_shared_vm(view, node)
        {
            continue;
        }
        if !start_allowed {
            continue;
        }
        if !unavailable::is_out(node) && in_flight(&next) >= budget {
            plan.blockers.push(Blocker::BudgetExhausted {
                in_flight: in_flight(&next),
                budget,
            });
            break;
        }
        let decrement = !target.replace;
        let reason = if target.replace {
            RetireReason::Replace
        } else {
            RetireReason::Requested
        };
        if let Err(refusal) = check_preflight(
            view.group,
            node,
            if decrement { pending } else { 0 },
            decrement,
        ) {
            plan.blockers
                .push(Blocker::Preflight(format!("{}: {refusal}", node.name)));
            continue;
        }
        if spec.disruption.dry_run {
            plan.preview.push(preview(node, reason, view.load));
            candidates_taken.insert(node.id.clone());
            continue;
        }
        candidates_taken.insert(node.id.clone());
        if decrement {
            pending += 1;
        }
        next.push(select(view, node, reason, decrement, &mut plan));
    }

    // 4. Scale toward `replicas`.
    if let Some(replicas) = spec.replicas {
        let replicas = replicas.max(0) as u32;
        let effective = group_desired.saturating_sub(pending);
        if effective > replicas {
            let mut excess = identity::scale_in_excess(view, &next, effective - replicas, replicas);
            if spec.disruption.dry_run {
                excess = excess.saturating_sub(plan.preview.len() as u32);
            }
            if excess > 0 && start_allowed {
                let room = budget.saturating_sub(
                    in_flight(&next)
                        + if spec.disruption.dry_run {
                            plan.preview.len() as u32
                        } else {
                            0
                        },
                );
                if room == 0 {
                    plan.blockers.push(Blocker::BudgetExhausted {
                        in_flight: in_flight(&next),
                        budget,
                    });
                } else if let Some(load) = view.load {
                    let want = excess.min(room);
                    let chosen = choose(view, load, &candidates_taken, want, pending, &mut plan);
                    for node in chosen {
                        candidates_taken.insert(node.id.clone());
                        if spec.disruption.dry_run {
                            plan.preview
                                .push(preview(node, RetireReason::ScaleIn, view.load));
                        } else {
                            next.push(select(view, node, RetireReason::ScaleIn, true, &mut plan));
                        }
                    }
                } else {
                    plan.needs_load = true;
                }
            }
        } else if effective < replicas {
            // Scale up: return clients in flight to service before buying new
            // VMs, newest retirements first (they have lost the least work).
            let mut deficit = replicas - effective;
            let mut cancellable: Vec<usize> = next
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.reason == RetireReason::ScaleIn
                        && matches!(
                            r.phase,
                            RetirePhase::Selected
                                | RetirePhase::Cordoned
                                | RetirePhase::Draining
                                | RetirePhase::Drained
                        )
                })
                .map(|(i, _)| i)
                .collect();
            // Clients not yet draining first (nothing moved yet), then the
            // most recently started drains.
            cancellable.sort_by_key(|i| {
                let r = &next[*i];
                let started = r.drain_started_at.as_ref().unwrap_or(&r.since).0;
                (r.phase >= RetirePhase::Draining, std::cmp::Reverse(started))
            });
            for i in cancellable {
                if deficit == 0 {
                    break;
                }
                let entry = &mut next[i];
                if spec.disruption.dry_run {
                    deficit -= 1;
                    continue;
                }
                cancel(
                    entry,
                    &mut plan,
                    view.now,
                    format!("replicas raised to {replicas}"),
                );
                pending = pending.saturating_sub(1);
                deficit -= 1;
            }
            if deficit > 0
                && !spec.disruption.dry_run
                && let Some(desired) = capacity::grown_capacity(view, deficit)
            {
                plan.event(
                    None,
                    "ScalingUp",
                    format!(
                        "raising {} desired capacity from {group_desired} to {desired}",
                        view.group.name
                    ),
                );
                plan.actions.push(Action::SetDesiredCapacity { desired });
            }
        }
    }

    // 5. Anything tracked that the spec no longer wants retired goes back.
    for entry in next.iter_mut().filter(|_| !dry_run) {
        if entry.phase == RetirePhase::Cancelling {
            continue;
        }
        let named = spec.retire.iter().any(|t| {
            nodes
                .get(entry.node_id.as_str())
                .is_some_and(|n| target_matches(t, n))
        });
        let wanted = match entry.reason {
            RetireReason::ScaleIn => spec.replicas.is_some(),
            RetireReason::Requested | RetireReason::Replace => named,
        };
        if !wanted && entry.phase < RetirePhase::Terminating {
            cancel(
                entry,
                &mut plan,
                view.now,
                "no longer named by the spec".into(),
            );
        }
    }

    identity::report_shared(view, &mut plan);
    identity::report_clientless(view, &next, &mut plan);
    plan.retiring = next;
    plan.retired_nodes = retired::keep_named(view, std::mem::take(&mut plan.retired_nodes));
    plan
}

#[cfg(test)]
mod tests;
