//! The express lane's decision (`lane::step` on a view narrowed to one
//! client and its VM, twice when the first step only records a drain that
//! ended) against the whole plan: whenever the lane would terminate a VM
//! alone, the whole plan (as many plans in a row) terminates it the same
//! way.

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
        .filter(|e| lane::takes(e))
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
        let view = narrowed(c, entry, &nodes, &group);
        let Some(stepped) = lane::step(&view, entry) else {
            continue;
        };
        if lane::lone_terminate(&stepped).is_none() {
            continue;
        }
        let (chained, step) = (stepped.chained, &stepped.step);
        let first = whole.get_or_insert_with(|| plan(&view_of(c)));
        if chained && lane::gives_back(first) {
            // The lane takes a drain a reconcile did not see running only
            // after a plan that gave nothing back (see `express::arm`).
            continue;
        }
        let second;
        let p = if chained {
            let after_one = Case {
                tracked: first.retiring.clone(),
                ..c.clone()
            };
            second = plan(&view_of(&after_one));
            &second
        } else {
            &*first
        };
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
        if !lane::phase_of_drain(e.phase) {
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
