//! One VM, many Nomad identities; VMs without a working client; clients
//! cordoned by someone else. The operator binary against the real API
//! server, moto and the simulator; each test ends with the simulator's
//! record that no VM was killed under a live allocation.

use std::time::Duration;

use nomad_pool_operator::api::RetirePhase;
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn id_of(n: &Value) -> String {
    n["id"].as_str().unwrap().to_string()
}

fn instance_of(n: &Value) -> String {
    n["instance_id"].as_str().unwrap().to_string()
}

/// Someone else (a human, another tool) sets a client's eligibility
/// through Nomad's API.
async fn set_eligibility(w: &World, node_id: &str, eligible: bool) {
    let body = json!({"Eligibility": if eligible { "eligible" } else { "ineligible" }});
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/node/{node_id}/eligibility", w.sim.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
}

/// Finish every pending or running allocation on a node.
async fn finish_all_on(w: &World, node_id: &str) {
    let allocs: Value = reqwest::get(format!("{}/v1/node/{node_id}/allocations", w.sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for a in allocs.as_array().unwrap() {
        if matches!(a["ClientStatus"].as_str(), Some("pending" | "running")) {
            w.sim.finish(a["ID"].as_str().unwrap()).await;
        }
    }
}

/// Item 1: a second agent on one VM runs a job while the VM's first
/// client is the idle, least busy choice. On main the idle client was
/// drained at once and the VM terminated under the other agent's job.
#[tokio::test(flavor = "multi_thread")]
async fn a_vm_two_nodes_report_is_never_selected_and_status_says_which() {
    let w = setup("shared-vm", 3).await;
    let nodes = w.ready_nodes().await;
    let shared = instance_of(&nodes[0]);
    let second = w
        .sim
        .post(
            "/sim/nodes",
            json!({"instance_ids": [shared], "node_pool": "ci", "node_class": "linux",
                   "name_prefix": "second-agent", "availability_zone": "us-east-1a"}),
        )
        .await;
    let second_id = second["nodes"][0]["id"].as_str().unwrap().to_string();
    let second_name = second["nodes"][0]["name"].as_str().unwrap().to_string();
    w.sim.batch_on(&second_id, "on-second-agent", None).await;
    let mut jobs = vec![];
    for n in &nodes[1..] {
        let id = id_of(n);
        jobs.push((
            id.clone(),
            w.sim
                .batch_on(&id, &format!("ci-build-{}", &id[..8]), None)
                .await,
        ));
    }
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;

    // First the harm: whatever the status says, the shared VM must survive
    // the other agent's job (on main it was drained and terminated here).
    w.wait_status("pool", "a client selected", T, |s| !s.retiring.is_empty())
        .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    w.sim.assert_no_violations().await;
    let g = w.group().await;
    assert!(g.instances.iter().any(|i| i.id == shared), "{g:?}");

    let st = w
        .wait_status("pool", "a busy client on its own VM draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    let chosen = &st.retiring[0];
    assert_ne!(chosen.instance_id.as_deref(), Some(shared.as_str()));
    let degraded = condition(&st, "Degraded").expect("Degraded");
    assert_eq!(degraded.reason, "SharedInstance", "{degraded:?}");
    assert!(
        degraded.message.contains(&shared) && degraded.message.contains(&second_name),
        "{}",
        degraded.message
    );
    assert!(
        w.events()
            .await
            .iter()
            .any(|(r, n)| r == "SharedInstance" && n.contains(&shared)),
        "an Event says which nodes share which VM"
    );

    // The chosen client's job ends: its VM goes; the shared one stays.
    let alloc = &jobs.iter().find(|(n, _)| *n == chosen.node_id).unwrap().1;
    w.sim.finish(alloc).await;
    w.wait_status("pool", "one retired", T, |s| {
        s.retiring.is_empty() && s.retired_total == 1
    })
    .await;
    let g = w.group().await;
    assert!(g.instances.iter().any(|i| i.id == shared), "{g:?}");
    assert_eq!(g.desired, 2);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Item 2: the client re-registers under a new node ID (data directory
/// wiped) while its old identity drains. On main the old node turned
/// `down`, counted as drained and empty, and the VM was terminated under
/// the new identity's job.
#[tokio::test(flavor = "multi_thread")]
async fn a_reregistered_client_holds_its_vm_while_the_new_identity_has_work() {
    let w = setup("reregistered", 3).await;
    let nodes = w.ready_nodes().await;
    // Node 0 is the least busy, so it is the one retired.
    w.sim
        .batch_on(&id_of(&nodes[0]), "old-identity-job", None)
        .await;
    for n in &nodes[1..] {
        for k in 0..2 {
            let id = id_of(n);
            w.sim
                .batch_on(&id, &format!("busy-{}-{k}", &id[..8]), None)
                .await;
        }
    }
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    let old = id_of(&nodes[0]);
    let vm = instance_of(&nodes[0]);
    w.wait_status("pool", "the old identity draining", T, |s| {
        s.retiring.len() == 1
            && s.retiring[0].node_id == old
            && s.retiring[0].phase == RetirePhase::Draining
    })
    .await;

    let r = w
        .sim
        .post(&format!("/sim/nodes/{old}/reregister"), json!({}))
        .await;
    let new = r["node_id"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    w.sim.batch_on(&new, "new-identity-job", None).await;
    // First the harm: the old identity turns down within a second and counts
    // as drained and empty; the VM must stay (on main it was terminated).
    tokio::time::sleep(Duration::from_secs(5)).await;
    w.sim.assert_no_violations().await;
    let g = w.group().await;
    assert!(g.instances.iter().any(|i| i.id == vm), "VM kept: {g:?}");

    let st = w
        .wait_status(
            "pool",
            "the VM held in Drained naming the new identity",
            T,
            |s| {
                s.retiring.len() == 1
                    && s.retiring[0].phase == RetirePhase::Drained
                    && s.retiring[0]
                        .message
                        .as_deref()
                        .is_some_and(|m| m.contains(&new[..8]) && m.contains("new-identity-job"))
            },
        )
        .await;
    assert!(
        st.retiring[0].message.as_deref().unwrap().contains(&vm),
        "{:?}",
        st.retiring[0].message
    );
    assert!(
        w.events()
            .await
            .iter()
            .any(|(r, n)| r == "TerminateHeld" && n.contains(&new[..8]))
    );

    // Its work ends (the scheduler may have moved the old identity's lost
    // job onto it too), but it is still eligible for work: still held.
    finish_all_on(&w, &new).await;
    w.wait_status("pool", "held while the new identity is eligible", T, |s| {
        s.retiring[0]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("eligible for new work"))
    })
    .await;
    assert!(w.group().await.instances.iter().any(|i| i.id == vm));
    // Cordoned and idle: the VM goes.
    set_eligibility(&w, &new, false).await;
    finish_all_on(&w, &new).await;
    wait_for("the VM terminated", T, || async {
        (!w.group().await.instances.iter().any(|i| i.id == vm)).then_some(())
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Item 7: a VM whose agent crashed. On main `replicas` was compared with
/// VMs, so a healthy client was retired instead, and status said Settled.
#[tokio::test(flavor = "multi_thread")]
async fn a_vm_without_a_working_client_is_reported_and_no_healthy_client_retired() {
    let w = setup("clientless", 3).await;
    let nodes = w.ready_nodes().await;
    let dead = instance_of(&nodes[2]);
    // The agent dies; the VM stays in service in the group.
    w.sim
        .post(&format!("/sim/nodes/{dead}/kill"), json!({}))
        .await;
    wait_for("the dead client to turn down", T, || async {
        w.sim
            .nodes()
            .await
            .iter()
            .any(|n| n["instance_id"] == dead.as_str() && n["status"] == "down")
            .then_some(())
    })
    .await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    // First the harm: no healthy client is taken (on main one was).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let st = w.status("pool").await;
    assert!(
        st.retiring.is_empty() && st.retired_total == 0,
        "no healthy client retired: {st:?}"
    );
    assert_eq!(w.group().await.desired, 3);
    let st = w
        .wait_status("pool", "Ready=False naming the clientless VM", T, |s| {
            condition(s, "Ready").is_some_and(|c| {
                c.status == "False" && c.reason == "VMsWithoutClient" && c.message.contains(&dead)
            })
        })
        .await;
    assert!(st.retiring.is_empty(), "{:?}", st.retiring);
    assert_eq!(st.ready_nodes, 2);
    let g = w.group().await;
    assert_eq!(g.desired, 3);
    assert!(
        w.events()
            .await
            .iter()
            .any(|(r, n)| r == "VMsWithoutClient" && n.contains(&dead))
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Item 6 (readiness): a client cordoned by someone else takes no work, so
/// the pool is not Ready. On main it said `Ready=True Settled`.
#[tokio::test(flavor = "multi_thread")]
async fn a_client_cordoned_by_someone_else_is_not_ready() {
    let w = setup("cordoned-elsewhere", 3).await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 3})))
        .await;
    w.wait_status("pool", "settled", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True" && c.reason == "Settled")
    })
    .await;
    let nodes = w.ready_nodes().await;
    let cordoned = id_of(&nodes[1]);
    set_eligibility(&w, &cordoned, false).await;
    let st = w
        .wait_status("pool", "not ready: a client is ineligible", T, |s| {
            condition(s, "Ready")
                .is_some_and(|c| c.status == "False" && c.reason == "ClientsNotReady")
        })
        .await;
    assert_eq!(st.ready_nodes, 2);
    let msg = &condition(&st, "Ready").unwrap().message;
    assert!(
        msg.contains("2 of 3") && msg.contains("ineligible"),
        "{msg}"
    );
    set_eligibility(&w, &cordoned, true).await;
    w.wait_status("pool", "settled again", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.status == "True") && s.ready_nodes == 3
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
