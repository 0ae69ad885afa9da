//! ACL objects created through the control surface (`/sim/acl/*`): the
//! simulator's stand-in for `nomad acl policy apply` and friends. Each
//! write takes a Raft index, as in Nomad.

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::Value;

use super::{body_required, ok};
use crate::App;
use crate::http_common::{ApiError, Resp};

/// `POST /sim/acl/policies` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyReq {
    name: String,
    #[serde(default)]
    description: String,
    /// A Nomad JSON policy object; `null` is a policy without rules.
    #[serde(default)]
    rules: Value,
}

/// `POST /sim/acl/roles` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleReq {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    policies: Vec<String>,
}

/// `POST /sim/acl/tokens` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenReq {
    secret: String,
    #[serde(rename = "type", default = "client")]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    policies: Vec<String>,
    /// Role names.
    #[serde(default)]
    roles: Vec<String>,
}

fn client() -> String {
    "client".into()
}

/// `POST /sim/acl/policies`.
pub(super) async fn upsert_policy(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: PolicyReq = body_required(req).await?;
    let idx = app.write().bump();
    let v = app
        .acl
        .upsert_policy(&r.name, &r.description, &r.rules, idx)?;
    Ok(ok(&v))
}

/// `POST /sim/acl/roles`.
pub(super) async fn upsert_role(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: RoleReq = body_required(req).await?;
    let idx = app.write().bump();
    let v = app
        .acl
        .upsert_role(&r.name, &r.description, &r.policies, idx)?;
    Ok(ok(&v))
}

/// `POST /sim/acl/tokens`.
pub(super) async fn upsert_token(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: TokenReq = body_required(req).await?;
    let (idx, now) = {
        let mut c = app.write();
        (c.bump(), c.now)
    };
    let v = app
        .acl
        .upsert_token(&r.secret, &r.kind, &r.name, &r.policies, &r.roles, idx, now)?;
    Ok(ok(&v))
}
