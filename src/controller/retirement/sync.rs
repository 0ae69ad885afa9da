//! The writes that take a pool's retirement objects from what they say to
//! what the plan decided. Pure: `write` sends them.
//!
//! Per client the plan keeps in flight: its object's status (created first
//! for a client that has none, or taken over from a hand-made object that
//! names it). Per retirement the plan let go of: its final status, and its
//! finalizer dropped. Then the history beyond the pool's limit, oldest first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use super::conditions;
use super::hold::{self, HoldFacts};
use super::records::{self, created_by_pool, finished_status, material_change, status_of};
use super::{CREATED_BY, FINALIZER, POOL_LABEL};
use crate::api::{
    BlockingAllocation, CapacityChange, NomadClientPool, NomadClientRetirement,
    NomadClientRetirementSpec, NomadClientRetirementStatus, RetirePhase, RetirementPhase,
    RetirementTarget, RetiringNode,
};
use crate::controller::plan::{Blocker, Plan, target_label};

/// What the pool's reconcile saw besides the plan.
pub struct Inputs<'a> {
    pub pool: &'a NomadClientPool,
    pub retirements: &'a [Arc<NomadClientRetirement>],
    /// The retirement a drain's Meta names, by node ID (adoption).
    pub meta_names: &'a HashMap<String, String>,
    /// Allocations blocking each watched client, by node ID.
    pub blocking: &'a HashMap<String, Vec<BlockingAllocation>>,
    /// Whether a retirement was written so recently that progress figures
    /// alone may wait.
    pub written_recently: &'a dyn Fn(&NomadClientRetirement) -> bool,
    /// What the pool's lifecycle hook adds to held clients' statuses.
    pub hold: &'a HoldFacts,
    pub now: Timestamp,
}

/// A retirement's status to write over the object it was read from.
#[derive(Debug, Clone)]
pub struct StatusWrite {
    pub object: Arc<NomadClientRetirement>,
    pub status: NomadClientRetirementStatus,
}

/// Every write one reconcile makes to its retirements.
#[derive(Debug, Default)]
pub struct Writes {
    /// New objects (with the status to write once created): write-ahead.
    pub creates: Vec<(NomadClientRetirement, NomadClientRetirementStatus)>,
    /// Hand-made objects the pool starts: labelled, owned and given the
    /// finalizer, then their status. Write-ahead.
    pub adopts: Vec<StatusWrite>,
    /// New statuses of retirements in flight. Write-ahead.
    pub statuses: Vec<StatusWrite>,
    /// Final statuses of the retirements the plan let go of.
    pub finishes: Vec<StatusWrite>,
    /// Objects whose finalizer goes: finished, or deleted before starting.
    pub releases: Vec<Arc<NomadClientRetirement>>,
    /// Finished objects beyond the history limit, deleted.
    pub prunes: Vec<Arc<NomadClientRetirement>>,
    /// The retirement of every client in flight or finishing now, by node ID.
    pub names: HashMap<String, String>,
    /// The same by node name, for the planner's Events.
    pub by_node_name: HashMap<String, String>,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty()
            && self.adopts.is_empty()
            && self.statuses.is_empty()
            && self.finishes.is_empty()
            && self.releases.is_empty()
            && self.prunes.is_empty()
    }
}

/// The writes for `plan`.
pub fn writes(input: &Inputs<'_>, plan: &Plan) -> Writes {
    let mut out = Writes::default();
    let in_flight: HashMap<&str, &Arc<NomadClientRetirement>> = input
        .retirements
        .iter()
        .filter(|r| r.phase().in_flight().is_some())
        .filter_map(|r| Some((records::client_key(r)?, r)))
        .collect();
    let superseded = superseded(&in_flight, plan);
    let mut pending: Vec<&Arc<NomadClientRetirement>> = input
        .retirements
        .iter()
        .filter(|r| r.phase() == RetirementPhase::Pending && !created_by_pool(r))
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .collect();
    let mut taken: HashSet<String> = input.retirements.iter().map(|r| r.name_any()).collect();
    for e in &plan.retiring {
        let blocking = input.blocking.get(&e.node_id).cloned();
        let object = (in_flight.get(e.node_id.as_str()))
            .filter(|_| !superseded.contains(e.node_id.as_str()));
        if let Some(r) = object {
            let mut status = status_of(
                e,
                r.status.as_ref(),
                r.metadata.generation,
                blocking,
                input.now,
            );
            held(input, &mut status, e, Some(&***r));
            records::as_stored(&mut status);
            let old = r.status.clone().unwrap_or_default();
            if old != status && (material_change(&old, &status) || !(input.written_recently)(r)) {
                out.statuses.push(StatusWrite {
                    object: (*r).clone(),
                    status,
                });
            }
            out.names.insert(e.node_id.clone(), r.name_any());
        } else if let Some(i) =
            (pending.iter()).position(|h| e.reason.has_node() && records::targets(h, e))
        {
            let h = pending.swap_remove(i);
            let mut status = status_of(e, None, h.metadata.generation, blocking, input.now);
            held(input, &mut status, e, Some(&**h));
            out.names.insert(e.node_id.clone(), h.name_any());
            out.adopts.push(StatusWrite {
                object: h.clone(),
                status,
            });
        } else {
            let name = input
                .meta_names
                .get(&e.node_id)
                .filter(|n| !taken.contains(*n))
                .cloned()
                .unwrap_or_else(|| {
                    // A VM without a node is named by its instance ID alone.
                    let id = if e.reason.has_node() {
                        e.node_id.as_str()
                    } else {
                        ""
                    };
                    records::name_for(&input.pool.name_any(), &e.node_name, id, |n| {
                        taken.contains(n)
                    })
                });
            taken.insert(name.clone());
            out.names.insert(e.node_id.clone(), name.clone());
            let mut status = status_of(e, None, Some(1), blocking, input.now);
            held(input, &mut status, e, None);
            out.creates.push((new_object(input.pool, &name, e), status));
        }
    }
    for h in pending {
        let mut status = pending_status(h, plan, &out.names, input.now);
        records::as_stored(&mut status);
        if h.status.as_ref() != Some(&status) {
            out.statuses.push(StatusWrite {
                object: h.clone(),
                status,
            });
        }
    }
    orphans::settle(input, &mut out);
    finish(input, plan, &in_flight, &superseded, &mut out);
    let name_of = |id: &str| out.names.get(id).cloned();
    out.by_node_name = (plan.retiring.iter())
        .map(|e| (e.node_id.as_str(), e.node_name.as_str()))
        .chain(
            in_flight
                .values()
                .filter_map(|r| Some((records::client_key(r)?, records::client_label(r)?))),
        )
        .filter_map(|(id, name)| Some((name.to_owned(), name_of(id)?)))
        .collect();
    out
}

/// The clients whose deleted retirement the plan has chosen again: the
/// deleted object finishes as cancelled, and the new choice gets an object
/// of its own. Mapped onto the deleted object, it would flip between the
/// plan's new phase and the cancel its deletion asks for, for good.
fn superseded<'a>(
    in_flight: &HashMap<&'a str, &Arc<NomadClientRetirement>>,
    plan: &Plan,
) -> HashSet<&'a str> {
    let chosen_again: HashSet<&str> = (plan.retiring.iter())
        .filter(|e| e.phase < RetirePhase::Terminating)
        .map(|e| e.node_id.as_str())
        .collect();
    (in_flight.iter())
        .filter(|(key, r)| r.metadata.deletion_timestamp.is_some() && chosen_again.contains(**key))
        .map(|(key, _)| *key)
        .collect()
}

/// What the pool's lifecycle hook adds to the status of `e`'s retirement
/// `r` (`None`: created now).
fn held(
    input: &Inputs<'_>,
    status: &mut NomadClientRetirementStatus,
    e: &RetiringNode,
    r: Option<&NomadClientRetirement>,
) {
    let own = hold::own_drain(r, &input.pool.spec.drain);
    hold::apply(status, e, input.hold, &own, input.now);
}

/// A hand-made retirement the pool has not started, and what it waits for.
fn pending_status(
    h: &NomadClientRetirement,
    plan: &Plan,
    names: &HashMap<String, String>,
    now: Timestamp,
) -> NomadClientRetirementStatus {
    let target = records::target_of(h);
    let label = target_label(&target);
    let busy = plan
        .retiring
        .iter()
        .find(|e| records::targets(h, e))
        .and_then(|e| names.get(&e.node_id));
    let unknown = busy.is_none()
        && plan
            .blockers
            .iter()
            .any(|b| matches!(b, Blocker::UnknownRetireTarget(l) if *l == label));
    let message = if let Some(other) = busy {
        format!("the client is already being retired by {other}")
    } else if unknown {
        format!(
            "no client of pool {} matches {label}: fix the target, or delete this retirement",
            h.spec.pool
        )
    } else if let Some(Blocker::BudgetExhausted { in_flight, budget }) = plan
        .blockers
        .iter()
        .find(|b| matches!(b, Blocker::BudgetExhausted { .. }))
    {
        format!(
            "waiting for the disruption budget: {in_flight} client(s) out of service, maxUnavailable allows {budget}"
        )
    } else if plan.blockers.contains(&Blocker::Paused) {
        "waiting: the pool's disruptions are paused".to_string()
    } else {
        "waiting for the pool to start it".to_string()
    };
    pending_record(h, message, unknown, now)
}

/// A pending retirement's status: its message, and the kstatus conditions
/// (Stalled while its target names no client, Reconciling otherwise).
fn pending_record(
    h: &NomadClientRetirement,
    message: String,
    unknown: bool,
    now: Timestamp,
) -> NomadClientRetirementStatus {
    let generation = h.metadata.generation;
    let before = h.status.as_ref().map_or(&[][..], |s| &s.conditions);
    let phase = RetirementPhase::Pending;
    let problem = unknown.then_some(("UnknownTarget", message.as_str()));
    NomadClientRetirementStatus {
        observed_generation: generation,
        phase: Some(phase),
        conditions: vec![
            conditions::reconciling(before, generation, phase, unknown, &message, now),
            conditions::stalled(before, generation, problem, now),
        ],
        message: Some(message),
        ..Default::default()
    }
}

/// The retirements the plan let go of, the finalizers that go, the history.
fn finish(
    input: &Inputs<'_>,
    plan: &Plan,
    in_flight: &HashMap<&str, &Arc<NomadClientRetirement>>,
    superseded: &HashSet<&str>,
    out: &mut Writes,
) {
    let kept: HashSet<&str> = (plan.retiring.iter())
        .map(|e| e.node_id.as_str())
        .filter(|id| !superseded.contains(id))
        .collect();
    let last_word: BTreeMap<&str, &str> = plan
        .events
        .iter()
        .filter_map(|ev| Some((ev.node.as_deref()?, ev.message.as_str())))
        .collect();
    let mut finished_now = Vec::new();
    for (node_id, r) in in_flight {
        if kept.contains(node_id) {
            continue;
        }
        let previous = r.status.clone().unwrap_or_default();
        let outcome = if previous.phase == Some(RetirementPhase::Terminating) {
            RetirementPhase::Retired
        } else {
            RetirementPhase::Cancelled
        };
        let node = records::client_label(r).unwrap_or_default();
        // The plan's last word on a client chosen again is about its new
        // retirement.
        let message = (last_word.get(node))
            .filter(|_| !superseded.contains(node_id))
            .map(|m| m.to_string())
            .unwrap_or_else(|| match outcome {
                RetirementPhase::Retired => format!("node {node} retired"),
                _ => format!("node {node} given back to service"),
            });
        let mut status = finished_status(
            &previous,
            r.metadata.generation,
            outcome,
            message,
            input.now,
        );
        hold::finish(&mut status, input.hold);
        out.finishes.push(StatusWrite {
            object: (*r).clone(),
            status,
        });
        finished_now.push((*r).clone());
        // The client's new retirement, if it has one, names it from now on.
        out.names
            .entry(node_id.to_string())
            .or_insert_with(|| r.name_any());
    }
    // Finalizers: of every finished object, and of deleted ones never started.
    for r in input.retirements.iter().chain(&finished_now) {
        let done = r.phase().is_finished() || finished_now.iter().any(|f| Arc::ptr_eq(f, r));
        let unstarted =
            r.phase() == RetirementPhase::Pending && r.metadata.deletion_timestamp.is_some();
        let holds = r.finalizers().iter().any(|f| f == FINALIZER);
        if holds
            && (done || unstarted)
            && !out.releases.iter().any(|x| x.name_any() == r.name_any())
        {
            out.releases.push(r.clone());
        }
    }
    out.prunes = beyond_history(input, &finished_now);
}

/// Finished retirements beyond the pool's history limit, oldest first out.
fn beyond_history(
    input: &Inputs<'_>,
    finished_now: &[Arc<NomadClientRetirement>],
) -> Vec<Arc<NomadClientRetirement>> {
    let when = |r: &NomadClientRetirement| {
        r.status
            .as_ref()
            .and_then(|s| s.finished_at.as_ref().map(|t| t.0))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    };
    let mut finished: Vec<(Timestamp, Arc<NomadClientRetirement>)> = input
        .retirements
        .iter()
        .filter(|r| r.phase().is_finished() && r.metadata.deletion_timestamp.is_none())
        .map(|r| (when(r), r.clone()))
        .chain(finished_now.iter().map(|r| (input.now, r.clone())))
        .collect();
    // Newest first; the name breaks ties so the choice is stable.
    finished.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then_with(|| a.1.name_any().cmp(&b.1.name_any()))
    });
    finished
        .into_iter()
        .skip(input.pool.spec.history_limit())
        .map(|(_, r)| r)
        .collect()
}

/// The pool as its retirements' controlling owner. Not kube's
/// `controller_owner_ref`: that sets `blockOwnerDeletion`, which needs
/// `update` on the pool's finalizers where the admission plugin that checks
/// it runs, a right the deploy does not grant.
fn owner_of(pool: &NomadClientPool) -> OwnerReference {
    OwnerReference {
        api_version: NomadClientPool::api_version(&()).into_owned(),
        kind: NomadClientPool::kind(&()).into_owned(),
        name: pool.name_any(),
        uid: pool.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

/// A retirement the pool creates for a client it tracks.
fn new_object(pool: &NomadClientPool, name: &str, e: &RetiringNode) -> NomadClientRetirement {
    let spec = NomadClientRetirementSpec {
        pool: pool.name_any(),
        target: if e.reason.has_node() {
            RetirementTarget {
                node_id: Some(e.node_id.clone()),
                ..Default::default()
            }
        } else {
            RetirementTarget {
                instance_id: e.instance_id.clone(),
                ..Default::default()
            }
        },
        reason: e.reason,
        capacity: Some(if e.decrement {
            CapacityChange::Shrink
        } else {
            CapacityChange::Replace
        }),
        drain: None,
    };
    let mut obj = NomadClientRetirement::new(name, spec);
    obj.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: pool.namespace(),
        labels: Some([(POOL_LABEL.to_string(), pool.name_any())].into()),
        annotations: Some([(CREATED_BY.to_string(), "pool".to_string())].into()),
        owner_references: Some(vec![owner_of(pool)]),
        finalizers: Some(vec![FINALIZER.into()]),
        ..Default::default()
    };
    obj
}

/// A hand-made retirement the pool starts: labelled with and owned by the
/// pool, holding the finalizer.
pub fn adopted_object(pool: &NomadClientPool, r: &NomadClientRetirement) -> NomadClientRetirement {
    let mut obj = r.clone();
    obj.labels_mut().insert(POOL_LABEL.into(), pool.name_any());
    let finalizers = obj.finalizers_mut();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.into());
    }
    let owners = obj.owner_references_mut();
    if !owners.iter().any(|o| o.controller == Some(true)) {
        owners.push(owner_of(pool));
    }
    obj
}

/// The pool status's summary: the oldest retirements in flight.
pub fn oldest(
    plan: &[RetiringNode],
    names: &HashMap<String, String>,
    n: usize,
) -> Vec<crate::api::RetirementSummary> {
    let mut entries: Vec<&RetiringNode> = plan.iter().collect();
    entries.sort_by_key(|e| {
        (
            e.selected_at.as_ref().map(|t| t.0),
            e.since.0,
            e.node_name.clone(),
        )
    });
    entries
        .into_iter()
        .take(n)
        .map(|e| crate::api::RetirementSummary {
            name: names.get(&e.node_id).cloned().unwrap_or_default(),
            node_name: e.node_name.clone(),
            phase: e.phase,
            since: e.since.clone(),
            allocations_left: e.allocations_left,
            message: e.message.clone(),
        })
        .collect()
}

mod orphans;
#[cfg(test)]
mod tests;
