//! Nodes whose VM vanished: a node of the pool that Nomad reports `down`
//! and whose VM the group no longer lists (terminated outside the pool:
//! by hand, by a spot interruption, by the group's health check) stays in
//! Nomad's node list until its garbage collection, 24 hours by default.
//! With `remediation.purgeDownAfter` the pool purges it once it has been
//! down that long. Only a node whose instance is known is ever purged: one
//! whose attributes were never read may run on any VM, a live one included.

use super::*;

/// Purge every node of the pool that has been down for `purgeDownAfter`
/// with its VM gone from the group; say when the next one is due. The
/// nodes retirements track are theirs to purge.
pub(in crate::controller::plan) fn purge_vanished(
    view: &PoolView<'_>,
    next: &[RetiringNode],
    plan: &mut Plan,
) {
    let after = (view.spec.remediation.as_ref())
        .and_then(|r| r.purge_down_after.as_deref())
        .and_then(parse_go_duration);
    let Some(after) = after else {
        return;
    };
    for n in view.nodes.iter().filter(|n| n.status == NodeStatus::Down) {
        let Some(instance) = n.instance_id.as_deref() else {
            continue;
        };
        if view.lifecycle_of(instance).is_some() || next.iter().any(|r| r.node_id == n.id) {
            continue;
        }
        let since = view.unhealthy_since.get(&n.id).copied().unwrap_or(view.now);
        let at = since.saturating_add(after).unwrap_or(since);
        if at > view.now {
            plan.wake_by(at);
            continue;
        }
        plan.event(
            Some(&n.name),
            "PurgedDownNode",
            format!(
                "node {} has been down for {} and its VM {instance} is no longer in the group: purged (remediation.purgeDownAfter)",
                n.name,
                human_seconds(seconds_between(since, view.now)),
            ),
        );
        plan.actions.push(Action::Purge {
            node_id: n.id.clone(),
        });
    }
}
