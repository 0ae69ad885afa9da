//! Choosing which clients to retire next, and the dry-run preview of it.

use super::*;

/// Whether the spec asks for retirements beyond those in flight.
pub(super) fn wants_more(view: &PoolView<'_>, next: &[RetiringNode], pending: u32) -> bool {
    let excess = view.spec.replicas.is_some_and(|r| {
        let r = r.max(0) as u32;
        let vms = view.group.desired_capacity.saturating_sub(pending);
        super::identity::scale_in_excess(view, next, vms.saturating_sub(r), r) > 0
    });
    let named = view.spec.retire.iter().any(|t| {
        view.nodes
            .iter()
            .any(|n| target_matches(t, n) && !next.iter().any(|r| r.node_id == n.id))
    });
    excess || named
}

pub(super) fn check_preflight(
    group: &GroupState,
    node: &NodeFacts,
    in_flight_decrements: u32,
    decrement: bool,
) -> Result<(), String> {
    let Some(instance) = node.instance_id.as_deref() else {
        return Err("its instance ID is not known yet (node attributes not read)".into());
    };
    preflight_with(group, instance, in_flight_decrements, decrement).map_err(|r| r.to_string())
}

pub(super) fn preview(
    node: &NodeFacts,
    reason: RetireReason,
    load: Option<&HashMap<String, u32>>,
) -> PlannedRetirement {
    PlannedRetirement {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        reason,
        allocations: load.and_then(|l| l.get(&node.id)).copied().unwrap_or(0) as i32,
    }
}

pub(super) fn select(
    view: &PoolView<'_>,
    node: &NodeFacts,
    reason: RetireReason,
    decrement: bool,
    plan: &mut Plan,
) -> RetiringNode {
    plan.event(
        Some(&node.name),
        "Selected",
        format!(
            "node {} ({}) selected for retirement ({reason:?})",
            node.name,
            node.instance_id.as_deref().unwrap_or("instance unknown")
        ),
    );
    plan.actions.push(Action::Cordon {
        node_id: node.id.clone(),
    });
    RetiringNode {
        node_id: node.id.clone(),
        node_name: node.name.clone(),
        instance_id: node.instance_id.clone(),
        phase: RetirePhase::Selected,
        since: ts(view.now),
        selected_at: Some(ts(view.now)),
        reason,
        decrement,
        // Selection only takes eligible clients, except explicitly named ones;
        // a client someone else cordoned must stay cordoned if we back out.
        cordoned_by_pool: node.eligible,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: view
            .load
            .and_then(|l| l.get(&node.id))
            .copied()
            .unwrap_or(0) as i32,
        blocking_jobs: vec![],
        message: None,
    }
}

/// Pick up to `want` clients for a scale-in, in the spec's order, skipping any
/// the cloud would refuse to remove.
pub(super) fn choose<'a>(
    view: &PoolView<'a>,
    load: &HashMap<String, u32>,
    taken: &BTreeSet<String>,
    want: u32,
    mut pending: u32,
    plan: &mut Plan,
) -> Vec<&'a NodeFacts> {
    let policy = view.spec.disruption.selection_policy;
    let mut eligible: Vec<&NodeFacts> = view
        .nodes
        .iter()
        .filter(|n| {
            n.status == NodeStatus::Ready
                && n.eligible
                && !n.draining
                && !taken.contains(&n.id)
                && !super::identity::on_shared_vm(view, n)
        })
        .collect();
    let busy = |n: &NodeFacts| load.get(&n.id).copied().unwrap_or(0);
    match policy {
        SelectionPolicy::LeastBusy => eligible.sort_by_key(|n| (busy(n), n.create_index)),
        SelectionPolicy::Empty => {
            eligible.retain(|n| busy(n) == 0);
            eligible.sort_by_key(|n| n.create_index);
        }
        SelectionPolicy::Oldest => eligible.sort_by_key(|n| n.create_index),
        SelectionPolicy::Newest => eligible.sort_by_key(|n| std::cmp::Reverse(n.create_index)),
    }
    if policy == SelectionPolicy::Empty && eligible.is_empty() {
        plan.blockers.push(Blocker::NoEmptyNodes);
    }
    let mut chosen = Vec::new();
    let mut refusals = Vec::new();
    for node in eligible {
        if chosen.len() as u32 >= want {
            break;
        }
        match check_preflight(view.group, node, pending, true) {
            Ok(()) => {
                pending += 1;
                chosen.push(node);
            }
            Err(why) => refusals.push(format!("{}: {why}", node.name)),
        }
    }
    if (chosen.len() as u32) < want && !refusals.is_empty() {
        refusals.truncate(3);
        plan.blockers.push(Blocker::Preflight(refusals.join("; ")));
    }
    chosen
}
