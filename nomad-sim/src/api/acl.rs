//! `/v1/namespaces` and the read side of `/v1/acl/*`: `token/self`,
//! `policies`, `policy/:name`, `role/:id`. Semantics from Nomad 1.11
//! `nomad/acl_endpoint.go`, `command/agent/acl_endpoint.go` and
//! `nomad/namespace_endpoint.go`. These answer at once (no blocking).

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde_json::Value;

use super::{ApiError, Resp, auth, json_bytes, parse_query, set_meta, text, to_json};
use crate::App;
use crate::acl::{Acl, AclToken, Auth};

fn disabled() -> ApiError {
    // nomad/acl_endpoint.go: aclDisabled = NewErrRPCCoded(400, ...)
    ApiError::BadRequest("ACL support disabled".into())
}

fn reply(v: &Value, pretty: bool, index: u64, kl: bool) -> Resp {
    let mut r = json_bytes(StatusCode::OK, to_json(v, pretty));
    set_meta(&mut r, index, kl);
    r
}

/// `GET /v1/namespaces`: namespaces the token may do anything in
/// (`AllowNamespace`), `prefix` honoured; index = namespaces table index.
pub(super) fn namespaces(
    app: &Arc<App>,
    req: Request<Incoming>,
    kl: bool,
) -> Result<Resp, ApiError> {
    let a = auth(app, req.headers())?;
    let q = parse_query(app, req.uri().query())?;
    let c = app.cluster.read().unwrap();
    let list: Vec<Value> = c
        .namespaces
        .values()
        .filter(|n| n.name.starts_with(&q.prefix) && a.allow_namespace(&n.name))
        .map(|n| n.to_json())
        .collect();
    let idx = c.namespaces_index.max(1);
    Ok(reply(&Value::Array(list), q.pretty, idx, kl))
}

/// `GET /v1/acl/token/self` is `ACL.WhoAmI` (not `ResolveToken`): with ACLs
/// disabled it returns the built-in "ACLs disabled token", without a token
/// the anonymous token, and an unknown token is `403 Permission denied`.
pub(super) fn token_self(
    app: &Arc<App>,
    req: Request<Incoming>,
    kl: bool,
) -> Result<Resp, ApiError> {
    let q = parse_query(app, req.uri().query())?;
    let tok = crate::acl::token_from_headers(req.headers());
    let t: Arc<AclToken> = app
        .acl
        .whoami(tok.as_deref())
        .map_err(|_| ApiError::PermissionDenied)?;
    let st = app.acl.state.read().unwrap();
    let v = t.to_json(&st.roles);
    Ok(reply(&v, q.pretty, t.modify_index, kl))
}

/// Policy names the caller may read: all for management, else the token's
/// own (directly and through existing roles).
fn readable_policy(a: &Auth, st: &crate::acl::AclState, name: &str) -> bool {
    match a {
        Auth::Disabled => true,
        Auth::Token(i) => i.acl.management || Acl::token_policy_names(st, &i.token).contains(name),
    }
}

/// `GET /v1/acl/policies` (and `/v1/acl/policy/self` for a token): stubs of
/// the readable policies; index = policy table index (at least 1).
pub(super) fn policies(app: &Arc<App>, req: Request<Incoming>, kl: bool) -> Result<Resp, ApiError> {
    if !app.acl.enabled() {
        return Err(disabled());
    }
    let a = auth(app, req.headers())?;
    let q = parse_query(app, req.uri().query())?;
    let st = app.acl.state.read().unwrap();
    let list: Vec<Value> = st
        .policies
        .values()
        .filter(|p| p.name.starts_with(&q.prefix) && readable_policy(&a, &st, &p.name))
        .map(|p| p.stub())
        .collect();
    Ok(reply(
        &Value::Array(list),
        q.pretty,
        st.policy_index.max(1),
        kl,
    ))
}

/// `GET /v1/acl/policy/:name`: 403 before the lookup for a policy the token
/// does not hold (except `anonymous`), 404 `ACL policy not found` with the
/// policy table index, else the policy with `RulesJSON`.
pub(super) fn policy(
    app: &Arc<App>,
    req: Request<Incoming>,
    name: &str,
    kl: bool,
) -> Result<Resp, ApiError> {
    if !app.acl.enabled() {
        return Err(disabled());
    }
    let a = auth(app, req.headers())?;
    let q = parse_query(app, req.uri().query())?;
    let st = app.acl.state.read().unwrap();
    if name != "anonymous" && !readable_policy(&a, &st, name) {
        return Err(ApiError::PermissionDenied);
    }
    match st.policies.get(name) {
        Some(p) => Ok(reply(&p.to_json(), q.pretty, p.modify_index, kl)),
        None => {
            let mut r = text(StatusCode::NOT_FOUND, "ACL policy not found");
            set_meta(&mut r, st.policy_index, kl);
            Ok(r)
        }
    }
}

/// `GET /v1/acl/role/:id`: management, or a token linked to that role ID
/// (else 403, checked before the lookup); 404 `ACL role not found`.
pub(super) fn role(
    app: &Arc<App>,
    req: Request<Incoming>,
    id: &str,
    kl: bool,
) -> Result<Resp, ApiError> {
    if !app.acl.enabled() {
        return Err(disabled());
    }
    let a = auth(app, req.headers())?;
    let q = parse_query(app, req.uri().query())?;
    if let Auth::Token(i) = &a
        && !i.acl.management
        && !i.token.roles.iter().any(|r| r == id)
    {
        return Err(ApiError::PermissionDenied);
    }
    let st = app.acl.state.read().unwrap();
    match st.roles.get(id) {
        Some(r) => Ok(reply(&r.to_json(), q.pretty, r.modify_index, kl)),
        None => {
            let mut r = text(StatusCode::NOT_FOUND, "ACL role not found");
            set_meta(&mut r, st.role_index, kl);
            Ok(r)
        }
    }
}
