//! The refusals of the ACL writes (`/sim/acl/*`): 400 with a plain-text
//! body, each text exactly as the store's and the policy parser's error
//! types word it.

use serde_json::{Value, json};

use crate::common::*;

async fn refused(t: &T, path: &str, body: Value) -> String {
    let (s, ct, b) = plain(t.post(path, body.clone()).await).await;
    assert_eq!(s.as_u16(), 400, "{path} {body}: {b}");
    assert_eq!(ct, "text/plain; charset=utf-8");
    b
}

#[tokio::test]
async fn token_and_role_refusals() {
    let t = start().await;
    t.post_ok(
        "/sim/acl/policies",
        json!({"name": "p", "rules": {"node": {"policy": "read"}}}),
    )
    .await;
    for (body, text) in [
        (json!({"secret": ""}), "secret must not be empty"),
        (
            json!({"secret": "c", "type": "client"}),
            "client token missing policies or roles",
        ),
        (
            json!({"secret": "c", "type": "management", "policies": ["p"]}),
            "management token cannot be associated with policies or roles",
        ),
        (
            json!({"secret": "c", "type": "root\u{1b}"}),
            r#"token type must be client or management, not "root\x1b""#,
        ),
        (
            json!({"secret": "c", "policies": ["p"], "roles": ["no-such-role"]}),
            "cannot find role no-such-role",
        ),
    ] {
        assert_eq!(refused(&t, "/sim/acl/tokens", body).await, text);
    }
    for (body, text) in [
        (
            json!({"name": "r"}),
            "at least one policy should be specified",
        ),
        (
            json!({"name": "r", "policies": ["q"]}),
            "cannot find policy q",
        ),
        (
            json!({"name": "r s", "policies": ["p"]}),
            "invalid name 'r s'",
        ),
    ] {
        assert_eq!(refused(&t, "/sim/acl/roles", body).await, text);
    }
}

#[tokio::test]
async fn policy_refusals() {
    let t = start().await;
    let rules = |r: Value| json!({"name": "p", "rules": r});
    for (body, text) in [
        (json!({"name": "", "rules": null}), "invalid name ''"),
        (
            rules(json!([])),
            "failed to parse rules: Failed to parse ACL Policy: rules must be a JSON object",
        ),
        (
            rules(json!({})),
            "failed to parse rules: Invalid policy: {}",
        ),
        (
            rules(json!({"host_volume": {}})),
            "failed to parse rules: Invalid or duplicate policy keys: host_volume (not supported by nomad-sim)",
        ),
        (
            rules(json!({"node": "read"})),
            "failed to parse rules: Failed to parse ACL Policy: node must be an object",
        ),
        (
            rules(json!({"agent": {"policy": 1}})),
            "failed to parse rules: Failed to parse ACL Policy: agent.policy",
        ),
        (
            rules(json!({"quota": {"policy": "read", "x": 1}})),
            "failed to parse rules: Invalid or duplicate policy keys: x (in quota)",
        ),
        (
            rules(json!({"node": {"policy": "fly"}})),
            r#"failed to parse rules: Invalid node policy: "fly""#,
        ),
        (
            rules(json!({"namespace": []})),
            "failed to parse rules: Failed to parse ACL Policy: namespace must be an object keyed by namespace name",
        ),
        (
            rules(json!({"namespace": {"a b": {}}})),
            r#"failed to parse rules: Invalid namespace name: "a b""#,
        ),
        (
            rules(json!({"namespace": {"a": 1}})),
            r#"failed to parse rules: Failed to parse ACL Policy: namespace "a""#,
        ),
        (
            rules(json!({"namespace": {"a": {"policy": 2}}})),
            "failed to parse rules: Invalid namespace policy: 2",
        ),
        (
            rules(json!({"namespace": {"a": {"policy": "fly"}}})),
            r#"failed to parse rules: Invalid namespace policy: "fly""#,
        ),
        (
            rules(json!({"namespace": {"a": {"capabilities": "read-job"}}})),
            r#"failed to parse rules: Failed to parse ACL Policy: capabilities of "a""#,
        ),
        (
            rules(json!({"namespace": {"a": {"capabilities": ["fly"]}}})),
            r#"failed to parse rules: Invalid namespace capability 'fly': "a""#,
        ),
        (
            rules(json!({"namespace": {"a": {"variables": {}}}})),
            r#"failed to parse rules: Invalid or duplicate policy keys: variables (in namespace "a"; not supported by nomad-sim)"#,
        ),
    ] {
        assert_eq!(refused(&t, "/sim/acl/policies", body).await, text);
    }
}
