//! Contract tests: namespaces, namespace-scoped ACL policies hiding
//! allocations, the `/v1/acl` read endpoints, the event-stream refusal of
//! Nomad >= 1.11.2 (and the legacy 403), `index` replays and the event
//! buffer shared by all topics. Each assertion is pinned to Nomad 1.11's
//! source (files named in nomad-sim/README.md).
//!
//! The rooms: `errors` (the texts of refused ACL writes), `namespaces`
//! (namespace-scoped tokens, globs and deny),
//! `reads` (the `/v1/acl` read endpoints, with and without ACLs), `stream`
//! (event-stream refusals, replays, the shared buffer). The helpers the
//! rooms share stay here.

mod common;

#[path = "acl/errors.rs"]
mod errors;
#[path = "acl/namespaces.rs"]
mod namespaces;
#[path = "acl/reads.rs"]
mod reads;
#[path = "acl/stream.rs"]
mod stream;

use common::*;
use nomad_sim::Config;
use nomad_sim::acl::Policy;
use serde_json::json;

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
