//! Namespaces and namespace-scoped tokens: what each token sees of the
//! allocations and namespaces, and how the closest glob and `deny` decide.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{get_tok, two_teams};
use crate::common::*;

#[tokio::test]
async fn namespace_scoped_tokens_see_only_their_allocations() {
    let (t, n, [def, a, b]) = two_teams().await;
    // Management sees all three, with Namespace on the allocation and Job.
    let r = get_tok(&t, &format!("/v1/node/{n}/allocations"), "mgmt").await;
    let full_index = index_of(&r);
    let all: Vec<Value> = r.json().await.unwrap();
    assert_eq!(all.len(), 3);
    let b_alloc = all.iter().find(|x| x["ID"] == b.as_str()).unwrap();
    assert_eq!(b_alloc["Namespace"], "team-b");
    assert_eq!(b_alloc["Job"]["Namespace"], "team-b");
    // team-a reader: node allocations silently omit default and team-b; the
    // index still counts them (Node.GetAllocs).
    let r = get_tok(&t, &format!("/v1/node/{n}/allocations"), "a-reader").await;
    assert_eq!(r.status(), 200);
    assert_eq!(index_of(&r), full_index);
    let seen: Vec<Value> = r.json().await.unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["ID"], a.as_str());
    // The newest write hits a hidden allocation: the index moves anyway.
    t.post_ok(&format!("/sim/allocations/{b}/finish"), json!({}))
        .await;
    let r = get_tok(&t, &format!("/v1/node/{n}/allocations"), "a-reader").await;
    assert!(
        index_of(&r) > full_index,
        "hidden write counts for the index"
    );
    // node:read without any namespace rule: 200 and nothing (no 403).
    let r = get_tok(&t, &format!("/v1/node/{n}/allocations"), "nodes-only").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));

    // /v1/allocations?namespace=*: allowed (read-job in some namespace),
    // filtered to team-a; index = allocs table index.
    let r = get_tok(&t, "/v1/allocations?namespace=*", "a-reader").await;
    let idx = index_of(&r);
    let list: Vec<Value> = r.json().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["ID"], a.as_str());
    let r = get_tok(&t, "/v1/allocations?namespace=*", "mgmt").await;
    assert_eq!(index_of(&r), idx);
    assert_eq!(r.json::<Vec<Value>>().await.unwrap().len(), 3);
    // One namespace without read-job there: 403 (Alloc.List).
    for p in [
        "/v1/allocations?namespace=team-b",
        "/v1/allocations",
        "/v1/allocations?namespace=nope",
    ] {
        let (s, ct, body) = plain(get_tok(&t, p, "a-reader").await).await;
        assert_eq!(
            (s.as_u16(), body.as_str()),
            (403, "Permission denied"),
            "{p}"
        );
        assert!(ct.starts_with("text/plain"));
    }
    assert_eq!(
        get_tok(&t, "/v1/allocations?namespace=team-a", "a-reader")
            .await
            .json::<Vec<Value>>()
            .await
            .unwrap()
            .len(),
        1
    );
    // A token with no namespace capability at all: 403 even for `*`.
    let (s, _, _) = plain(get_tok(&t, "/v1/allocations?namespace=*", "nodes-only").await).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // /v1/allocation/:id: readable one 200; hidden one is the RPC's plain
    // `Unknown allocation "<id>"` error (500); unknown ID 404 even for a
    // token without read-job anywhere (Alloc.GetAlloc checks after lookup).
    assert_eq!(
        get_tok(&t, &format!("/v1/allocation/{a}"), "a-reader")
            .await
            .status(),
        200
    );
    for hidden in [&def, &b] {
        let (s, ct, body) =
            plain(get_tok(&t, &format!("/v1/allocation/{hidden}"), "a-reader").await).await;
        assert_eq!(s.as_u16(), 500);
        assert_eq!(body, format!("Unknown allocation \"{hidden}\""));
        assert!(ct.starts_with("text/plain"));
    }
    let (s, _, body) = plain(get_tok(&t, "/v1/allocation/nope", "nodes-only").await).await;
    assert_eq!((s.as_u16(), body.as_str()), (404, "alloc not found"));

    // The VM really runs hidden allocations: killing it is a violation for
    // every pending/running one, whatever namespace.
    t.post_ok(&format!("/sim/nodes/{n}/kill"), json!({})).await;
    let v = t.violations().await;
    let allocs: Vec<&str> = v["violations"][0]["allocs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["alloc_id"].as_str().unwrap())
        .collect();
    assert!(allocs.contains(&def.as_str()) && allocs.contains(&a.as_str()));
}

#[tokio::test]
async fn namespaces_list_is_filtered_and_control_surface_checks_them() {
    let (t, _, _) = two_teams().await;
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["Name"].as_str().unwrap().to_string())
            .collect()
    };
    let r = get_tok(&t, "/v1/namespaces", "mgmt").await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(names(v.clone()), ["default", "team-a", "team-b"]);
    assert_eq!(v[0]["Description"], "Default shared namespace");
    assert_eq!(v[0]["CreateIndex"], 1);
    assert_eq!(
        names(
            get_tok(&t, "/v1/namespaces", "a-reader")
                .await
                .json()
                .await
                .unwrap()
        ),
        ["team-a"]
    );
    assert_eq!(
        get_tok(&t, "/v1/namespaces", "nodes-only")
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!([])
    );
    // Unknown namespace on the control surface: 400.
    for (p, body) in [
        (
            "/sim/allocations",
            json!({"namespace": "ghost", "job_id": "x"}),
        ),
        (
            "/sim/workload",
            json!({"namespace": "ghost", "rate_per_minute": 1}),
        ),
        ("/sim/namespaces", json!({"name": "bad name"})),
    ] {
        assert_eq!(t.post(p, body).await.status(), 400, "{p}");
    }
}

#[tokio::test]
async fn closest_glob_and_deny_decide_namespace_access() {
    let (t, n, [_, a, b]) = two_teams().await;
    t.post_ok(
        "/sim/acl/policies",
        json!({"name": "globs", "rules": {
            "namespace": {"*": {"policy": "read"}, "team-*": {"capabilities": ["list-jobs"]},
                          "team-a": {"policy": "read"}},
            "node": {"policy": "read"}}}),
    )
    .await;
    t.post_ok(
        "/sim/acl/tokens",
        json!({"secret": "globber", "policies": ["globs"]}),
    )
    .await;
    // team-b matches `team-*` (closer than `*`), which lacks read-job.
    let ids: Vec<String> = get_tok(&t, &format!("/v1/node/{n}/allocations"), "globber")
        .await
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|x| x["ID"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&a) && !ids.contains(&b), "{ids:?}");
    assert_eq!(ids.len(), 2, "default (via *) and team-a (exact)");
    // deny in a second policy for the same name wins.
    t.post_ok(
        "/sim/acl/policies",
        json!({"name": "no-a", "rules": {"namespace": {"team-a": {"policy": "deny"}}}}),
    )
    .await;
    t.post_ok(
        "/sim/acl/tokens",
        json!({"secret": "globber", "policies": ["globs", "no-a"]}),
    )
    .await;
    let v: Vec<Value> = get_tok(&t, &format!("/v1/node/{n}/allocations"), "globber")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v.len(), 1, "only default remains");
}
