//! The express lane's decision (`step_one` on a view narrowed to one
//! client and its VM) against the whole plan: whenever the lane would
//! terminate a VM alone, the whole plan terminates it the same way.

use super::*;

/// The view the lane builds for `entry`: the pool's nodes on its VM, the
/// group with that VM only, the retirement alone, no load.
fn narrowed<'a>(
    c: &'a Case,
    entry: &'a RetiringNode,
    nodes: &'a [NodeFacts],
    group: &'a GroupState,
) -> PoolView<'a> {
    PoolView {
        tracked: std::slice::from_ref(entry),
        nodes,
        group,
        load: None,
        ..view_of(c)
    }
}

/// Every retirement the lane would take up in `c`, with its VM.
fn lane_candidates(c: &Case) -> Vec<(&RetiringNode, &str)> {
    if c.spec.disruption.dry_run || c.hidden {
        return vec![];
    }
    (c.tracked.iter())
        .filter(|e| matches!(e.phase, RetirePhase::Draining | RetirePhase::Drained))
        .filter(|e| e.reason.has_node() && e.reason != RetireReason::Unhealthy)
        .filter(|e| c.nodes.iter().any(|n| n.id == e.node_id))
        .filter_map(|e| Some((e, e.instance_id.as_deref()?)))
        .collect()
}

pub(super) fn lane_terminates_only_what_the_plan_does(c: &Case) -> Result<(), TestCaseError> {
    let mut whole: Option<Plan> = None;
    for (entry, instance) in lane_candidates(c) {
        let nodes: Vec<NodeFacts> = (c.nodes.iter())
            .filter(|n| n.instance_id.as_deref() == Some(instance))
            .cloned()
            .collect();
        let group = c.group.with_only(instance);
        let (next, step) = step_one(&narrowed(c, entry, &nodes, &group), entry);
        let Some(next) = next else { continue };
        let lone = next.phase == RetirePhase::Terminating
            && step.events.is_empty()
            && step.blockers.is_empty()
            && matches!(
                step.actions.as_slice(),
                [Action::Terminate {
                    first_attempt: true,
                    ..
                }]
            );
        if !lone {
            continue;
        }
        let p = whole.get_or_insert_with(|| plan(&view_of(c)));
        prop_assert!(
            p.actions.contains(&step.actions[0]),
            "the lane terminates {:?}, the plan does not: {:?}",
            step.actions[0],
            p.actions
        );
        let planned = p.retiring.iter().find(|r| r.node_id == entry.node_id);
        prop_assert_eq!(planned.map(|r| r.phase), Some(RetirePhase::Terminating));
    }
    Ok(())
}

/// `c` as the lane finds a pool most often: the drains of its retirements
/// ended, their allocations and the VMs' nodes read (allocations as
/// generated, or none), the token proven, no dry run.
pub(super) fn drains_ended(mut c: Case) -> Case {
    c.hidden = false;
    c.spec.disruption.dry_run = false;
    for e in &c.tracked {
        if !matches!(e.phase, RetirePhase::Draining | RetirePhase::Drained) {
            continue;
        }
        if let Some(n) = c.nodes.iter_mut().find(|n| n.id == e.node_id) {
            n.draining = false;
            n.last_drain = Some(LastDrainStatus::Complete);
        }
        c.allocs.entry(e.node_id.clone()).or_default();
    }
    if c.instance_nodes.is_empty() {
        c.instance_nodes = instance_nodes_of(&c.nodes);
    }
    c
}
