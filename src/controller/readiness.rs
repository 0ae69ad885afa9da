//! Whether a pool's capacity is really there: `Ready` counts live, eligible
//! clients, not VMs. A VM whose agent crashed or never joined, and a client
//! cordoned by anyone, takes no work, so a pool with such VMs is not
//! `Settled` however many VMs the group holds.

use std::collections::HashMap;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::plan::{Blocker, NodeFacts, NodeStatus, Plan};
use super::status::{self, Signal};
use crate::api::NomadClientPoolStatus;

/// Names listed in a condition at most; the count says how many more.
const MAX_LISTED: usize = 5;

/// Why the pool is not ready although nothing is in flight, if it is not:
/// VMs without a ready client first (the fleet needs repair), then clients
/// that are not live and eligible.
pub fn not_ready(planned: &Plan, nodes: &[NodeFacts], ready: i32) -> Option<Signal> {
    let desired = planned.desired_nodes as i32;
    let missing = planned.blockers.iter().find_map(|b| match b {
        Blocker::VmsWithoutClient(ids) => Some(ids),
        _ => None,
    });
    if let Some(ids) = missing {
        return Some(Signal::new(
            false,
            "VMsWithoutClient",
            format!(
                "{} VM(s) of the group have no ready Nomad client (agent stopped or never joined): {}; \
                 {ready} of {desired} desired client(s) are ready, and scale-in counts only those",
                ids.len(),
                listed(ids.iter().map(String::as_str))
            ),
        ));
    }
    if ready >= desired {
        return None;
    }
    let unready = nodes
        .iter()
        .filter_map(|n| why_not_ready(n).map(|why| format!("{} ({why})", n.name)))
        .collect::<Vec<_>>();
    Some(Signal::new(
        false,
        "ClientsNotReady",
        format!(
            "{ready} of {desired} desired client(s) are ready (live and eligible for work); not ready: {}",
            if unready.is_empty() {
                "none of the group's VMs runs a client yet".to_string()
            } else {
                listed(unready.iter().map(String::as_str))
            }
        ),
    ))
}

/// Why the group keeps more VMs than the pool wants although nothing is in
/// flight: scale-in counts clients that take work, so clients out of
/// service (cordoned or drained by someone else, initializing,
/// disconnected) are never replaced by retiring a healthy one. Without this
/// the pool would read `Idle` with the group above `replicas` forever.
pub fn scale_in_held(
    planned: &Plan,
    nodes: &[NodeFacts],
    group_desired: u32,
    ready: i32,
) -> Option<Signal> {
    if group_desired <= planned.desired_nodes || !planned.retiring.is_empty() {
        return None;
    }
    let out = nodes
        .iter()
        .filter_map(|n| why_not_ready(n).map(|why| format!("{} ({why})", n.name)))
        .collect::<Vec<_>>();
    if out.is_empty() {
        return None;
    }
    Some(Signal::new(
        false,
        "ScaleInHeld",
        format!(
            "the group holds {group_desired} VM(s) for {} desired client(s), and {ready} client(s) take work; \
             the rest are out of service: {}. A client that takes work is never retired in their place: \
             return them to service, or retire them by name in spec.retire",
            planned.desired_nodes,
            listed(out.iter().map(String::as_str))
        ),
    ))
}

fn why_not_ready(n: &NodeFacts) -> Option<&'static str> {
    match n.status {
        NodeStatus::Down => None,
        NodeStatus::Initializing => Some("initializing"),
        NodeStatus::Disconnected => Some("disconnected"),
        NodeStatus::Ready if n.draining => Some("draining"),
        NodeStatus::Ready if !n.eligible => Some("ineligible"),
        NodeStatus::Ready => None,
    }
}

fn listed<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    let mut out = names
        .iter()
        .take(MAX_LISTED)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > MAX_LISTED {
        out.push_str(&format!(" and {} more", names.len() - MAX_LISTED));
    }
    out
}

/// How long a VM of the group may run without any Nomad node reporting it
/// before it is reported: a new VM is in service before its agent has
/// booted and joined. A VM whose node exists but is not ready (the agent
/// stopped, or lost its servers) is reported at once.
pub const JOIN_GRACE: Duration = Duration::from_secs(300);

/// Keep in the plan's `VmsWithoutClient` only the VMs to report now: those
/// some node reports (it is not ready), and those no node has reported for
/// `JOIN_GRACE` by the clientless clock (`since`, see `clientless`).
/// Scale-in already counted them all.
pub fn settle(
    planned: &mut Plan,
    nodes: &[NodeFacts],
    since: &HashMap<String, Timestamp>,
    now: Timestamp,
) {
    let Some(ids) = planned.blockers.iter_mut().find_map(|b| match b {
        Blocker::VmsWithoutClient(ids) => Some(ids),
        _ => None,
    }) else {
        return;
    };
    let grace = SignedDuration::try_from(JOIN_GRACE).expect("the grace fits");
    ids.retain(|id| {
        let has_node = nodes.iter().any(|n| n.instance_id.as_ref() == Some(id));
        let seen = since.get(id).copied().unwrap_or(now);
        has_node || now.duration_since(seen) >= grace
    });
    if ids.is_empty() {
        planned
            .blockers
            .retain(|b| !matches!(b, Blocker::VmsWithoutClient(_)));
    }
}

/// The Degraded message for VMs several live nodes report (`which` names
/// them: `i-1 (a, b); ...`).
pub fn shared_instance_message(which: &str) -> String {
    format!(
        "one VM, several live Nomad nodes: {which}; such a VM is never selected, and no VM \
         is terminated while another node on it has work or is eligible for it"
    )
}

/// Conditions about the fleet itself that are new in `new`, as (reason,
/// message) for a warning Event: an Event when the news arrives, not on
/// every pass. Besides this module's: remediation held by its cap, and a
/// scale-in held by clients that opted out (issue 18), which an on-call
/// engineer should hear of without watching the pool's status.
pub fn news(
    previous: &NomadClientPoolStatus,
    new: &NomadClientPoolStatus,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    // Not `ClientsNotReady`: every scale-up passes through it while the new
    // clients join, and its counts move with each.
    for (type_, reason) in [
        (status::READY, "VMsWithoutClient"),
        (status::DEGRADED, "SharedInstance"),
        (status::DEGRADED, "TooManyUnhealthy"),
        (status::DEGRADED, "DoNotRetire"),
    ] {
        let find = |s: &NomadClientPoolStatus| {
            s.conditions
                .iter()
                .find(|c| c.type_ == type_ && c.reason == reason)
                .map(|c| c.message.clone())
        };
        if let Some(message) = find(new)
            && find(previous).as_ref() != Some(&message)
        {
            out.push((reason, message));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    fn node(name: &str, status: NodeStatus, eligible: bool) -> NodeFacts {
        NodeFacts {
            do_not_retire: false,
            id: name.into(),
            name: name.into(),
            status,
            eligible,
            draining: false,
            last_drain: None,
            last_drain_started: None,
            last_drain_mark: None,
            create_index: 1,
            instance_id: Some(format!("i-{name}")),
        }
    }

    #[test]
    fn cordoned_clients_and_clientless_vms_are_not_ready() {
        let mut plan = Plan {
            desired_nodes: 3,
            ..Default::default()
        };
        let nodes = [
            node("a", NodeStatus::Ready, true),
            node("b", NodeStatus::Ready, true),
            node("c", NodeStatus::Ready, false),
        ];
        let s = not_ready(&plan, &nodes, 2).unwrap();
        assert_eq!(s.reason, "ClientsNotReady");
        assert!(s.message.contains("2 of 3") && s.message.contains("c (ineligible)"));
        assert!(not_ready(&plan, &nodes, 3).is_none());

        plan.blockers
            .push(Blocker::VmsWithoutClient(vec!["i-dead".into()]));
        let s = not_ready(&plan, &nodes, 3).unwrap();
        assert_eq!(s.reason, "VMsWithoutClient");
        assert!(s.message.contains("i-dead"), "{}", s.message);
    }

    #[test]
    fn a_group_above_replicas_because_clients_are_out_of_service_says_so() {
        let plan = Plan {
            desired_nodes: 2,
            ..Default::default()
        };
        let nodes = [
            node("a", NodeStatus::Ready, true),
            node("b", NodeStatus::Ready, true),
            node("c", NodeStatus::Ready, false),
        ];
        let s = scale_in_held(&plan, &nodes, 3, 2).unwrap();
        assert_eq!(s.reason, "ScaleInHeld");
        assert!(s.message.contains("c (ineligible)"), "{}", s.message);
        assert!(s.message.contains("3 VM(s) for 2"), "{}", s.message);
        // At size, or nothing out of service to explain it: not this.
        assert!(scale_in_held(&plan, &nodes, 2, 2).is_none());
        assert!(scale_in_held(&plan, &nodes[..2], 3, 2).is_none());
    }

    #[test]
    fn a_vm_no_node_reports_is_reported_only_after_the_join_grace() {
        let plan = || Plan {
            blockers: vec![Blocker::VmsWithoutClient(vec![
                "i-crashed".into(),
                "i-booting".into(),
            ])],
            ..Default::default()
        };
        let mut crashed = node("x", NodeStatus::Down, true);
        crashed.instance_id = Some("i-crashed".into());
        let t0: Timestamp = "2026-12-01T10:00:00Z".parse().unwrap();
        let since: HashMap<String, Timestamp> = [("i-booting".to_string(), t0)].into();
        let mut p = plan();
        settle(&mut p, std::slice::from_ref(&crashed), &since, t0);
        assert_eq!(
            p.blockers,
            [Blocker::VmsWithoutClient(vec!["i-crashed".into()])]
        );
        let later = t0.checked_add(JOIN_GRACE).unwrap();
        let mut p = plan();
        settle(&mut p, &[crashed], &since, later);
        assert_eq!(
            p.blockers,
            [Blocker::VmsWithoutClient(vec![
                "i-crashed".into(),
                "i-booting".into()
            ])]
        );
        // A VM the clock has not seen yet counts from now.
        let mut p = Plan {
            blockers: vec![Blocker::VmsWithoutClient(vec!["i-later".into()])],
            ..Default::default()
        };
        settle(&mut p, &[], &since, later);
        assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    }

    #[test]
    fn news_only_when_the_condition_changes() {
        let cond = |reason: &str, message: &str| Condition {
            type_: status::READY.into(),
            status: "False".into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
        };
        let with = |c: Condition| NomadClientPoolStatus {
            conditions: vec![c],
            ..Default::default()
        };
        let old = with(cond("Settled", "3 client(s), as desired"));
        let new = with(cond("VMsWithoutClient", "i-1"));
        assert_eq!(news(&old, &new), [("VMsWithoutClient", "i-1".to_string())]);
        assert!(news(&new, &new).is_empty());
        assert_eq!(
            news(&new, &with(cond("VMsWithoutClient", "i-1, i-2"))).len(),
            1
        );
        // Remediation held by its cap is news too, on the Degraded condition.
        let held = with(Condition {
            type_: status::DEGRADED.into(),
            status: "True".into(),
            ..cond("TooManyUnhealthy", "3 client(s) of the pool are unhealthy")
        });
        assert_eq!(
            news(&old, &held),
            [(
                "TooManyUnhealthy",
                "3 client(s) of the pool are unhealthy".to_string()
            )]
        );
        assert!(news(&held, &held).is_empty());
    }
}
