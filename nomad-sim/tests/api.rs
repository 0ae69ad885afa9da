//! Contract tests over real HTTP (reqwest, the operator's client) for error
//! codes, blocking queries, filters, the event stream, ACLs, faults and the
//! control surface.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nomad_sim::Config;
use nomad_sim::acl::{Policy, accessor_for};
use serde_json::{Value, json};

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
async fn filters_on_full_node() {
    let t = start().await;
    t.nodes(json!({"count": 2, "node_pool": "batch", "node_class": "c5",
                   "meta": {"team": "a"}, "instance_ids": ["i-0123", "i-0456"]}))
        .await;
    t.nodes(json!({"count": 1, "node_pool": "web", "cloud": "gce", "meta": {"team": "b"}}))
        .await;
    let q = |f: &str| format!("/v1/nodes?filter={}", urlenc(f));
    let count = |v: Value| v.as_array().unwrap().len();
    assert_eq!(count(t.get_json(&q(r#"NodePool == "batch""#)).await), 2);
    assert_eq!(count(t.get_json(&q(r#"NodePool != "batch""#)).await), 1);
    assert_eq!(
        count(
            t.get_json(&q(r#"Meta["team"] == "b" or NodeClass == "c5""#))
                .await
        ),
        3
    );
    assert_eq!(
        count(
            t.get_json(&q(r#"not (Meta.team == "a") and Status == "ready""#))
                .await
        ),
        1
    );
    // A missing map key is no match (go-bexpr >= v0.1.12, vendored by
    // Nomad 1.11.1 as v0.1.15), not an error: nodes of other clouds drop out.
    let by_iid = r#""unique.platform.aws.instance-id" in Attributes and Attributes["unique.platform.aws.instance-id"] == "i-0456""#;
    assert_eq!(count(t.get_json(&q(by_iid)).await), 1);
    assert_eq!(
        count(
            t.get_json(&q(
                r#"Attributes["unique.platform.aws.instance-id"] == "i-0456""#
            ))
            .await
        ),
        1
    );
    let aws_only =
        r#"NodePool == "batch" and Attributes["unique.platform.aws.instance-id"] == "i-0456""#;
    assert_eq!(count(t.get_json(&q(aws_only)).await), 1);
    assert_eq!(
        count(t.get_json(&q(r#""platform.gce.zone" in Attributes"#)).await),
        1
    );
    assert_eq!(
        count(
            t.get_json(&q(
                r#"Datacenter == "dc1" and SchedulingEligibility == "eligible""#
            ))
            .await
        ),
        3
    );
    assert_eq!(count(t.get_json(&q(r#"NodeClass is empty"#)).await), 1);
    assert_eq!(count(t.get_json(&q(r#"Name contains "client""#)).await), 3);
    // Unsupported or bad expressions are 400, never a silently wrong answer.
    let (s, _, b) = plain(t.get(&q(r#"Name matches "x.*""#)).await).await;
    assert_eq!(s.as_u16(), 400);
    assert!(b.starts_with("failed to create result paginator:"), "{b}");
    let (s, _, b) = plain(t.get(&q(r#"NodePool =="#)).await).await;
    assert_eq!(s.as_u16(), 400);
    assert!(b.starts_with("failed to create result paginator:"), "{b}");
    // Missing map keys (go-bexpr grammar/ast.go NotPresentDisposition):
    // `==` is false and `!=` true for every node, no error.
    assert_eq!(count(t.get_json(&q(r#"Meta["absent"] == "x""#)).await), 0);
    assert_eq!(count(t.get_json(&q(r#"Meta["absent"] != "x""#)).await), 3);
    assert_eq!(count(t.get_json(&q(r#"Meta.absent is empty"#)).await), 3);
    // An unknown struct field still fails evaluation.
    let (s, _, b) = plain(t.get(&q(r#"Nope == "x""#)).await).await;
    assert_eq!(s.as_u16(), 400);
    assert!(
        b.starts_with("failed to read result page: error finding value in datum"),
        "{b}"
    );
    // Drain is synthetic, not a Go field: not filterable.
    assert_eq!(t.get(&q("Drain == false")).await.status(), 400);
    // Prefix and pagination.
    let all = t.get_json("/v1/nodes").await;
    let first = all[0]["ID"].as_str().unwrap();
    assert_eq!(
        count(
            t.get_json(&format!("/v1/nodes?prefix={}", &first[..4]))
                .await
        ),
        1
    );
    let r = t.get("/v1/nodes?per_page=2").await;
    let next = r.headers()["x-nomad-nexttoken"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(count(r.json().await.unwrap()), 2);
    let r = t
        .get(&format!("/v1/nodes?per_page=2&next_token={next}"))
        .await;
    assert!(r.headers().get("x-nomad-nexttoken").is_none());
    assert_eq!(count(r.json().await.unwrap()), 1);
    // os=true adds only os.name; resources=true adds NodeResources.
    let v = t.get_json("/v1/nodes?os=true&resources=true").await;
    assert_eq!(v[0]["Attributes"], json!({"os.name": "ubuntu"}));
    assert!(v[0]["NodeResources"].is_object());
    assert!(all[0].get("Attributes").is_none() && all[0].get("NodeResources").is_none());
    // Allocation filters run on the full allocation.
    let n = t.get_json("/v1/nodes").await[0]["ID"]
        .as_str()
        .unwrap()
        .to_string();
    t.allocs(json!({"type": "batch", "node_pool": "batch", "node_id": n}))
        .await;
    let f = format!(
        "/v1/allocations?filter={}",
        urlenc(&format!("NodeID == \"{n}\" and Job.Type == \"batch\""))
    );
    let v = t.get_json(&f).await;
    assert_eq!(count(v.clone()), 1);
    assert_eq!(v[0]["JobType"], "batch");
}

fn urlenc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn blocking_queries_wake_on_their_own_data_only() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let r = t.get(&format!("/v1/node/{}", n[0])).await;
    let idx = index_of(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["ModifyIndex"], idx,
        "X-Nomad-Index is the node's ModifyIndex"
    );
    // Returns as soon as the node changes.
    let url = t.u(&format!("/v1/node/{}?index={idx}&wait=30s", n[0]));
    let http = t.http.clone();
    let waiter = tokio::spawn(async move {
        let t0 = Instant::now();
        let r = http.get(url).send().await.unwrap();
        (t0.elapsed(), index_of(&r), r.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A change to another node does not wake it.
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[1]),
        json!({"Eligibility": "ineligible"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished());
    let t_change = Instant::now();
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[0]),
        json!({"Eligibility": "ineligible"}),
    )
    .await;
    let (elapsed, new_idx, v) = waiter.await.unwrap();
    assert!(new_idx > idx);
    assert_eq!(v["SchedulingEligibility"], "ineligible");
    assert!(elapsed >= Duration::from_millis(500));
    assert!(
        t_change.elapsed() < Duration::from_millis(500),
        "woke promptly"
    );
    // `wait` runs out: same index, after roughly the wait (+ jitter <= wait/16).
    let t0 = Instant::now();
    let r = t
        .get(&format!("/v1/node/{}?index={new_idx}&wait=400ms", n[0]))
        .await;
    let e = t0.elapsed();
    assert_eq!(index_of(&r), new_idx);
    assert!(
        e >= Duration::from_millis(400) && e < Duration::from_millis(1500),
        "{e:?}"
    );
    // Node allocations: wakes on an allocation change on that node.
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[1]),
        json!({"Eligibility": "eligible"}),
    )
    .await;
    let r = t.get(&format!("/v1/node/{}/allocations", n[1])).await;
    let aidx = index_of(&r);
    let url = t.u(&format!(
        "/v1/node/{}/allocations?index={aidx}&wait=30s",
        n[1]
    ));
    let http = t.http.clone();
    let waiter = tokio::spawn(async move {
        http.get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.allocs(json!({"type": "batch", "node_id": n[1]})).await;
    let v = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    // List: wakes on registration.
    let r = t.get("/v1/nodes").await;
    let lidx = index_of(&r);
    let url = t.u(&format!("/v1/nodes?index={lidx}"));
    let http = t.http.clone();
    let waiter = tokio::spawn(async move {
        http.get(url)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.nodes(json!({"count": 1})).await;
    let v = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    // A blocked read of a node that is then purged returns 404.
    let r = t.get(&format!("/v1/node/{}", n[1])).await;
    let i = index_of(&r);
    let url = t.u(&format!("/v1/node/{}?index={i}", n[1]));
    let http = t.http.clone();
    let waiter = tokio::spawn(async move { http.get(url).send().await.unwrap().status() });
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.post_ok(&format!("/v1/node/{}/purge", n[1]), json!({}))
        .await;
    let s = tokio::time::timeout(Duration::from_secs(2), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.as_u16(), 404);
}

/// Reads NDJSON lines from a streaming response.
struct Lines {
    r: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    async fn next(&mut self) -> Value {
        loop {
            if let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return serde_json::from_slice(&line).unwrap();
            }
            let c = tokio::time::timeout(Duration::from_secs(5), self.r.chunk())
                .await
                .expect("stream line in time")
                .unwrap()
                .expect("stream open");
            self.buf.extend_from_slice(&c);
        }
    }

    /// Next non-heartbeat line.
    async fn next_events(&mut self) -> Value {
        loop {
            let v = self.next().await;
            if v != json!({}) {
                return v;
            }
        }
    }
}

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
    let mut s = Lines { r, buf: vec![] };
    assert_eq!(s.next().await, json!({}), "heartbeat first");
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
    let mut s2 = Lines { r, buf: vec![] };
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

#[tokio::test]
async fn acl_tokens_both_header_forms() {
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

#[tokio::test]
async fn faults_are_injected_and_scoped() {
    let t = start().await;
    t.nodes(json!({"count": 1})).await;
    t.post_ok(
        "/sim/faults",
        json!({"error_rate": 1.0, "path_prefix": "/v1/nodes"}),
    )
    .await;
    let (s, _, _) = plain(t.get("/v1/nodes").await).await;
    assert_eq!(s.as_u16(), 500);
    assert_eq!(
        t.get("/v1/agent/self").await.status(),
        200,
        "outside the prefix"
    );
    t.post_ok("/sim/faults", json!({"leader_lost": true})).await;
    let r = t.get("/v1/nodes").await;
    assert_eq!(r.headers()["x-nomad-knownleader"], "false");
    assert_eq!(plain(r).await.2, "No cluster leader");
    assert_eq!(t.get_json("/v1/status/leader").await, json!(""));
    t.post_ok("/sim/faults", json!({"drop_rate": 1.0})).await;
    assert!(
        t.http.get(t.u("/v1/nodes")).send().await.is_err(),
        "connection dropped"
    );
    t.post_ok("/sim/faults", json!({"latency_ms": 300})).await;
    let t0 = Instant::now();
    assert_eq!(t.get("/v1/nodes").await.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let r = t.http.delete(t.u("/sim/faults")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t0 = Instant::now();
    assert_eq!(t.get("/v1/nodes").await.status(), 200);
    assert!(t0.elapsed() < Duration::from_millis(300));
    let stats = t.get_json("/sim/stats").await;
    assert!(stats["requests"]["GET /v1/nodes"].as_u64().unwrap() >= 5);
    assert!(stats["faults_injected"]["Drop"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn workload_scheduler_and_stats() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2, "slots": 2})).await;
    t.post_ok("/sim/workload", json!({"node_pool": "default", "rate_per_minute": 60, "duration_min_s": 30, "duration_max_s": 30})).await;
    t.advance(10.0).await;
    let s = t.get_json("/sim/stats").await;
    let c = &s["cluster"];
    assert_eq!(c["allocations"]["total"], 4, "{s}");
    assert!(
        c["allocations"]["blocked_placements"].as_u64().unwrap() >= 5,
        "no room: queued"
    );
    assert_eq!(c["nodes"]["by_status"]["ready"], 2);
    // Cordoned nodes get no new work.
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[0]),
        json!({"Eligibility": "ineligible"}),
    )
    .await;
    t.advance(31.0).await;
    let on0 = t.node_allocs(&n[0]).await;
    assert!(on0.iter().all(|a| a["ClientStatus"] == "complete"));
    let on1 = t.node_allocs(&n[1]).await;
    assert!(
        on1.iter()
            .filter(|a| a["ClientStatus"] == "running")
            .count()
            == 2
    );
    let r = t.http.delete(t.u("/sim/workload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Explicit allocations: finish and fail.
    let ids = t.allocs(json!({"type": "service", "node_id": n[0]})).await;
    assert!(ids.is_empty(), "ineligible node: queued, not placed");
    let s = t.get_json("/sim/stats").await;
    assert!(
        s["requests"]["POST /v1/node/:id/eligibility"]
            .as_u64()
            .unwrap()
            == 1
    );
    assert!(s["cluster"]["nodes"]["by_eligibility"]["ineligible"] == 1);
    // Reset clears everything.
    t.post_ok("/sim/reset", json!({})).await;
    assert_eq!(t.get_json("/v1/nodes").await, json!([]));
}

#[tokio::test]
async fn finish_and_fail_allocations() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    let ids = t
        .allocs(json!({"type": "batch", "count": 2, "node_id": n[0]}))
        .await;
    t.advance(1.0).await;
    assert_eq!(t.alloc(&ids[0]).await["ClientStatus"], "running");
    t.post_ok(&format!("/sim/allocations/{}/finish", ids[0]), json!({}))
        .await;
    t.post_ok(
        &format!("/sim/allocations/{}/finish", ids[1]),
        json!({"failed": true}),
    )
    .await;
    assert_eq!(t.alloc(&ids[0]).await["ClientStatus"], "complete");
    let a = t.alloc(&ids[1]).await;
    assert_eq!(a["ClientStatus"], "failed");
    assert_eq!(a["TaskStates"]["task"]["Failed"], true);
    let stub = &t.get_json("/v1/allocations?task_states=false").await[0];
    assert!(stub.get("TaskStates").is_none());
    assert!(stub.get("Job").is_none());
    assert_eq!(stub["JobType"], "batch");
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
