//! One retirement's next step: how each phase moves on, given what Nomad and
//! the cloud group show now (`plan` calls `advance` for every tracked entry).
//! The Draining and Drained phases, where the VM's termination is decided,
//! are in `terminate`.

use super::*;
use crate::controller::drain_meta::whole_second;

/// What a retirement in `Terminating` waits for, from the record that
/// commits the call on (the lane's and the reconcile's alike), so the
/// ordinary course of the phase needs no second write to say it.
pub(super) const VM_TERMINATING: &str = "VM terminating; waiting for the Nomad node to turn down";

/// The drain that carries `entry` forward; its Meta records the retirement.
pub(super) fn drain(entry: &RetiringNode) -> Action {
    Action::Drain {
        node_id: entry.node_id.clone(),
        mark: DrainMark {
            reason: entry.reason,
            cordoned_by_pool: entry.cordoned_by_pool,
            selected_at: entry.selected_at.as_ref().map(|t| t.0),
        },
    }
}

/// Move `e` to `phase` as of now, with `message` as its status message.
pub(super) fn move_to(
    e: &mut RetiringNode,
    view: &PoolView<'_>,
    phase: RetirePhase,
    message: Option<String>,
) {
    e.phase = phase;
    e.since = ts(view.now);
    e.message = message;
}

/// One tracked retirement's next step; `None` when it is finished.
pub(super) fn advance(
    view: &PoolView<'_>,
    nodes: &HashMap<&str, &NodeFacts>,
    entry: &RetiringNode,
    force_after: Option<SignedDuration>,
    plan: &mut Plan,
) -> Option<RetiringNode> {
    let mut e = entry.clone();
    let node = nodes.get(entry.node_id.as_str()).copied();
    if e.instance_id.is_none() {
        e.instance_id = node.and_then(|n| n.instance_id.clone());
    }
    let Some(node) = node else {
        node_gone(view, &e, plan);
        return None;
    };
    match e.phase {
        // Nothing to drain on a broken client (see `remediation`).
        RetirePhase::Selected
        | RetirePhase::Cordoned
        | RetirePhase::Draining
        | RetirePhase::Drained
            if e.reason == RetireReason::Unhealthy =>
        {
            super::remediation::advance(node, &mut e, view, plan)
        }
        RetirePhase::Selected => advance_selected(node, &mut e, view, plan),
        RetirePhase::Cordoned => advance_cordoned(node, &mut e, view, force_after, plan),
        RetirePhase::Draining | RetirePhase::Drained => {
            terminate::advance_draining(node, &mut e, view, force_after, plan)
        }
        RetirePhase::Terminating => advance_terminating(node, &mut e, view, plan),
        RetirePhase::Cancelling => return advance_cancelling(node, e, plan),
    }
    Some(e)
}

/// The node left Nomad (purged) or the pool: a termination is done, any
/// other retirement is forgotten.
fn node_gone(view: &PoolView<'_>, e: &RetiringNode, plan: &mut Plan) {
    if e.phase != RetirePhase::Terminating {
        plan.warn(
            &e.node_name,
            "NodeLeftPool",
            format!(
                "node {} disappeared from the pool during {}; forgetting it",
                e.node_name, e.phase
            ),
        );
        return;
    }
    plan.retired += 1;
    if e.reason != RetireReason::ScaleIn {
        plan.retired_nodes.push(super::retired::record(view, e));
    }
    let took = e
        .selected_at
        .as_ref()
        .map(|s| seconds_between(s.0, view.now));
    plan.retire_seconds.extend(took);
    let drained_in = match (&e.drain_started_at, &e.since) {
        (Some(from), to) => format!(
            ", drained in {}",
            human_seconds(seconds_between(from.0, to.0))
        ),
        _ => String::new(),
    };
    plan.event(
        Some(&e.node_name),
        "Retired",
        format!(
            "node {} retired{}{drained_in}: VM {} terminated and node purged",
            e.node_name,
            took.map(|t| format!(" in {}", human_seconds(t)))
                .unwrap_or_default(),
            e.instance_id.as_deref().unwrap_or("?")
        ),
    );
}

/// Selected: cordon the client; once it is ineligible, drain it.
fn advance_selected(node: &NodeFacts, e: &mut RetiringNode, view: &PoolView<'_>, plan: &mut Plan) {
    if node.eligible {
        plan.actions.push(Action::Cordon {
            node_id: e.node_id.clone(),
        });
        return;
    }
    // No Event for this phase, nor for Draining and Terminating: each is in
    // the retirement's status, and each Event is a write the API server pays
    // for on every client (Selected and Retired open and close the story).
    move_to(e, view, RetirePhase::Cordoned, None);
    plan.actions.push(drain(e));
}

/// Cordoned: drain the client until Nomad shows our drain running (or
/// already finished).
fn advance_cordoned(
    node: &NodeFacts,
    e: &mut RetiringNode,
    view: &PoolView<'_>,
    force_after: Option<SignedDuration>,
    plan: &mut Plan,
) {
    let ours = node.last_drain_mark.is_some();
    // A finished drain must be this retirement's: Nomad keeps an earlier
    // one (of a retirement given back after its drain ended) as LastDrain.
    // Drains of versions that did not record the selection pass, as before.
    let this_ones = (node.last_drain_mark.as_ref()).is_some_and(|m| {
        m.selected_at.is_none_or(|s| {
            e.selected_at.as_ref().map(|t| whole_second(t.0)) == Some(whole_second(s))
        })
    });
    // Read before `move_to` replaces it: when this pool sent the drain.
    let sent = e.since.0;
    if node.draining && ours {
        // What it waits for is said in the same write as the phase.
        let waiting = super::terminate::waiting(node, view.allocs.get(&e.node_id), force_after);
        let started = drain_started(node, sent, view.now);
        move_to(e, view, RetirePhase::Draining, Some(waiting));
        e.drain_started_at = Some(ts(started));
        e.drain_deadline = drain_deadline(view, node, started);
    } else if this_ones && node.last_drain == Some(LastDrainStatus::Complete) && !node.eligible {
        // The drain finished between two observations. A finished drain
        // leaves the client ineligible: an eligible one with a complete
        // drain of ours was given back (a cancel after an earlier drain
        // finished leaves that drain in `LastDrain`), and this one's drain
        // has not landed.
        let started = drain_started(node, sent, view.now);
        move_to(e, view, RetirePhase::Draining, None);
        e.drain_started_at = Some(ts(started));
    } else {
        plan.actions.push(drain(e));
    }
}

/// When the drain began, on the operator's clock. Nomad's `StartedAt` is
/// stamped by the Nomad servers' clock, which may run ahead of or behind
/// ours (nomad-sim runs 2x in the demo); taken raw it made every `Retired`
/// Event say "drained in 0s" and moved the drain deadline. The drain cannot
/// have begun before this pool sent it nor after the pool saw it, so
/// Nomad's time is kept only inside that window.
pub(super) fn drain_started(node: &NodeFacts, sent: Timestamp, seen: Timestamp) -> Timestamp {
    let nomad = node.last_drain_started.unwrap_or(seen);
    if sent > seen {
        return seen;
    }
    nomad.clamp(sent, seen)
}

/// Terminating: send the terminate again until the VM no longer counts in
/// the group, then purge the node once Nomad reports it down.
fn advance_terminating(
    node: &NodeFacts,
    e: &mut RetiringNode,
    view: &PoolView<'_>,
    plan: &mut Plan,
) {
    let instance = e.instance_id.clone().unwrap_or_default();
    let lifecycle = instance_in_group(view, &instance);
    if still_counted(&lifecycle) && !terminate::siblings_allow(view, e, &instance, plan) {
        // A node that appeared on the VM since the decision: the
        // call is not sent again while it may lose work.
    } else if still_counted(&lifecycle) {
        // Committed but not landed (crash, throttling): re-issue; the
        // provider re-checks the instance so this never decrements twice.
        plan.actions.push(Action::Terminate {
            node_id: e.node_id.clone(),
            instance_id: instance,
            decrement: e.decrement,
            first_attempt: false,
        });
    } else if super::hooks::held(view, &instance) {
        // The group waits for us: this client is drained (or forced), so
        // the action is completed, again on each look until the VM goes.
        plan.actions
            .push(super::hooks::complete(&instance, Some(&e.node_id)));
        e.message = Some("drained; completing the lifecycle action so the VM terminates".into());
    } else if node.status == NodeStatus::Down {
        plan.actions.push(Action::Purge {
            node_id: e.node_id.clone(),
        });
        e.message = Some("VM gone and node down; purging the node".into());
    } else {
        e.message = Some(VM_TERMINATING.into());
    }
}

/// Cancelling: release the client until it is back in service; `None` then.
fn advance_cancelling(node: &NodeFacts, e: RetiringNode, plan: &mut Plan) -> Option<RetiringNode> {
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
    Some(e)
}

fn drain_deadline(view: &PoolView<'_>, node: &NodeFacts, start: Timestamp) -> Option<Time> {
    let deadline = view
        .drain_of(&node.id)
        .deadline
        .as_deref()
        .and_then(parse_go_duration)?;
    start.checked_add(deadline).ok().map(ts)
}
