//! The express lane's decision, pure: which retirements it may take, the
//! planner's own steps for one of them, and whether they come to a lone
//! termination. `reconcile::express` runs it between reconciles; the
//! property tests hold it against the whole plan.

use std::collections::HashMap;

use super::{Action, NodeFacts, Plan, PoolView, advance, force_after, release};
use crate::api::{RetirePhase, RetireReason, RetiringNode};

/// Whether the lane may take up `entry` once its drain ended: a drain sent
/// (`Cordoned`), running or held (`Drained`), of a client that has a node
/// and is not being replaced for being down (no drain there).
pub fn takes(entry: &RetiringNode) -> bool {
    phase_of_drain(entry.phase)
        && entry.reason.has_node()
        && entry.reason != RetireReason::Unhealthy
}

/// A drain sent, running or held.
pub fn phase_of_drain(phase: RetirePhase) -> bool {
    matches!(
        phase,
        RetirePhase::Cordoned | RetirePhase::Draining | RetirePhase::Drained
    )
}

/// Whether a plan gives clients back or grows the group (which gives back
/// the newest retirements first). After such a plan, the lane does not take
/// a drain no reconcile saw running: the two steps it takes for one
/// (`step`) stand for two plans, and the second could give it back.
pub fn gives_back(plan: &Plan) -> bool {
    (plan.actions.iter()).any(|a| {
        matches!(
            a,
            Action::Release { .. } | Action::SetDesiredCapacity { .. }
        )
    })
}

/// The steps `plan` takes for one retirement of a client of the pool alone
/// (its advance, then whether the spec still wants it), on a view narrowed
/// to the client and the nodes of its VM. `None`: the retirement is
/// finished.
fn step_one(view: &PoolView<'_>, entry: &RetiringNode) -> (Option<RetiringNode>, Plan) {
    let mut plan = Plan::default();
    let nodes: HashMap<&str, &NodeFacts> = (view.outside.iter().chain(view.nodes))
        .map(|n| (n.id.as_str(), n))
        .collect();
    let force_after = force_after(view, &entry.node_id);
    let mut next: Vec<RetiringNode> = (advance(view, &nodes, entry, force_after, &mut plan))
        .into_iter()
        .collect();
    // Step 6 for this retirement: whether the spec still wants it depends
    // on the spec and the client alone.
    release::unwanted(view, &nodes, &mut next, &mut plan);
    (next.pop(), plan)
}

/// Where the lane's steps took a retirement.
pub struct Stepped {
    pub next: RetiringNode,
    pub step: Plan,
    /// Two steps were taken: the first only recorded a drain no reconcile
    /// saw running.
    pub chained: bool,
}

/// The lane's steps for `entry`: one, or two when the first only records
/// a drain that ended before a reconcile saw it run (as two reconciles in
/// a row would; the record is the second's). `None`: finished.
pub fn step(view: &PoolView<'_>, entry: &RetiringNode) -> Option<Stepped> {
    let (next, step) = step_one(view, entry);
    let next = next?;
    if !recorded_only(entry, &next, &step) {
        return Some(Stepped {
            next,
            step,
            chained: false,
        });
    }
    let again = PoolView {
        tracked: std::slice::from_ref(&next),
        index: Default::default(),
        ..view.clone()
    };
    let (after, then) = step_one(&again, &next);
    Some(Stepped {
        next: after?,
        step: then,
        chained: true,
    })
}

/// A step from `Cordoned` to `Draining` that does and says nothing else.
fn recorded_only(entry: &RetiringNode, next: &RetiringNode, step: &Plan) -> bool {
    entry.phase == RetirePhase::Cordoned
        && next.phase == RetirePhase::Draining
        && step.actions.is_empty()
        && step.events.is_empty()
        && step.blockers.is_empty()
}

/// The VM and decrement of steps that come to the termination and nothing
/// else: all the lane acts on.
pub fn lone_terminate(s: &Stepped) -> Option<(String, bool)> {
    if s.next.phase != RetirePhase::Terminating
        || !s.step.events.is_empty()
        || !s.step.blockers.is_empty()
    {
        return None;
    }
    match s.step.actions.as_slice() {
        [
            Action::Terminate {
                instance_id,
                decrement,
                first_attempt: true,
                ..
            },
        ] => Some((instance_id.clone(), *decrement)),
        _ => None,
    }
}
