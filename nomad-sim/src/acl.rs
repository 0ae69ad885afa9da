//! ACL policies, roles and tokens, resolved the way Nomad does it.
//!
//! With no tokens ACLs are disabled and every request is allowed
//! (`LastDrain.AccessorID` is then `token:acls-disabled`). Creating the first
//! token (from [`crate::Config::acl_tokens`], `--acl-token` or
//! `POST /sim/acl/tokens`) enables them.
//!
//! Policies hold Nomad JSON policy rules (`{"namespace": {"*": {"policy":
//! "read"}}, "node": {"policy": "write"}}`), parsed and expanded as
//! `acl/policy.go` `Parse` does, and merged per token as `acl/acl.go`
//! `NewACL` does: capabilities of one namespace name are unioned, `deny`
//! wins; a namespace is looked up by exact name, else by the closest matching
//! glob (`findClosestMatchingGlob`). The fixed menu of the first version
//! (`management`, `node-write`, `node-read`, `deny`) is kept as built-in
//! policies created on demand with those names.
//!
//! The rooms: `policy` (parsing a policy's rules), `resolve` (enforcement:
//! what a request's token may do), `store` (the writes of policies, roles
//! and tokens), `objects` (those objects and their JSON), `hash` (BLAKE2b
//! and base64, as Nomad hashes and encodes them).

use serde_json::{Value, json};

mod hash;
mod objects;
mod policy;
mod resolve;
mod store;

pub use hash::{base64, blake2b_256};
pub use objects::{AclPolicy, AclRole, AclToken};
pub use policy::{
    NamespaceRule, PolicyError, READ_CAPS, Rules, expand_namespace_policy, parse_rules,
};
pub use resolve::{Auth, Denied, Identity, Resolved, glob, token_from_headers};
pub use store::{Acl, AclError, AclState, accessor_for};

/// The fixed policy menu of `--acl-token SECRET=POLICY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Management,
    NodeWrite,
    NodeRead,
    Deny,
}

/// A `--acl-token SECRET=POLICY` naming a policy outside the menu.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown policy {} (management, node-write, node-read, deny)",
    crate::goquote::go_quote(.name)
)]
pub struct UnknownPolicy {
    pub name: String,
}

impl std::str::FromStr for Policy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "management" => Ok(Policy::Management),
            "node-write" => Ok(Policy::NodeWrite),
            "node-read" => Ok(Policy::NodeRead),
            "deny" => Ok(Policy::Deny),
            other => Err(UnknownPolicy { name: other.into() }),
        }
    }
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Management => "management",
            Policy::NodeWrite => "node-write",
            Policy::NodeRead => "node-read",
            Policy::Deny => "deny",
        }
    }

    /// The rules of the built-in policy (None for management, which is a
    /// token type, not a policy).
    pub fn builtin_rules(self) -> Option<Value> {
        match self {
            Policy::Management => None,
            Policy::NodeWrite => Some(json!({
                "namespace": {"*": {"policy": "read"}}, "node": {"policy": "write"}})),
            Policy::NodeRead => Some(json!({
                "namespace": {"*": {"policy": "read"}}, "node": {"policy": "read"}})),
            Policy::Deny => Some(Value::Null),
        }
    }
}

/// What an endpoint needs before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    NodeRead,
    NodeWrite,
    Management,
    /// Only a valid (or no) token: the endpoint checks namespaces itself,
    /// or needs nothing (`/v1/status/leader`, `/v1/agent/self`).
    None,
}
