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
    NomadClientPoolSpec, PlannedRetirement, RetirePhase, RetireReason, RetireTarget, RetiringNode,
    SelectionPolicy,
};
use crate::provider::{GroupState, Lifecycle, preflight_with};

/// Keys of the drain `Meta` that mark a drain as this pool's, so a controller
/// that lost its status can still recognise (adopt) its own drains.
pub const META_POOL: &str = "nomadpool.dev/pool";
pub const META_POOL_UID: &str = "nomadpool.dev/pool-uid";
/// Why the client is retired (`ScaleIn`, `Requested`, `Replace`): an adopted
/// drain keeps its reason, so a replacement is never turned into a shrink.
pub const META_REASON: &str = "nomadpool.dev/reason";
/// `true` when this pool made the client ineligible: an adopted drain that is
/// cancelled restores the client's eligibility exactly as its owner had it.
pub const META_CORDONED_BY_POOL: &str = "nomadpool.dev/cordoned-by-pool";

/// The `Meta` of a drain this pool sends for the retirement `mark` records.
pub fn drain_meta(pool_key: &str, uid: &str, mark: &DrainMark) -> BTreeMap<String, String> {
    [
        (META_POOL.to_string(), pool_key.to_string()),
        (META_POOL_UID.to_string(), uid.to_string()),
        (META_REASON.to_string(), format!("{:?}", mark.reason)),
        (
            META_CORDONED_BY_POOL.to_string(),
            mark.cordoned_by_pool.to_string(),
        ),
        (
            "message".to_string(),
            "retired by nomad-pool-operator".to_string(),
        ),
    ]
    .into()
}

/// What a drain's `Meta` says about the retirement that sent it; `None`
/// for a drain that is not this pool's.
pub fn read_drain_meta(meta: &BTreeMap<String, String>, uid: &str) -> Option<DrainMark> {
    if meta.get(META_POOL_UID).map(String::as_str) != Some(uid) {
        return None;
    }
    // Drains sent before these keys existed were scale-ins by a pool that
    // had cordoned the client: selection only takes eligible clients.
    let reason = match meta.get(META_REASON).map(String::as_str) {
        Some("Requested") => RetireReason::Requested,
        Some("Replace") => RetireReason::Replace,
        _ => RetireReason::ScaleIn,
    };
    let cordoned_by_pool = meta.get(META_CORDONED_BY_POOL).map(String::as_str) != Some("false");
    Some(DrainMark {
        reason,
        cordoned_by_pool,
    })
}

/// How many blocking job IDs a status entry lists: enough for a human to act on.
const MAX_BLOCKING_JOBS: usize = 5;

/// Nomad node status, as far as retiring cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    Initializing,
    Ready,
    Down,
    Disconnected,
}

/// `LastDrain.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastDrainStatus {
    Draining,
    Complete,
    Canceled,
}

/// What the planner needs to know about one Nomad node of the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub id: String,
    pub name: String,
    pub status: NodeStatus,
    pub eligible: bool,
    /// `DrainStrategy != null`.
    pub draining: bool,
    pub last_drain: Option<LastDrainStatus>,
    pub last_drain_started: Option<Timestamp>,
    /// The retirement recorded in `LastDrain.Meta`, when the last drain was
    /// this pool's.
    pub last_drain_mark: Option<DrainMark>,
    pub create_index: u64,
    /// Cloud instance ID from the node's attributes, once read.
    pub instance_id: Option<String>,
}

/// A retirement as this pool records it in the Meta of the drain it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainMark {
    pub reason: RetireReason,
    pub cordoned_by_pool: bool,
}

/// Allocations of a node being retired, from a fresh blocking query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocFacts {
    /// Pending, running or unknown allocations that block retirement
    /// (system ones are left out when the drain ignores system jobs).
    pub live: u32,
    /// Of those, `unknown` ones: their node is disconnected and they may
    /// still run behind the partition.
    pub unknown: u32,
    pub blocking_jobs: Vec<String>,
}

/// Everything observed for one pool, gathered by `reconcile`.
#[derive(Clone, Debug)]
pub struct PoolView<'a> {
    pub now: Timestamp,
    pub pool_key: &'a str,
    pub spec: &'a NomadClientPoolSpec,
    pub tracked: &'a [RetiringNode],
    /// Every Nomad node the selector matches (down ones included).
    pub nodes: &'a [NodeFacts],
    /// Allocation facts of tracked nodes; absent until a fresh read arrived.
    pub allocs: &'a HashMap<String, AllocFacts>,
    /// Pending/running allocation counts of every pool node, when the caller
    /// fetched them (only needed to select; see `Plan::needs_load`).
    pub load: Option<&'a HashMap<String, u32>>,
    pub group: &'a GroupState,
    /// Whether the pool's Nomad token provably sees every allocation (see
    /// `nomad::acl`). Until it does, drained clients wait instead of being
    /// terminated: an allocation the token cannot see still runs. Only a
    /// termination the spec forces past its deadline goes ahead.
    pub visibility: AllocationVisibility<'a>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocationVisibility<'a> {
    Proven,
    /// The first check has not answered: wait quietly, it wakes the pool.
    Checking,
    /// Not proven; the text says what is missing and how to fix it.
    Unproven(&'a str),
}

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

/// Parse a Go duration (`1h30m`, `90s`, `1.5h`, `250ms`).
pub fn parse_go_duration(s: &str) -> Option<SignedDuration> {
    let mut total_nanos: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let (unit, len) = [
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, f)| (*f, u.len()))?;
        total_nanos += value * unit;
        rest = &rest[len..];
    }
    Some(SignedDuration::from_nanos(total_nanos as i64))
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
    let nodes: BTreeMap<&str, &NodeFacts> = view.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
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
                "adopted drain of node {} started earlier by this pool",
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
            decrement: reason != RetireReason::Replace,
            cordoned_by_pool: mark.cordoned_by_pool,
            drain_started_at: n.last_drain_started.map(ts),
            drain_deadline: None,
            allocations_left: 0,
            blocking_jobs: vec![],
            message: Some("adopted after a controller restart".into()),
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
    let in_flight = |next: &[RetiringNode]| {
        next.iter()
            .filter(|r| r.phase != RetirePhase::Cancelling)
            .count() as u32
    };
    let mut pending = pending_decrements(&next, view.group);
    let group_desired = view.group.desired_capacity;
    plan.desired_nodes = spec
        .replicas
        .map(|r| r.max(0) as u32)
        .unwrap_or(group_desired.saturating_sub(pending));

    let mut candidates_taken: BTreeSet<String> = next.iter().map(|r| r.node_id.clone()).collect();
    let start_allowed = !spec.disruption.paused;
    if spec.disruption.paused && wants_more(view, &next, pending) {
        plan.blockers.push(Blocker::Paused);
    }

    for target in &spec.retire {
        let Some(node) = view.nodes.iter().find(|n| target_matches(target, n)) else {
            plan.blockers
                .push(Blocker::UnknownRetireTarget(target_label(target)));
            continue;
        };
        if candidates_taken.contains(&node.id) || node.status == NodeStatus::Down {
            continue;
        }
        if !start_allowed {
            continue;
        }
        if in_flight(&next) >= budget {
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
            let mut excess = effective - replicas;
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
            if deficit > 0 && !spec.disruption.dry_run {
                let desired = group_desired + deficit;
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

    plan.retiring = next;
    plan
}

/// Return a client to service: any step planned for it earlier in this plan
/// is dropped, and its drain (if any) is cancelled. Cancelling through the
/// drain endpoint also covers a drain Nomad has not shown us yet; on a node
/// that is not draining it only applies `MarkEligible`.
fn cancel(entry: &mut RetiringNode, plan: &mut Plan, now: Timestamp, why: String) {
    plan.actions.retain(|a| match a {
        Action::Cordon { node_id } | Action::Drain { node_id, .. } => *node_id != entry.node_id,
        _ => true,
    });
    plan.event(
        Some(&entry.node_name),
        "RetirementCancelled",
        format!("node {} returns to service: {why}", entry.node_name),
    );
    entry.phase = RetirePhase::Cancelling;
    entry.since = ts(now);
    entry.message = Some(why);
    plan.actions.push(Action::Release {
        node_id: entry.node_id.clone(),
        mark_eligible: entry.cordoned_by_pool,
    });
}

/// The drain that carries `entry` forward; its Meta records the retirement.
fn drain(entry: &RetiringNode) -> Action {
    Action::Drain {
        node_id: entry.node_id.clone(),
        mark: DrainMark {
            reason: entry.reason,
            cordoned_by_pool: entry.cordoned_by_pool,
        },
    }
}

/// Whether the spec asks for retirements beyond those in flight.
fn wants_more(view: &PoolView<'_>, next: &[RetiringNode], pending: u32) -> bool {
    let excess = view
        .spec
        .replicas
        .is_some_and(|r| view.group.desired_capacity.saturating_sub(pending) > r.max(0) as u32);
    let named = view.spec.retire.iter().any(|t| {
        view.nodes
            .iter()
            .any(|n| target_matches(t, n) && !next.iter().any(|r| r.node_id == n.id))
    });
    excess || named
}

fn check_preflight(
    group: &GroupState,
    node: &NodeFacts,
    in_flight_decrements: u32,
    decrement: bool,
) -> Result<(), String> {
    let Some(instance) = node.instance_id.as_deref() else {
        return Err("its instance ID is not known yet (node attributes not read)".into());
    };
    preflight_with(group, instance, in_flight_decrements, decrement).map_err(|r| r.to_string())
}

fn preview(
    node: &NodeFacts,
    reason: RetireReason,
    load: Option<&HashMap<String, u32>>,
) -> PlannedRetirement {
    PlannedRetirement {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        reason,
        allocations: load.and_then(|l| l.get(&node.id)).copied().unwrap_or(0) as i32,
    }
}

fn select(
    view: &PoolView<'_>,
    node: &NodeFacts,
    reason: RetireReason,
    decrement: bool,
    plan: &mut Plan,
) -> RetiringNode {
    plan.event(
        Some(&node.name),
        "Selected",
        format!(
            "node {} ({}) selected for retirement ({reason:?})",
            node.name,
            node.instance_id.as_deref().unwrap_or("instance unknown")
        ),
    );
    plan.actions.push(Action::Cordon {
        node_id: node.id.clone(),
    });
    RetiringNode {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        instance_id: node.instance_id.clone(),
        phase: RetirePhase::Selected,
        since: ts(view.now),
        selected_at: Some(ts(view.now)),
        reason,
        decrement,
        // Selection only takes eligible clients, except explicitly named ones;
        // a client someone else cordoned must stay cordoned if we back out.
        cordoned_by_pool: node.eligible,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: view
            .load
            .and_then(|l| l.get(&node.id))
            .copied()
            .unwrap_or(0) as i32,
        blocking_jobs: vec![],
        message: None,
    }
}

/// Pick up to `want` clients for a scale-in, in the spec's order, skipping any
/// the cloud would refuse to remove.
fn choose<'a>(
    view: &PoolView<'a>,
    load: &HashMap<String, u32>,
    taken: &BTreeSet<String>,
    want: u32,
    mut pending: u32,
    plan: &mut Plan,
) -> Vec<&'a NodeFacts> {
    let policy = view.spec.disruption.selection_policy;
    let mut eligible: Vec<&NodeFacts> = view
        .nodes
        .iter()
        .filter(|n| {
            n.status == NodeStatus::Ready && n.eligible && !n.draining && !taken.contains(&n.id)
        })
        .collect();
    let busy = |n: &NodeFacts| load.get(&n.id).copied().unwrap_or(0);
    match policy {
        SelectionPolicy::LeastBusy => eligible.sort_by_key(|n| (busy(n), n.create_index)),
        SelectionPolicy::Empty => {
            eligible.retain(|n| busy(n) == 0);
            eligible.sort_by_key(|n| n.create_index);
        }
        SelectionPolicy::Oldest => eligible.sort_by_key(|n| n.create_index),
        SelectionPolicy::Newest => eligible.sort_by_key(|n| std::cmp::Reverse(n.create_index)),
    }
    if policy == SelectionPolicy::Empty && eligible.is_empty() {
        plan.blockers.push(Blocker::NoEmptyNodes);
    }
    let mut chosen = Vec::new();
    let mut refusals = Vec::new();
    for node in eligible {
        if chosen.len() as u32 >= want {
            break;
        }
        match check_preflight(view.group, node, pending, true) {
            Ok(()) => {
                pending += 1;
                chosen.push(node);
            }
            Err(why) => refusals.push(format!("{}: {why}", node.name)),
        }
    }
    if (chosen.len() as u32) < want && !refusals.is_empty() {
        refusals.truncate(3);
        plan.blockers.push(Blocker::Preflight(refusals.join("; ")));
    }
    chosen
}

/// One tracked retirement's next step; `None` when it is finished.
fn advance(
    view: &PoolView<'_>,
    nodes: &BTreeMap<&str, &NodeFacts>,
    entry: &RetiringNode,
    force_after: Option<SignedDuration>,
    plan: &mut Plan,
) -> Option<RetiringNode> {
    let mut e = entry.clone();
    let node = nodes.get(entry.node_id.as_str()).copied();
    if e.instance_id.is_none() {
        e.instance_id = node.and_then(|n| n.instance_id.clone());
    }
    let to = |e: &mut RetiringNode, phase: RetirePhase, message: Option<String>| {
        e.phase = phase;
        e.since = ts(view.now);
        e.message = message;
    };

    // The node left Nomad (purged) or the pool.
    let Some(node) = node else {
        return match e.phase {
            RetirePhase::Terminating => {
                plan.retired += 1;
                if let Some(selected) = &e.selected_at {
                    plan.retire_seconds
                        .push(seconds_between(selected.0, view.now));
                }
                plan.event(
                    Some(&e.node_name),
                    "Retired",
                    format!(
                        "node {} retired: VM {} terminated and node purged",
                        e.node_name,
                        e.instance_id.as_deref().unwrap_or("?")
                    ),
                );
                None
            }
            _ => {
                plan.warn(
                    &e.node_name,
                    "NodeLeftPool",
                    format!(
                        "node {} disappeared from the pool during {:?}; forgetting it",
                        e.node_name, e.phase
                    ),
                );
                None
            }
        };
    };

    match e.phase {
        RetirePhase::Selected => {
            if !node.eligible {
                to(&mut e, RetirePhase::Cordoned, None);
                plan.event(
                    Some(&e.node_name),
                    "Cordoned",
                    format!("node {} is ineligible for new work", e.node_name),
                );
                plan.actions.push(drain(&e));
            } else {
                plan.actions.push(Action::Cordon {
                    node_id: e.node_id.clone(),
                });
            }
        }
        RetirePhase::Cordoned => {
            let ours = node.last_drain_mark.is_some();
            if node.draining && ours {
                to(&mut e, RetirePhase::Draining, None);
                e.drain_started_at = node.last_drain_started.or(Some(view.now)).map(ts);
                e.drain_deadline = drain_deadline(view, node);
                plan.event(
                    Some(&e.node_name),
                    "Draining",
                    format!("node {} is draining", e.node_name),
                );
            } else if ours && node.last_drain == Some(LastDrainStatus::Complete) {
                // The drain finished between two observations.
                to(&mut e, RetirePhase::Draining, None);
                e.drain_started_at = node.last_drain_started.map(ts);
                plan.event(
                    Some(&e.node_name),
                    "Draining",
                    format!("node {} drained", e.node_name),
                );
            } else {
                plan.actions.push(drain(&e));
            }
        }
        RetirePhase::Draining | RetirePhase::Drained => {
            let allocs = view.allocs.get(&e.node_id);
            if let Some(a) = allocs {
                e.allocations_left = a.live as i32;
                e.blocking_jobs = a
                    .blocking_jobs
                    .iter()
                    .take(MAX_BLOCKING_JOBS)
                    .cloned()
                    .collect();
            }
            let drain_done = !node.draining
                && (node.last_drain == Some(LastDrainStatus::Complete)
                    || node.status == NodeStatus::Down);
            // A down node is not empty by itself: an allocation its client
            // never confirmed stopped stays `unknown` there, and a
            // partitioned VM may still run it.
            let empty = allocs.is_some_and(|a| a.live == 0);
            // Forcing still needs a fresh allocation read: the event and the
            // status must say what was killed.
            let deadline_forced = allocs.is_some()
                && force_after.is_some_and(|after| {
                    e.drain_deadline
                        .as_ref()
                        .is_some_and(|d| view.now >= d.0.saturating_add(after).unwrap_or(d.0))
                });
            if !node.draining
                && node.last_drain == Some(LastDrainStatus::Canceled)
                && node.status != NodeStatus::Down
            {
                // Someone cancelled our drain; the spec still says retire.
                plan.warn(
                    &e.node_name,
                    "DrainCancelledExternally",
                    format!(
                        "the drain of node {} was cancelled outside this pool; draining again",
                        e.node_name
                    ),
                );
                to(
                    &mut e,
                    RetirePhase::Cordoned,
                    Some("drain was cancelled outside the pool".into()),
                );
                plan.actions.push(drain(&e));
            } else if drain_done
                && empty
                && !deadline_forced
                && view.visibility != AllocationVisibility::Proven
            {
                withhold_termination(&mut e, view, plan);
            } else if drain_done && (empty || deadline_forced) {
                let Some(instance) = e.instance_id.clone() else {
                    e.message = Some("waiting to learn the node's instance ID".into());
                    return Some(e);
                };
                let lifecycle = instance_in_group(view.group, &instance);
                let refusal = if still_counted(&lifecycle) {
                    preflight_with(view.group, &instance, 0, e.decrement)
                        .err()
                        .map(|r| r.to_string())
                } else {
                    None
                };
                if let Some(why) = refusal {
                    if e.phase != RetirePhase::Drained || e.message.as_deref() != Some(why.as_str())
                    {
                        plan.warn(
                            &e.node_name,
                            "TerminateBlocked",
                            format!("node {} is drained but {why}", e.node_name),
                        );
                    }
                    to(&mut e, RetirePhase::Drained, Some(why));
                } else {
                    let forced = !empty;
                    if forced {
                        let partitioned =
                            if matches!(node.status, NodeStatus::Disconnected | NodeStatus::Down)
                                && allocs.is_some_and(|a| a.unknown > 0)
                            {
                                " (unknown behind a partition: they may still be running)"
                            } else {
                                ""
                            };
                        plan.warn(&e.node_name,
                            "ForceTerminate",
                            format!(
                                "terminating {} with {} allocation(s) still live{partitioned}: drain.forceTerminateAfter passed",
                                e.node_name, e.allocations_left
                            ),
                        );
                    } else {
                        plan.event(
                            Some(&e.node_name),
                            "Drained",
                            format!("node {} has no pending or running allocation", e.node_name),
                        );
                    }
                    if let Some(started) = &e.drain_started_at {
                        plan.drain_wait_seconds
                            .push(seconds_between(started.0, view.now));
                    }
                    to(&mut e, RetirePhase::Terminating, None);
                    plan.event(
                        Some(&e.node_name),
                        "Terminating",
                        format!("terminating VM {instance} of node {}", e.node_name),
                    );
                    if still_counted(&lifecycle) {
                        plan.actions.push(Action::Terminate {
                            node_id: e.node_id.clone(),
                            instance_id: instance,
                            decrement: e.decrement,
                            first_attempt: true,
                        });
                    }
                }
            } else if !node.draining && !drain_done {
                // Neither running nor complete: Nomad never stored it (or
                // lost it). Back to Cordoned, which names the drain to send.
                to(
                    &mut e,
                    RetirePhase::Cordoned,
                    Some("drain not found in Nomad; sending it again".into()),
                );
                plan.actions.push(drain(&e));
            } else {
                e.message = Some(match allocs {
                    None if node.draining => {
                        "draining; waiting for Nomad to mark the drain complete".into()
                    }
                    None => "waiting for the node's allocations to be read".into(),
                    Some(a)
                        if a.unknown > 0
                            && matches!(
                                node.status,
                                NodeStatus::Disconnected | NodeStatus::Down
                            ) =>
                    {
                        format!(
                            "node is {} with {} allocation(s) that may still run ({} unknown: its client \
                             never confirmed they stopped); waiting for it to reconnect and stop them{}",
                            if node.status == NodeStatus::Down {
                                "down"
                            } else {
                                "disconnected"
                            },
                            a.live,
                            a.unknown,
                            if force_after.is_some() {
                                ", or for drain.forceTerminateAfter"
                            } else {
                                ""
                            }
                        )
                    }
                    Some(a) if a.live > 0 => {
                        format!("waiting for {} allocation(s) to finish", a.live)
                    }
                    Some(_) => "waiting for Nomad to mark the drain complete".into(),
                });
            }
        }
        RetirePhase::Terminating => {
            let instance = e.instance_id.clone().unwrap_or_default();
            let lifecycle = instance_in_group(view.group, &instance);
            if still_counted(&lifecycle) {
                // Committed but not landed (crash, throttling): re-issue; the
                // provider re-checks the instance so this never decrements twice.
                plan.actions.push(Action::Terminate {
                    node_id: e.node_id.clone(),
                    instance_id: instance,
                    decrement: e.decrement,
                    first_attempt: false,
                });
            } else if node.status == NodeStatus::Down {
                plan.actions.push(Action::Purge {
                    node_id: e.node_id.clone(),
                });
                e.message = Some("VM gone and node down; purging the node".into());
            } else {
                e.message = Some("VM terminating; waiting for the Nomad node to turn down".into());
            }
        }
        RetirePhase::Cancelling => {
            let released = !node.draining && (node.eligible || !e.cordoned_by_pool);
            if released {
                plan.event(
                    Some(&e.node_name),
                    "ReturnedToService",
                    format!("node {} is back in service", e.node_name),
                );
                return None;
            }
            plan.actions.push(Action::Release {
                node_id: e.node_id.clone(),
                mark_eligible: e.cordoned_by_pool,
            });
        }
    }
    Some(e)
}

/// A drained client whose allocations the token may not all see stays in
/// `Drained`; the first time, a warning says why and what to fix.
fn withhold_termination(e: &mut RetiringNode, view: &PoolView<'_>, plan: &mut Plan) {
    let AllocationVisibility::Unproven(gap) = view.visibility else {
        e.message = Some("checking that the Nomad token reads jobs in every namespace".into());
        return;
    };
    let why = format!("not terminated: {gap}");
    if e.phase != RetirePhase::Drained || e.message.as_deref() != Some(why.as_str()) {
        plan.warn(
            &e.node_name,
            "TerminateWithheld",
            format!("node {} is drained but {why}", e.node_name),
        );
        e.phase = RetirePhase::Drained;
        e.since = ts(view.now);
        e.message = Some(why);
    }
    if !plan
        .blockers
        .iter()
        .any(|b| matches!(b, Blocker::AllocationsHidden(_)))
    {
        plan.blockers
            .push(Blocker::AllocationsHidden(gap.to_owned()));
    }
}

fn drain_deadline(view: &PoolView<'_>, node: &NodeFacts) -> Option<Time> {
    let deadline = view
        .spec
        .drain
        .deadline
        .as_deref()
        .and_then(parse_go_duration)?;
    let start = node.last_drain_started.unwrap_or(view.now);
    start.checked_add(deadline).ok().map(ts)
}

#[cfg(test)]
mod tests;
