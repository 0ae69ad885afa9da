//! Clients out of service, as the disruption budget counts them.
//!
//! `maxUnavailable` bounds how many clients of the pool cannot take work at
//! once, whoever took them out: this pool's retirements, and clients someone
//! else made ineligible or is draining (an operator's `nomad node
//! eligibility -disable`, another tool, or the drains of an earlier pool of
//! the same name). Counting only this pool's own retirements let a pool
//! re-created mid-drain take every client of the group out of service.

use super::*;

/// Whether Nomad shows the client out of service: ineligible or draining.
/// A down client is gone rather than unavailable, and is not counted.
pub(super) fn is_out(node: &NodeFacts) -> bool {
    node.status != NodeStatus::Down && (!node.eligible || node.draining)
}

/// Clients of the pool out of service once `next` is carried out: every
/// retirement in flight (a selected client is not ineligible yet) and every
/// live client that is ineligible or draining, each counted once.
pub(super) fn count(view: &PoolView<'_>, next: &[RetiringNode]) -> u32 {
    let mut out: BTreeSet<&str> = view
        .nodes
        .iter()
        .filter(|n| is_out(n))
        .map(|n| n.id.as_str())
        .collect();
    out.extend(
        next.iter()
            .filter(|r| r.phase != RetirePhase::Cancelling)
            .map(|r| r.node_id.as_str()),
    );
    out.len() as u32
}
