//! `remediation.unregisteredAfter` (issue 18): an in-service VM no node
//! reports is replaced past the timeout, only once the cluster-wide read
//! proves no node anywhere reports it, within `maxUnhealthy`.

use super::*;

const VM: &str = "i-boot";

fn minutes(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// Three clients and a fourth VM whose client never registered, seen so
/// for `mins` minutes; `unregisteredAfter: 15m`.
fn clientless_world(mins: i64) -> World {
    let mut w = World::new(3, Some(4));
    w.group.desired_capacity = 4;
    let mut vm = w.group.instances[0].clone();
    vm.id = VM.into();
    w.group.instances.push(vm);
    w.spec.remediation = Some(RemediationPolicy {
        unregistered_after: Some("15m".into()),
        ..Default::default()
    });
    w.clientless_since
        .insert(VM.into(), w.at.checked_sub(minutes(mins)).unwrap());
    w
}

/// The cluster-wide read answered for the VM: `nodes` report it.
fn cluster_read(w: &mut World, nodes: Vec<InstanceNode>) {
    let mut read = super::instance_nodes_of(&w.nodes);
    read.insert(VM.into(), nodes);
    w.instance_nodes = Some(read);
}

fn terminates(p: &Plan) -> Vec<(String, String, bool, bool)> {
    (p.actions.iter())
        .filter_map(|a| match a {
            Action::Terminate {
                node_id,
                instance_id,
                decrement,
                first_attempt,
            } => Some((
                node_id.clone(),
                instance_id.clone(),
                *decrement,
                *first_attempt,
            )),
            _ => None,
        })
        .collect()
}

fn event<'a>(p: &'a Plan, reason: &str) -> Option<&'a PlanEvent> {
    p.events.iter().find(|e| e.reason == reason)
}

#[test]
fn a_clientless_vm_is_replaced_once_no_node_of_the_cluster_reports_it() {
    let mut w = clientless_world(20);
    // Past the timeout: first the cluster-wide read, before any record.
    let p = w.plan();
    assert!(p.retiring.is_empty() && p.actions.is_empty());
    assert_eq!(p.unregistered_checks, [VM]);
    assert_eq!(p.unhealthy, 1);

    // It answered "no node": the retirement is created.
    cluster_read(&mut w, vec![]);
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    let e = &p.retiring[0];
    assert_eq!(
        (e.node_id.as_str(), e.instance_id.as_deref(), e.reason),
        (VM, Some(VM), RetireReason::Unregistered)
    );
    assert_eq!((e.phase, e.decrement), (RetirePhase::Selected, false));
    assert!(p.actions.is_empty(), "nothing happens before the record");
    let said = event(&p, "Unregistered").unwrap();
    assert!(said.warning && said.message.contains("20m00s"), "{said:?}");
    assert_eq!(p.unhealthy, 1);

    // With its record written, the VM goes, replaced.
    w.tracked = p.retiring;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert_eq!(
        terminates(&p),
        [(VM.to_string(), VM.to_string(), false, true)]
    );
    assert!(event(&p, "ReplacingUnregistered").is_some());

    // Still in the group on the next look: the call goes again.
    w.tracked = p.retiring;
    let p = w.plan();
    assert_eq!(
        terminates(&p),
        [(VM.to_string(), VM.to_string(), false, false)]
    );
    // Gone from the group: done, counted, said.
    w.group.instances.retain(|i| i.id != VM);
    let p = w.plan();
    assert!(p.retiring.is_empty() && p.actions.is_empty());
    assert_eq!(p.retired, 1);
    assert!(event(&p, "Retired").unwrap().message.contains(VM));
}

#[test]
fn a_vm_within_its_timeout_waits_and_is_not_counted_unhealthy() {
    let mut w = clientless_world(5);
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert_eq!(p.wake, Some(w.at.checked_add(minutes(10)).unwrap()));
    assert_eq!(p.unhealthy, 0, "a VM may take minutes to boot");
    // Never sighted (a controller just restarted): counted from now.
    w.clientless_since.clear();
    assert_eq!(w.plan().wake, Some(w.at.checked_add(minutes(15)).unwrap()));
    // A VM still to come (launching, or not launched yet) is looked for
    // soon: nothing in Nomad will say when it is in service.
    w.group.desired_capacity = 5;
    assert_eq!(
        w.plan().wake,
        Some(w.at.checked_add(SignedDuration::from_secs(10)).unwrap())
    );
    // Without the field, nothing is replaced, whatever the clock says.
    let mut w = clientless_world(60);
    w.spec.remediation = None;
    let p = w.plan();
    assert!(p.retiring.is_empty() && p.wake.is_none());
}

#[test]
fn a_vm_a_node_reports_is_never_replaced_for_this() {
    // A node of another pool (or node pool) registered on it: the
    // cluster-wide read shows it, no retirement starts, and the VM stays
    // at the gate so that the answer is kept.
    let mut w = clientless_world(20);
    let stranger = InstanceNode {
        id: "ffffffff-0000-0000-0000-000000000001".into(),
        name: "batch-7".into(),
        status: NodeStatus::Ready,
        eligible: true,
    };
    cluster_read(&mut w, vec![stranger.clone()]);
    let p = w.plan();
    assert!(p.retiring.is_empty() && p.actions.is_empty());
    assert_eq!(
        (p.unregistered_checks.as_slice(), p.unhealthy),
        ([VM.to_string()].as_slice(), 0)
    );

    // It registered after the retirement was created: given up before
    // the terminate, and not started again.
    cluster_read(&mut w, vec![]);
    w.tracked = w.plan().retiring;
    cluster_read(&mut w, vec![stranger]);
    let p = w.plan();
    assert!(p.retiring.is_empty() && terminates(&p).is_empty());
    let said = event(&p, "RetirementCancelled").unwrap();
    assert!(said.message.contains("batch-7"), "{}", said.message);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Release { .. })),
        "no Nomad call for a VM without a node"
    );

    // A node of the pool reports it (even down): not a candidate at all.
    let mut w = clientless_world(20);
    let mut down = node(3);
    down.status = NodeStatus::Down;
    down.instance_id = Some(VM.into());
    w.nodes.push(down);
    assert!(w.plan().retiring.is_empty());

    // A live node whose instance is not known yet may run on it.
    let mut w = clientless_world(20);
    let mut joining = node(3);
    joining.instance_id = None;
    w.nodes.push(joining);
    assert!(w.plan().retiring.is_empty());
}

#[test]
fn a_node_that_shows_up_after_the_decision_holds_the_terminate() {
    let mut w = clientless_world(20);
    cluster_read(&mut w, vec![]);
    w.tracked = w.plan().retiring;
    w.tracked = w.plan().retiring;
    assert_eq!(w.tracked[0].phase, RetirePhase::Terminating);
    let mut late = node(3);
    late.instance_id = Some(VM.into());
    w.nodes.push(late);
    let p = w.plan();
    assert!(terminates(&p).is_empty(), "{:?}", p.actions);
    assert!(
        p.retiring[0]
            .message
            .as_deref()
            .unwrap()
            .contains("client-3")
    );
}

#[test]
fn the_remediation_cap_counts_clientless_vms_with_down_clients() {
    let mut w = clientless_world(20);
    cluster_read(&mut w, vec![]);
    w.spec.remediation = Some(RemediationPolicy {
        unregistered_after: Some("15m".into()),
        unhealthy_after: Some("10m".into()),
        max_unhealthy: Some(IntOrString::Int(1)),
        ..Default::default()
    });
    w.nodes[0].status = NodeStatus::Down;
    w.unhealthy_since
        .insert(w.id(0), w.at.checked_sub(minutes(30)).unwrap());
    let p = w.plan();
    assert!(p.retiring.is_empty(), "{:?}", phases(&p));
    assert!(p.blockers.contains(&Blocker::TooManyUnhealthy {
        unhealthy: 2,
        allowed: 1
    }));
    assert_eq!(p.unhealthy, 2);
    // With room for both, both start, one reason each.
    if let Some(r) = w.spec.remediation.as_mut() {
        r.max_unhealthy = Some(IntOrString::Int(2));
    }
    let p = w.plan();
    let mut reasons: Vec<RetireReason> = p.retiring.iter().map(|e| e.reason).collect();
    reasons.sort_by_key(|r| r.as_str());
    assert_eq!(
        reasons,
        [RetireReason::Unhealthy, RetireReason::Unregistered]
    );
}

#[test]
fn paused_and_dry_run_pools_start_nothing() {
    let mut w = clientless_world(20);
    cluster_read(&mut w, vec![]);
    w.spec.disruption.paused = true;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(p.blockers.contains(&Blocker::Paused));
    w.spec.disruption.paused = false;
    w.spec.disruption.dry_run = true;
    let p = w.plan();
    assert!(p.retiring.is_empty() && p.actions.is_empty());
    let preview: Vec<_> = (p.preview.iter())
        .map(|r| (r.instance_id.as_deref(), r.reason))
        .collect();
    assert_eq!(preview, [(Some(VM), RetireReason::Unregistered)]);
}

#[test]
fn turning_the_feature_off_gives_up_a_replacement_not_yet_sent() {
    let mut w = clientless_world(20);
    cluster_read(&mut w, vec![]);
    w.tracked = w.plan().retiring;
    // Still at the gate's read (the next plan would send the terminate).
    w.instance_nodes = None;
    w.spec.remediation = None;
    let p = w.plan();
    assert_eq!(phases(&p), [(VM.to_string(), RetirePhase::Cancelling)]);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Release { .. }))
    );
    w.tracked = p.retiring;
    assert!(w.plan().retiring.is_empty(), "finished, nothing to release");

    // Past the point of no return it is carried to the end.
    let mut w = clientless_world(20);
    cluster_read(&mut w, vec![]);
    w.tracked = w.plan().retiring;
    w.tracked = w.plan().retiring;
    w.spec.remediation = None;
    let p = w.plan();
    assert_eq!(phases(&p), [(VM.to_string(), RetirePhase::Terminating)]);
}
