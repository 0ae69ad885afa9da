//! The Node event stream: heartbeat first, events in index order, a
//! replay from `index`.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn event_stream_node_topic() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    let r = t
        .get(&format!("/v1/event/stream?topic=Node:{}", n[0]))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let mut s = Lines::new(r);
    assert_eq!(s.next().await, Some(json!({})), "heartbeat first");
    let reg = s.next_events().await;
    let ev = &reg["Events"][0];
    assert_eq!(ev["Topic"], "Node");
    assert_eq!(ev["Type"], "NodeRegistration");
    assert_eq!(ev["Key"], n[0].as_str());
    assert_eq!(ev["Namespace"], "");
    assert_eq!(ev["FilterKeys"], Value::Null);
    assert_eq!(ev["Index"], reg["Index"]);
    assert_eq!(ev["Payload"]["Node"]["ID"], n[0].as_str());
    assert_eq!(ev["Payload"]["Node"]["Drain"], false);
    t.drain(&n[0], json!({"DrainSpec": {"Deadline": HOUR_NS}}))
        .await;
    let set = s.next_events().await;
    assert_eq!(set["Events"][0]["Type"], "NodeDrain");
    assert_eq!(set["Events"][0]["Payload"]["Node"]["Drain"], true);
    t.advance(0.0).await;
    let done = s.next_events().await;
    assert_eq!(done["Events"][0]["Type"], "NodeDrain");
    assert_eq!(
        done["Events"][0]["Payload"]["Node"]["DrainStrategy"],
        Value::Null
    );
    assert_eq!(
        done["Events"][0]["Payload"]["Node"]["LastDrain"]["Status"],
        "complete"
    );
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[0]),
        json!({"Eligibility": "eligible"}),
    )
    .await;
    assert_eq!(
        s.next_events().await["Events"][0]["Type"],
        "NodeEligibility"
    );
    // index=N starts at N, inclusive.
    let start_idx = set["Index"].as_u64().unwrap();
    let r = t
        .get(&format!("/v1/event/stream?topic=Node&index={start_idx}"))
        .await;
    let mut s2 = Lines::new(r);
    assert_eq!(s2.next_events().await["Index"], start_idx);
    // Kill: down is a NodeStreamEvent; purge is a NodeDeregistration.
    t.post_ok(&format!("/sim/nodes/{}/kill", n[0]), json!({}))
        .await;
    t.advance(25.0).await;
    let down = s.next_events().await;
    assert_eq!(down["Events"][0]["Type"], "NodeStreamEvent");
    assert_eq!(down["Events"][0]["Payload"]["Node"]["Status"], "down");
    t.post_ok(&format!("/v1/node/{}/purge", n[0]), json!({}))
        .await;
    assert_eq!(
        s.next_events().await["Events"][0]["Type"],
        "NodeDeregistration"
    );
    // Bad parameters.
    let (st, _, b) = plain(t.get("/v1/event/stream?topic=Node:a:b").await).await;
    assert_eq!(st.as_u16(), 400, "{b}");
    let (st, _, b) = plain(t.get("/v1/event/stream?index=x").await).await;
    assert_eq!(st.as_u16(), 400);
    assert!(b.starts_with("Unable to parse index"));
}

/// A restore (`/sim/index/rewind`) swaps in a new state store and abandons
/// the old one, whose event broker stops and closes every subscription
/// (`nomad/fsm.go` `Restore`, `StateStore.Abandon`, `stream/event_broker.go`
/// `handleUpdates`): an open stream ends, and a new one from index 0 starts
/// at the first write after the restore, replaying nothing from before it.
#[tokio::test]
async fn index_rewind_ends_event_streams_and_empties_the_buffer() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    let mut open = Lines::new(t.get("/v1/event/stream?topic=Node").await);
    let reg = open.next_events().await;
    assert_eq!(reg["Events"][0]["Type"], "NodeRegistration");
    t.post_ok("/sim/index/rewind", json!({"by": 1_000_000}))
        .await;
    while let Some(v) = open.next().await {
        assert_eq!(v, json!({}), "only heartbeats before the end");
    }
    let mut fresh = Lines::new(t.get("/v1/event/stream?topic=Node").await);
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[0]),
        json!({"Eligibility": "ineligible"}),
    )
    .await;
    let first = fresh.next_events().await;
    assert_eq!(first["Events"][0]["Type"], "NodeEligibility");
    assert!(first["Index"].as_u64() <= reg["Index"].as_u64());
}
