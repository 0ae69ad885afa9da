//! The decision to terminate a drained client's VM: the Draining and Drained
//! phases, and what holds the terminate back (another node on the VM, a
//! cloud refusal, allocations the token may not see).

use super::advance::{VM_TERMINATING, drain, move_to};
use super::*;

/// What a draining client's allocations say now.
struct Drain<'a> {
    allocs: Option<&'a AllocFacts>,
    /// Nomad says the drain is over and the client is still ineligible
    /// (or the node is down).
    done: bool,
    /// A fresh read found no pending, running or unknown allocation.
    empty: bool,
    /// `drain.forceTerminateAfter` has passed since the drain's deadline.
    forced: bool,
}

impl<'a> Drain<'a> {
    fn of(
        view: &'a PoolView<'_>,
        node: &NodeFacts,
        e: &RetiringNode,
        force_after: Option<SignedDuration>,
    ) -> Self {
        let allocs = view.allocs.get(&e.node_id);
        // An eligible client is not drained whatever `LastDrain` says: it
        // was made eligible after that drain (a cancel, an admin), and new
        // work may be placed on it.
        let done = !node.draining
            && ((node.last_drain == Some(LastDrainStatus::Complete) && !node.eligible)
                || node.status == NodeStatus::Down);
        // A down node is not empty by itself: an allocation its client
        // never confirmed stopped stays `unknown` there, and a
        // partitioned VM may still run it.
        let empty = allocs.is_some_and(|a| a.live == 0);
        // Forcing still needs a fresh allocation read: the event and the
        // status must say what was killed.
        let forced = allocs.is_some()
            && force_after.is_some_and(|after| {
                e.drain_deadline
                    .as_ref()
                    .is_some_and(|d| view.now >= d.0.saturating_add(after).unwrap_or(d.0))
            });
        Drain {
            allocs,
            done,
            empty,
            forced,
        }
    }
}

/// Draining and Drained: wait for the drain and every allocation to end,
/// then terminate the VM, unless something holds it back.
pub(super) fn advance_draining(
    node: &NodeFacts,
    e: &mut RetiringNode,
    view: &PoolView<'_>,
    force_after: Option<SignedDuration>,
    plan: &mut Plan,
) {
    let d = Drain::of(view, node, e, force_after);
    if let Some(a) = d.allocs {
        e.allocations_left = a.live as i32;
        e.blocking_jobs = a
            .blocking_jobs
            .iter()
            .take(MAX_BLOCKING_JOBS)
            .cloned()
            .collect();
    }
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
        move_to(
            e,
            view,
            RetirePhase::Cordoned,
            Some("drain was cancelled outside the pool".into()),
        );
        plan.actions.push(drain(e));
    } else if d.done && d.empty && !d.forced && view.visibility != AllocationVisibility::Proven {
        withhold_termination(e, view, plan);
    } else if d.done && (d.empty || d.forced) {
        terminate_drained(node, e, view, &d, plan);
    } else if !node.draining && !d.done {
        // Neither running nor complete: Nomad never stored it (or
        // lost it). Back to Cordoned, which names the drain to send.
        move_to(
            e,
            view,
            RetirePhase::Cordoned,
            Some("drain not found in Nomad; sending it again".into()),
        );
        plan.actions.push(drain(e));
    } else {
        e.message = Some(waiting(node, d.allocs, force_after));
    }
}

/// A drained client (or one past `drain.forceTerminateAfter`): terminate
/// its VM, unless another node on it or the cloud holds the terminate back.
fn terminate_drained(
    node: &NodeFacts,
    e: &mut RetiringNode,
    view: &PoolView<'_>,
    d: &Drain<'_>,
    plan: &mut Plan,
) {
    let Some(instance) = e.instance_id.clone() else {
        e.message = Some("waiting to learn the node's instance ID".into());
        return;
    };
    if !siblings_allow(view, e, &instance, plan) {
        return;
    }
    let lifecycle = instance_in_group(view, &instance);
    let refusal = if still_counted(&lifecycle) {
        preflight_with(view.group, &instance, 0, e.decrement)
            .err()
            .map(|r| r.to_string())
    } else {
        None
    };
    if let Some(why) = refusal {
        if e.phase != RetirePhase::Drained || e.message.as_deref() != Some(why.as_str()) {
            plan.warn(
                &e.node_name,
                "TerminateBlocked",
                format!("node {} is drained but {why}", e.node_name),
            );
        }
        move_to(e, view, RetirePhase::Drained, Some(why));
        return;
    }
    say_why_terminated(node, e, d, plan);
    if let Some(started) = &e.drain_started_at {
        plan.drain_wait_seconds
            .push(seconds_between(started.0, view.now));
    }
    move_to(
        e,
        view,
        RetirePhase::Terminating,
        Some(VM_TERMINATING.into()),
    );
    if super::hooks::held(view, &instance) {
        plan.actions
            .push(super::hooks::complete(&instance, Some(&e.node_id)));
    }
    if still_counted(&lifecycle) {
        plan.actions.push(Action::Terminate {
            node_id: e.node_id.clone(),
            instance_id: instance,
            decrement: e.decrement,
            first_attempt: true,
        });
    }
}

/// The event of a forced termination; a drained client's is its `Retired`.
fn say_why_terminated(node: &NodeFacts, e: &RetiringNode, d: &Drain<'_>, plan: &mut Plan) {
    if d.empty {
        return;
    }
    let partitioned = if matches!(node.status, NodeStatus::Disconnected | NodeStatus::Down)
        && d.allocs.is_some_and(|a| a.unknown > 0)
    {
        " (unknown behind a partition: they may still be running)"
    } else {
        ""
    };
    plan.warn(
        &e.node_name,
        "ForceTerminate",
        format!(
            "terminating {} with {} allocation(s) still live{partitioned}: drain.forceTerminateAfter passed",
            e.node_name, e.allocations_left
        ),
    );
}

/// The status message of a drain still running, or of allocations not
/// ended yet: what the retirement waits for.
pub(super) fn waiting(
    node: &NodeFacts,
    allocs: Option<&AllocFacts>,
    force_after: Option<SignedDuration>,
) -> String {
    match allocs {
        // One message for both: a drain that just finished has its
        // allocations read within moments, and a status write for that
        // moment alone would cost the API server a write per client.
        None => "draining; waiting for the drain to complete and its allocations to be confirmed stopped".into(),
        Some(a)
            if a.unknown > 0
                && matches!(node.status, NodeStatus::Disconnected | NodeStatus::Down) =>
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
    }
}

/// Whether the other nodes reporting the VM let it go; if not, the entry
/// says why (a hold before the decision moves it to `Drained`, once with a
/// warning).
pub(super) fn siblings_allow(
    view: &PoolView<'_>,
    e: &mut RetiringNode,
    instance: &str,
    plan: &mut Plan,
) -> bool {
    let why = match super::identity::sibling_gate(view, &e.node_id, instance) {
        super::identity::Gate::Clear => return true,
        super::identity::Gate::Waiting(why) => {
            e.message = Some(why);
            return false;
        }
        super::identity::Gate::Held(why) => why,
    };
    if e.message.as_deref() != Some(why.as_str()) {
        plan.warn(
            &e.node_name,
            "TerminateHeld",
            format!("node {} is drained but {why}", e.node_name),
        );
        if e.phase != RetirePhase::Terminating {
            e.phase = RetirePhase::Drained;
            e.since = ts(view.now);
        }
    }
    e.message = Some(why);
    false
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
