//! One `Unhealthy` retirement before its VM is terminated: cordon the
//! client (a down client gets no work, but one that comes back before the
//! terminate must not get any either), read its allocations so the Event
//! can say what was left on it, then terminate the VM without lowering
//! the group's desired capacity. From `Terminating` on it is like any
//! other retirement (`advance`): the node is purged once down, VM gone.

use super::super::advance::move_to;
use super::super::terminate::siblings_allow;
use super::*;

/// Selected, Cordoned or held (Drained) `Unhealthy` retirement: its next
/// step.
pub(in crate::controller::plan) fn advance(
    node: &NodeFacts,
    e: &mut RetiringNode,
    view: &PoolView<'_>,
    plan: &mut Plan,
) {
    if matches!(node.status, NodeStatus::Ready | NodeStatus::Initializing) {
        // It came back before its VM was touched: nothing to replace.
        cancel(e, plan, view.now, "Nomad reports the client back".into());
        return;
    }
    if e.phase == RetirePhase::Selected {
        if node.eligible {
            plan.actions.push(Action::Cordon {
                node_id: e.node_id.clone(),
            });
            return;
        }
        move_to(e, view, RetirePhase::Cordoned, None);
    }
    let Some(allocs) = view.allocs.get(&e.node_id) else {
        e.message = Some("reading the client's allocations before replacing its VM".into());
        return;
    };
    e.allocations_left = allocs.live as i32;
    e.blocking_jobs = (allocs.blocking_jobs.iter())
        .take(MAX_BLOCKING_JOBS)
        .cloned()
        .collect();
    let Some(instance) = e.instance_id.clone() else {
        e.message = Some("waiting to learn the node's instance ID".into());
        return;
    };
    if !siblings_allow(view, e, &instance, plan) {
        return;
    }
    let lifecycle = instance_in_group(view, &instance);
    if still_counted(&lifecycle)
        && let Err(refusal) = preflight_with(view.group, &instance, 0, false)
    {
        let why = refusal.to_string();
        if e.message.as_deref() != Some(why.as_str()) {
            plan.warn(
                &e.node_name,
                "TerminateBlocked",
                format!("node {} is unhealthy but {why}", e.node_name),
            );
        }
        move_to(e, view, RetirePhase::Drained, Some(why));
        return;
    }
    let left = left_on_it(node, allocs);
    plan.warn(
        &e.node_name,
        "ReplacingUnhealthy",
        format!(
            "terminating VM {instance} of unhealthy node {}; the group launches a replacement. {left}",
            e.node_name
        ),
    );
    move_to(e, view, RetirePhase::Terminating, Some(left));
    if super::super::hooks::held(view, &instance) {
        plan.actions
            .push(super::super::hooks::complete(&instance, Some(&e.node_id)));
    }
    if still_counted(&lifecycle) {
        plan.actions.push(Action::Terminate {
            node_id: e.node_id.clone(),
            instance_id: instance,
            decrement: false,
            first_attempt: true,
        });
    }
}

/// What the client still held when its VM was terminated, in words.
fn left_on_it(node: &NodeFacts, allocs: &AllocFacts) -> String {
    if allocs.live == 0 {
        return "No allocation was pending, running or unknown on it.".into();
    }
    let unknown = if allocs.unknown > 0 {
        format!(
            " ({} unknown: the client is {} and they may still be running behind a partition; they stop with the VM)",
            allocs.unknown,
            super::status_word(node.status)
        )
    } else {
        String::new()
    };
    format!(
        "{} allocation(s) were still pending, running or unknown on it{unknown}.",
        allocs.live
    )
}
