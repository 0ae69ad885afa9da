//! Blockers that keep the status truthful: a selector matching nothing, a
//! `replicas` the group cannot hold, and `spec.retire` entries that are done.

use super::*;

fn target(name: &str) -> RetireTarget {
    RetireTarget {
        node_name: Some(name.into()),
        node_id: None,
        instance_id: None,
        replace: false,
    }
}

#[test]
fn a_selector_matching_no_client_is_a_blocker_unless_none_is_wanted() {
    let mut w = World::new(0, Some(2));
    w.group = group(3);
    assert!(
        w.plan()
            .blockers
            .contains(&Blocker::NoClientsMatch { desired: 2 })
    );
    w.spec.replicas = None;
    assert!(
        w.plan()
            .blockers
            .contains(&Blocker::NoClientsMatch { desired: 3 }),
        "without replicas the group's size is wanted"
    );
    // Down clients are not clients.
    w.nodes = vec![NodeFacts {
        do_not_retire: false,
        status: NodeStatus::Down,
        ..node(0)
    }];
    assert!(
        w.plan()
            .blockers
            .iter()
            .any(|b| matches!(b, Blocker::NoClientsMatch { .. }))
    );
    // A pool scaled to zero on purpose has nothing to report.
    let mut zero = World::new(0, Some(0));
    zero.group = group(0);
    assert!(
        zero.plan().blockers.is_empty(),
        "{:?}",
        zero.plan().blockers
    );
}

#[test]
fn replicas_above_max_size_grow_the_group_to_its_max_and_say_so() {
    let mut w = World::new(3, Some(8));
    w.group.max_size = 5;
    let p = w.plan();
    assert!(p.blockers.contains(&Blocker::ReplicasAboveMaxSize {
        replicas: 8,
        max_size: 5,
        group: "ci".into()
    }));
    assert_eq!(
        p.actions,
        vec![Action::SetDesiredCapacity { desired: 5 }],
        "never asks for more than MaxSize"
    );
    // At MaxSize already: nothing is sent, the blocker stays.
    w.group = group(5);
    w.group.max_size = 5;
    w.nodes = (0..5).map(node).collect();
    let p = w.plan();
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(
        p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::ReplicasAboveMaxSize { .. }))
    );
    // Within MaxSize: no blocker.
    w.spec.replicas = Some(5);
    assert!(w.plan().blockers.is_empty());
}

#[test]
fn a_finished_retire_entry_is_done_recorded_and_not_retired_again() {
    // client-1 was named and is terminating; its node was purged.
    let mut w = World::new(3, None);
    let gone = node(1);
    let mut e = entry(&gone, RetirePhase::Terminating);
    e.reason = RetireReason::Requested;
    w.tracked = vec![e];
    w.nodes.retain(|n| n.id != gone.id);
    // Its VM is gone from the group too.
    w.group.instances.retain(|i| i.id != "i-0001");
    w.group.desired_capacity = 2;
    w.spec.retire = vec![target("client-1")];
    let p = w.plan();
    assert_eq!(p.retired, 1);
    assert_eq!(p.retired_nodes.len(), 1);
    assert_eq!(p.retired_nodes[0].node_name, "client-1");
    assert_eq!(p.retired_nodes[0].instance_id.as_deref(), Some("i-0001"));
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    assert_eq!(p.done_targets, vec!["nodeName client-1".to_string()]);

    // The next reconcile reads the record from status.
    w.tracked = vec![];
    w.retired = p.retired_nodes.clone();
    let p = w.plan();
    assert!(p.blockers.is_empty(), "{:?}", p.blockers);
    assert_eq!(p.retired_nodes, w.retired, "kept while the spec names it");

    // A new client registering under the same name is not retired again.
    w.nodes.push(NodeFacts {
        do_not_retire: false,
        id: "ffffffff-0000-0000-0000-000000000001".into(),
        ..node(1)
    });
    let p = w.plan();
    assert!(p.retiring.is_empty(), "{:?}", p.retiring);

    // An unknown entry next to the done one is still reported.
    w.spec.retire.push(target("client-9"));
    let p = w.plan();
    assert_eq!(
        p.blockers,
        vec![Blocker::UnknownRetireTarget("nodeName client-9".into())]
    );

    // Removed from the spec: the record goes.
    w.spec.retire.clear();
    assert!(w.plan().retired_nodes.is_empty());
}

#[test]
fn a_scale_in_retirement_leaves_no_record() {
    let mut w = World::new(3, Some(2));
    let gone = node(1);
    w.tracked = vec![entry(&gone, RetirePhase::Terminating)];
    w.nodes.retain(|n| n.id != gone.id);
    w.group = group(2);
    let p = w.plan();
    assert_eq!(p.retired, 1);
    assert!(p.retired_nodes.is_empty());
}
