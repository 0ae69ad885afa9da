//! Growing the pool toward `replicas`, and the limits of its size the
//! planner reports instead of running into: a selector that matches no
//! client, and a `replicas` the group's MaxSize does not allow (a cloud
//! refuses such a desired capacity; sending it would fail on every
//! reconcile).

use super::*;

/// Blockers for the pool's size: `live` clients match the selector and the
/// pool should have `desired`.
pub(super) fn blockers(view: &PoolView<'_>, live: u32, desired: u32) -> Vec<Blocker> {
    let mut out = Vec::new();
    if live == 0 && desired > 0 {
        out.push(Blocker::NoClientsMatch { desired });
    }
    if let Some(replicas) = view.spec.replicas
        && replicas.max(0) as u32 > view.group.max_size
    {
        out.push(Blocker::ReplicasAboveMaxSize {
            replicas: replicas.max(0) as u32,
            max_size: view.group.max_size,
            group: view.group.name.clone(),
        });
    }
    out
}

/// The desired capacity to ask for when growing by `deficit`: never above
/// the group's MaxSize (the cloud would refuse it). `None` when the group
/// cannot grow at all.
pub(super) fn grown_capacity(view: &PoolView<'_>, deficit: u32) -> Option<u32> {
    let current = view.group.desired_capacity;
    let desired = current.saturating_add(deficit).min(view.group.max_size);
    (desired > current).then_some(desired)
}

/// Grow the pool by `deficit` clients toward `replicas`: return clients in
/// flight to service before buying new VMs, newest retirements first (they
/// have lost the least work).
pub(super) fn scale_up(
    view: &PoolView<'_>,
    replicas: u32,
    mut deficit: u32,
    next: &mut [RetiringNode],
    plan: &mut Plan,
) {
    let dry_run = view.spec.disruption.dry_run;
    for i in cancellable(next) {
        if deficit == 0 {
            break;
        }
        deficit -= 1;
        if !dry_run {
            release::cancel(
                &mut next[i],
                plan,
                view.now,
                format!("replicas raised to {replicas}"),
            );
        }
    }
    if deficit > 0
        && !dry_run
        && let Some(desired) = grown_capacity(view, deficit)
    {
        plan.event(
            None,
            "ScalingUp",
            format!(
                "raising {} desired capacity from {} to {desired}",
                view.group.name, view.group.desired_capacity
            ),
        );
        plan.actions.push(Action::SetDesiredCapacity { desired });
    }
}

/// Indexes of the scale-ins in `next` a scale-up may give back, in the order
/// to give them back: clients not yet draining first (nothing moved yet),
/// then the most recently started drains.
fn cancellable(next: &[RetiringNode]) -> Vec<usize> {
    let mut cancellable: Vec<usize> = next
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            r.reason == RetireReason::ScaleIn
                && matches!(
                    r.phase,
                    RetirePhase::Selected
                        | RetirePhase::Cordoned
                        | RetirePhase::Draining
                        | RetirePhase::Drained
                )
        })
        .map(|(i, _)| i)
        .collect();
    cancellable.sort_by_key(|i| {
        let r = &next[*i];
        let started = r.drain_started_at.as_ref().unwrap_or(&r.since).0;
        (r.phase >= RetirePhase::Draining, std::cmp::Reverse(started))
    });
    cancellable
}
