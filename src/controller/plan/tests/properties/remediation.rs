//! The property test's remediation half (issue 18): how a generated case
//! turns `spec.remediation` on, and what a replacement of a broken client
//! or of a VM without one may do.

use super::*;

/// `remedy`: 0 remediation off; 1 on; 2 on, disconnected clients too; 3
/// on with `maxUnhealthy: 1`, and the tracked replacements of down or
/// disconnected clients are `Unhealthy` ones.
pub(super) fn with_remediation(c: &mut Case, remedy: u8) {
    if remedy == 0 {
        return;
    }
    c.spec.remediation = Some(RemediationPolicy {
        unhealthy_after: Some("10m".into()),
        max_unhealthy: (remedy == 3).then_some(IntOrString::Int(1)),
        replace_disconnected: Some(remedy == 2),
        purge_down_after: Some("30m".into()),
        unregistered_after: Some("15m".into()),
    });
    let hour_ago = now().checked_sub(SignedDuration::from_hours(1)).unwrap();
    for n in &c.nodes {
        if matches!(n.status, NodeStatus::Down | NodeStatus::Disconnected) {
            c.unhealthy_since.insert(n.id.clone(), hour_ago);
        }
    }
    // VMs no node reports (a node on the VM before its own leaves one
    // clientless): past `unregisteredAfter`, and when the cluster-wide
    // read answered, proven so.
    let listed = !c.instance_nodes.is_empty();
    for i in &c.group.instances {
        if !c
            .nodes
            .iter()
            .any(|n| n.instance_id.as_deref() == Some(i.id.as_str()))
        {
            c.clientless_since.insert(i.id.clone(), hour_ago);
            if listed {
                c.instance_nodes.insert(i.id.clone(), vec![]);
            }
        }
    }
    if remedy == 3 {
        for e in c.tracked.iter_mut().filter(|e| !e.decrement) {
            if c.unhealthy_since.contains_key(&e.node_id) {
                e.reason = RetireReason::Unhealthy;
            }
        }
    }
}

/// A VM without a client (keyed by its instance ID) is terminated only
/// with `unregisteredAfter` set, never shrinking the group, and only while
/// no node of the pool reports it and the cluster-wide read found none.
pub(super) fn unregistered_terminate_is_safe(
    c: &Case,
    instance: &str,
    decrement: bool,
) -> Result<(), TestCaseError> {
    prop_assert!(!decrement);
    prop_assert!((c.spec.remediation.as_ref()).is_some_and(|r| r.unregistered_after.is_some()));
    prop_assert!(
        !c.nodes
            .iter()
            .any(|n| n.instance_id.as_deref() == Some(instance)),
        "VM {} terminated under a node of the pool",
        instance
    );
    prop_assert!(
        c.instance_nodes.get(instance).is_some_and(Vec::is_empty),
        "VM {} terminated without a cluster-wide read proving it clientless",
        instance
    );
    Ok(())
}

/// Replacements start only with remediation on, of a client down (or
/// disconnected, when the spec says so) on an in-service VM, never more
/// than `maxUnhealthy` counting those in flight, and never during a pause.
pub(super) fn unhealthy_selections_are_safe(
    c: &Case,
    selected: &[&&RetiringNode],
) -> Result<(), TestCaseError> {
    let started: Vec<&&&RetiringNode> = (selected.iter())
        .filter(|r| r.reason.is_remediation())
        .collect();
    if started.is_empty() {
        return Ok(());
    }
    let policy = c.spec.remediation.as_ref();
    prop_assert!(policy.is_some());
    let policy = policy.unwrap();
    for r in &started {
        prop_assert!(!r.decrement);
        if r.reason == RetireReason::Unregistered {
            // Only a VM in service that no node reports, by the pool's
            // view and by the cluster-wide read.
            let instance = r.instance_id.as_deref().unwrap();
            prop_assert!(policy.unregistered_after.is_some());
            prop_assert!(
                !c.nodes
                    .iter()
                    .any(|n| n.instance_id.as_deref() == Some(instance))
            );
            prop_assert!(c.instance_nodes.get(instance).is_some_and(Vec::is_empty));
            prop_assert_eq!(
                c.group.instance(instance).map(|i| i.lifecycle.clone()),
                Some(Lifecycle::InService)
            );
            continue;
        }
        let n = c.nodes.iter().find(|n| n.id == r.node_id).unwrap();
        prop_assert!(
            n.status == NodeStatus::Down
                || (n.status == NodeStatus::Disconnected && policy.replaces_disconnected())
        );
        prop_assert!(!r.decrement);
        let instance = n.instance_id.as_deref().unwrap();
        prop_assert_eq!(
            c.group.instance(instance).map(|i| i.lifecycle.clone()),
            Some(Lifecycle::InService)
        );
    }
    let in_flight = (c.tracked.iter())
        .filter(|t| t.reason.is_remediation() && t.phase != RetirePhase::Cancelling)
        .count();
    if let Some(IntOrString::Int(max)) = &policy.max_unhealthy {
        prop_assert!(in_flight + started.len() <= *max as usize);
    }
    Ok(())
}
