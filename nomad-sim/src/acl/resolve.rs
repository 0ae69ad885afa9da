//! Enforcement: a token's policies (direct and through its roles) compiled
//! into one capability set as `acl/acl.go` `NewACL` does (capabilities of
//! one namespace name are unioned, `deny` wins, a namespace is matched by
//! exact name else by the closest glob), and the checks a request makes
//! against it. Also where a request's token comes from (`parseToken`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{Acl, AclState, AclToken, Capability, Rules};

/// A token's compiled ACL (`acl.ACL`).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub management: bool,
    node: String,
    /// Exact namespace name -> capabilities.
    namespaces: HashMap<String, BTreeSet<String>>,
    /// Glob -> capabilities, in key order (the radix tree's walk order).
    wildcards: BTreeMap<String, BTreeSet<String>>,
}

fn max_privilege(a: &str, b: &str) -> String {
    for p in ["deny", "write", "read", "list"] {
        if a == p || b == p {
            return p.into();
        }
    }
    String::new()
}

/// `github.com/ryanuber/go-glob` `Glob`.
pub fn glob(pattern: &str, subj: &str) -> bool {
    if pattern.is_empty() {
        return subj == pattern;
    }
    if pattern == "*" {
        return true;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return subj == pattern;
    }
    let leading = pattern.starts_with('*');
    let trailing = pattern.ends_with('*');
    let end = parts.len() - 1;
    let mut subj = subj;
    for (i, part) in parts.iter().enumerate().take(end) {
        let idx = subj.find(part);
        match i {
            0 => {
                if !leading && idx != Some(0) {
                    return false;
                }
            }
            _ => {
                if idx.is_none() {
                    return false;
                }
            }
        }
        let idx = idx.unwrap_or(0);
        subj = &subj[idx + part.len()..];
    }
    trailing || subj.ends_with(parts[end])
}

impl Resolved {
    fn management() -> Resolved {
        Resolved {
            management: true,
            ..Default::default()
        }
    }

    /// `NewACL` for a client token's policies.
    pub fn compile(policies: &[&Rules]) -> Resolved {
        let mut r = Resolved::default();
        for p in policies {
            for ns in &p.namespaces {
                let set = if ns.name.contains('*') {
                    r.wildcards.entry(ns.name.clone()).or_default()
                } else {
                    r.namespaces.entry(ns.name.clone()).or_default()
                };
                if set.contains("deny") {
                    continue;
                }
                for c in ns.capabilities.iter().flatten() {
                    if c == "deny" {
                        set.clear();
                        set.insert("deny".into());
                        break;
                    }
                    set.insert(c.clone());
                }
            }
            if let Some(n) = &p.node {
                r.node = max_privilege(&r.node, n);
            }
        }
        r
    }

    /// `matchingNamespaceCapabilitySet`: exact name, else the closest glob
    /// (smallest `len(ns) - len(glob) + count("*")`; ties go to the glob
    /// last in key order, which is where Go's `sort.SliceStable` with a `<=`
    /// comparator leaves them).
    fn matching(&self, ns: &str) -> Option<&BTreeSet<String>> {
        if let Some(s) = self.namespaces.get(ns) {
            return Some(s);
        }
        let mut best: Option<(i64, &BTreeSet<String>)> = None;
        for (k, v) in &self.wildcards {
            if glob(k, ns) {
                let d = ns.len() as i64 - k.len() as i64 + k.matches('*').count() as i64;
                if best.is_none_or(|(bd, _)| d <= bd) {
                    best = Some((d, v));
                }
            }
        }
        best.map(|(_, v)| v)
    }

    fn any_namespace(&self, f: impl Fn(&BTreeSet<String>) -> bool) -> bool {
        self.namespaces.values().any(&f) || self.wildcards.values().any(&f)
    }

    /// `AllowNamespaceOperation`.
    pub fn allow_ns_op(&self, ns: &str, op: &str) -> bool {
        if self.management {
            return true;
        }
        if ns == "*" && self.any_namespace(|c| c.contains(op)) {
            return true;
        }
        self.matching(ns).is_some_and(|c| c.contains(op))
    }

    /// `AllowNamespace`: any operation allowed.
    pub fn allow_namespace(&self, ns: &str) -> bool {
        if self.management {
            return true;
        }
        let ok = |c: &BTreeSet<String>| !c.is_empty() && !c.contains("deny");
        if ns == "*" && self.any_namespace(ok) {
            return true;
        }
        self.matching(ns).is_some_and(ok)
    }

    pub fn node_read(&self) -> bool {
        self.management || self.node == "write" || self.node == "read"
    }

    pub fn node_write(&self) -> bool {
        self.management || self.node == "write"
    }
}

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Identity {
    pub accessor: String,
    pub token: Arc<AclToken>,
    pub acl: Arc<Resolved>,
}

impl Identity {
    pub fn accessor_string(&self) -> String {
        format!("token:{}", self.accessor)
    }
}

/// What a request's token resolved to.
#[derive(Debug, Clone)]
pub enum Auth {
    /// ACLs are disabled: everything is allowed.
    Disabled,
    Token(Identity),
}

impl Auth {
    pub fn allow_ns_op(&self, ns: &str, op: &str) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(i) => i.acl.allow_ns_op(ns, op),
        }
    }
    pub fn allow_namespace(&self, ns: &str) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(i) => i.acl.allow_namespace(ns),
        }
    }
    pub fn node_read(&self) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(i) => i.acl.node_read(),
        }
    }
    pub fn node_write(&self) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(i) => i.acl.node_write(),
        }
    }
    pub fn management(&self) -> bool {
        match self {
            Auth::Disabled => true,
            Auth::Token(i) => i.acl.management,
        }
    }
    pub fn check(&self, cap: Capability) -> bool {
        match cap {
            Capability::None => true,
            Capability::NodeRead => self.node_read(),
            Capability::NodeWrite => self.node_write(),
            Capability::Management => self.management(),
        }
    }
    pub fn identity(self) -> Option<Identity> {
        match self {
            Auth::Disabled => None,
            Auth::Token(i) => Some(i),
        }
    }
}

/// The token is unknown or lacks the capability (`403 Permission denied`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Denied;

impl Acl {
    /// Policy names a token holds: direct ones, plus those of its roles
    /// that exist (`getPoliciesForIdentity`).
    pub fn token_policy_names(st: &AclState, t: &AclToken) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for rid in &t.roles {
            if let Some(r) = st.roles.get(rid) {
                for p in &r.policies {
                    if st.policies.contains_key(p) {
                        out.insert(p.clone());
                    }
                }
            }
        }
        out.extend(t.policies.iter().flatten().cloned());
        out
    }

    fn identity_for(st: &AclState, t: Arc<AclToken>) -> Identity {
        let acl = if t.kind == "management" {
            Resolved::management()
        } else {
            let names = Self::token_policy_names(st, &t);
            let rules: Vec<&Rules> = names
                .iter()
                .filter_map(|n| st.policies.get(n))
                .map(|p| &p.parsed)
                .collect();
            Resolved::compile(&rules)
        };
        Identity {
            accessor: t.accessor.clone(),
            token: t,
            acl: Arc::new(acl),
        }
    }

    /// `Authenticate` + `ResolveACL`: no token is the anonymous token (whose
    /// rules are those of a policy named `anonymous`, if one exists); an
    /// unknown token is refused.
    pub fn resolve(&self, secret: Option<&str>) -> Result<Auth, Denied> {
        let st = self.state.read().unwrap();
        if st.tokens.is_empty() {
            return Ok(Auth::Disabled);
        }
        let tok = match secret {
            Some(s) if !s.is_empty() => st.tokens.get(s).cloned().ok_or(Denied)?,
            _ => Arc::new(AclToken::anonymous()),
        };
        Ok(Auth::Token(Self::identity_for(&st, tok)))
    }

    /// `ACL.WhoAmI`'s token: the ACLs-disabled token when ACLs are off.
    pub fn whoami(&self, secret: Option<&str>) -> Result<Arc<AclToken>, Denied> {
        match self.resolve(secret)? {
            Auth::Disabled => Ok(Arc::new(AclToken::acls_disabled())),
            Auth::Token(i) => Ok(i.token),
        }
    }

    /// Checks `secret` (None when no token header was sent) against `cap`.
    /// `Ok(None)` means ACLs are disabled.
    pub fn check(&self, secret: Option<&str>, cap: Capability) -> Result<Option<Identity>, Denied> {
        let a = self.resolve(secret)?;
        if !a.check(cap) {
            return Err(Denied);
        }
        Ok(a.identity())
    }
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::acl::parse_rules;

    #[test]
    fn go_glob() {
        assert!(glob("*", "x"));
        assert!(glob("team-*", "team-a"));
        assert!(!glob("team-*", "xteam-a"));
        assert!(glob("*-b", "team-b"));
        assert!(glob("t*m*b", "team-b"));
        assert!(!glob("team-a", "team-b"));
    }

    #[test]
    fn closest_glob_wins_and_ties_go_to_the_last_key() {
        let rules = parse_rules(&json!({"namespace": {
            "*": {"policy": "read"},
            "team-*": {"capabilities": ["list-jobs"]},
        }}))
        .unwrap();
        let r = Resolved::compile(&[&rules]);
        // team-* (difference 1) beats * (difference 6).
        assert!(!r.allow_ns_op("team-a", "read-job"));
        assert!(r.allow_ns_op("team-a", "list-jobs"));
        assert!(r.allow_ns_op("default", "read-job"));
        // Equal difference: "a*" and "*a" both match "aba" with 2.
        let rules = parse_rules(&json!({"namespace": {
            "*a": {"capabilities": ["list-jobs"]},
            "a*": {"capabilities": ["read-job"]},
        }}))
        .unwrap();
        let r = Resolved::compile(&[&rules]);
        assert!(r.allow_ns_op("aba", "read-job"));
        assert!(!r.allow_ns_op("aba", "list-jobs"));
    }

    #[test]
    fn deny_wins_within_a_namespace_name() {
        let a = parse_rules(&json!({"namespace": {"team-b": {"policy": "write"}}})).unwrap();
        let b = parse_rules(&json!({"namespace": {"team-b": {"policy": "deny"}}})).unwrap();
        let r = Resolved::compile(&[&a, &b]);
        assert!(!r.allow_ns_op("team-b", "read-job"));
        assert!(!r.allow_namespace("team-b"));
    }
}
