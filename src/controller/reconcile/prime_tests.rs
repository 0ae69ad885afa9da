//! Priming against nomad-sim: the reconcile that sees a drain end has the
//! node's allocations and its VM's nodes before it plans.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};

use super::*;
use crate::api::{RetirePhase, RetireReason};
use crate::controller::plan::NodeStatus;
use crate::nomad::{NomadClient, NomadConfig, QueryOptions};

async fn post(sim: &nomad_sim::Sim, path: &str, body: Value) -> Value {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

fn retiring(node: &str, instance: &str, phase: RetirePhase) -> RetiringNode {
    RetiringNode {
        node_id: node.to_owned(),
        node_name: node.to_owned(),
        instance_id: Some(instance.to_owned()),
        phase,
        since: Time(Timestamp::now()),
        selected_at: None,
        reason: RetireReason::ScaleIn,
        decrement: true,
        cordoned_by_pool: true,
        drain_started_at: Some(Time(Timestamp::now())),
        drain_deadline: None,
        allocations_left: 1,
        blocking_jobs: vec![],
        message: None,
    }
}

fn facts(node: &str, instance: &str) -> NodeFacts {
    NodeFacts {
        do_not_retire: false,
        id: node.to_owned(),
        name: node.to_owned(),
        status: NodeStatus::Ready,
        eligible: false,
        draining: false,
        last_drain: None,
        last_drain_started: None,
        last_drain_mark: None,
        create_index: 1,
        instance_id: Some(instance.to_owned()),
    }
}

#[tokio::test]
async fn a_drain_that_ended_has_its_allocations_and_vm_read_before_the_plan() {
    let sim = nomad_sim::serve(nomad_sim::Config::default())
        .await
        .unwrap();
    let made = post(
        &sim,
        "/sim/nodes",
        json!({"instance_ids": ["i-0done", "i-0cord"]}),
    )
    .await;
    let ids: Vec<String> = (made["nodes"].as_array().unwrap().iter())
        .map(|n| n["id"].as_str().unwrap().to_owned())
        .collect();
    let (done, cordoned) = (ids[0].clone(), ids[1].clone());
    let client = NomadClient::new(NomadConfig {
        address: sim.url(),
        ..Default::default()
    })
    .unwrap();
    for id in &ids {
        client.set_eligibility(id, false).await.unwrap();
    }
    let listed = client
        .list_nodes(None, &QueryOptions::default())
        .await
        .unwrap();
    let snapshot = NodesSnapshot {
        index: listed.index,
        nodes: listed.value.into_iter().collect(),
        ..Default::default()
    };
    let watch = PoolWatch::for_tests(client);
    let siblings = SiblingWatch::for_tests(&sim.url());
    // One drain has ended (the node no longer drains); the other node is
    // only cordoned, which no decision waits on.
    let tracked = [
        retiring(&done, "i-0done", RetirePhase::Draining),
        retiring(&cordoned, "i-0cord", RetirePhase::Cordoned),
    ];
    let nodes = Arc::new(vec![facts(&done, "i-0done"), facts(&cordoned, "i-0cord")]);

    prime(
        (&watch, &siblings),
        &tracked,
        &nodes,
        &snapshot,
        Timestamp::now(),
        false,
    )
    .await;

    // Read at once after it returns: no later answer is waited for.
    let allocs = watch.allocation_facts(false, &snapshot);
    assert_eq!(allocs.get(&done).map(|f| f.live), Some(0), "{allocs:?}");
    assert!(
        !allocs.contains_key(&cordoned),
        "nothing waits on a cordoned node"
    );
    let vms = siblings.facts();
    let on_vm: Vec<&str> = (vms.get("i-0done").expect("the VM was read").iter())
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(on_vm, [done.as_str()]);
    assert!(!vms.contains_key("i-0cord"));
}
