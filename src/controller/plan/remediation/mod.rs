//! Replacing broken clients (`spec.remediation`), step 2c of `plan`:
//!
//! - a client Nomad reports `down` (or, with `replaceDisconnected`,
//!   `disconnected`) for longer than `unhealthyAfter` while its VM is still
//!   in service is retired with reason `Unhealthy`: cordoned (so a client
//!   that comes back mid-way gets no work), its allocations read, its VM
//!   terminated without lowering the group's desired capacity, and its node
//!   purged once down with the VM gone (`replace`);
//! - every remediation reason draws on one cap, `maxUnhealthy` (`cap`);
//! - a down node whose VM has left the group is purged after
//!   `purgeDownAfter` (`purge`).
//!
//! A down client that nothing replaces holds its VM and gets no work;
//! Nomad already replaced its allocations elsewhere (they are `lost`). The
//! opt-in to `unhealthyAfter` is what lets the pool terminate a VM whose
//! allocations it cannot prove stopped; the Event says how many were left.

use std::collections::HashSet;

use super::*;

mod cap;
mod purge;
mod replace;
mod unregistered;

pub(super) use cap::RemediationCap;
// The cap's parts, for the other remediation reasons.
#[allow(unused_imports)]
pub(super) use cap::{in_flight, max_unhealthy};
pub(super) use purge::purge_vanished;
pub(super) use replace::advance;
pub(super) use unregistered::{advance as advance_unregistered, start as start_unregistered};

/// A client of the pool that is down or disconnected on a VM still in
/// service, which no retirement covers yet.
struct Sick<'a> {
    node: &'a NodeFacts,
    /// Since when this controller has seen it unhealthy.
    since: Timestamp,
}

/// Every such client, longest unhealthy first. A client whose VM another
/// live node of the pool reports is left out: it re-registered under a
/// new ID (or a second agent runs there), so the VM is not broken.
fn sick<'a>(view: &PoolView<'a>, next: &[RetiringNode]) -> Vec<Sick<'a>> {
    let taken: HashSet<&str> = next.iter().map(|r| r.node_id.as_str()).collect();
    let leaving: HashSet<&str> = next
        .iter()
        .filter_map(|r| r.instance_id.as_deref())
        .collect();
    let mut out: Vec<Sick<'a>> = (view.nodes.iter())
        .filter(|n| matches!(n.status, NodeStatus::Down | NodeStatus::Disconnected))
        .filter(|n| !taken.contains(n.id.as_str()))
        .filter_map(|n| {
            let instance = n.instance_id.as_deref()?;
            let in_service = view.lifecycle_of(instance) == Some(Lifecycle::InService);
            let alone = (view.nodes_on(instance).iter())
                .all(|o| o.id == n.id || o.status == NodeStatus::Down);
            (in_service && alone && !leaving.contains(instance)).then(|| Sick {
                node: n,
                since: view.unhealthy_since.get(&n.id).copied().unwrap_or(view.now),
            })
        })
        .collect();
    out.sort_by_key(|s| (s.since, s.node.create_index));
    out
}

/// Clients of the pool unhealthy now (in flight or waiting), for status.
pub(super) fn unhealthy_count(view: &PoolView<'_>, next: &[RetiringNode]) -> u32 {
    sick(view, next).len() as u32 + unregistered::waiting(view, next) + in_flight(next)
}

/// The cap every remediation reason of this plan draws on: the
/// remediations in flight and every broken client waiting for one (each
/// remediation reason adds its own waiting clients here).
pub(super) fn cap(view: &PoolView<'_>, next: &[RetiringNode]) -> RemediationCap {
    let waiting = sick(view, next).len() as u32 + unregistered::waiting(view, next);
    RemediationCap::of(view.spec, view.group.desired_capacity, next, waiting)
}

/// Step 2c: start an `Unhealthy` retirement for every client past its
/// grace, within `maxUnhealthy`; say when the next grace ends.
pub(super) fn start(
    view: &PoolView<'_>,
    cap: &mut RemediationCap,
    next: &mut Vec<RetiringNode>,
    plan: &mut Plan,
) {
    let Some(policy) = view.spec.remediation.as_ref() else {
        return;
    };
    let Some(grace) = (policy.unhealthy_after.as_deref()).and_then(parse_go_duration) else {
        return;
    };
    let sick = sick(view, next);
    let mut due = Vec::new();
    for s in &sick {
        // A disconnected client's allocations are `unknown` and may still
        // run: by default it waits for Nomad to mark it down (whose node
        // event wakes the pool).
        if s.node.status == NodeStatus::Disconnected && !policy.replaces_disconnected() {
            continue;
        }
        let at = s.since.saturating_add(grace).unwrap_or(s.since);
        if at > view.now {
            plan.wake_by(at);
        } else {
            due.push(s);
        }
    }
    if due.is_empty() {
        return;
    }
    if !may_start(view, cap, plan) {
        return;
    }
    for s in due {
        if !cap.take() {
            break;
        }
        if view.spec.disruption.dry_run {
            plan.preview
                .push(select::preview(s.node, RetireReason::Unhealthy, view.load));
            continue;
        }
        plan.warn(
            &s.node.name,
            "Unhealthy",
            format!(
                "node {} has been {} for {} (remediation.unhealthyAfter {}) while its VM {} is in service: replacing it",
                s.node.name,
                status_word(s.node.status),
                human_seconds(seconds_between(s.since, view.now)),
                policy.unhealthy_after.as_deref().unwrap_or_default(),
                s.node.instance_id.as_deref().unwrap_or("?"),
            ),
        );
        next.push(select::select(
            view,
            s.node,
            RetireReason::Unhealthy,
            false,
            plan,
        ));
    }
}

/// Whether a remediation that is due may start now: not above the cap,
/// not paused. If not, the blocker that says why goes into the plan once,
/// whichever remediation reason found it first.
fn may_start(view: &PoolView<'_>, cap: &RemediationCap, plan: &mut Plan) -> bool {
    let blocker = if cap.refused() {
        Blocker::TooManyUnhealthy {
            unhealthy: cap.unhealthy,
            allowed: cap.allowed,
        }
    } else if view.spec.disruption.paused {
        Blocker::Paused
    } else {
        return true;
    };
    if !plan.blockers.contains(&blocker) {
        plan.blockers.push(blocker);
    }
    false
}

fn status_word(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Down => "down",
        NodeStatus::Disconnected => "disconnected",
        NodeStatus::Ready => "ready",
        NodeStatus::Initializing => "initializing",
    }
}
