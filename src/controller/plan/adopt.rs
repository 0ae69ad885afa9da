//! Adoption: this pool's drains that its status lost (status written by an
//! older controller, a status update that never landed before a crash, or a
//! pool deleted and created again) are tracked again, as the drain's Meta
//! recorded them.

use super::*;

/// Step 2: track every drain of this pool that `next` does not.
pub(super) fn lost_drains(view: &PoolView<'_>, next: &mut Vec<RetiringNode>, plan: &mut Plan) {
    let tracked_ids: BTreeSet<String> = next.iter().map(|r| r.node_id.clone()).collect();
    for n in view.nodes {
        let Some(mark) = &n.last_drain_mark else {
            continue;
        };
        let in_progress =
            n.draining || (!n.eligible && n.last_drain == Some(LastDrainStatus::Complete));
        if !in_progress || n.status == NodeStatus::Down || tracked_ids.contains(&n.id) {
            continue;
        }
        // The spec's word on the client wins over the mark: a client named
        // now is retired the way the spec names it.
        let target = view.spec.retire.iter().find(|t| target_matches(t, n));
        let reason = match target {
            Some(t) if t.replace => RetireReason::Replace,
            Some(_) => RetireReason::Requested,
            None => mark.reason,
        };
        // Nomad keeps a completed drain's Meta, and cancelling a completed
        // drain changes nothing in it. So a client this pool gave back after
        // its drain finished, and left ineligible because someone else had
        // cordoned it, still looks like a drain of ours awaiting its
        // terminate. The spec no longer naming it is what tells them apart.
        let given_back = !n.draining && reason != RetireReason::ScaleIn && target.is_none();
        if given_back && !mark.cordoned_by_pool {
            continue;
        }
        plan.event(
            Some(&n.name),
            "AdoptedDrain",
            format!(
                "adopted drain of node {} started earlier by this pool (or an earlier pool of the same name)",
                n.name
            ),
        );
        next.push(adopted(view, n, mark, reason));
    }
}

/// The status entry of an adopted drain: draining since now, for `reason`.
fn adopted(
    view: &PoolView<'_>,
    n: &NodeFacts,
    mark: &DrainMark,
    reason: RetireReason,
) -> RetiringNode {
    // When the pool sent it is lost with the status; Nomad's clock may run
    // ahead of ours, and a drain seen now did not begin in our future.
    let started = n.last_drain_started.map_or(view.now, |s| s.min(view.now));
    RetiringNode {
        node_id: n.id.clone(),
        node_name: n.name.clone(),
        instance_id: n.instance_id.clone(),
        phase: RetirePhase::Draining,
        since: ts(view.now),
        // The selection the Meta records is on our clock; older drains
        // have none.
        selected_at: Some(ts(mark.selected_at.map_or(started, |s| s.min(view.now)))),
        reason,
        // A VM terminated before the status was lost (or by a deleted
        // pool of this name): its decrement is in the desired capacity.
        decrement: !reason.replaces()
            && (n.instance_id.as_deref())
                .is_none_or(|i| still_counted(&instance_in_group(view, i))),
        cordoned_by_pool: mark.cordoned_by_pool,
        drain_started_at: n.last_drain_started.map(|_| ts(started)),
        drain_deadline: None,
        allocations_left: 0,
        blocking_jobs: vec![],
        message: Some(
            "adopted: this pool's drain, from a lost status or a pool deleted and created again"
                .into(),
        ),
    }
}
