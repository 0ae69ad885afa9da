//! Upgrade in place: a pool whose status still lists its clients in flight
//! (`status.retiring`, the previous version's record) has them turned into
//! `NomadClientRetirement` objects by the first reconcile of this version,
//! whatever phase each was in, and every client ends where it should.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use nomad_pool_operator::api::{NomadClientRetirement, RetirementPhase};
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread")]
async fn status_entries_of_the_previous_version_become_retirements() {
    let mut w = World::new("upgrade", WorldOptions::default()).await;
    w.create_aws_secret().await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 1, "disruption": {"maxUnavailable": 3}}),
    ))
    .await;
    let pool = w.pools().get("pool").await.unwrap();
    let uid = pool.metadata.uid.clone().unwrap();
    let mut nodes = w.ready_nodes().await;
    nodes.sort_by_key(|n| n["name"].as_str().unwrap().to_string());
    let id = |i: usize| nodes[i]["id"].as_str().unwrap().to_string();
    let name = |i: usize| nodes[i]["name"].as_str().unwrap().to_string();
    let instance = |i: usize| nodes[i]["instance_id"].as_str().unwrap().to_string();

    // What the previous version left in Nomad: client 0 draining under the
    // pool's Meta, client 1 made ineligible, client 2 only selected.
    let meta: BTreeMap<&str, String> = [
        ("nomadpool.dev/pool", format!("{}/pool", w.namespace)),
        ("nomadpool.dev/pool-uid", uid.clone()),
        ("nomadpool.dev/reason", "ScaleIn".into()),
        ("nomadpool.dev/cordoned-by-pool", "true".into()),
    ]
    .into();
    w.sim
        .post(
            &format!("/v1/node/{}/drain", id(0)),
            json!({"DrainSpec": {"Deadline": 0, "IgnoreSystemJobs": false},
                   "MarkEligible": false, "Meta": meta}),
        )
        .await;
    w.sim
        .post(
            &format!("/v1/node/{}/eligibility", id(1)),
            json!({"Eligibility": "ineligible"}),
        )
        .await;
    let since = "2026-12-01T10:00:00Z";
    let entry = |i: usize, phase: &str| {
        json!({"nodeID": id(i), "nodeName": name(i), "instanceID": instance(i),
               "phase": phase, "since": since, "selectedAt": since, "reason": "ScaleIn",
               "decrement": true, "cordonedByPool": true, "allocationsLeft": 1})
    };
    w.pools()
        .patch_status(
            "pool",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"retiring": [
                entry(0, "Draining"), entry(1, "Cordoned"), entry(2, "Selected")]}})),
        )
        .await
        .unwrap();

    // The new version starts: three objects, the status list emptied.
    w.start_operator().await;
    let ncrs: Api<NomadClientRetirement> = Api::namespaced(w.client.clone(), &w.namespace);
    let items = wait_for("three retirements draining", T, || async {
        let items = ncrs.list(&ListParams::default()).await.unwrap().items;
        let draining = items
            .iter()
            .filter(|r| r.phase() == RetirementPhase::Draining)
            .count();
        (draining == 3).then_some(items)
    })
    .await;
    let mut retired: Vec<String> = items
        .iter()
        .map(|r| r.status.as_ref().unwrap().node_id.clone().unwrap())
        .collect();
    retired.sort();
    let mut expected = vec![id(0), id(1), id(2)];
    expected.sort();
    assert_eq!(retired, expected, "the same three clients, no other");
    let stored = w.pools().get("pool").await.unwrap().status.unwrap();
    assert!(stored.retiring.is_empty(), "{stored:#?}");

    // The jobs end: the three are retired, the fourth stays in service.
    for (_, alloc) in &jobs {
        w.sim.finish(alloc).await;
    }
    w.wait_status("pool", "settled at 1", T, |s| {
        s.retired_total == 3 && s.retirements_in_flight == 0
    })
    .await;
    let left = w.sim.nodes().await;
    let alive: Vec<&str> = left
        .iter()
        .filter(|n| n["vm_alive"] == true)
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(alive, [id(3).as_str()], "{left:#?}");
    let survivor = left.iter().find(|n| n["id"] == id(3).as_str()).unwrap();
    assert_eq!(survivor["eligibility"], "eligible");
    assert_eq!(w.group().await.desired, 1);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
