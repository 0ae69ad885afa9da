//! The `/v1/acl` read endpoints (policies, roles, tokens, `self`), with
//! ACLs enabled and disabled.

use nomad_sim::Config;
use nomad_sim::acl::{Policy, accessor_for};
use serde_json::{Value, json};

use super::{get_tok, two_teams};
use crate::common::*;

/// `token/self` (ACL.WhoAmI) for a client, a management, a wrong and no
/// token.
#[tokio::test]
async fn token_self_reads() {
    let (t, _, _) = two_teams().await;
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
}

#[tokio::test]
async fn policy_reads() {
    let (t, _, _) = two_teams().await;
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
}

#[tokio::test]
async fn role_reads() {
    let (t, _, _) = two_teams().await;
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
}

/// The built-in menu policies answer too.
#[tokio::test]
async fn builtin_menu_policy_reads() {
    let t = start_with(Config::default(), vec![("w", Policy::NodeWrite)]).await;
    let p: Value = get_tok(&t, "/v1/acl/policy/node-write", "w")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(p["RulesJSON"]["Node"], json!({"Policy": "write"}));
    assert_eq!(p["RulesJSON"]["Namespaces"][0]["Name"], "*");
    let me: Value = get_tok(&t, "/v1/acl/token/self", "w")
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
