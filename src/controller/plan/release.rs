//! Giving clients back to service: cancelling a retirement, and the step
//! that gives back every retirement the spec no longer wants.

use super::*;

/// Return a client to service: any step planned for it earlier in this plan
/// is dropped, and its drain (if any) is cancelled. Cancelling through the
/// drain endpoint also covers a drain Nomad has not shown us yet; on a node
/// that is not draining it only applies `MarkEligible`.
pub(super) fn cancel(entry: &mut RetiringNode, plan: &mut Plan, now: Timestamp, why: String) {
    plan.actions.retain(|a| match a {
        Action::Cordon { node_id } | Action::Drain { node_id, .. } => *node_id != entry.node_id,
        _ => true,
    });
    let said = if entry.reason.has_node() {
        format!("node {} returns to service: {why}", entry.node_name)
    } else {
        format!("VM {} is not replaced: {why}", entry.node_name)
    };
    plan.event(Some(&entry.node_name), "RetirementCancelled", said);
    entry.phase = RetirePhase::Cancelling;
    entry.since = ts(now);
    entry.message = Some(why);
    // A VM no client registered on has no node to give back.
    if entry.reason.has_node() {
        plan.actions.push(Action::Release {
            node_id: entry.node_id.clone(),
            mark_eligible: entry.cordoned_by_pool,
        });
    }
}

/// Step 6: cancel every retirement in `next` that the spec no longer asks
/// for, unless its VM is already being terminated.
pub(super) fn unwanted(
    view: &PoolView<'_>,
    nodes: &HashMap<&str, &NodeFacts>,
    next: &mut [RetiringNode],
    plan: &mut Plan,
) {
    let spec = view.spec;
    for entry in next.iter_mut() {
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
            // While the feature that chose it is on: a client replaced
            // half-way is worth finishing, a feature turned off is not.
            RetireReason::Expired => spec.max_node_age.is_some(),
            RetireReason::Drifted => spec.replace_drifted,
            // The group is terminating the VM whatever the spec says.
            RetireReason::LifecycleHook => true,
            // Turning remediation off gives back the clients not yet past
            // the point of no return.
            RetireReason::Unhealthy => {
                (spec.remediation.as_ref()).is_some_and(|r| r.unhealthy_after.is_some())
            }
            // As for `Unhealthy`: a VM not terminated yet stays.
            RetireReason::Unregistered => {
                (spec.remediation.as_ref()).is_some_and(|r| r.unregistered_after.is_some())
            }
        };
        // A VM the group's hook holds goes whatever the spec says: its
        // client stays drained until the action is completed.
        let held = (entry.instance_id.as_deref()).is_some_and(|i| super::hooks::held(view, i));
        if !wanted && !held && entry.phase < RetirePhase::Terminating {
            cancel(entry, plan, view.now, "no longer named by the spec".into());
        }
    }
}
