//! One VM, many Nomad identities; VMs without a working client.

use super::*;

/// A node that reports node `of`'s VM (a second agent, or the client
/// re-registered under a new ID).
fn sibling(w: &World, of: usize, i: u32) -> NodeFacts {
    let mut n = node(i);
    n.name = format!("client-{i}-second");
    n.instance_id = w.nodes[of].instance_id.clone();
    n
}

fn terminates(p: &Plan) -> bool {
    p.actions
        .iter()
        .any(|a| matches!(a, Action::Terminate { .. }))
}

#[test]
fn a_vm_two_live_nodes_report_is_never_selected_and_status_says_which() {
    // 3 VMs, replicas 2: client-0 is the idle, oldest, least busy choice,
    // but a second agent on its VM runs a job.
    let mut w = World::new(3, Some(2));
    let second = sibling(&w, 0, 9);
    w.load = Some([(w.id(1), 1), (w.id(2), 2), (second.id.clone(), 3)].into());
    w.nodes.push(second);
    let p = w.plan();
    let chosen: Vec<_> = p.retiring.iter().map(|r| r.node_name.as_str()).collect();
    assert_eq!(chosen, ["client-1"], "the shared VM is skipped");
    assert!(p.blockers.contains(&Blocker::SharedInstance(
        "i-0000 (client-0, client-9-second)".into()
    )));

    // Named in the spec: still not selected.
    w.spec.retire = vec![RetireTarget {
        node_name: Some("client-0".into()),
        ..Default::default()
    }];
    let p = w.plan();
    assert!(!p.retiring.iter().any(|r| r.node_name == "client-0"));

    // A down identity on the VM does not make it shared.
    w.nodes[3].status = NodeStatus::Down;
    w.spec.retire.clear();
    let p = w.plan();
    assert!(
        !p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::SharedInstance(_)))
    );
}

#[test]
fn a_sibling_with_live_work_holds_the_vm_in_drained_naming_it() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    // The client re-registered under a new ID on the same VM and runs a job;
    // the old identity went down (its drain counts as done).
    w.nodes[0].status = NodeStatus::Down;
    let mut new_identity = sibling(&w, 0, 7);
    new_identity.eligible = false;
    w.allocs.insert(
        new_identity.id.clone(),
        AllocFacts {
            live: 1,
            blocking_jobs: vec!["etl".into()],
            ..Default::default()
        },
    );
    w.nodes.push(new_identity.clone());
    let p = w.plan();
    assert!(!terminates(&p), "{:?}", p.actions);
    let e = &p.retiring[0];
    assert_eq!(e.phase, RetirePhase::Drained);
    let msg = e.message.as_deref().unwrap();
    assert!(
        msg.contains("client-7-second") && msg.contains("etl") && msg.contains("i-0000"),
        "{msg}"
    );
    assert!(p.events.iter().any(|ev| ev.reason == "TerminateHeld"));

    // Same observation again: no second warning.
    w.tracked = p.retiring.clone();
    let p = w.plan();
    assert!(!p.events.iter().any(|ev| ev.reason == "TerminateHeld"));

    // The job ends; the sibling is ineligible: the VM goes.
    w.allocs
        .insert(new_identity.id.clone(), AllocFacts::default());
    let p = w.plan();
    assert!(terminates(&p));
}

#[test]
fn siblings_outside_the_pool_count_and_must_be_read_first() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    // Not read yet: wait.
    w.instance_nodes = Some(InstanceNodes::new());
    let p = w.plan();
    assert!(!terminates(&p));
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);

    // Read: a node outside the pool's selector reports the VM; its
    // allocations are not read yet.
    let outsider = InstanceNode {
        id: "ffffffff-0000-0000-0000-000000000001".into(),
        name: "other-pool-agent".into(),
        status: NodeStatus::Ready,
        eligible: false,
    };
    let mut listed = instance_nodes_of(&w.nodes);
    listed.get_mut("i-0000").unwrap().push(outsider.clone());
    w.instance_nodes = Some(listed.clone());
    let p = w.plan();
    assert!(!terminates(&p));
    assert!(
        p.retiring[0]
            .message
            .as_deref()
            .unwrap()
            .contains("other-pool-agent")
    );

    // Eligible for work: held, even with nothing running yet.
    listed.get_mut("i-0000").unwrap()[1].eligible = true;
    w.instance_nodes = Some(listed.clone());
    w.allocs.insert(outsider.id.clone(), AllocFacts::default());
    let p = w.plan();
    assert!(!terminates(&p));
    assert_eq!(p.retiring[0].phase, RetirePhase::Drained);

    // Cordoned and idle: the VM goes.
    listed.get_mut("i-0000").unwrap()[1].eligible = false;
    w.instance_nodes = Some(listed);
    assert!(terminates(&w.plan()));
}

#[test]
fn forcing_past_the_deadline_does_not_override_a_sibling() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.spec.drain.deadline = Some("30m".into());
    w.spec.drain.force_terminate_after = Some("10m".into());
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:00:00Z")));
    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 1,
            ..Default::default()
        },
    );
    let mut second = sibling(&w, 0, 8);
    second.eligible = false;
    w.allocs.insert(
        second.id.clone(),
        AllocFacts {
            live: 1,
            ..Default::default()
        },
    );
    w.nodes.push(second);
    assert!(!terminates(&w.plan()));
}

#[test]
fn a_terminate_is_not_sent_again_once_a_node_with_work_appeared_on_the_vm() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Terminating)];
    w.nodes[0].eligible = false;
    let mut second = sibling(&w, 0, 5);
    second.eligible = false;
    w.allocs.insert(
        second.id.clone(),
        AllocFacts {
            live: 2,
            ..Default::default()
        },
    );
    w.nodes.push(second);
    let p = w.plan();
    assert!(!terminates(&p));
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(
        p.retiring[0]
            .message
            .as_deref()
            .unwrap()
            .contains("client-5-second")
    );
}

#[test]
fn scale_in_counts_working_clients_not_vms() {
    // 4 VMs, replicas 3, but one VM's agent crashed (its node is down):
    // retiring a healthy client would leave 2.
    let mut w = World::new(4, Some(3));
    w.nodes[3].status = NodeStatus::Down;
    let p = w.plan();
    assert!(p.retiring.is_empty(), "{:?}", phases(&p));
    assert!(
        p.blockers
            .contains(&Blocker::VmsWithoutClient(vec!["i-0003".into()]))
    );

    // A VM whose client never joined: no node at all.
    let mut w = World::new(4, Some(3));
    w.nodes.pop();
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(
        p.blockers
            .contains(&Blocker::VmsWithoutClient(vec!["i-0003".into()]))
    );

    // A client cordoned by someone else is no capacity either.
    let mut w = World::new(4, Some(3));
    w.nodes[2].eligible = false;
    assert!(w.plan().retiring.is_empty());

    // Real excess still retires, down to replicas working clients.
    let mut w = World::new(5, Some(3));
    w.nodes[4].status = NodeStatus::Down;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
}

#[test]
fn vms_without_client_leave_out_retirements_and_wait_for_unknown_instances() {
    let clientless = |p: &Plan| {
        (p.blockers.iter())
            .find_map(|b| match b {
                Blocker::VmsWithoutClient(vms) => Some(vms.clone()),
                _ => None,
            })
            .unwrap_or_default()
    };
    let mut w = World::new(3, Some(3));
    w.nodes[1].status = NodeStatus::Down;
    assert_eq!(clientless(&w.plan()), ["i-0001"]);
    w.tracked = vec![entry(&w.nodes[1], RetirePhase::Terminating)];
    assert!(
        clientless(&w.plan()).is_empty(),
        "its retirement explains it"
    );
    w.tracked.clear();
    w.nodes[2].instance_id = None;
    assert!(clientless(&w.plan()).is_empty(), "node 2's VM is not known");
}
