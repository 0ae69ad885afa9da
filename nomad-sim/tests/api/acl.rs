//! Tokens in both header forms, and what each built-in policy may do.

use nomad_sim::Config;
use nomad_sim::acl::{Policy, accessor_for};
use serde_json::{Value, json};

use crate::common::*;

/// A simulator with one token of each built-in policy and one node.
async fn menu_tokens() -> (T, Vec<String>) {
    let t = start_with(
        Config::default(),
        vec![
            ("mgmt", Policy::Management),
            ("writer", Policy::NodeWrite),
            ("reader", Policy::NodeRead),
            ("nobody", Policy::Deny),
        ],
    )
    .await;
    let n = t.nodes(json!({"count": 1})).await; // control surface needs no token
    (t, n)
}

#[tokio::test]
async fn acl_tokens_both_header_forms() {
    let (t, _) = menu_tokens().await;
    let get = |tok: Option<(&str, &str)>| {
        let mut r = t.http.get(t.u("/v1/nodes"));
        if let Some((h, v)) = tok {
            r = r.header(h, v);
        }
        r.send()
    };
    for tok in [
        None,
        Some(("X-Nomad-Token", "nobody")),
        Some(("X-Nomad-Token", "wrong")),
        Some(("Authorization", "Bearer wrong")),
    ] {
        let (s, ct, b) = plain(get(tok).await.unwrap()).await;
        assert_eq!(
            (s.as_u16(), b.as_str()),
            (403, "Permission denied"),
            "{tok:?}"
        );
        assert!(ct.starts_with("text/plain"));
    }
    for tok in [
        ("X-Nomad-Token", "reader"),
        ("Authorization", "Bearer reader"),
        ("Authorization", "bearer writer"),
    ] {
        assert_eq!(get(Some(tok)).await.unwrap().status(), 200, "{tok:?}");
    }
    // X-Nomad-Token wins over Authorization.
    let r = t
        .http
        .get(t.u("/v1/nodes"))
        .header("X-Nomad-Token", "nobody")
        .bearer_auth("mgmt")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// What each built-in policy may do: drain, the event stream, the
/// connectivity checks.
#[tokio::test]
async fn built_in_policy_rights() {
    let (t, n) = menu_tokens().await;
    // node:read cannot drain; node:write can, and LastDrain names its accessor.
    let p = t.u(&format!("/v1/node/{}/drain", n[0]));
    let body = json!({"DrainSpec": {"Deadline": 0}});
    let r = t
        .http
        .post(&p)
        .bearer_auth("reader")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(plain(r).await.2, "Permission denied");
    let r = t
        .http
        .post(&p)
        .header("X-Nomad-Token", "writer")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let node: Value = t
        .http
        .get(t.u(&format!("/v1/node/{}", n[0])))
        .bearer_auth("reader")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        node["LastDrain"]["AccessorID"],
        format!("token:{}", accessor_for("writer"))
    );
    // Event stream: topic Node needs node:read; all topics need management.
    assert_eq!(
        t.http
            .get(t.u("/v1/event/stream?topic=Node"))
            .bearer_auth("reader")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let r = t
        .http
        .get(t.u("/v1/event/stream"))
        .bearer_auth("reader")
        .send()
        .await
        .unwrap();
    // Nomad >= 1.11.2: 200 with the stream headers, then an empty body
    // (tests/acl.rs covers both refusal forms).
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(
        t.http
            .get(t.u("/v1/event/stream"))
            .bearer_auth("mgmt")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // Connectivity checks work without a token.
    assert_eq!(t.get("/v1/agent/self").await.status(), 200);
    assert_eq!(t.get("/v1/status/leader").await.status(), 200);
}
