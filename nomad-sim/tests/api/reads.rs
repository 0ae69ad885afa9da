//! Reads: filters evaluated on the full node, and blocking queries that
//! wake on their own data only.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::*;

/// Two AWS nodes in pool batch (class c5, team a), one GCE node in pool
/// web (team b).
async fn three_nodes() -> T {
    let t = start().await;
    t.nodes(json!({"count": 2, "node_pool": "batch", "node_class": "c5",
                   "meta": {"team": "a"}, "instance_ids": ["i-0123", "i-0456"]}))
        .await;
    t.nodes(json!({"count": 1, "node_pool": "web", "cloud": "gce", "meta": {"team": "b"}}))
        .await;
    t
}

#[tokio::test]
async fn filters_on_full_node() {
    let t = three_nodes().await;
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
    // The operator's batched reads: an `or` of instance IDs, one absent.
    let batch = r#"Attributes["unique.platform.aws.instance-id"] == "i-nope" or Attributes["unique.platform.aws.instance-id"] == "i-0456" or Attributes["unique.platform.aws.instance-id"] == "i-0123""#;
    let ids: Vec<Value> = (t.get_json(&q(batch)).await.as_array().unwrap().iter())
        .map(|n| n["ID"].clone())
        .collect();
    assert_eq!(ids.len(), 2, "both AWS nodes, not the GCE one");
    // Answered from the attribute index: the same nodes in the same order
    // as the same test made node by node (an `and` is not indexed).
    let unindexed = format!(r#"({batch}) and Name is not empty"#);
    let same: Vec<Value> = (t.get_json(&q(&unindexed)).await.as_array().unwrap().iter())
        .map(|n| n["ID"].clone())
        .collect();
    assert_eq!(ids, same);
    let prefix = ids[1].as_str().unwrap()[..6].to_string();
    let paged = t
        .get_json(&format!(
            "/v1/nodes?prefix={prefix}&filter={}",
            urlenc(batch)
        ))
        .await;
    assert_eq!(
        paged.as_array().unwrap().len(),
        1,
        "the prefix still applies"
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
}

/// Unsupported or bad expressions are 400, never a silently wrong answer;
/// a missing map key is no error.
#[tokio::test]
async fn bad_filters_and_missing_keys() {
    let t = three_nodes().await;
    let q = |f: &str| format!("/v1/nodes?filter={}", urlenc(f));
    let count = |v: Value| v.as_array().unwrap().len();
    let (s, _, b) = plain(t.get(&q(r#"Name matches "x.*""#)).await).await;
    assert_eq!(s.as_u16(), 400);
    assert!(b.starts_with("failed to create result paginator:"), "{b}");
    // go-bexpr's own text, behind NewPaginator's and List's wrappers.
    let (s, ct, b) = plain(t.get(&q(r#"NodePool =="#)).await).await;
    assert_eq!(
        (s.as_u16(), ct.as_str()),
        (400, "text/plain; charset=utf-8")
    );
    assert_eq!(
        b,
        "failed to create result paginator: failed to read filter expression: \
         1:12 (11): no match found, expected: \"-\", \"0\", \"\\\"\", \"`\", [ \\t\\r\\n], [1-9] or [a-zA-Z]"
    );
    // Missing map keys (go-bexpr grammar/ast.go NotPresentDisposition):
    // `==` is false and `!=` true for every node, no error.
    assert_eq!(count(t.get_json(&q(r#"Meta["absent"] == "x""#)).await), 0);
    assert_eq!(count(t.get_json(&q(r#"Meta["absent"] != "x""#)).await), 3);
    assert_eq!(count(t.get_json(&q(r#"Meta.absent is empty"#)).await), 3);
    // An unknown struct field still fails evaluation.
    let (s, _, b) = plain(t.get(&q(r#"Nope == "x""#)).await).await;
    assert_eq!(s.as_u16(), 400);
    assert_eq!(
        b,
        "failed to read result page: error finding value in datum: \
         /Nope at part 0: couldn't find struct field with name \"Nope\""
    );
    // Drain is synthetic, not a Go field: not filterable.
    assert_eq!(t.get(&q("Drain == false")).await.status(), 400);
}

#[tokio::test]
async fn prefix_pages_stub_fields_and_allocation_filters() {
    let t = three_nodes().await;
    let count = |v: Value| v.as_array().unwrap().len();
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
}

/// Blocking reads of a node's allocations and of the node list wake on
/// their own change; one of a node that is then purged ends with 404.
#[tokio::test]
async fn blocking_queries_on_allocations_lists_and_purges() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    // Node allocations: wakes on an allocation change on that node.
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
