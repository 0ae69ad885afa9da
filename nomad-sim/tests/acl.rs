//! Contract tests: namespaces, namespace-scoped ACL policies hiding
//! allocations, the `/v1/acl` read endpoints, the event-stream refusal of
//! Nomad >= 1.11.2 (and the legacy 403), `index` replays and the event
//! buffer shared by all topics. Each assertion is pinned to Nomad 1.11's
//! source (files named in nomad-sim/README.md).

mod common;

use common::*;
use nomad_sim::Config;
use nomad_sim::acl::{Policy, accessor_for};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Lines {
    r: reqwest::Response,
    buf: Vec<u8>,
}

impl Lines {
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let c = tokio::time::timeout(std::time::Duration::from_secs(5), self.r.chunk())
                .await
                .expect("a line within 5 s")
                .unwrap()?;
            self.buf.extend_from_slice(&c);
        }
    }
    async fn next_events(&mut self) -> Value {
        loop {
            let v = self.next().await.expect("stream open");
            if v != json!({}) {
                return v;
            }
        }
    }
}

async fn get_tok(t: &T, p: &str, tok: &str) -> reqwest::Response {
    t.http.get(t.u(p)).bearer_auth(tok).send().await.unwrap()
}

/// A cluster with namespaces team-a and team-b, one node, one running
/// allocation in each of default, team-a and team-b, and tokens:
/// `mgmt` (management), `a-reader` (namespace "team-a" read + node read),
/// `nodes-only` (node read, no namespace rules).
async fn two_teams() -> (T, String, [String; 3]) {
    let t = start_with(Config::default(), vec![("mgmt", Policy::Management)]).await;
    for ns in ["team-a", "team-b"] {
        t.post_ok("/sim/namespaces", json!({"name": ns})).await;
    }
    t.post_ok(
        "/sim/acl/policies",
        json!({"name": "team-a-read", "description": "team a",
               "rules": {"namespace": {"team-a": {"policy": "read"}}, "node": {"policy": "read"}}}),
    )
    .await;
    t.post_ok(
        "/sim/acl/policies",
        json!({"name": "nodes", "rules": {"node": {"policy": "read"}}}),
    )
    .await;
    t.post_ok(
        "/sim/acl/tokens",
        json!({"secret": "a-reader", "name": "a", "policies": ["team-a-read"]}),
    )
    .await;
    t.post_ok(
        "/sim/acl/tokens",
        json!({"secret": "nodes-only", "policies": ["nodes"]}),
    )
    .await;
    let n = t.nodes(json!({"count": 1})).await.remove(0);
    let mut ids = Vec::new();
    for ns in ["default", "team-a", "team-b"] {
        let v = t
            .post_ok(
                "/sim/allocations",
                json!({"job_id": format!("job-{ns}"), "namespace": ns, "node_id": n}),
            )
            .await;
        ids.push(v["alloc_ids"][0].as_str().unwrap().to_string());
    }
    t.advance(1.0).await;
    (t, n, ids.try_into().unwrap())
}

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

#[tokio::test]
async fn policy_role_and_token_reads() {
    let (t, _, _) = two_teams().await;
    // token/self (ACL.WhoAmI).
    let me: Value = get_tok(&t, "/v1/acl/token/self", "a-reader")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["AccessorID"], accessor_for("a-reader"));
    assert_eq!(me["SecretID"], "a-reader");
    assert_eq!(me["Type"], "client");
    assert_eq!(me["Policies"], json!(["team-a-read"]));
    assert_eq!(me["Roles"], json!([]));
    assert_eq!(me["ExpirationTime"], Value::Null);
    assert_eq!(me["ExpirationTTL"], "");
    let mg: Value = get_tok(&t, "/v1/acl/token/self", "mgmt")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(mg["Type"], "management");
    assert_eq!(mg["Policies"], Value::Null);
    let (s, _, body) = plain(get_tok(&t, "/v1/acl/token/self", "wrong").await).await;
    assert_eq!((s.as_u16(), body.as_str()), (403, "Permission denied"));
    let anon: Value = t.get_json("/v1/acl/token/self").await;
    assert_eq!(anon["AccessorID"], "anonymous");
    assert_eq!(anon["Policies"], json!(["anonymous"]));
    let r = t
        .http
        .post(t.u("/v1/acl/token/self"))
        .bearer_auth("mgmt")
        .send()
        .await
        .unwrap();
    assert_eq!(plain(r).await.2, "Invalid method");

    // policy/:name: own policy yes, others 403 (before the lookup), 404 for
    // management on a missing one; RulesJSON has the expanded capabilities.
    let r = get_tok(&t, "/v1/acl/policy/team-a-read", "a-reader").await;
    assert_eq!(r.status(), 200);
    let p: Value = r.json().await.unwrap();
    assert_eq!(p["Name"], "team-a-read");
    assert_eq!(p["Description"], "team a");
    let rules: Value = serde_json::from_str(p["Rules"].as_str().unwrap()).unwrap();
    assert_eq!(rules["namespace"]["team-a"]["policy"], "read");
    let ns = &p["RulesJSON"]["Namespaces"][0];
    assert_eq!(ns["Name"], "team-a");
    assert_eq!(ns["Policy"], "read");
    assert_eq!(
        ns["Capabilities"],
        json!([
            "list-jobs",
            "parse-job",
            "read-job",
            "csi-list-volume",
            "csi-read-volume",
            "read-job-scaling",
            "list-scaling-policies",
            "read-scaling-policy",
            "host-volume-read"
        ])
    );
    assert_eq!(p["RulesJSON"]["Node"], json!({"Policy": "read"}));
    assert_eq!(p["RulesJSON"]["Raw"], p["Rules"]);
    assert_eq!(p["JobACL"], Value::Null);
    assert_eq!(p["Hash"].as_str().unwrap().len(), 44, "base64 of 32 bytes");
    for (tok, name, code, body) in [
        ("a-reader", "nodes", 403, "Permission denied"),
        ("a-reader", "missing", 403, "Permission denied"),
        ("mgmt", "missing", 404, "ACL policy not found"),
        ("a-reader", "anonymous", 404, "ACL policy not found"),
    ] {
        let (s, _, b) = plain(get_tok(&t, &format!("/v1/acl/policy/{name}"), tok).await).await;
        assert_eq!((s.as_u16(), b.as_str()), (code, body), "{tok} {name}");
    }
    // Replacing a policy keeps CreateIndex and bumps ModifyIndex.
    let before = p["ModifyIndex"].as_u64().unwrap();
    t.post_ok(
        "/sim/acl/policies",
        json!({"name": "team-a-read", "rules": {"namespace": {"team-a": {"policy": "write"}}}}),
    )
    .await;
    let p2: Value = get_tok(&t, "/v1/acl/policy/team-a-read", "mgmt")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p2["CreateIndex"], p["CreateIndex"]);
    assert!(p2["ModifyIndex"].as_u64().unwrap() > before);
    // policies list: management all, client only its own.
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|n| n["Name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(
            get_tok(&t, "/v1/acl/policies", "mgmt")
                .await
                .json()
                .await
                .unwrap()
        ),
        ["nodes", "team-a-read"]
    );
    assert_eq!(
        names(
            get_tok(&t, "/v1/acl/policies", "a-reader")
                .await
                .json()
                .await
                .unwrap()
        ),
        ["team-a-read"]
    );

    // Roles: deterministic ID; readable by management or a linked token.
    let role = t
        .post_ok(
            "/sim/acl/roles",
            json!({"name": "readers", "policies": ["nodes"]}),
        )
        .await;
    let rid = role["ID"].as_str().unwrap().to_string();
    t.post_ok(
        "/sim/acl/tokens",
        json!({"secret": "via-role", "roles": ["readers"]}),
    )
    .await;
    let r: Value = get_tok(&t, &format!("/v1/acl/role/{rid}"), "via-role")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(r["Name"], "readers");
    assert_eq!(r["Policies"], json!([{"Name": "nodes"}]));
    let me: Value = get_tok(&t, "/v1/acl/token/self", "via-role")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["Roles"], json!([{"ID": rid, "Name": "readers"}]));
    // The role's policy is readable through the role.
    assert_eq!(
        get_tok(&t, "/v1/acl/policy/nodes", "via-role")
            .await
            .status(),
        200
    );
    for (tok, id, code, body) in [
        ("a-reader", rid.as_str(), 403, "Permission denied"),
        ("a-reader", "nope", 403, "Permission denied"),
        ("mgmt", "nope", 404, "ACL role not found"),
    ] {
        let (s, _, b) = plain(get_tok(&t, &format!("/v1/acl/role/{id}"), tok).await).await;
        assert_eq!((s.as_u16(), b.as_str()), (code, body), "{tok} {id}");
    }
    // Built-in menu policies answer too.
    let t2 = start_with(Config::default(), vec![("w", Policy::NodeWrite)]).await;
    let p: Value = get_tok(&t2, "/v1/acl/policy/node-write", "w")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["RulesJSON"]["Node"], json!({"Policy": "write"}));
    assert_eq!(p["RulesJSON"]["Namespaces"][0]["Name"], "*");
    let me: Value = get_tok(&t2, "/v1/acl/token/self", "w")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["Policies"], json!(["node-write"]));
}

#[tokio::test]
async fn acl_endpoints_with_acls_disabled() {
    let t = start().await;
    for p in [
        "/v1/acl/policies",
        "/v1/acl/policy/anything",
        "/v1/acl/role/anything",
    ] {
        let (s, ct, b) = plain(t.get(p).await).await;
        assert_eq!(
            (s.as_u16(), b.as_str()),
            (400, "ACL support disabled"),
            "{p}"
        );
        assert!(ct.starts_with("text/plain"));
    }
    // token/self is ACL.WhoAmI, which does not check ACLEnabled: it
    // returns the "ACLs disabled" token.
    let v = t.get_json("/v1/acl/token/self").await;
    assert_eq!(v["AccessorID"], "acls-disabled");
    assert_eq!(v["Name"], "ACLs disabled token");
    assert_eq!(v["Type"], "client");
    assert_eq!(v["CreateTime"], Value::Null);
    // Creating a token enables ACLs.
    t.post_ok(
        "/sim/acl/tokens",
        json!({"secret": "m", "type": "management"}),
    )
    .await;
    assert_eq!(t.get("/v1/nodes").await.status(), 403);
    assert_eq!(
        t.get_json("/v1/agent/self").await["config"]["ACL"]["Enabled"],
        true
    );
    // Bad token bodies are 400.
    for body in [
        json!({"secret": "c", "type": "client"}),
        json!({"secret": "c", "type": "management", "policies": ["x"]}),
        json!({"secret": "c", "policies": ["x"], "roles": ["no-such-role"]}),
    ] {
        assert_eq!(t.post("/sim/acl/tokens", body).await.status(), 400);
    }
    assert_eq!(
        t.post(
            "/sim/acl/policies",
            json!({"name": "p", "rules": {"namespace": {"x": {"capabilities": ["fly"]}}}})
        )
        .await
        .status(),
        400
    );
}

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
    let mut s = Lines { r, buf: vec![] };
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
    let mut s = Lines { r, buf: vec![] };
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
    let mut s = Lines { r, buf: vec![] };
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
    let mut s2 = Lines { r, buf: vec![] };
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
    let mut s3 = Lines { r, buf: vec![] };
    let ev = s3.next_events().await;
    assert_eq!(ev["Events"][0]["Type"], "NodeEligibility");
}
