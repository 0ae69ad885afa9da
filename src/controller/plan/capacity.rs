//! Limits of the pool's size the planner reports instead of running into:
//! a selector that matches no client, and a `replicas` the group's MaxSize
//! does not allow (AWS refuses such a desired capacity with a
//! `ValidationError`; sending it would fail on every reconcile).

use super::{Blocker, PoolView};

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
