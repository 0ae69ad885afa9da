//! The event stream under ACLs: the refusal of Nomad >= 1.11.2 (an empty
//! 200) and before (a plain 403), `index` replays, and the event buffer
//! all topics share.

use nomad_sim::Config;
use nomad_sim::acl::Policy;
use serde_json::{Value, json};

use super::get_tok;
use crate::common::*;

/// `reader` (node-read) asks for every topic, which needs management.
async fn refused_stream(cfg: Config) -> (T, reqwest::Response) {
    let t = start_with(cfg, vec![("reader", Policy::NodeRead)]).await;
    let r = get_tok(&t, "/v1/event/stream", "reader").await;
    (t, r)
}

#[tokio::test]
async fn event_stream_refusal_is_an_empty_200_since_1_11_2() {
    let (_t, r) = refused_stream(Config::default()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    assert_eq!(r.headers()["connection"], "close");
    assert_eq!(r.text().await.unwrap(), "", "not even the {{}} heartbeat");
    // A token that may subscribe gets the stream (heartbeat first).
    let t = start_with(Config::default(), vec![("reader", Policy::NodeRead)]).await;
    assert_eq!(
        t.get_json("/v1/agent/self").await["config"]["Version"]["Version"],
        "1.11.3"
    );
    let n = t.nodes(json!({"count": 1})).await;
    let node: Value = get_tok(&t, &format!("/v1/node/{}", n[0]), "reader")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(node["Attributes"]["nomad.version"], "1.11.3");
    let r = get_tok(&t, "/v1/event/stream?topic=Node", "reader").await;
    let mut s = Lines::new(r);
    assert_eq!(s.next().await, Some(json!({})));
}

#[tokio::test]
async fn event_stream_refusal_is_a_plain_403_before_1_11_2() {
    let cfg = Config {
        legacy_event_stream_refusal: true,
        ..Default::default()
    };
    let (_t, r) = refused_stream(cfg.clone()).await;
    let (s, ct, b) = plain(r).await;
    assert_eq!((s.as_u16(), b.as_str()), (403, "Permission denied"));
    assert!(ct.starts_with("text/plain"));
    let t = start_with(cfg, vec![]).await;
    assert_eq!(
        t.get_json("/v1/agent/self").await["config"]["Version"]["Version"],
        "1.11.1"
    );
}

#[tokio::test]
async fn the_event_stream_refused_fault_refuses_as_the_claimed_version_does() {
    // The fault refuses a token that may subscribe, in the version's form.
    let t = start_with(Config::default(), vec![("reader", Policy::NodeRead)]).await;
    t.post("/sim/faults", json!({"event_stream_refused": true}))
        .await;
    let r = get_tok(&t, "/v1/event/stream?topic=Node", "reader").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    // Node reads are untouched.
    let n = t.nodes(json!({"count": 1})).await;
    let r = get_tok(&t, &format!("/v1/node/{}", n[0]), "reader").await;
    assert_eq!(r.status(), 200);

    let legacy = Config {
        legacy_event_stream_refusal: true,
        ..Default::default()
    };
    let t = start_with(legacy, vec![("reader", Policy::NodeRead)]).await;
    t.post("/sim/faults", json!({"event_stream_refused": true}))
        .await;
    let (s, _, b) = plain(get_tok(&t, "/v1/event/stream?topic=Node", "reader").await).await;
    assert_eq!((s.as_u16(), b.as_str()), (403, "Permission denied"));
}

#[tokio::test]
async fn index_past_the_newest_event_replays_the_newest() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let newest = t.get_json(&format!("/v1/node/{}", n[1])).await["ModifyIndex"]
        .as_u64()
        .unwrap();
    let r = t
        .get(&format!(
            "/v1/event/stream?topic=Node&index={}",
            newest + 50
        ))
        .await;
    let mut s = Lines::new(r);
    let ev = s.next_events().await;
    assert_eq!(ev["Index"], newest, "StartAtClosest returns the last item");
    assert_eq!(ev["Events"][0]["Key"], n[1].as_str());
}

#[tokio::test]
async fn allocation_events_share_the_buffer_and_push_node_events_out() {
    let t = start_with(
        Config {
            event_buffer_size: 10,
            ..Default::default()
        },
        vec![],
    )
    .await;
    t.post_ok("/sim/namespaces", json!({"name": "team-b"}))
        .await;
    let n = t.nodes(json!({"count": 1, "slots": 100})).await;
    let reg = t.get_json(&format!("/v1/node/{}", n[0])).await["CreateIndex"]
        .as_u64()
        .unwrap();
    // Allocation topic, default namespace: PlanResult then AllocationUpdated,
    // payload without Job; team-b's allocation is not delivered.
    let r = t.get("/v1/event/stream?topic=Allocation").await;
    let mut s = Lines::new(r);
    assert_eq!(s.next().await, Some(json!({})));
    let ids = t.allocs(json!({"job_id": "j", "node_id": n[0]})).await;
    t.allocs(json!({"job_id": "j", "node_id": n[0], "namespace": "team-b"}))
        .await;
    let created = s.next_events().await;
    let ev = &created["Events"][0];
    assert_eq!(ev["Topic"], "Allocation");
    assert_eq!(ev["Type"], "PlanResult");
    assert_eq!(ev["Key"], ids[0].as_str());
    assert_eq!(ev["Namespace"], "default");
    assert_eq!(ev["FilterKeys"], json!(["j", ""]));
    assert_eq!(ev["Payload"]["Allocation"]["ID"], ids[0].as_str());
    assert_eq!(ev["Payload"]["Allocation"]["Job"], Value::Null);
    t.advance(1.0).await;
    let running = s.next_events().await;
    assert_eq!(running["Events"][0]["Type"], "AllocationUpdated");
    assert_eq!(
        running["Events"][0]["Payload"]["Allocation"]["ClientStatus"],
        "running"
    );
    assert_eq!(
        running["Events"].as_array().unwrap().len(),
        1,
        "team-b filtered"
    );
    // A burst of allocation writes pushes the node registration out of the
    // 10-batch buffer: index=<registration> starts at the closest later
    // batch still buffered.
    for _ in 0..10 {
        t.allocs(json!({"job_id": "burst", "node_id": n[0]})).await;
    }
    let r = t.get(&format!("/v1/event/stream?index={reg}")).await;
    // (no token needed: ACLs are off)
    let mut s2 = Lines::new(r);
    let first = s2.next_events().await;
    assert!(first["Index"].as_u64().unwrap() > reg);
    assert_eq!(first["Events"][0]["Topic"], "Allocation");
    // Topic Node alone from that index: the registration is gone.
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[0]),
        json!({"Eligibility": "ineligible"}),
    )
    .await;
    let r = t
        .get(&format!("/v1/event/stream?topic=Node&index={reg}"))
        .await;
    let mut s3 = Lines::new(r);
    let ev = s3.next_events().await;
    assert_eq!(ev["Events"][0]["Type"], "NodeEligibility");
}
