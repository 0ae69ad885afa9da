//! Nomad's plain-text error codes, request bodies decoded as Go decodes
//! them, and the agent and leader endpoints.

use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn error_codes_are_nomads_plain_text() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    let unknown = "00000000-0000-0000-0000-000000000000";
    // Read of an unknown node: 404 with meta headers.
    let r = t.get(&format!("/v1/node/{unknown}")).await;
    assert!(r.headers().get("x-nomad-index").is_some());
    assert_eq!(r.headers()["x-nomad-knownleader"], "true");
    let (s, ct, b) = plain(r).await;
    assert_eq!(
        (s.as_u16(), ct.as_str(), b.as_str()),
        (404, "text/plain; charset=utf-8", "node not found")
    );
    // A prefix is not an ID.
    assert_eq!(
        t.get(&format!("/v1/node/{}", &n[0][..8])).await.status(),
        404
    );
    // Allocations of an unknown node: 200 [].
    let r = t.get(&format!("/v1/node/{unknown}/allocations")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "[]");
    // Writes to an unknown node: 500 node not found.
    for (ep, body) in [
        ("drain", json!({"DrainSpec": {"Deadline": 0}})),
        ("eligibility", json!({"Eligibility": "ineligible"})),
        ("purge", json!({})),
    ] {
        let (s, ct, b) = plain(t.post(&format!("/v1/node/{unknown}/{ep}"), body).await).await;
        assert_eq!((s.as_u16(), b.as_str()), (500, "node not found"), "{ep}");
        assert!(ct.starts_with("text/plain"));
    }
    // Empty body, bad JSON, wrong type.
    let p = t.u(&format!("/v1/node/{}/drain", n[0]));
    let (s, _, b) = plain(t.http.post(&p).send().await.unwrap()).await;
    assert_eq!((s.as_u16(), b.as_str()), (400, "Request body is empty"));
    let (s, _, _) = plain(t.http.post(&p).body("{").send().await.unwrap()).await;
    assert_eq!(s.as_u16(), 400);
    let (s, _, b) = plain(
        t.post(
            &format!("/v1/node/{}/drain", n[0]),
            json!({"DrainSpec": {"Deadline": "1h"}}),
        )
        .await,
    )
    .await;
    assert_eq!(s.as_u16(), 400, "{b}");
    // Wrong method.
    let (s, _, b) = plain(t.http.get(&p).send().await.unwrap()).await;
    assert_eq!((s.as_u16(), b.as_str()), (405, "Invalid method"));
    let (s, _, b) = plain(
        t.http
            .put(t.u(&format!("/v1/node/{}", n[0])))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s.as_u16(), b.as_str()), (405, "Invalid method"));
    // Unknown allocation.
    let (s, _, b) = plain(t.get(&format!("/v1/allocation/{unknown}")).await).await;
    assert_eq!((s.as_u16(), b.as_str()), (404, "alloc not found"));
    // Query parameters.
    let (s, _, b) = plain(t.get("/v1/nodes?index=abc").await).await;
    assert_eq!((s.as_u16(), b.as_str()), (400, "Invalid index"));
    let (s, _, b) = plain(t.get("/v1/nodes?index=1&wait=10").await).await;
    assert_eq!((s.as_u16(), b.as_str()), (400, "Invalid wait time"));
    let (s, _, b) = plain(t.get("/v1/nodes?stale=maybe").await).await;
    assert_eq!(
        (s.as_u16(), b.as_str()),
        (
            400,
            "Expect `true` or `false` for `stale` query string parameter"
        )
    );
    assert_eq!(t.get("/v1/nodes?stale").await.status(), 200);
    let (s, _, b) = plain(t.get("/v1/nodes?region=mars").await).await;
    assert_eq!((s.as_u16(), b.as_str()), (500, "No path to region"));
}

#[tokio::test]
async fn agent_self_and_leader() {
    let t = start().await;
    let v = t.get_json("/v1/agent/self").await;
    assert_eq!(v["config"]["Version"]["Version"], "1.11.3");
    assert_eq!(v["member"]["Tags"]["build"], "1.11.3");
    assert_eq!(v["config"]["Region"], "global");
    let r = t.get("/v1/status/leader").await;
    assert_eq!(r.headers()["x-nomad-knownleader"], "true");
    assert_eq!(r.json::<Value>().await.unwrap(), json!("127.0.0.1:4647"));
}

/// Bodies decode like Go's encoding/json: keys match case-insensitively and
/// a missing or null `Deadline` is zero (no deadline).
#[tokio::test]
async fn request_bodies_decode_like_go() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    t.allocs(json!({"type": "batch", "node_id": n[0]})).await;
    t.advance(1.0).await;
    t.post_ok(
        &format!("/v1/node/{}/drain", n[0]),
        json!({"drainspec": {"deadline": null}, "meta": {"Keep": "Case"}}),
    )
    .await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["DrainStrategy"]["Deadline"], 0);
    assert_eq!(node["LastDrain"]["Meta"], json!({"Keep": "Case"}));
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[1]),
        json!({"eligibility": "ineligible"}),
    )
    .await;
    assert_eq!(t.node(&n[1]).await["SchedulingEligibility"], "ineligible");
    let (s, _, _) = plain(
        t.post(
            &format!("/v1/node/{}/drain", n[1]),
            json!({"DrainSpec": {"Deadline": "1h"}}),
        )
        .await,
    )
    .await;
    assert_eq!(s.as_u16(), 400);
}
