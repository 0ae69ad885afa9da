//! ACL tokens. With no tokens configured ACLs are disabled and every request
//! is allowed (`LastDrain.AccessorID` is then `token:acls-disabled`).
//!
//! Policies are a fixed menu, enough to test an operator's ACL handling:
//! * `management`: everything;
//! * `node-write`: `node { policy = "write" }` + `namespace "*" { policy = "read" }`;
//! * `node-read`: `node { policy = "read" }` + `namespace "*" { policy = "read" }`;
//! * `deny`: nothing.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Management,
    NodeWrite,
    NodeRead,
    Deny,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "management" => Ok(Policy::Management),
            "node-write" => Ok(Policy::NodeWrite),
            "node-read" => Ok(Policy::NodeRead),
            "deny" => Ok(Policy::Deny),
            other => Err(format!(
                "unknown policy {other:?} (management, node-write, node-read, deny)"
            )),
        }
    }
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    NodeRead,
    NodeWrite,
    /// `namespace:read-job` (allocation endpoints).
    ReadJob,
    Management,
    /// `/v1/status/leader`, `/v1/agent/self`: any valid token or none.
    None,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub secret: String,
    pub accessor: String,
    pub policy: Policy,
}

#[derive(Debug, Clone, Default)]
pub struct Acl {
    tokens: HashMap<String, Token>,
}

/// Who made a request, as Nomad renders it into `LastDrain.AccessorID`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub accessor: String,
    pub policy: Policy,
}

impl Identity {
    pub fn accessor_string(&self) -> String {
        format!("token:{}", self.accessor)
    }
}

impl Acl {
    /// `tokens`: `(secret, policy)`. Accessor IDs are derived
    /// deterministically from the secret so tests can predict them.
    pub fn new(tokens: &[(String, Policy)]) -> Acl {
        let mut map = HashMap::new();
        for (secret, policy) in tokens {
            map.insert(
                secret.clone(),
                Token {
                    secret: secret.clone(),
                    accessor: accessor_for(secret),
                    policy: *policy,
                },
            );
        }
        Acl { tokens: map }
    }

    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks `secret` (None when no token header was sent) against `cap`.
    /// `Ok(None)` means ACLs are disabled.
    pub fn check(&self, secret: Option<&str>, cap: Capability) -> Result<Option<Identity>, Denied> {
        if !self.enabled() {
            return Ok(None);
        }
        let tok = match secret {
            Some(s) if !s.is_empty() => self.tokens.get(s).ok_or(Denied)?,
            // Anonymous token: Nomad's default anonymous policy is deny-all.
            _ => {
                return if cap == Capability::None {
                    Ok(None)
                } else {
                    Err(Denied)
                };
            }
        };
        let ok = matches!(
            (tok.policy, cap),
            (_, Capability::None)
                | (Policy::Management, _)
                | (
                    Policy::NodeWrite,
                    Capability::NodeRead | Capability::NodeWrite | Capability::ReadJob
                )
                | (Policy::NodeRead, Capability::NodeRead | Capability::ReadJob)
        );
        if ok {
            Ok(Some(Identity {
                accessor: tok.accessor.clone(),
                policy: tok.policy,
            }))
        } else {
            Err(Denied)
        }
    }
}

/// The token is unknown or lacks the capability (`403 Permission denied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied;

/// A stable UUID-shaped accessor ID for a secret (FNV-1a based).
pub fn accessor_for(secret: &str) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    let mut h2: u64 = 0x84222325cbf29ce4;
    for b in secret.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
        h2 ^= b as u64;
        h2 = h2.wrapping_mul(0x100000001b3).rotate_left(7);
    }
    let x = format!("{h:016x}{h2:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &x[0..8],
        &x[8..12],
        &x[12..16],
        &x[16..20],
        &x[20..32]
    )
}

/// Nomad's `parseToken`: `X-Nomad-Token` wins; otherwise
/// `Authorization: Bearer <token>` (scheme case-insensitive, first word).
pub fn token_from_headers(headers: &hyper::HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-nomad-token").and_then(|v| v.to_str().ok())
        && !v.is_empty()
    {
        return Some(v.to_string());
    }
    let auth = headers.get("authorization")?.to_str().ok()?;
    let mut parts = auth.split_whitespace();
    let scheme = parts.next()?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    parts.next().map(str::to_string)
}
