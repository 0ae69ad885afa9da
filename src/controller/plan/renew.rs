//! Clients replaced to keep the fleet current: those whose VM is older
//! than `spec.maxNodeAge` (reason `Expired`) and, with
//! `spec.replaceDrifted`, those whose VM was launched from another launch
//! template version, launch configuration or instance template than the
//! group launches from now (reason `Drifted`).
//!
//! Both are voluntary: `Selection::renew` starts them within what
//! `maxUnavailable`, the disruption budgets and their rates leave after
//! the named retirements and the scale-in, and each VM is terminated
//! without lowering the group's size (the group launches its successor).
//! A client is taken for one reason only: expiry wins over drift, and a
//! client already tracked or chosen in this plan (`taken`) is skipped.

use std::collections::HashSet;

use super::*;

/// A client due for replacement, and why, in words for its Event.
pub(super) struct Stale<'a> {
    pub node: &'a NodeFacts,
    pub reason: RetireReason,
    pub why: String,
    /// Its VM's launch time, when read: the older goes first.
    launched_at: Option<Timestamp>,
}

/// Whether a voluntary replacement may take `node` at all: a ready,
/// eligible client not draining, not already taken, whose VM is known, in
/// service and run by no other live node, that has not opted out
/// (`select::may_choose`: the `nomadpool.dev/do-not-retire` Meta). Both
/// choosers of this room ask this one question.
pub(super) fn may_replace(
    view: &PoolView<'_>,
    node: &NodeFacts,
    taken: &BTreeSet<String>,
    shared: &HashSet<&str>,
) -> bool {
    let Some(instance) = node.instance_id.as_deref() else {
        return false;
    };
    select::may_choose(node)
        && node.status == NodeStatus::Ready
        && node.eligible
        && !node.draining
        && !taken.contains(&node.id)
        && !shared.contains(instance)
        && view.lifecycle_of(instance) == Some(Lifecycle::InService)
}

/// `spec.maxNodeAge`, parsed; `None` when unset (or, were the API
/// server's rule bypassed, unparsable: off rather than replacing all).
fn max_age(view: &PoolView<'_>) -> Option<SignedDuration> {
    let age = parse_go_duration(view.spec.max_node_age.as_deref()?)?;
    age.is_positive().then_some(age)
}

/// Why `node` is due, if it is.
fn staleness<'a>(view: &PoolView<'a>, node: &'a NodeFacts) -> Option<Stale<'a>> {
    let instance = view.group.instance(node.instance_id.as_deref()?)?;
    let launched_at = instance.launched_at;
    if let (Some(max), Some(at)) = (max_age(view), launched_at) {
        let age = view.now.duration_since(at);
        if age > max {
            return Some(Stale {
                node,
                reason: RetireReason::Expired,
                why: format!(
                    "VM {} of node {} was launched {} ago, more than maxNodeAge {}",
                    instance.id,
                    node.name,
                    human_seconds(age.as_secs_f64()),
                    view.spec.max_node_age.as_deref().unwrap_or_default()
                ),
                launched_at,
            });
        }
    }
    if !view.spec.replace_drifted {
        return None;
    }
    let spec = view.group.drifted(instance)?;
    let current = (view.group.launch_specs.iter())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Some(Stale {
        node,
        reason: RetireReason::Drifted,
        why: format!(
            "VM {} of node {} runs {spec}; the group launches {current}",
            instance.id, node.name
        ),
        launched_at,
    })
}

/// How often the group is looked at for drift while `replaceDrifted` is
/// on: a new launch template version or instance template is not
/// watchable, and the idle resync is minutes long.
const DRIFT_LOOK: SignedDuration = SignedDuration::from_secs(30);

/// When to plan again though nothing is watched changes: when the next VM
/// in service reaches `maxNodeAge`, and within `DRIFT_LOOK` for drift.
pub(super) fn wake(view: &PoolView<'_>, plan: &mut Plan) {
    if max_age(view).is_some() && !view.group.reads_launch_times {
        plan.blockers.push(Blocker::LaunchTimesUnknown);
    }
    if let Some(max) = max_age(view) {
        let next = (view.group.instances.iter())
            .filter(|i| i.lifecycle == Lifecycle::InService)
            .filter_map(|i| i.launched_at?.checked_add(max).ok())
            .filter(|at| *at > view.now)
            .min();
        if let Some(at) = next {
            plan.wake_by(at);
        }
    }
    if view.spec.replace_drifted
        && let Ok(at) = view.now.checked_add(DRIFT_LOOK)
    {
        plan.wake_by(at);
    }
}

/// Every client due for replacement, expired ones first, each kind oldest
/// VM first (a VM whose launch time is not read goes after those whose is,
/// oldest client first).
pub(super) fn candidates<'a>(view: &PoolView<'a>, taken: &BTreeSet<String>) -> Vec<Stale<'a>> {
    if max_age(view).is_none() && !view.spec.replace_drifted {
        return Vec::new();
    }
    let shared = identity::shared_vms(view);
    let mut due: Vec<Stale<'a>> = (view.nodes.iter())
        .filter(|n| may_replace(view, n, taken, &shared))
        .filter_map(|n| staleness(view, n))
        .collect();
    due.sort_by_key(|s| {
        (
            s.reason != RetireReason::Expired,
            s.launched_at.is_none(),
            s.launched_at,
            s.node.create_index,
        )
    });
    due
}
