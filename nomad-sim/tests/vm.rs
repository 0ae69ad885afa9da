//! Contract tests for one VM with several Nomad identities: two clients
//! reporting the same instance, a client re-registering under a new node ID
//! (data directory wiped), and the attribute filter that finds them all.
//! Nomad keys nodes by node ID; the instance is only a fingerprinted
//! attribute, so nothing stops two nodes reporting the same one. A client
//! keeps its node ID in its data directory and makes a new one when that is
//! gone, which is how a wiped VM comes back as a second identity.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::json;

const ATTR: &str = "unique.platform.aws.instance-id";

async fn ids_with_instance(t: &T, instance: &str) -> Vec<String> {
    let filter = format!(r#"Attributes["{ATTR}"] == "{instance}""#);
    let url = format!("/v1/nodes?filter={}", url_escape(&filter));
    let mut ids: Vec<String> = t
        .get_json(&url)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["ID"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Two agents on one VM: both register, both report the instance, the
/// filtered node list (evaluated on the full node, `nomad/node_endpoint.go`
/// `List`) returns both, and killing the VM takes both down with a
/// violation for each one that still ran work.
#[tokio::test]
async fn two_nodes_on_one_vm_are_both_listed_and_die_with_it() {
    let t = start().await;
    let first = t
        .nodes(json!({"instance_ids": ["i-0shared"], "node_pool": "ci"}))
        .await;
    let other = t
        .nodes(json!({"instance_ids": ["i-0other"], "node_pool": "ci"}))
        .await;
    let second = t
        .nodes(json!({"instance_ids": ["i-0shared"], "node_pool": "ci"}))
        .await;
    let mut both = vec![first[0].clone(), second[0].clone()];
    both.sort();
    assert_eq!(ids_with_instance(&t, "i-0shared").await, both);
    assert_eq!(ids_with_instance(&t, "i-0other").await, other);
    assert!(ids_with_instance(&t, "i-0none").await.is_empty());

    t.allocs(json!({"type": "batch", "job_id": "on-second", "node_id": second[0]}))
        .await;
    t.advance(1.0).await;
    let r = t.post_ok("/sim/nodes/i-0shared/kill", json!({})).await;
    assert_eq!(r["node_ids"], json!([first[0], second[0]]), "oldest first");
    let v = t.violations().await;
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["violations"][0]["node_id"], second[0]);
    t.advance(21.0).await;
    for id in &both {
        assert_eq!(t.node(id).await["Status"], "down");
    }
    assert_eq!(t.node(&other[0]).await["Status"], "ready");
    // Restarting the VM brings back its newest client.
    let r = t.post_ok("/sim/nodes/i-0shared/restart", json!({})).await;
    assert_eq!(r["node_ids"], json!([second[0]]));
}

/// A client whose data directory was wiped registers again under a new
/// node ID with the same name and attributes; the servers never hear from
/// the old identity again, which turns `down` after TTL + grace
/// (`nomad/heartbeat.go`) and keeps reporting the instance until purged.
#[tokio::test]
async fn a_reregistered_client_gets_a_new_id_and_its_old_node_goes_down() {
    let t = start().await;
    let old = t
        .nodes(json!({"instance_ids": ["i-0wiped"], "node_pool": "ci", "node_class": "linux"}))
        .await;
    let r = t.post_ok("/sim/nodes/i-0wiped/reregister", json!({})).await;
    let new = r["node_id"].as_str().unwrap().to_string();
    assert_ne!(new, old[0]);
    assert_eq!(r["node_ids"], json!([old[0], new]));
    assert_eq!(r["instance_id"], "i-0wiped");
    let (o, n) = (t.node(&old[0]).await, t.node(&new).await);
    assert_eq!(n["Name"], o["Name"]);
    assert_eq!(n["NodePool"], "ci");
    assert_eq!(n["NodeClass"], "linux");
    assert_eq!(n["Attributes"], o["Attributes"]);
    assert_eq!(n["Status"], "ready");
    assert_eq!(n["SchedulingEligibility"], "eligible");
    assert_eq!(
        o["Status"], "ready",
        "the servers notice only after TTL + grace"
    );
    t.advance(21.0).await;
    assert_eq!(t.node(&old[0]).await["Status"], "down");
    assert_eq!(t.node(&new).await["Status"], "ready");
    let mut both = vec![old[0].clone(), new.clone()];
    both.sort();
    assert_eq!(ids_with_instance(&t, "i-0wiped").await, both);
    // Work lands on the new identity, and the VM's death kills it.
    t.allocs(json!({"type": "batch", "job_id": "after", "node_pool": "ci"}))
        .await;
    t.advance(1.0).await;
    assert_eq!(t.node_allocs(&new).await.len(), 1);
    t.post_ok("/sim/nodes/i-0wiped/kill", json!({})).await;
    assert_eq!(t.violations().await["count"], 1);

    let r = t.post("/sim/nodes/i-0absent/reregister", json!({})).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = t
        .post(&format!("/sim/nodes/{new}/explode"), json!({}))
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
