//! Instances the group holds in `Terminating:Wait` under the pool's
//! lifecycle hook: the group decided to terminate them (a lowered desired
//! capacity, a scaling policy, an instance refresh, or this pool's own
//! terminate), and waits for the hook's action to be completed.
//!
//! Each such instance with a live client becomes a retirement with reason
//! `LifecycleHook`, selected here before any Nomad call (the write-ahead
//! record, as every retirement): it counts as in flight, but the budget
//! never refuses it, since the group will terminate the VM either way. It
//! is cordoned, drained and waited on like any other; once drained, the
//! action is completed (CONTINUE) instead of a terminate call. An instance
//! that no client of the pool reports is completed at once: no job runs
//! there. The heartbeats that keep the action alive meanwhile are not the
//! planner's (they depend on time since the last one): see
//! `controller::hooks`.

use super::*;

/// Whether the pool's hook holds the instance now.
pub(super) fn held(view: &PoolView<'_>, instance_id: &str) -> bool {
    view.lifecycle_hook.is_some()
        && instance_in_group(view, instance_id) == Some(Lifecycle::TerminatingWait)
}

/// The completion of a held instance's action.
pub(super) fn complete(instance_id: &str, node_id: Option<&str>) -> Action {
    Action::CompleteLifecycleAction {
        instance_id: instance_id.to_owned(),
        node_id: node_id.map(str::to_owned),
    }
}

/// Step 2b: a retirement for every held instance no retirement covers yet,
/// and a completion for every held instance without a client.
pub(super) fn discover(view: &PoolView<'_>, next: &mut Vec<RetiringNode>, plan: &mut Plan) {
    if view.lifecycle_hook.is_none() {
        return;
    }
    let held = (view.group.instances.iter()).filter(|i| i.lifecycle == Lifecycle::TerminatingWait);
    for instance in held {
        let id = instance.id.as_str();
        if next.iter().any(|e| e.instance_id.as_deref() == Some(id)) {
            continue;
        }
        let on_vm = view
            .nodes
            .iter()
            .find(|n| n.instance_id.as_deref() == Some(id) && n.status != NodeStatus::Down);
        if let Some(node) = on_vm {
            plan.event(
                Some(&node.name),
                "LifecycleHookWaiting",
                format!(
                    "the group holds VM {id} of node {} in Terminating:Wait; draining it before completing the lifecycle action",
                    node.name
                ),
            );
            next.push(select::select(
                view,
                node,
                RetireReason::LifecycleHook,
                false,
                plan,
            ));
        } else if view
            .nodes
            .iter()
            .any(|n| n.instance_id.is_none() && n.status != NodeStatus::Down)
        {
            // A client whose instance ID is not read yet may run on it:
            // nothing is completed until every live client is placed.
        } else {
            plan.event(
                None,
                "LifecycleActionCompleted",
                format!("VM {id} is held by the lifecycle hook and runs no client of the pool: completing its action"),
            );
            plan.actions.push(complete(id, None));
        }
    }
}
