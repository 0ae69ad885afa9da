//! Nomad's documented JSON (the docs fixtures) decodes into the client's
//! types.

use nomad_pool_operator::nomad::*;
use serde_json::Value;

use super::{NODE_ID, fixture};

#[test]
fn decodes_node_list() {
    let nodes: Vec<NodeListStub> = serde_json::from_str(&fixture("node-list.json")).unwrap();
    let [n] = nodes.as_slice() else {
        panic!("{nodes:?}")
    };
    assert_eq!(n.id, "f7476465-4d6e-c0de-26d0-e383c49be941");
    assert_eq!(n.name, "nomad-4");
    assert_eq!(n.datacenter, "dc1");
    assert_eq!(n.node_pool, "default");
    assert_eq!(n.address, "10.138.0.5");
    assert!(!n.drain);
    assert_eq!(n.scheduling_eligibility, SchedulingEligibility::Eligible);
    assert_eq!(n.status, NodeStatus::Ready);
    assert_eq!(n.last_drain, None);
    assert_eq!((n.create_index, n.modify_index), (6, 2526));
    assert_eq!(n.version, "0.8.0-rc1");
}

#[test]
fn decodes_node_read() {
    let n: Node = serde_json::from_str(&fixture("node-read.json")).unwrap();
    assert_eq!(n.id, NODE_ID);
    assert_eq!(n.name, "mew");
    assert_eq!(n.http_addr, "127.0.0.1:4646");
    assert_eq!(n.status, NodeStatus::Ready);
    assert_eq!(n.scheduling_eligibility, SchedulingEligibility::Eligible);
    assert!(!n.drain);
    assert_eq!(n.drain_strategy, None);
    assert!(!n.is_draining());
    assert_eq!(n.attribute("os.name"), Some("nixos"));
    assert_eq!(n.attribute("no.such.key"), None);
    assert_eq!(n.version(), Some("1.1.0"));
    assert_eq!(n.aws_instance_id(), None);
    assert_eq!(n.gce_instance(), None);
    assert_eq!(
        n.meta.get("connect.log_level").map(String::as_str),
        Some("info")
    );
    assert_eq!(
        n.status_updated_at(),
        Some("2019-08-26T10:23:02Z".parse().unwrap())
    );

    let last = n.last_drain.as_ref().unwrap();
    assert_eq!(last.status, DrainStatus::Complete);
    assert_eq!(last.accessor_id, "4e1b7ce1-f8aa-d7ff-09f1-55c3a0fd3988");
    assert_eq!(
        last.meta.get("message").map(String::as_str),
        Some("node maintenance")
    );
    assert_eq!(
        last.started_at,
        Some("2021-03-31T12:12:20Z".parse().unwrap())
    );

    let messages: Vec<_> = n.events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages.contains(&"Node drain strategy set"),
        "{messages:?}"
    );
    assert!(messages.contains(&"Node drain complete"), "{messages:?}");
    assert!(n.events.iter().all(|e| e.timestamp.is_some()));
}

#[test]
fn decodes_node_allocations() {
    let allocs: Vec<Allocation> = serde_json::from_str(&fixture("node-allocations.json")).unwrap();
    let [a] = allocs.as_slice() else {
        panic!("{allocs:?}")
    };
    assert_eq!(a.id, "fefe81d0-08b2-4eca-fae6-6560cde46d31");
    assert_eq!(a.node_id, "f7476465-4d6e-c0de-26d0-e383c49be941");
    assert_eq!(a.job_id, "webapp");
    assert_eq!(a.job.as_ref().unwrap().id, "webapp");
    assert_eq!(a.job_type(), Some(&JobType::Service));
    assert_eq!(a.client_status, ClientStatus::Running);
    assert!(a.is_pending_or_running());
    assert_eq!(a.desired_status, DesiredStatus::Run);
    assert_eq!(a.desired_transition.migrate, None);
    assert_eq!((a.create_index, a.modify_index), (2555, 2567));
    assert_eq!(
        a.modify_time(),
        Some("2018-04-11T23:41:29.807324Z".parse().unwrap())
    );
}

#[test]
fn decodes_allocation_list() {
    let allocs: Vec<AllocationListStub> =
        serde_json::from_str(&fixture("allocations-list.json")).unwrap();
    let [a] = allocs.as_slice() else {
        panic!("{allocs:?}")
    };
    assert_eq!(a.id, "5457f16d-0f87-8e6b-5e91-0c7da3a41eb7");
    assert_eq!(a.node_id, "f476d2b4-02dc-c216-d031-273396727347");
    assert_eq!(a.job_type(), Some(&JobType::Service));
    assert_eq!(a.client_status, ClientStatus::Running);
    assert_eq!(a.desired_status, DesiredStatus::Run);
    assert_eq!(a.namespace, "default");
    assert!(a.is_pending_or_running());
}

#[test]
fn decodes_write_responses() {
    for name in ["node-drain-response.json", "node-eligibility-response.json"] {
        let r: NodeUpdateResponse = serde_json::from_str(&fixture(name)).unwrap();
        assert_eq!(r.index, 3742, "{name}");
        assert!(r.eval_ids.is_empty(), "{name}: EvalIDs null");
    }
    let r: NodeUpdateResponse = serde_json::from_str(&fixture("node-purge-response.json")).unwrap();
    assert_eq!(r.index, 3816);
    assert_eq!(r.eval_create_index, 3817);
    assert_eq!(r.eval_ids, ["71bad787-5ab1-9939-be02-4809441583cd"]);
}

#[test]
fn decodes_node_from_event_stream() {
    let line = fixture("event-node-registration.ndjson");
    let frame: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let node = &frame["Events"][0]["Payload"]["Node"];
    let n: Node = serde_json::from_value(node.clone()).unwrap();
    assert_eq!(n.id, "ccc4ce56-7f0a-4124-b8b1-a4015aa82c40");
    assert_eq!(n.name, "nomad-4");
    assert_eq!(
        n.status,
        NodeStatus::from(node["Status"].as_str().unwrap().to_owned())
    );
    assert_eq!(n.drain_strategy, None);
}
