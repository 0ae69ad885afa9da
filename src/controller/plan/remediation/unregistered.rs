//! VMs whose client never registered (`remediation.unregisteredAfter`): an
//! in-service VM of the group that no node of the pool reports for longer
//! than the timeout is replaced (reason `Unregistered`), within
//! `maxUnhealthy` like every remediation.
//!
//! Such a retirement has no Nomad node: the planner tracks it by its
//! instance ID (`node_id` and `node_name` hold the instance ID, and the
//! retirement's status names no node). It goes `Selected` → `Terminating`
//! → gone, nothing to cordon or drain. Before the step into `Terminating`
//! the VM must be proven clientless in the whole cluster, not only in the
//! pool: a client that registered under another node pool, class or
//! datacenter (a misconfigured image) may run work, and the pool's view
//! would never show it. The cluster-wide read of the termination gate
//! (`identity`, `controller::siblings`) answers that before the retirement
//! is even created (`Plan::unregistered_checks` puts the VM at the gate),
//! again before the step into `Terminating`, and the terminate call's own
//! last check repeats it right before the call. A VM another node reports
//! is left alone (`Ready` keeps listing it in `VMsWithoutClient`).

use super::super::advance::move_to;
use super::*;

/// An in-service VM no node of the pool reports and no retirement covers,
/// with since when the controller has seen it so.
struct Clientless<'a> {
    instance: &'a str,
    since: Timestamp,
}

/// Every such VM, longest clientless first. None while a live node's
/// instance is not known: that node may run on any of them.
fn clientless<'a>(view: &PoolView<'a>, next: &[RetiringNode]) -> Vec<Clientless<'a>> {
    let unknown = |n: &NodeFacts| n.status != NodeStatus::Down && n.instance_id.is_none();
    if view.nodes.iter().any(unknown) {
        return vec![];
    }
    let leaving: HashSet<&str> = next
        .iter()
        .filter_map(|r| r.instance_id.as_deref())
        .collect();
    let mut out: Vec<Clientless<'a>> = (view.group.instances.iter())
        .filter(|i| i.lifecycle == Lifecycle::InService)
        .filter(|i| view.nodes_on(&i.id).is_empty() && !leaving.contains(i.id.as_str()))
        .map(|i| Clientless {
            instance: i.id.as_str(),
            since: view
                .clientless_since
                .get(&i.id)
                .copied()
                .unwrap_or(view.now),
        })
        .collect();
    out.sort_by_key(|c| (c.since, c.instance));
    out
}

/// How soon the group is looked at again while VMs it should run are not
/// in service yet. The group is not watched, and a VM whose client never
/// registers makes no Nomad event either: without this, a scale-up's VM
/// that fails to boot would be sighted only by the next periodic look.
const SIGHTING_INTERVAL: SignedDuration = SignedDuration::from_secs(10);

/// Whether the group has VMs to come: launching, or not launched yet.
fn launching(view: &PoolView<'_>) -> bool {
    let group = view.group;
    group.instances.len() < group.desired_capacity as usize
        || (group.instances.iter()).any(|i| i.lifecycle == Lifecycle::Pending)
}

/// `remediation.unregisteredAfter`, when set and valid.
fn timeout(view: &PoolView<'_>) -> Option<SignedDuration> {
    (view.spec.remediation.as_ref())
        .and_then(|r| r.unregistered_after.as_deref())
        .and_then(parse_go_duration)
}

/// What `unregisteredAfter` makes of the clientless VMs now.
#[derive(Default)]
struct Due<'a> {
    /// Past the timeout, and the cluster-wide read found no node on them.
    proven: Vec<Clientless<'a>>,
    /// Past the timeout, the read not answered yet.
    unread: Vec<&'a str>,
    /// Past the timeout, but some node outside the pool reports them.
    foreign: Vec<&'a str>,
    /// When the next timeout ends.
    wake: Option<Timestamp>,
}

/// The VMs past the timeout that no retirement covers yet, by what the
/// cluster-wide read says of them.
fn due<'a>(view: &PoolView<'a>, next: &[RetiringNode]) -> Due<'a> {
    let mut out = Due::default();
    let Some(after) = timeout(view) else {
        return out;
    };
    if launching(view) {
        out.wake = view.now.checked_add(SIGHTING_INTERVAL).ok();
    }
    for c in clientless(view, next) {
        let at = c.since.saturating_add(after).unwrap_or(c.since);
        if at > view.now {
            out.wake = Some(out.wake.map_or(at, |w| w.min(at)));
            continue;
        }
        match view.instance_nodes.get(c.instance) {
            None => out.unread.push(c.instance),
            Some(nodes) if nodes.is_empty() => out.proven.push(c),
            Some(_) => out.foreign.push(c.instance),
        }
    }
    out
}

/// VMs past `unregisteredAfter` waiting for a retirement, for the cap: a
/// VM still within it may only be booting, which is not broken, and one a
/// node of another pool reports is not this pool's to repair.
pub(in crate::controller::plan) fn waiting(view: &PoolView<'_>, next: &[RetiringNode]) -> u32 {
    let due = due(view, next);
    (due.proven.len() + due.unread.len()) as u32
}

/// Start an `Unregistered` retirement for every VM past the timeout,
/// within the cap (checked by `remediation::start` first for the clients
/// that stay down: both draw on it); say when the next timeout ends.
pub(in crate::controller::plan) fn start(
    view: &PoolView<'_>,
    cap: &mut RemediationCap,
    next: &mut Vec<RetiringNode>,
    plan: &mut Plan,
) {
    let Due {
        proven,
        unread,
        foreign,
        wake,
    } = due(view, next);
    if let Some(at) = wake {
        plan.wake_by(at);
    }
    // Read (or kept) at the gate: the answer wakes the pool.
    (plan.unregistered_checks).extend(unread.iter().chain(&foreign).map(|i| i.to_string()));
    if proven.is_empty() {
        return;
    }
    if !super::may_start(view, cap, plan) {
        return;
    }
    for c in proven {
        if !cap.take() {
            break;
        }
        if view.spec.disruption.dry_run {
            plan.preview.push(PlannedRetirement {
                node_id: String::new(),
                node_name: String::new(),
                instance_id: Some(c.instance.to_owned()),
                reason: RetireReason::Unregistered,
                allocations: 0,
            });
            continue;
        }
        plan.warn(
            c.instance,
            "Unregistered",
            format!(
                "VM {} has been in service for {} and no Nomad node of the cluster reports it (remediation.unregisteredAfter {}): replacing it",
                c.instance,
                human_seconds(seconds_between(c.since, view.now)),
                (view.spec.remediation.as_ref())
                    .and_then(|r| r.unregistered_after.as_deref())
                    .unwrap_or_default(),
            ),
        );
        next.push(entry(c.instance, view.now));
    }
}

/// The retirement of the clientless VM `instance`, selected at `now`.
fn entry(instance: &str, now: Timestamp) -> RetiringNode {
    RetiringNode {
        node_id: instance.to_owned(),
        node_name: instance.to_owned(),
        instance_id: Some(instance.to_owned()),
        phase: RetirePhase::Selected,
        since: ts(now),
        selected_at: Some(ts(now)),
        reason: RetireReason::Unregistered,
        decrement: false,
        cordoned_by_pool: false,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: 0,
        blocking_jobs: vec![],
        message: Some("checking that no Nomad node of the cluster reports the VM".into()),
    }
}

/// One tracked `Unregistered` retirement's next step; `None` once it is
/// finished (VM gone, or a client showed up before the terminate).
pub(in crate::controller::plan) fn advance(
    entry: &RetiringNode,
    view: &PoolView<'_>,
    plan: &mut Plan,
) -> Option<RetiringNode> {
    let mut e = entry.clone();
    let instance = e.instance_id.clone().unwrap_or_else(|| e.node_id.clone());
    let lifecycle = view.lifecycle_of(&instance);
    match e.phase {
        RetirePhase::Terminating => return terminating(e, &instance, lifecycle, view, plan),
        // Deleted before its VM was touched: nothing to give back.
        RetirePhase::Cancelling => return None,
        _ => {}
    }
    if lifecycle != Some(Lifecycle::InService) {
        plan.event(
            Some(&e.node_name),
            "RetirementCancelled",
            format!("VM {instance} left service before it was replaced: nothing to do"),
        );
        return None;
    }
    if let Some(names) = registered(view, &instance) {
        plan.event(
            Some(&e.node_name),
            "RetirementCancelled",
            format!("Nomad node(s) {names} report VM {instance} now: it is not replaced"),
        );
        return None;
    }
    if view.instance_nodes.get(&instance).is_none() {
        e.message = Some(format!(
            "checking that no Nomad node of the cluster reports VM {instance}"
        ));
        return Some(e);
    }
    if let Err(refusal) = preflight_with(view.group, &instance, 0, false) {
        let why = refusal.to_string();
        if e.message.as_deref() != Some(why.as_str()) {
            plan.warn(
                &e.node_name,
                "TerminateBlocked",
                format!("VM {instance} has no Nomad client but {why}"),
            );
        }
        e.message = Some(why);
        return Some(e);
    }
    plan.warn(
        &e.node_name,
        "ReplacingUnregistered",
        format!(
            "terminating VM {instance}: no Nomad node of the cluster reports it; the group launches a replacement"
        ),
    );
    move_to(&mut e, view, RetirePhase::Terminating, None);
    plan.actions.push(Action::Terminate {
        node_id: e.node_id.clone(),
        instance_id: instance,
        decrement: false,
        first_attempt: true,
    });
    Some(e)
}

/// The nodes that report `instance`, by name, if any: the pool's own and
/// those of the cluster-wide read.
fn registered(view: &PoolView<'_>, instance: &str) -> Option<String> {
    let mut names: Vec<&str> = view
        .nodes_on(instance)
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    if let Some(listed) = view.instance_nodes.get(instance) {
        names.extend(listed.iter().map(|n| n.name.as_str()));
    }
    names.sort_unstable();
    names.dedup();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Terminating: send the call again until the VM no longer counts in the
/// group (unless a node turned up on it meanwhile), then it is done.
fn terminating(
    e: RetiringNode,
    instance: &str,
    lifecycle: Option<Lifecycle>,
    view: &PoolView<'_>,
    plan: &mut Plan,
) -> Option<RetiringNode> {
    if still_counted(&lifecycle) {
        let mut e = e;
        if let Some(names) = registered(view, instance) {
            e.message = Some(format!(
                "terminate held: Nomad node(s) {names} report VM {instance} now"
            ));
        } else {
            plan.actions.push(Action::Terminate {
                node_id: e.node_id.clone(),
                instance_id: instance.to_owned(),
                decrement: false,
                first_attempt: false,
            });
        }
        return Some(e);
    }
    plan.retired += 1;
    let took = e
        .selected_at
        .as_ref()
        .map(|s| seconds_between(s.0, view.now));
    plan.retire_seconds.extend(took);
    plan.event(
        Some(&e.node_name),
        "Retired",
        format!("VM {instance}, on which no Nomad client registered, terminated; the group launches a replacement"),
    );
    None
}
