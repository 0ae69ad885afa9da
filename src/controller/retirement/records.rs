//! A retirement object as the planner's entry, and the planner's entry as a
//! retirement's status; the object's name; what hand-made and deleted
//! objects ask of the pool. Pure: no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

use super::CREATED_BY;
use super::conditions::{GLOBAL_TIMEOUT, progressing, reconciling, stalled};
use crate::api::{
    BlockingAllocation, DrainPolicy, NomadClientRetirement, NomadClientRetirementStatus,
    RetirePhase, RetireReason, RetireTarget, RetirementPhase, RetiringNode,
};

/// How many blocking job IDs a planner entry lists (as `status.retiring` did).
const MAX_BLOCKING_JOBS: usize = 5;

/// What a pool's retirements ask of the planner.
#[derive(Debug, Default)]
pub struct Tracked {
    /// Retirements in flight, as the planner tracks them; a deleted one that
    /// has not reached `Terminating` is asked to cancel.
    pub entries: Vec<RetiringNode>,
    /// Hand-made retirements not finished nor deleted: the pool keeps their
    /// clients wanted, as if `spec.retire` named them.
    pub hand_made: Vec<RetireTarget>,
    /// Of those, how many wait for the pool to start them.
    pub pending: usize,
}

/// The planner's view of a pool's retirements, with the entries a status
/// written by the previous version still lists (`legacy`) for the clients
/// that have no object yet. Retirements whose end is `finishing` (counted,
/// final status not yet written) are left out.
pub fn tracked(
    retirements: &[Arc<NomadClientRetirement>],
    legacy: &[RetiringNode],
    now: Timestamp,
    finishing: &dyn Fn(&NomadClientRetirement) -> bool,
) -> Tracked {
    let mut out = Tracked::default();
    for r in retirements.iter().filter(|r| !finishing(r)) {
        let deleting = r.metadata.deletion_timestamp.is_some();
        let phase = r.phase();
        if !deleting && !phase.is_finished() && !created_by_pool(r) {
            out.hand_made.push(target_of(r));
            if phase == RetirementPhase::Pending {
                out.pending += 1;
            }
        }
        if let Some(mut entry) = entry_of(r) {
            if deleting && entry.phase < RetirePhase::Terminating {
                entry.phase = RetirePhase::Cancelling;
                entry.since = Time(now);
                entry.message = Some("cancelling: the retirement was deleted".into());
            }
            out.entries.push(entry);
        }
    }
    let has_object = |id: &str| {
        retirements.iter().any(|r| {
            r.phase().in_flight().is_some()
                && r.status.as_ref().and_then(|s| s.node_id.as_deref()) == Some(id)
        })
    };
    for old in legacy {
        if !has_object(&old.node_id) {
            out.entries.push(old.clone());
        }
    }
    out
}

/// The drain of every client whose retirement sets its own, by node ID.
/// A hand-made retirement not started yet names no node: the pool's
/// settings apply to its drain only from when it starts (its node known).
pub fn drains(
    retirements: &[Arc<NomadClientRetirement>],
    pool: &DrainPolicy,
) -> HashMap<String, DrainPolicy> {
    retirements
        .iter()
        .filter_map(|r| {
            let overrides = r.spec.drain.as_ref()?;
            let node = r.status.as_ref()?.node_id.clone()?;
            Some((node, overrides.over(pool)))
        })
        .collect()
}

/// The key the planner tracks a retirement's client by: its node ID, or,
/// for a VM no client registered on (which has no node), its instance ID.
pub fn client_key(r: &NomadClientRetirement) -> Option<&str> {
    let st = r.status.as_ref()?;
    if r.spec.reason.has_node() {
        st.node_id.as_deref()
    } else {
        st.instance_id.as_deref()
    }
}

/// The name the planner's Events give the client: its node's name, or
/// the instance ID of a VM that has no node.
pub fn client_label(r: &NomadClientRetirement) -> Option<&str> {
    let st = r.status.as_ref()?;
    if r.spec.reason.has_node() {
        st.node_name.as_deref()
    } else {
        st.instance_id.as_deref()
    }
}

pub fn created_by_pool(r: &NomadClientRetirement) -> bool {
    r.annotations().contains_key(CREATED_BY)
}

/// The `spec.retire` entry a hand-made retirement stands for.
pub fn target_of(r: &NomadClientRetirement) -> RetireTarget {
    let t = &r.spec.target;
    RetireTarget {
        node_name: t.node_name.clone(),
        node_id: t.node_id.clone(),
        instance_id: t.instance_id.clone(),
        replace: !r.spec.decrement(),
    }
}

/// Whether a hand-made retirement's target is this entry's client.
pub fn targets(r: &NomadClientRetirement, e: &RetiringNode) -> bool {
    let t = &r.spec.target;
    t.node_id.as_deref() == Some(e.node_id.as_str())
        || t.node_name.as_deref() == Some(e.node_name.as_str())
        || (t.instance_id.is_some() && t.instance_id == e.instance_id)
}

/// The reason the planner drives a retirement by. A remediation reason
/// skips the drain (its client is down), a permission only the pool's own
/// remediation gives: a hand-made object naming one is drained like any
/// other hand-made replacement, whatever its client's state.
fn reason_of(r: &NomadClientRetirement) -> RetireReason {
    if r.spec.reason.is_remediation() && !created_by_pool(r) {
        RetireReason::Replace
    } else {
        r.spec.reason
    }
}

/// A retirement in flight as the planner's entry; `None` when it is pending
/// or finished.
pub fn entry_of(r: &NomadClientRetirement) -> Option<RetiringNode> {
    let st = r.status.as_ref()?;
    let phase = st.phase?.in_flight()?;
    let mut blocking_jobs: Vec<String> = Vec::new();
    for a in &st.blocking_allocations {
        if !blocking_jobs.contains(&a.job_id) && blocking_jobs.len() < MAX_BLOCKING_JOBS {
            blocking_jobs.push(a.job_id.clone());
        }
    }
    blocking_jobs.sort();
    let created = r.metadata.creation_timestamp.clone();
    Some(RetiringNode {
        node_id: client_key(r)?.to_owned(),
        node_name: client_label(r).unwrap_or_default().to_owned(),
        instance_id: st.instance_id.clone(),
        phase,
        since: st
            .phase_since
            .clone()
            .or(created)
            .unwrap_or(Time(Timestamp::UNIX_EPOCH)),
        selected_at: st.selected_at.clone(),
        reason: reason_of(r),
        decrement: r.spec.decrement(),
        cordoned_by_pool: st.cordoned_by_pool,
        drain_started_at: st.drain_started_at.clone(),
        drain_deadline: st.drain_deadline.clone(),
        allocations_left: st.allocations_left,
        blocking_jobs,
        message: st.message.clone(),
    })
}

/// The status of a retirement whose client the planner left at `e`;
/// `blocking`: the allocations seen on the client, if it is watched.
pub fn status_of(
    e: &RetiringNode,
    previous: Option<&NomadClientRetirementStatus>,
    generation: Option<i64>,
    blocking: Option<Vec<BlockingAllocation>>,
    now: Timestamp,
) -> NomadClientRetirementStatus {
    let phase = RetirementPhase::from(e.phase);
    let blocking_allocations = blocking_of(e, blocking, previous);
    let terminated_at = previous
        .and_then(|p| p.terminated_at.clone())
        .or_else(|| (e.phase == RetirePhase::Terminating).then(|| e.since.clone()));
    let message = e.message.clone();
    NomadClientRetirementStatus {
        observed_generation: generation,
        phase: Some(phase),
        phase_since: Some(e.since.clone()),
        // A VM no client registered on has no node: its key is the
        // instance ID, which the status records as such.
        node_id: e.reason.has_node().then(|| e.node_id.clone()),
        node_name: e.reason.has_node().then(|| e.node_name.clone()),
        instance_id: e.instance_id.clone(),
        selected_at: e.selected_at.clone(),
        cordoned_by_pool: e.cordoned_by_pool,
        drain_started_at: e.drain_started_at.clone(),
        drain_deadline: e.drain_deadline.clone(),
        allocations_left: e.allocations_left,
        blocking_allocations,
        terminated_at,
        finished_at: None,
        conditions: {
            let before = previous.map_or(&[][..], |p| &p.conditions);
            let words = message.as_deref().unwrap_or("");
            with_kept(
                [
                    progressing(before, generation, true, phase, words, now),
                    reconciling(before, generation, phase, false, words, now),
                    stalled(before, generation, None, now),
                ],
                previous,
            )
        },
        message,
        // What the hook said of the VM's action stays (see `hold`).
        lifecycle_action: previous.and_then(|p| p.lifecycle_action.clone()),
    }
}

/// `Progressing`, `Reconciling` and `Stalled` first, then the conditions
/// only `hold` sets, as they were.
fn with_kept(
    own: [Condition; 3],
    previous: Option<&NomadClientRetirementStatus>,
) -> Vec<Condition> {
    let kept = previous.into_iter().flat_map(|p| &p.conditions);
    own.into_iter()
        .chain(kept.filter(|c| c.type_ == GLOBAL_TIMEOUT).cloned())
        .collect()
}

/// The allocations blocking `e`: of the jobs the planner names, those seen
/// on the client now (or, unwatched, last time), and a job's name alone
/// where no allocation of it was seen.
fn blocking_of(
    e: &RetiringNode,
    seen: Option<Vec<BlockingAllocation>>,
    previous: Option<&NomadClientRetirementStatus>,
) -> Vec<BlockingAllocation> {
    let known = seen
        .or_else(|| previous.map(|p| p.blocking_allocations.clone()))
        .unwrap_or_default();
    let mut out: Vec<BlockingAllocation> = known
        .into_iter()
        .filter(|a| e.blocking_jobs.contains(&a.job_id))
        .collect();
    for job in &e.blocking_jobs {
        if !out.iter().any(|a| &a.job_id == job) {
            out.push(BlockingAllocation {
                job_id: job.clone(),
                ..Default::default()
            });
        }
    }
    out
}

/// The status of a retirement that ended: `Retired` or `Cancelled`.
pub fn finished_status(
    previous: &NomadClientRetirementStatus,
    generation: Option<i64>,
    outcome: RetirementPhase,
    message: String,
    now: Timestamp,
) -> NomadClientRetirementStatus {
    NomadClientRetirementStatus {
        observed_generation: generation,
        phase: Some(outcome),
        phase_since: Some(Time(now)),
        allocations_left: 0,
        blocking_allocations: vec![],
        finished_at: Some(Time(now)),
        conditions: {
            let before = &previous.conditions;
            with_kept(
                [
                    progressing(before, generation, false, outcome, &message, now),
                    reconciling(before, generation, outcome, false, &message, now),
                    stalled(before, generation, None, now),
                ],
                Some(previous),
            )
        },
        message: Some(message),
        ..previous.clone()
    }
}

/// `status` as the API server stores it: Kubernetes keeps times to the
/// whole second. An allocation's time from Nomad has nanoseconds, and a
/// status holding one never equalled its stored copy: each reconcile that
/// compared them sent a write the API server then found changed nothing,
/// after paying for all of it (about one per retirement in a bench run).
pub fn as_stored(status: &mut NomadClientRetirementStatus) {
    fn whole(t: &mut Time) {
        if let Ok(s) = Timestamp::from_second(t.0.as_second()) {
            t.0 = s;
        }
    }
    let times = [
        &mut status.phase_since,
        &mut status.selected_at,
        &mut status.drain_started_at,
        &mut status.drain_deadline,
        &mut status.terminated_at,
        &mut status.finished_at,
    ];
    times.into_iter().flatten().for_each(whole);
    (status.blocking_allocations.iter_mut())
        .filter_map(|a| a.since.as_mut())
        .for_each(whole);
    (status.lifecycle_action.iter_mut())
        .filter_map(|l| l.completed_at.as_mut())
        .for_each(whole);
    (status.conditions.iter_mut()).for_each(|c| whole(&mut c.last_transition_time));
}

/// Whether two statuses differ in more than progress figures (allocation
/// counts and lists, and the numbers in messages): those may wait a little
/// for the next write, everything else is written at once. A message that
/// says something else ("waiting for 2 allocation(s)" becoming "the node
/// is disconnected ...") is news, not progress; but within `Terminating`,
/// where the words only narrate the committed call, they are progress too.
///
/// A phase is always news, `Cordoned` too: the planner plans from the
/// stored record, and a `Selected` record left in place when the cordon
/// landed made every reconcile send the drain again until `Draining` was
/// written (the bench saw 4.8 drains per client).
pub fn material_change(
    old: &NomadClientRetirementStatus,
    new: &NomadClientRetirementStatus,
) -> bool {
    // Once the VM's termination is committed, the words narrate steps the
    // record already names (the call, the node turning down, the purge),
    // each over in a second or two: written at once they cost up to two
    // full updates per retired client (two in every retirement of a
    // 200-client bench run; BENCHMARKS.md, twenty-first pass). They wait
    // like counts, so a step that lingers (a purge Nomad keeps refusing)
    // is still shown.
    let narrated = old.phase == Some(RetirementPhase::Terminating)
        && new.phase == Some(RetirementPhase::Terminating);
    let material = |s: &NomadClientRetirementStatus| {
        let mut s = s.clone();
        s.allocations_left = 0;
        s.blocking_allocations.clear();
        s.message = s.message.as_deref().map(words).filter(|_| !narrated);
        for c in &mut s.conditions {
            c.message = if narrated {
                String::new()
            } else {
                words(&c.message)
            };
        }
        s
    };
    material(old) != material(new)
}

/// A message without its figures.
fn words(m: &str) -> String {
    m.chars().filter(|c| !c.is_ascii_digit()).collect()
}

/// Whether `new` changes the record itself: the phase, the client and its
/// VM, who cordoned it, the drain's and the termination's times; what the
/// next action rests on and what adoption reads back. The words, the
/// conditions and the figures that report on it are not: a status that
/// changes only those names no side effect, so it need not land before the
/// reconcile acts, nor hold its client off the express lane meanwhile. A
/// drain's message changes as its jobs finish; held as news, such a client
/// could wait out the reconcile's writes after its drain ended, 6-15 s at
/// 20,000 clients (BENCHMARKS.md, twelfth pass).
pub fn record_change(old: &NomadClientRetirementStatus, new: &NomadClientRetirementStatus) -> bool {
    fn record(s: &NomadClientRetirementStatus) -> NomadClientRetirementStatus {
        NomadClientRetirementStatus {
            allocations_left: 0,
            blocking_allocations: Vec::new(),
            message: None,
            conditions: Vec::new(),
            ..s.clone()
        }
    }
    record(old) != record(new)
}

/// The name the pool gives the retirement of a client: the pool's and the
/// node's names and the node ID's first characters, as a DNS subdomain,
/// with a counter when an earlier retirement of the same client holds it.
pub fn name_for(
    pool: &str,
    node_name: &str,
    node_id: &str,
    taken: impl Fn(&str) -> bool,
) -> String {
    let clean = |s: &str| -> String {
        s.to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    let id: String = clean(node_id).chars().take(8).collect();
    let mut base = format!("{}-{}", clean(pool), clean(node_name));
    // Room for "-<id>-<counter>" within the 253 characters of a name.
    base.truncate(253 - id.len() - 8);
    let base = format!(
        "{}-{id}",
        base.trim_matches(|c: char| !c.is_ascii_alphanumeric())
    );
    let base = base
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| !taken(n))
        .expect("some counter is free")
}

#[cfg(test)]
pub(crate) mod tests;
