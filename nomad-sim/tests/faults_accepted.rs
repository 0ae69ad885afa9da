//! Contract tests for the faults where Nomad (or a proxy in front of it)
//! answers as if all went well: a drain accepted but never applied, and a
//! JSON body cut short under a `200`.

mod common;

use common::*;
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn an_unapplied_drain_is_answered_as_an_applied_one_and_changes_nothing() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let (a, b) = (&n[0], &n[1]);
    // A batch job keeps b's drain running: an empty node's drain completes
    // on the simulator's next tick, and that write would move the node
    // table's index past the answer this test compares it with.
    t.allocs(json!({"job_id": "keeps-b-draining", "type": "batch", "node_id": b}))
        .await;
    t.advance(1.0).await;
    t.post_ok(
        "/sim/faults",
        json!({"drains_not_applied": true, "path_prefix": format!("/v1/node/{a}/drain")}),
    )
    .await;
    let before = t.node(a).await;
    let index_before = index_of(&t.get("/v1/nodes").await);
    let drain = json!({"DrainSpec": {"Deadline": 3_600_000_000_000i64}, "Meta": {"k": "v"}});

    let applied = t.drain(b, drain.clone()).await;
    let r = t.post(&format!("/v1/node/{a}/drain"), drain.clone()).await;
    assert_eq!(r.status(), 200);
    let header_index = index_of(&r);
    let accepted: Value = r.json().await.unwrap();

    // The same answer as an applied drain: same fields, a fresh index.
    assert_eq!(keys(&accepted), keys(&applied));
    let index = accepted["Index"].as_u64().unwrap();
    assert!(index > applied["Index"].as_u64().unwrap(), "{accepted}");
    assert_eq!(accepted["NodeModifyIndex"], accepted["Index"]);
    assert_eq!(header_index, index, "X-Nomad-Index is the write's index");

    // Nothing changed on the node, and the node table did not move for it.
    let after = t.node(a).await;
    assert_eq!(after["DrainStrategy"], Value::Null);
    assert_eq!(after["SchedulingEligibility"], "eligible");
    assert_eq!(after["LastDrain"], before["LastDrain"]);
    assert_eq!(after["ModifyIndex"], before["ModifyIndex"]);
    assert!(
        index_of(&t.get("/v1/nodes").await) > index_before,
        "b's drain moved it"
    );
    assert!(index_of(&t.get("/v1/nodes").await) < index);
    // Outside the prefix the drain was applied.
    assert!(t.node(b).await["DrainStrategy"].is_object());

    // An unknown node is refused as without the fault.
    let unknown = "00000000-0000-0000-0000-000000000000";
    t.post_ok(
        "/sim/faults",
        json!({"drains_not_applied": true, "path_prefix": "/v1/node/"}),
    )
    .await;
    let (s, _, body) = plain(t.post(&format!("/v1/node/{unknown}/drain"), drain).await).await;
    assert_eq!((s.as_u16(), body.as_str()), (500, "node not found"));
    // A cancel is applied: b's drain ends.
    t.drain(b, json!({"DrainSpec": null, "MarkEligible": true}))
        .await;
    let b_after = t.node(b).await;
    assert_eq!(b_after["DrainStrategy"], Value::Null);
    assert_eq!(b_after["SchedulingEligibility"], "eligible");
}

#[tokio::test]
async fn truncated_json_keeps_nomads_status_and_headers_and_cuts_the_body() {
    let t = start().await;
    t.nodes(json!({"count": 3})).await;
    let whole = t.get("/v1/nodes").await.bytes().await.unwrap();
    t.post_ok(
        "/sim/faults",
        json!({"truncated_json": true, "path_prefix": "/v1/nodes"}),
    )
    .await;
    let r = t.get("/v1/nodes").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert!(r.headers().get("x-nomad-index").is_some());
    let cut = r.bytes().await.unwrap();
    assert_eq!(&cut[..], &whole[..whole.len() / 2]);
    assert!(serde_json::from_slice::<Value>(&cut).is_err());
    // Outside the prefix, and errors, are left whole.
    t.get_json("/v1/agent/self").await;
    let (s, _, body) = plain(t.get("/v1/node/00000000-0000-0000-0000-000000000000").await).await;
    assert_eq!((s.as_u16(), body.as_str()), (404, "node not found"));
    t.http.delete(t.u("/sim/faults")).send().await.unwrap();
    assert_eq!(t.get("/v1/nodes").await.bytes().await.unwrap(), whole);
}
