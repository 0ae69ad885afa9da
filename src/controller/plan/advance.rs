//! One retirement's next step: how each phase moves on, given what Nomad and
//! the cloud group show now (`plan` calls `advance` for every tracked entry).

use super::*;

/// Return a client to service: any step planned for it earlier in this plan
/// is dropped, and its drain (if any) is cancelled. Cancelling through the
/// drain endpoint also covers a drain Nomad has not shown us yet; on a node
/// that is not draining it only applies `MarkEligible`.
pub(super) fn cancel(entry: &mut RetiringNode, plan: &mut Plan, now: Timestamp, why: String) {
    plan.actions.retain(|a| match a {
        Action::Cordon { node_id } | Action::Drain { node_id, .. } => *node_id != entry.node_id,
        _ => true,
    });
    plan.event(
        Some(&entry.node_name),
        "RetirementCancelled",
        format!("node {} returns to service: {why}", entry.node_name),
    );
    entry.phase = RetirePhase::Cancelling;
    entry.since = ts(now);
    entry.message = Some(why);
    plan.actions.push(Action::Release {
        node_id: entry.node_id.clone(),
        mark_eligible: entry.cordoned_by_pool,
    });
}

/// The drain that carries `entry` forward; its Meta records the retirement.
pub(super) fn drain(entry: &RetiringNode) -> Action {
    Action::Drain {
        node_id: entry.node_id.clone(),
        mark: DrainMark {
            reason: entry.reason,
            cordoned_by_pool: entry.cordoned_by_pool,
        },
    }
}

/// One tracked retirement's next step; `None` when it is finished.
pub(super) fn advance(
    view: &PoolView<'_>,
    nodes: &BTreeMap<&str, &NodeFacts>,
    entry: &RetiringNode,
    force_after: Option<SignedDuration>,
    plan: &mut Plan,
) -> Option<RetiringNode> {
    let mut e = entry.clone();
    let node = nodes.get(entry.node_id.as_str()).copied();
    if e.instance_id.is_none() {
        e.instance_id = node.and_then(|n| n.instance_id.clone());
    }
    let to = |e: &mut RetiringNode, phase: RetirePhase, message: Option<String>| {
        e.phase = phase;
        e.since = ts(view.now);
        e.message = message;
    };

    // The node left Nomad (purged) or the pool.
    let Some(node) = node else {
        return match e.phase {
            RetirePhase::Terminating => {
                plan.retired += 1;
                if e.reason != RetireReason::ScaleIn {
                    plan.retired_nodes.push(super::retired::record(view, &e));
                }
                if let Some(selected) = &e.selected_at {
                    plan.retire_seconds
                        .push(seconds_between(selected.0, view.now));
                }
                plan.event(
                    Some(&e.node_name),
                    "Retired",
                    format!(
                        "node {} retired: VM {} terminated and node purged",
                        e.node_name,
                        e.instance_id.as_deref().unwrap_or("?")
                    ),
                );
                None
            }
            _ => {
                plan.warn(
                    &e.node_name,
                    "NodeLeftPool",
                    format!(
                        "node {} disappeared from the pool during {:?}; forgetting it",
                        e.node_name, e.phase
                    ),
                );
                None
            }
        };
    };

    match e.phase {
        RetirePhase::Selected => {
            if !node.eligible {
                to(&mut e, RetirePhase::Cordoned, None);
                plan.event(
                    Some(&e.node_name),
                    "Cordoned",
                    format!("node {} is ineligible for new work", e.node_name),
                );
                plan.actions.push(drain(&e));
            } else {
                plan.actions.push(Action::Cordon {
                    node_id: e.node_id.clone(),
                });
            }
        }
        RetirePhase::Cordoned => {
            let ours = node.last_drain_mark.is_some();
            if node.draining && ours {
                to(&mut e, RetirePhase::Draining, None);
                e.drain_started_at = node.last_drain_started.or(Some(view.now)).map(ts);
                e.drain_deadline = drain_deadline(view, node);
                plan.event(
                    Some(&e.node_name),
                    "Draining",
                    format!("node {} is draining", e.node_name),
                );
            } else if ours && node.last_drain == Some(LastDrainStatus::Complete) {
                // The drain finished between two observations.
                to(&mut e, RetirePhase::Draining, None);
                e.drain_started_at = node.last_drain_started.map(ts);
                plan.event(
                    Some(&e.node_name),
                    "Draining",
                    format!("node {} drained", e.node_name),
                );
            } else {
                plan.actions.push(drain(&e));
            }
        }
        RetirePhase::Draining | RetirePhase::Drained => {
            let allocs = view.allocs.get(&e.node_id);
            if let Some(a) = allocs {
                e.allocations_left = a.live as i32;
                e.blocking_jobs = a
                    .blocking_jobs
                    .iter()
                    .take(MAX_BLOCKING_JOBS)
                    .cloned()
                    .collect();
            }
            let drain_done = !node.draining
                && (node.last_drain == Some(LastDrainStatus::Complete)
                    || node.status == NodeStatus::Down);
            // A down node is not empty by itself: an allocation its client
            // never confirmed stopped stays `unknown` there, and a
            // partitioned VM may still run it.
            let empty = allocs.is_some_and(|a| a.live == 0);
            // Forcing still needs a fresh allocation read: the event and the
            // status must say what was killed.
            let deadline_forced = allocs.is_some()
                && force_after.is_some_and(|after| {
                    e.drain_deadline
                        .as_ref()
                        .is_some_and(|d| view.now >= d.0.saturating_add(after).unwrap_or(d.0))
                });
            if !node.draining
                && node.last_drain == Some(LastDrainStatus::Canceled)
                && node.status != NodeStatus::Down
            {
                // Someone cancelled our drain; the spec still says retire.
                plan.warn(
                    &e.node_name,
                    "DrainCancelledExternally",
                    format!(
                        "the drain of node {} was cancelled outside this pool; draining again",
                        e.node_name
                    ),
                );
                to(
                    &mut e,
                    RetirePhase::Cordoned,
                    Some("drain was cancelled outside the pool".into()),
                );
                plan.actions.push(drain(&e));
            } else if drain_done
                && empty
                && !deadline_forced
                && view.visibility != AllocationVisibility::Proven
            {
                withhold_termination(&mut e, view, plan);
            } else if drain_done && (empty || deadline_forced) {
                let Some(instance) = e.instance_id.clone() else {
                    e.message = Some("waiting to learn the node's instance ID".into());
                    return Some(e);
                };
                if !siblings_allow(view, &mut e, &instance, plan) {
                    return Some(e);
                }
                let lifecycle = instance_in_group(view.group, &instance);
                let refusal = if still_counted(&lifecycle) {
                    preflight_with(view.group, &instance, 0, e.decrement)
                        .err()
                        .map(|r| r.to_string())
                } else {
                    None
                };
                if let Some(why) = refusal {
                    if e.phase != RetirePhase::Drained || e.message.as_deref() != Some(why.as_str())
                    {
                        plan.warn(
                            &e.node_name,
                            "TerminateBlocked",
                            format!("node {} is drained but {why}", e.node_name),
                        );
                    }
                    to(&mut e, RetirePhase::Drained, Some(why));
                } else {
                    let forced = !empty;
                    if forced {
                        let partitioned =
                            if matches!(node.status, NodeStatus::Disconnected | NodeStatus::Down)
                                && allocs.is_some_and(|a| a.unknown > 0)
                            {
                                " (unknown behind a partition: they may still be running)"
                            } else {
                                ""
                            };
                        plan.warn(&e.node_name,
                            "ForceTerminate",
                            format!(
                                "terminating {} with {} allocation(s) still live{partitioned}: drain.forceTerminateAfter passed",
                                e.node_name, e.allocations_left
                            ),
                        );
                    } else {
                        plan.event(
                            Some(&e.node_name),
                            "Drained",
                            format!("node {} has no pending or running allocation", e.node_name),
                        );
                    }
                    if let Some(started) = &e.drain_started_at {
                        plan.drain_wait_seconds
                            .push(seconds_between(started.0, view.now));
                    }
                    to(&mut e, RetirePhase::Terminating, None);
                    plan.event(
                        Some(&e.node_name),
                        "Terminating",
                        format!("terminating VM {instance} of node {}", e.node_name),
                    );
                    if still_counted(&lifecycle) {
                        plan.actions.push(Action::Terminate {
                            node_id: e.node_id.clone(),
                            instance_id: instance,
                            decrement: e.decrement,
                            first_attempt: true,
                        });
                    }
                }
            } else if !node.draining && !drain_done {
                // Neither running nor complete: Nomad never stored it (or
                // lost it). Back to Cordoned, which names the drain to send.
                to(
                    &mut e,
                    RetirePhase::Cordoned,
                    Some("drain not found in Nomad; sending it again".into()),
                );
                plan.actions.push(drain(&e));
            } else {
                e.message = Some(match allocs {
                    None if node.draining => {
                        "draining; waiting for Nomad to mark the drain complete".into()
                    }
                    None => "waiting for the node's allocations to be read".into(),
                    Some(a)
                        if a.unknown > 0
                            && matches!(
                                node.status,
                                NodeStatus::Disconnected | NodeStatus::Down
                            ) =>
                    {
                        format!(
                            "node is {} with {} allocation(s) that may still run ({} unknown: its client \
                             never confirmed they stopped); waiting for it to reconnect and stop them{}",
                            if node.status == NodeStatus::Down {
                                "down"
                            } else {
                                "disconnected"
                            },
                            a.live,
                            a.unknown,
                            if force_after.is_some() {
                                ", or for drain.forceTerminateAfter"
                            } else {
                                ""
                            }
                        )
                    }
                    Some(a) if a.live > 0 => {
                        format!("waiting for {} allocation(s) to finish", a.live)
                    }
                    Some(_) => "waiting for Nomad to mark the drain complete".into(),
                });
            }
        }
        RetirePhase::Terminating => {
            let instance = e.instance_id.clone().unwrap_or_default();
            let lifecycle = instance_in_group(view.group, &instance);
            if still_counted(&lifecycle) && !siblings_allow(view, &mut e, &instance, plan) {
                // A node that appeared on the VM since the decision: the
                // call is not sent again while it may lose work.
            } else if still_counted(&lifecycle) {
                // Committed but not landed (crash, throttling): re-issue; the
                // provider re-checks the instance so this never decrements twice.
                plan.actions.push(Action::Terminate {
                    node_id: e.node_id.clone(),
                    instance_id: instance,
                    decrement: e.decrement,
                    first_attempt: false,
                });
            } else if node.status == NodeStatus::Down {
                plan.actions.push(Action::Purge {
                    node_id: e.node_id.clone(),
                });
                e.message = Some("VM gone and node down; purging the node".into());
            } else {
                e.message = Some("VM terminating; waiting for the Nomad node to turn down".into());
            }
        }
        RetirePhase::Cancelling => {
            let released = !node.draining && (node.eligible || !e.cordoned_by_pool);
            if released {
                plan.event(
                    Some(&e.node_name),
                    "ReturnedToService",
                    format!("node {} is back in service", e.node_name),
                );
                return None;
            }
            plan.actions.push(Action::Release {
                node_id: e.node_id.clone(),
                mark_eligible: e.cordoned_by_pool,
            });
        }
    }
    Some(e)
}

/// Whether the other nodes reporting the VM let it go; if not, the entry
/// says why (a hold before the decision moves it to `Drained`, once with a
/// warning).
fn siblings_allow(
    view: &PoolView<'_>,
    e: &mut RetiringNode,
    instance: &str,
    plan: &mut Plan,
) -> bool {
    let why = match super::identity::sibling_gate(view, &e.node_id, instance) {
        super::identity::Gate::Clear => return true,
        super::identity::Gate::Waiting(why) => {
            e.message = Some(why);
            return false;
        }
        super::identity::Gate::Held(why) => why,
    };
    if e.message.as_deref() != Some(why.as_str()) {
        plan.warn(
            &e.node_name,
            "TerminateHeld",
            format!("node {} is drained but {why}", e.node_name),
        );
        if e.phase != RetirePhase::Terminating {
            e.phase = RetirePhase::Drained;
            e.since = ts(view.now);
        }
    }
    e.message = Some(why);
    false
}

/// A drained client whose allocations the token may not all see stays in
/// `Drained`; the first time, a warning says why and what to fix.
fn withhold_termination(e: &mut RetiringNode, view: &PoolView<'_>, plan: &mut Plan) {
    let AllocationVisibility::Unproven(gap) = view.visibility else {
        e.message = Some("checking that the Nomad token reads jobs in every namespace".into());
        return;
    };
    let why = format!("not terminated: {gap}");
    if e.phase != RetirePhase::Drained || e.message.as_deref() != Some(why.as_str()) {
        plan.warn(
            &e.node_name,
            "TerminateWithheld",
            format!("node {} is drained but {why}", e.node_name),
        );
        e.phase = RetirePhase::Drained;
        e.since = ts(view.now);
        e.message = Some(why);
    }
    if !plan
        .blockers
        .iter()
        .any(|b| matches!(b, Blocker::AllocationsHidden(_)))
    {
        plan.blockers
            .push(Blocker::AllocationsHidden(gap.to_owned()));
    }
}

fn drain_deadline(view: &PoolView<'_>, node: &NodeFacts) -> Option<Time> {
    let deadline = view
        .spec
        .drain
        .deadline
        .as_deref()
        .and_then(parse_go_duration)?;
    let start = node.last_drain_started.unwrap_or(view.now);
    start.checked_add(deadline).ok().map(ts)
}
