//! Retirements whose client left the pool's selector while in flight (the
//! selector was edited, or the client's node pool, class, datacenter or meta
//! changed). Such a client is no longer the pool's to retire, but it is
//! still cordoned or draining because of the pool: forgetting it would leave
//! it out of service on a running VM that nothing tracks. So it is released
//! (drain cancelled, eligibility restored as its owner had it), or, once its
//! VM is being terminated (past the point of no return), carried to the end.

use super::*;

/// Why a released client goes back, in its event and status message.
const RELEASED: &str = "left the selector: released";
/// Said of a client carried to the end.
const CARRIED: &str = "left the selector after its VM was terminated: carried to the end";

/// Whether the entry's client is one the selector no longer matches.
pub(super) fn is_outside(view: &PoolView<'_>, entry: &RetiringNode) -> bool {
    view.outside.iter().any(|n| n.id == entry.node_id)
        && !view.nodes.iter().any(|n| n.id == entry.node_id)
}

/// The next step of a retirement whose client left the selector; `None`
/// when it is finished.
pub(super) fn step(
    view: &PoolView<'_>,
    nodes: &HashMap<&str, &NodeFacts>,
    entry: &RetiringNode,
    force_after: Option<SignedDuration>,
    plan: &mut Plan,
) -> Option<RetiringNode> {
    match entry.phase {
        // Nothing is committed yet: give the client back.
        RetirePhase::Selected
        | RetirePhase::Cordoned
        | RetirePhase::Draining
        | RetirePhase::Drained => {
            let mut e = entry.clone();
            cancel(&mut e, plan, view.now, RELEASED.into());
            Some(e)
        }
        // A release in progress finishes as any other.
        RetirePhase::Cancelling => super::advance(view, nodes, entry, force_after, plan),
        // The VM is going: see it through (purge once its client is down),
        // saying once why a client outside the selector is still tracked.
        RetirePhase::Terminating => {
            let said = entry
                .message
                .as_deref()
                .is_some_and(|m| m.contains(CARRIED));
            let mut e = super::advance(view, nodes, entry, force_after, plan)?;
            if !said {
                plan.event(
                    Some(&e.node_name),
                    "LeftSelector",
                    format!("node {} {CARRIED}", e.node_name),
                );
            }
            let message = match e.message.take() {
                Some(m) if m.contains(CARRIED) => m,
                Some(m) => format!("{m} ({CARRIED})"),
                None => CARRIED.to_string(),
            };
            e.message = Some(message);
            Some(e)
        }
    }
}
