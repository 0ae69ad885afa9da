//! The ACL store and its writes: policies, roles and tokens created or
//! replaced through the control surface (`/sim/acl/*`) or from the
//! `--acl-token SECRET=POLICY` menu, with the indexes and hashes Nomad
//! keeps for them. Reading a token's rights is `resolve`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::Value;

use super::policy::{PolicyError, valid_name};
use super::{AclPolicy, AclRole, AclToken, Policy, Rules, blake2b_256, parse_rules};
use crate::goquote::go_quote;

#[derive(Debug, Default)]
pub struct AclState {
    pub policies: BTreeMap<String, AclPolicy>,
    /// By role ID.
    pub roles: BTreeMap<String, AclRole>,
    /// By secret.
    pub tokens: HashMap<String, Arc<AclToken>>,
    pub policy_index: u64,
    pub role_index: u64,
    pub token_index: u64,
}

/// The ACL store (behind its own lock; the control surface writes it).
#[derive(Debug, Default)]
pub struct Acl {
    pub state: RwLock<AclState>,
}

/// Why a write of the ACL store (`/sim/acl/*`) was refused: 400 on the
/// control surface, with these texts (Nomad's validation messages where
/// Nomad has one).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AclError {
    /// A policy's or role's name (`ACLPolicy.Validate`'s name check).
    #[error("invalid name '{name}'")]
    InvalidName { name: String },
    #[error("failed to parse rules: {0}")]
    Rules(#[source] PolicyError),
    #[error("at least one policy should be specified")]
    RoleWithoutPolicies,
    #[error("cannot find policy {name}")]
    PolicyNotFound { name: String },
    #[error("cannot find role {name}")]
    RoleNotFound { name: String },
    #[error("secret must not be empty")]
    EmptySecret,
    #[error("management token cannot be associated with policies or roles")]
    ManagementWithPolicies,
    #[error("client token missing policies or roles")]
    ClientWithoutPolicies,
    #[error("token type must be client or management, not {}", go_quote(.kind))]
    InvalidTokenType { kind: String },
}

impl Acl {
    /// `tokens`: `(secret, policy)` from the fixed menu. Accessor IDs are
    /// derived deterministically from the secret so tests can predict them.
    pub fn new(tokens: &[(String, Policy)]) -> Acl {
        let acl = Acl::default();
        for (secret, policy) in tokens {
            acl.add_builtin_token(secret, *policy, 1, 0)
                .expect("built-in token");
        }
        acl
    }

    fn add_builtin_token(
        &self,
        secret: &str,
        policy: Policy,
        index: u64,
        now: i64,
    ) -> Result<(), AclError> {
        let (kind, policies) = match policy.builtin_rules() {
            None => ("management", vec![]),
            Some(rules) => {
                let exists = self
                    .state
                    .read()
                    .unwrap()
                    .policies
                    .contains_key(policy.name());
                if !exists {
                    self.upsert_policy(policy.name(), "nomad-sim built-in policy", &rules, index)?;
                }
                ("client", vec![policy.name().to_string()])
            }
        };
        self.upsert_token(secret, kind, "", &policies, &[], index, now)?;
        Ok(())
    }

    pub fn enabled(&self) -> bool {
        !self.state.read().unwrap().tokens.is_empty()
    }

    /// Creates or replaces a policy. Returns its JSON.
    pub fn upsert_policy(
        &self,
        name: &str,
        description: &str,
        rules: &Value,
        index: u64,
    ) -> Result<Value, AclError> {
        if !valid_name(name, &[]) {
            return Err(AclError::InvalidName { name: name.into() });
        }
        let parsed = match rules {
            Value::Null => Rules::default(),
            v => parse_rules(v).map_err(AclError::Rules)?,
        };
        let raw = match rules {
            Value::Null => String::new(),
            v => serde_json::to_string(v).unwrap(),
        };
        let mut h = Vec::new();
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(description.as_bytes());
        h.extend_from_slice(raw.as_bytes());
        let mut st = self.state.write().unwrap();
        let create_index = st
            .policies
            .get(name)
            .map(|p| p.create_index)
            .unwrap_or(index);
        let p = AclPolicy {
            name: name.into(),
            description: description.into(),
            rules: raw,
            parsed,
            hash: blake2b_256(&h),
            create_index,
            modify_index: index,
        };
        let v = p.to_json();
        st.policies.insert(name.into(), p);
        st.policy_index = st.policy_index.max(index);
        Ok(v)
    }

    /// Creates or replaces a role (by name; the ID is derived from the name).
    pub fn upsert_role(
        &self,
        name: &str,
        description: &str,
        policies: &[String],
        index: u64,
    ) -> Result<Value, AclError> {
        if !valid_name(name, &[]) {
            return Err(AclError::InvalidName { name: name.into() });
        }
        if policies.is_empty() {
            return Err(AclError::RoleWithoutPolicies);
        }
        let mut st = self.state.write().unwrap();
        for p in policies {
            if !st.policies.contains_key(p) {
                return Err(AclError::PolicyNotFound { name: p.clone() });
            }
        }
        let id = accessor_for(&format!("role:{name}"));
        let create_index = st.roles.get(&id).map(|r| r.create_index).unwrap_or(index);
        let mut h = Vec::new();
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(description.as_bytes());
        for p in policies {
            h.extend_from_slice(p.as_bytes());
        }
        let r = AclRole {
            id: id.clone(),
            name: name.into(),
            description: description.into(),
            policies: policies.to_vec(),
            hash: blake2b_256(&h),
            create_index,
            modify_index: index,
        };
        let v = r.to_json();
        st.roles.insert(id, r);
        st.role_index = st.role_index.max(index);
        Ok(v)
    }

    /// Creates or replaces a token (by secret). `roles` are role names.
    #[allow(clippy::too_many_arguments)]
    pub fn upsert_token(
        &self,
        secret: &str,
        kind: &str,
        name: &str,
        policies: &[String],
        roles: &[String],
        index: u64,
        now: i64,
    ) -> Result<Value, AclError> {
        if secret.is_empty() {
            return Err(AclError::EmptySecret);
        }
        match kind {
            "management" if !policies.is_empty() || !roles.is_empty() => {
                return Err(AclError::ManagementWithPolicies);
            }
            "client" if policies.is_empty() && roles.is_empty() => {
                return Err(AclError::ClientWithoutPolicies);
            }
            "management" | "client" => {}
            other => {
                return Err(AclError::InvalidTokenType { kind: other.into() });
            }
        }
        let mut st = self.state.write().unwrap();
        let mut role_ids = Vec::new();
        for rn in roles {
            let id = st
                .roles
                .values()
                .find(|r| &r.name == rn)
                .map(|r| r.id.clone())
                .ok_or_else(|| AclError::RoleNotFound { name: rn.clone() })?;
            if !role_ids.contains(&id) {
                role_ids.push(id);
            }
        }
        let old = st.tokens.get(secret).cloned();
        let mut h = Vec::new();
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(kind.as_bytes());
        for p in policies {
            h.extend_from_slice(p.as_bytes());
        }
        for r in &role_ids {
            h.extend_from_slice(r.as_bytes());
        }
        let t = AclToken {
            accessor: accessor_for(secret),
            secret: secret.into(),
            name: name.into(),
            kind: kind.into(),
            policies: if kind == "management" {
                None
            } else {
                Some(policies.to_vec())
            },
            roles: role_ids,
            hash: blake2b_256(&h),
            create_time: old.as_ref().map(|o| o.create_time).unwrap_or(now),
            create_index: old.as_ref().map(|o| o.create_index).unwrap_or(index),
            modify_index: index,
        };
        let v = t.to_json(&st.roles);
        st.tokens.insert(secret.into(), Arc::new(t));
        st.token_index = st.token_index.max(index);
        Ok(v)
    }
}

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
