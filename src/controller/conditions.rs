//! What the pool's conditions say, and why: the reconciler's trouble (Nomad,
//! the cloud, the spec's references), the planner's blockers and the
//! problems the reconciler saw itself, each under its own reason.
//!
//! Adding a problem is one place: a `Blocker` variant gets its reason and
//! message in [`degraded_by`] (or, if it is progress rather than a fault, in
//! [`progressing`]); a problem the reconciler finds itself is passed to
//! [`build_status`] as a [`Problem`]. Every Degraded problem is listed, not
//! only the first: the condition's reason is the first one's, its message
//! names them all.

use std::time::Duration;

use jiff::Timestamp;

use super::connect::ConnectError;
use super::kstatus;
use super::plan::{self, Action, Blocker, NodeFacts, NodeStatus};
use super::status::{self, Signal};
use crate::api::{DO_NOT_RETIRE_META, NomadClientPool, NomadClientPoolStatus, RetirePhase};
use crate::nomad::{NomadError, error_chain};
use crate::provider::{GroupState, ProviderError};

/// Problems named in one Degraded message; more are counted, not listed
/// (a pre-flight refusal per candidate could otherwise fill the object).
const MAX_LISTED_PROBLEMS: usize = 8;

/// One thing that is wrong, under a reason users and alerts can match on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
    /// Only a human can clear it (see `kstatus::stalled`).
    pub stalls: bool,
}

impl Problem {
    /// A problem that may clear by itself (a retry, a client joining).
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
            stalls: false,
        }
    }

    /// A problem no retry clears: the spec or the world outside must change.
    pub fn stalling(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            stalls: true,
            ..Self::new(reason, message)
        }
    }
}

/// Why the pool cannot be worked on right now; becomes the Degraded condition.
pub(super) struct Trouble {
    pub reason: &'static str,
    pub message: String,
    pub retry: Duration,
    /// No retry will clear it: the pool is also `Stalled` (a pipeline then
    /// fails at once instead of waiting for its timeout).
    pub stalls: bool,
}

impl Trouble {
    pub fn from_nomad(e: &NomadError, address: &str) -> Self {
        match e {
            NomadError::PermissionDenied { .. } => Trouble {
                reason: "Unauthorized",
                message: format!(
                    "Nomad at {address} denied the request: {e}. The token in nomad.tokenSecretRef needs node:write and namespace read-job"
                ),
                retry: Duration::from_secs(60),
                stalls: true,
            },
            NomadError::BodyTooLarge { .. } => Trouble {
                reason: "NomadResponseTooLarge",
                message: format!(
                    "{e}, far more than a real cluster's; it was not read. Check what answers at {address} (a proxy?)"
                ),
                retry: Duration::from_secs(60),
                // The limit is far above any real cluster's answer: what
                // answers is misconfigured, and stays so until fixed.
                stalls: true,
            },
            NomadError::InvalidTls(_) | NomadError::InvalidAddress(_) => Trouble {
                reason: "InvalidSpec",
                message: format!("{e}"),
                retry: Duration::from_secs(120),
                stalls: true,
            },
            // Nomad (or something between it and us) answered, but not with
            // what Nomad sends: calling that "unreachable" sends the on-call
            // engineer to check the network instead of the proxy.
            NomadError::Decode { .. } | NomadError::InvalidHeader { .. } => Trouble {
                reason: "NomadResponseInvalid",
                message: format!(
                    "Nomad at {address} answered, but not as Nomad answers (a proxy in between?): {}",
                    error_chain(e)
                ),
                retry: Duration::from_secs(15),
                // A load balancer's error page while Nomad restarts reads
                // the same: it may pass.
                stalls: false,
            },
            _ => Trouble {
                reason: "NomadUnreachable",
                message: format!("cannot reach Nomad at {address}: {}", error_chain(e)),
                retry: Duration::from_secs(15),
                stalls: false,
            },
        }
    }

    pub fn from_provider(e: &ProviderError, group: &str) -> Self {
        Trouble {
            reason: "ProviderError",
            message: format!("{group}: {e}"),
            retry: if e.is_retryable() {
                Duration::from_secs(10)
            } else {
                Duration::from_secs(60)
            },
            // Not retryable means: fails again until someone changes the
            // group, its configuration or the credentials (a missing
            // group, a denied call).
            stalls: !e.is_retryable(),
        }
    }

    /// The pool may not act on its group, or not with the operator's identity.
    pub fn refused(r: super::authority::Refusal) -> Self {
        Trouble {
            reason: r.reason(),
            message: r.to_string(),
            retry: r.retry(),
            // The group's owner must tag it, or the operator's
            // configuration change: nothing the pool does clears it.
            stalls: true,
        }
    }

    pub fn from_connect(e: &ConnectError) -> Self {
        Trouble {
            reason: e.reason(),
            message: e.message(),
            retry: Duration::from_secs(60),
            // A Secret to create, label or name correctly.
            stalls: true,
        }
    }
}

/// The Degraded problem a planner blocker stands for; `None` for blockers
/// that are progress, not faults (see [`progressing`]).
pub fn degraded_by(blocker: &Blocker) -> Option<Problem> {
    Some(match blocker {
        Blocker::Preflight(m) => Problem::new(
            "PreflightFailed",
            format!("the cloud would refuse to remove: {m}"),
        ),
        Blocker::UnknownRetireTarget(t) => Problem::stalling(
            "UnknownRetireTarget",
            format!("spec.retire names {t}, which is not a client of this pool"),
        ),
        // The token's policy must change: no retry shows the allocations.
        Blocker::AllocationsHidden(gap) => Problem::stalling(
            "AllocationsNotVisible",
            format!("Nomad may hide allocations from this pool's token: {gap}"),
        ),
        // Not stalling: a pool grown from zero reads so until its first
        // clients join.
        Blocker::NoClientsMatch { desired } => Problem::new(
            "NoMatchingClients",
            format!(
                "spec.selector matches no live Nomad client, but the pool should have {desired}: check nodePool, nodeClass, datacenters and meta against the clients' registration"
            ),
        ),
        Blocker::ReplicasAboveMaxSize {
            replicas,
            max_size,
            group,
        } => Problem::stalling(
            "ReplicasAboveMaxSize",
            format!(
                "spec.replicas is {replicas} but {group} allows at most {max_size} (MaxSize): the group is grown no further than that; raise its MaxSize or lower replicas"
            ),
        ),
        Blocker::SharedInstance(which) => Problem::new(
            "SharedInstance",
            super::readiness::shared_instance_message(which),
        ),
        Blocker::InvalidBudget(m) => Problem::stalling(
            "InvalidDisruptionBudget",
            format!("{m}; voluntary retirements wait until it is fixed"),
        ),
        Blocker::TooManyUnhealthy { unhealthy, allowed } => Problem::new(
            "TooManyUnhealthy",
            format!(
                "{unhealthy} client(s) of the pool are unhealthy (down, disconnected or never registered on an in-service VM, or being replaced), remediation.maxUnhealthy allows {allowed}: nothing is remediated until fewer are (an outage is not repaired by deleting VMs); find what took them down"
            ),
        ),
        Blocker::LaunchTimesUnknown => Problem::new(
            "MaxNodeAgeUnsupported",
            "spec.maxNodeAge is set, but this pool's cloud provider does not read VM launch times: no client is replaced for its age; unset maxNodeAge, or replace clients with spec.retire".to_owned(),
        ),
        Blocker::DoNotRetire { short, opted_out } => Problem::new(
            "DoNotRetire",
            format!(
                "spec.replicas cannot be reached without retiring {short} more client(s), and the only candidates left are among the {opted_out} client(s) whose Meta sets {DO_NOT_RETIRE_META}=true: remove the key from some, name them in spec.retire, or raise replicas"
            ),
        ),
        // Capacity that is missing, not a fault of the pool: `Ready` says it
        // (see `readiness::not_ready`).
        Blocker::VmsWithoutClient(_) => return None,
        Blocker::BudgetExhausted { .. }
        | Blocker::DisruptionBudget { .. }
        | Blocker::RateLimited(_)
        | Blocker::NoEmptyNodes
        | Blocker::Paused => {
            return None;
        }
    })
}

/// The Degraded condition's value: every problem, the first one's reason.
fn degraded_signal(problems: &[Problem]) -> Option<(&'static str, String)> {
    let first = problems.first()?;
    if problems.len() == 1 {
        return Some((first.reason, first.message.clone()));
    }
    let mut listed: Vec<String> = problems
        .iter()
        .take(MAX_LISTED_PROBLEMS)
        .map(|p| format!("{}: {}", p.reason, p.message))
        .collect();
    if problems.len() > MAX_LISTED_PROBLEMS {
        listed.push(format!("and {} more", problems.len() - MAX_LISTED_PROBLEMS));
    }
    Some((
        first.reason,
        format!("{} problems: {}", problems.len(), listed.join("; ")),
    ))
}

/// The Progressing condition: what the pool is doing, or what holds it.
fn progressing(pool: &NomadClientPool, planned: &plan::Plan, scaling_up: bool) -> Signal {
    let spec = &pool.spec;
    let count =
        |f: &dyn Fn(RetirePhase) -> bool| planned.retiring.iter().filter(|r| f(r.phase)).count();
    let terminating = count(&|p| p == RetirePhase::Terminating);
    let draining = count(&|p| p < RetirePhase::Terminating);
    let cancelling = count(&|p| p == RetirePhase::Cancelling);
    if spec.disruption.dry_run && !planned.preview.is_empty() {
        Signal::new(
            false,
            "DryRun",
            format!(
                "dry run: would retire {} client(s); see status.plan",
                planned.preview.len()
            ),
        )
    } else if let Some(Blocker::BudgetExhausted { in_flight, budget }) = planned
        .blockers
        .iter()
        .find(|b| matches!(b, Blocker::BudgetExhausted { .. }))
    {
        Signal::new(
            true,
            "BudgetExhausted",
            format!(
                "{in_flight} client(s) out of service (retiring, or made ineligible by anyone), disruption.maxUnavailable allows {budget}; more start as these finish"
            ),
        )
    } else if let Some(signal) = held_by_budgets(planned) {
        signal
    } else if planned.blockers.contains(&Blocker::Paused) {
        Signal::new(
            false,
            "Paused",
            "disruption.paused is set: no new retirement starts",
        )
    } else if planned.blockers.contains(&Blocker::NoEmptyNodes) {
        Signal::new(
            false,
            "NoEmptyNodes",
            "selectionPolicy Empty: waiting for a client with no pending or running allocation",
        )
    } else if scaling_up {
        Signal::new(
            true,
            "ScalingUp",
            format!(
                "raising the group's desired capacity to {}",
                planned.desired_nodes
            ),
        )
    } else if cancelling > 0 {
        Signal::new(
            true,
            "Cancelling",
            format!("{cancelling} client(s) returning to service"),
        )
    } else if !planned.retiring.is_empty() {
        Signal::new(
            true,
            "Retiring",
            format!("{draining} client(s) draining, {terminating} terminating"),
        )
    } else {
        Signal::new(false, "Idle", "nothing to do")
    }
}

/// Progressing while `disruption.budgets` hold back retirements that are
/// due: a budget (a window with `maxUnavailable: 0` among them) or a rate.
/// True while retirements are in flight, false while nothing moves.
fn held_by_budgets(planned: &plan::Plan) -> Option<Signal> {
    let moving = !planned.retiring.is_empty();
    planned.blockers.iter().find_map(|b| match b {
        Blocker::DisruptionBudget { message, .. } => {
            Some(Signal::new(moving, "DisruptionBudget", message.clone()))
        }
        Blocker::RateLimited(message) => Some(Signal::new(moving, "RateLimited", message.clone())),
        _ => None,
    })
}

/// The status to write after a plan. `problems` are those the reconciler
/// found itself (a failed action, a drain Nomad does not apply); they come
/// before the planner's.
pub(super) fn build_status(
    pool: &NomadClientPool,
    previous: &NomadClientPoolStatus,
    planned: &plan::Plan,
    nodes: &[NodeFacts],
    group: &GroupState,
    problems: Vec<Problem>,
) -> NomadClientPoolStatus {
    let ready = ready_clients(nodes);
    let in_phase = |f: &dyn Fn(RetirePhase) -> bool| {
        planned.retiring.iter().filter(|r| f(r.phase)).count() as i32
    };
    let problems = all_problems(problems, planned);
    let degraded = degraded_signal(&problems);
    let scaling_up = planned
        .actions
        .iter()
        .any(|a| matches!(a, Action::SetDesiredCapacity { .. }));
    let progressing = progressing(pool, planned, scaling_up);
    let stalled = kstatus::stalled(&problems, planned, scaling_up);
    let reconciling = kstatus::reconciling(planned, scaling_up, &progressing, &stalled);
    let ready_signal = ready_condition(
        planned,
        nodes,
        group,
        ready,
        &degraded,
        &progressing,
        scaling_up,
    );
    let conditions = status::merge(
        &previous.conditions,
        &[
            (status::READY, ready_signal),
            (status::PROGRESSING, progressing),
            (status::DEGRADED, degraded_condition(&degraded)),
            (status::RECONCILING, reconciling),
            (status::STALLED, stalled),
        ],
        pool.metadata.generation,
        Timestamp::now(),
    );
    NomadClientPoolStatus {
        observed_generation: pool.metadata.generation,
        desired_nodes: Some(planned.desired_nodes as i32),
        group_desired_capacity: Some(group.desired_capacity as i32),
        nodes: nodes
            .iter()
            .filter(|n| n.status != NodeStatus::Down)
            .count() as i32,
        ready_nodes: ready,
        draining_nodes: in_phase(&|p| p < RetirePhase::Terminating),
        terminating_nodes: in_phase(&|p| p == RetirePhase::Terminating),
        unhealthy_nodes: planned.unhealthy as i32,
        do_not_retire_nodes: nodes
            .iter()
            .filter(|n| n.status != NodeStatus::Down && n.do_not_retire)
            .count() as i32,
        retired_total: previous.retired_total + planned.retired as i64,
        retiring: vec![],
        counted_retirements: previous.counted_retirements.clone(),
        retirements_in_flight: 0,
        retirements_pending: 0,
        oldest_retirements: vec![],
        retired: planned.retired_nodes.clone(),
        plan: planned.preview.clone(),
        disruption: planned.disruption.clone(),
        conditions,
    }
}

/// Clients that take work: ready, eligible, not draining.
fn ready_clients(nodes: &[NodeFacts]) -> i32 {
    nodes
        .iter()
        .filter(|n| n.status == NodeStatus::Ready && n.eligible && !n.draining)
        .count() as i32
}

/// The reconciler's problems first, then each fault among the planner's
/// blockers once.
fn all_problems(mut problems: Vec<Problem>, planned: &plan::Plan) -> Vec<Problem> {
    for p in planned.blockers.iter().filter_map(degraded_by) {
        if !problems.contains(&p) {
            problems.push(p);
        }
    }
    problems
}

/// The Degraded condition: every problem, or none.
fn degraded_condition(degraded: &Option<(&'static str, String)>) -> Signal {
    match degraded {
        Some((reason, message)) => Signal::new(true, *reason, message.clone()),
        None => Signal::new(false, "AsExpected", ""),
    }
}

/// The Ready condition: a problem, settled, capacity missing, or what the
/// pool is doing (Progressing's words).
fn ready_condition(
    planned: &plan::Plan,
    nodes: &[NodeFacts],
    group: &GroupState,
    ready: i32,
    degraded: &Option<(&'static str, String)>,
    progressing: &Signal,
    scaling_up: bool,
) -> Signal {
    let not_ready = super::readiness::not_ready(planned, nodes, ready)
        .or_else(|| super::readiness::scale_in_held(planned, nodes, group.desired_capacity, ready));
    let settled = planned.retiring.is_empty()
        && !scaling_up
        && degraded.is_none()
        && group.desired_capacity == planned.desired_nodes
        && planned.preview.is_empty()
        && not_ready.is_none();
    if let Some((reason, message)) = degraded {
        Signal::new(false, *reason, message.clone())
    } else if settled {
        let mut message = format!("{} client(s), as desired", planned.desired_nodes);
        if !planned.done_targets.is_empty() {
            // Done, not an error: the entries may simply be removed.
            message.push_str(&format!(
                "; spec.retire entries already retired: {}",
                planned.done_targets.join(", ")
            ));
        }
        Signal::new(true, "Settled", message)
    } else if let Some(s) = not_ready.filter(|_| planned.retiring.is_empty() && !scaling_up) {
        s
    } else if held_by_spec(planned, scaling_up, progressing) {
        // Ready for what the spec asks: nothing moves because it says so.
        // kstatus reads a False Ready as InProgress, and a pipeline that
        // applied `paused` or `dryRun` would wait for its timeout (kstatus
        // after v0.37.2 calls a suspended Job Current for the same reason).
        Signal::new(
            true,
            progressing.reason.clone(),
            progressing.message.clone(),
        )
    } else if progressing.reason == "BudgetExhausted" {
        // Waiting on the budget is normal progress; the column users see
        // should say the pool is retiring, not sound an alarm.
        Signal::new(false, "Retiring", progressing.message.clone())
    } else if progressing.reason == "Idle" && group.desired_capacity != planned.desired_nodes {
        // The group's size lags its clients (a terminate still landing, or
        // a view of the group read before it): "nothing to do" would read
        // as stuck.
        Signal::new(
            false,
            "GroupResizing",
            format!(
                "waiting for the group's desired capacity ({}) to reach {}",
                group.desired_capacity, planned.desired_nodes
            ),
        )
    } else {
        Signal::new(
            false,
            progressing.reason.clone(),
            progressing.message.clone(),
        )
    }
}

/// Whether only `disruption.paused` or `dryRun` keeps the pool from
/// settling: nothing in flight, nothing else wrong.
fn held_by_spec(planned: &plan::Plan, scaling_up: bool, progressing: &Signal) -> bool {
    planned.retiring.is_empty()
        && !scaling_up
        && matches!(progressing.reason.as_str(), "Paused" | "DryRun")
}

#[cfg(test)]
mod tests;
