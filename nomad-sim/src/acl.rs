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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use serde_json::{Value, json};

/// The fixed policy menu of `--acl-token SECRET=POLICY`.
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

// ---- policies ----

/// `acl.NamespacePolicy` after `Parse`: `capabilities` include the expansion
/// of `policy`.
#[derive(Debug, Clone, PartialEq)]
pub struct NamespaceRule {
    pub name: String,
    pub policy: String,
    /// `None` renders as `null` (Go nil slice).
    pub capabilities: Option<Vec<String>>,
}

/// A simple `{"policy": "..."}` block (`node`, `agent`, `quota`, `plugin`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rules {
    pub namespaces: Vec<NamespaceRule>,
    pub node: Option<String>,
    pub agent: Option<String>,
    pub operator: Option<String>,
    pub quota: Option<String>,
    pub plugin: Option<String>,
}

pub const READ_CAPS: &[&str] = &[
    "list-jobs",
    "parse-job",
    "read-job",
    "csi-list-volume",
    "csi-read-volume",
    "read-job-scaling",
    "list-scaling-policies",
    "read-scaling-policy",
    "host-volume-read",
];
const WRITE_EXTRA: &[&str] = &[
    "scale-job",
    "submit-job",
    "dispatch-job",
    "read-logs",
    "read-fs",
    "alloc-exec",
    "alloc-lifecycle",
    "csi-mount-volume",
    "csi-write-volume",
    "submit-recommendation",
    "host-volume-create",
];
const SCALE_CAPS: &[&str] = &[
    "list-scaling-policies",
    "read-scaling-policy",
    "read-job-scaling",
    "scale-job",
    "read-job",
    "submit-recommendation",
];
/// `isNamespaceCapabilityValid` (Nomad 1.11).
const VALID_NS_CAPS: &[&str] = &[
    "deny",
    "list-jobs",
    "parse-job",
    "read-job",
    "submit-job",
    "dispatch-job",
    "read-logs",
    "read-fs",
    "alloc-exec",
    "alloc-node-exec",
    "alloc-lifecycle",
    "sentinel-override",
    "csi-register-plugin",
    "csi-write-volume",
    "csi-read-volume",
    "csi-list-volume",
    "csi-mount-volume",
    "host-volume-create",
    "host-volume-register",
    "host-volume-read",
    "host-volume-write",
    "host-volume-delete",
    "list-scaling-policies",
    "read-scaling-policy",
    "read-job-scaling",
    "scale-job",
    "submit-recommendation",
];

/// `expandNamespacePolicy`.
pub fn expand_namespace_policy(policy: &str) -> Vec<String> {
    let v: Vec<&str> = match policy {
        "deny" => vec!["deny"],
        "read" => READ_CAPS.to_vec(),
        "write" => READ_CAPS.iter().chain(WRITE_EXTRA).copied().collect(),
        "scale" => SCALE_CAPS.to_vec(),
        _ => vec![],
    };
    v.into_iter().map(str::to_string).collect()
}

fn valid_policy(p: &str) -> bool {
    matches!(p, "deny" | "read" | "write" | "scale" | "list")
}

fn valid_name(s: &str, extra: &[char]) -> bool {
    (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
}

fn block_policy(v: &Value, what: &str) -> Result<String, String> {
    let o = v
        .as_object()
        .ok_or_else(|| format!("Failed to parse ACL Policy: {what} must be an object"))?;
    let mut policy = String::new();
    for (k, val) in o {
        match k.as_str() {
            "policy" => {
                policy = val
                    .as_str()
                    .ok_or_else(|| format!("Failed to parse ACL Policy: {what}.policy"))?
                    .to_string()
            }
            other => {
                return Err(format!(
                    "Invalid or duplicate policy keys: {other} (in {what})"
                ));
            }
        }
    }
    if !valid_policy(&policy) {
        return Err(format!("Invalid {what} policy: {policy:?}"));
    }
    Ok(policy)
}

/// Parses Nomad JSON policy rules (strictly, as `ACLPolicy.Validate`
/// does). `null` is the empty policy (`Rules: ""`). Supported blocks:
/// `namespace` (`policy`, `capabilities`), `node`, `agent`, `operator`,
/// `quota`, `plugin`; anything else is refused with 400 rather than ignored.
pub fn parse_rules(v: &Value) -> Result<Rules, String> {
    let mut r = Rules::default();
    let o = match v {
        Value::Null => return Ok(r),
        Value::Object(o) => o,
        _ => return Err("Failed to parse ACL Policy: rules must be a JSON object".into()),
    };
    for (k, val) in o {
        match k.as_str() {
            "namespace" => {
                let m = val.as_object().ok_or(
                    "Failed to parse ACL Policy: namespace must be an object keyed by namespace name",
                )?;
                for (name, body) in m {
                    if !valid_name(name, &['*']) {
                        return Err(format!("Invalid namespace name: {name:?}"));
                    }
                    let b = body
                        .as_object()
                        .ok_or_else(|| format!("Failed to parse ACL Policy: namespace {name:?}"))?;
                    let mut policy = String::new();
                    let mut caps: Option<Vec<String>> = None;
                    for (bk, bv) in b {
                        match bk.as_str() {
                            "policy" => {
                                policy = bv
                                    .as_str()
                                    .ok_or_else(|| format!("Invalid namespace policy: {bv}"))?
                                    .to_string()
                            }
                            "capabilities" => {
                                let a = bv.as_array().ok_or_else(|| {
                                    format!("Failed to parse ACL Policy: capabilities of {name:?}")
                                })?;
                                let mut out = Vec::new();
                                for c in a {
                                    let c = c.as_str().unwrap_or_default();
                                    if !VALID_NS_CAPS.contains(&c) {
                                        return Err(format!(
                                            "Invalid namespace capability '{c}': {name:?}"
                                        ));
                                    }
                                    out.push(c.to_string());
                                }
                                caps = Some(out);
                            }
                            other => {
                                return Err(format!(
                                    "Invalid or duplicate policy keys: {other} (in namespace {name:?}; not supported by nomad-sim)"
                                ));
                            }
                        }
                    }
                    if !policy.is_empty() && !valid_policy(&policy) {
                        return Err(format!("Invalid namespace policy: {policy:?}"));
                    }
                    if !policy.is_empty() {
                        let extra = expand_namespace_policy(&policy);
                        if !extra.is_empty() {
                            caps.get_or_insert_with(Vec::new).extend(extra);
                        }
                    }
                    // expandNamespaceCapabilities: host-volume implications.
                    if let Some(c) = &mut caps {
                        let mut extra = Vec::new();
                        for cap in c.iter() {
                            match cap.as_str() {
                                "host-volume-write" => extra.extend([
                                    "host-volume-register",
                                    "host-volume-create",
                                    "host-volume-delete",
                                    "host-volume-read",
                                ]),
                                "host-volume-register" => {
                                    extra.extend(["host-volume-create", "host-volume-read"])
                                }
                                "host-volume-create" => extra.push("host-volume-read"),
                                _ => {}
                            }
                        }
                        c.extend(extra.into_iter().map(str::to_string));
                    }
                    r.namespaces.push(NamespaceRule {
                        name: name.clone(),
                        policy,
                        capabilities: caps,
                    });
                }
            }
            "node" => r.node = Some(block_policy(val, "node")?),
            "agent" => r.agent = Some(block_policy(val, "agent")?),
            "operator" => r.operator = Some(block_policy(val, "operator")?),
            "quota" => r.quota = Some(block_policy(val, "quota")?),
            "plugin" => r.plugin = Some(block_policy(val, "plugin")?),
            other => {
                return Err(format!(
                    "Invalid or duplicate policy keys: {other} (not supported by nomad-sim)"
                ));
            }
        }
    }
    if r == Rules::default() {
        return Err(format!("Invalid policy: {v}"));
    }
    Ok(r)
}

impl Rules {
    /// `RulesJSON`: the parsed `acl.Policy`, Go field names, no json tags.
    pub fn to_json(&self, raw: &str) -> Value {
        let pol = |p: &Option<String>| match p {
            Some(p) => json!({"Policy": p}),
            None => Value::Null,
        };
        let ns: Value = if self.namespaces.is_empty() {
            Value::Null
        } else {
            self.namespaces
                .iter()
                .map(|n| {
                    json!({"Name": n.name, "Policy": n.policy,
                           "Capabilities": n.capabilities, "Variables": null})
                })
                .collect()
        };
        let operator = match &self.operator {
            Some(p) => {
                json!({"Policy": p, "Capabilities": expand_operator(p)})
            }
            None => Value::Null,
        };
        json!({
            "Namespaces": ns,
            "NodePools": null,
            "HostVolumes": null,
            "Agent": pol(&self.agent),
            "Node": pol(&self.node),
            "Operator": operator,
            "Sentinel": null,
            "Quota": pol(&self.quota),
            "Plugin": pol(&self.plugin),
            "Raw": raw,
            "ExtraKeysHCL": null,
        })
    }
}

fn expand_operator(p: &str) -> Value {
    // expandOperatorPolicy (Nomad 1.11): read = license-read,
    // keyring-read; write = read + snapshot-save, keyring-rotate,
    // keyring-delete; deny = deny.
    match p {
        "deny" => json!(["deny"]),
        "read" => json!(["license-read", "keyring-read"]),
        "write" => json!([
            "license-read",
            "keyring-read",
            "snapshot-save",
            "keyring-rotate",
            "keyring-delete"
        ]),
        _ => Value::Null,
    }
}

#[derive(Debug, Clone)]
pub struct AclPolicy {
    pub name: String,
    pub description: String,
    /// Raw rules text as stored (a JSON policy serialized to a string).
    pub rules: String,
    pub parsed: Rules,
    pub hash: [u8; 32],
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclPolicy {
    pub fn to_json(&self) -> Value {
        json!({
            "Name": self.name,
            "Description": self.description,
            "Rules": self.rules,
            "RulesJSON": self.parsed.to_json(&self.rules),
            "JobACL": null,
            "Hash": base64(&self.hash),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }

    pub fn stub(&self) -> Value {
        json!({
            "Name": self.name,
            "Description": self.description,
            "JobACL": null,
            "Hash": base64(&self.hash),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AclRole {
    pub id: String,
    pub name: String,
    pub description: String,
    pub policies: Vec<String>,
    pub hash: [u8; 32],
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclRole {
    pub fn to_json(&self) -> Value {
        json!({
            "ID": self.id,
            "Name": self.name,
            "Description": self.description,
            "Policies": self.policies.iter().map(|p| json!({"Name": p})).collect::<Vec<_>>(),
            "Hash": base64(&self.hash),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

#[derive(Debug, Clone)]
pub struct AclToken {
    pub accessor: String,
    pub secret: String,
    pub name: String,
    /// `client` or `management`.
    pub kind: String,
    /// `None` renders as `null` (management tokens).
    pub policies: Option<Vec<String>>,
    /// Linked role IDs.
    pub roles: Vec<String>,
    pub hash: [u8; 32],
    /// Unix ns.
    pub create_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
}

impl AclToken {
    fn anonymous() -> AclToken {
        AclToken {
            accessor: "anonymous".into(),
            secret: String::new(),
            name: "Anonymous Token".into(),
            kind: "client".into(),
            policies: Some(vec!["anonymous".into()]),
            roles: vec![],
            hash: [0; 32],
            create_time: i64::MIN,
            create_index: 0,
            modify_index: 0,
        }
    }

    fn acls_disabled() -> AclToken {
        AclToken {
            accessor: "acls-disabled".into(),
            secret: String::new(),
            name: "ACLs disabled token".into(),
            kind: "client".into(),
            policies: None,
            roles: vec![],
            hash: [0; 32],
            create_time: i64::MIN,
            create_index: 0,
            modify_index: 0,
        }
    }

    fn is_builtin(&self) -> bool {
        self.create_time == i64::MIN
    }

    /// `ACLToken.MarshalJSON`: `ExpirationTTL` as a Go duration string (empty
    /// when 0), zero times as `null` (go-msgpack's JSON handle), `Hash` as
    /// base64, role links with the role's current name.
    pub fn to_json(&self, roles: &BTreeMap<String, AclRole>) -> Value {
        let links: Value = if self.is_builtin() {
            Value::Null
        } else {
            self.roles
                .iter()
                .filter_map(|id| roles.get(id))
                .map(|r| json!({"ID": r.id, "Name": r.name}))
                .collect()
        };
        json!({
            "ExpirationTTL": "",
            "AccessorID": self.accessor,
            "SecretID": self.secret,
            "Name": self.name,
            "Type": self.kind,
            "Policies": self.policies,
            "Roles": links,
            "Global": false,
            "Hash": if self.is_builtin() { Value::Null } else { Value::String(base64(&self.hash)) },
            "CreateTime": if self.is_builtin() { Value::Null } else { Value::String(crate::clock::rfc3339(self.create_time)) },
            "ExpirationTime": null,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        })
    }
}

// ---- resolution ----

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

/// Errors of the `/sim/acl/*` writes (400 on the control surface).
pub type AclError = String;

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
            return Err(format!("invalid name '{name}'"));
        }
        let parsed = match rules {
            Value::Null => Rules::default(),
            v => parse_rules(v).map_err(|e| format!("failed to parse rules: {e}"))?,
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
            return Err(format!("invalid name '{name}'"));
        }
        if policies.is_empty() {
            return Err("at least one policy should be specified".into());
        }
        let mut st = self.state.write().unwrap();
        for p in policies {
            if !st.policies.contains_key(p) {
                return Err(format!("cannot find policy {p}"));
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
            return Err("secret must not be empty".into());
        }
        match kind {
            "management" if !policies.is_empty() || !roles.is_empty() => {
                return Err("management token cannot be associated with policies or roles".into());
            }
            "client" if policies.is_empty() && roles.is_empty() => {
                return Err("client token missing policies or roles".into());
            }
            "management" | "client" => {}
            other => {
                return Err(format!(
                    "token type must be client or management, not {other:?}"
                ));
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
                .ok_or_else(|| format!("cannot find role {rn}"))?;
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

// ---- hashing and encoding (Nomad hashes ACL objects with BLAKE2b-256 and
// Go encodes []byte as base64) ----

const B2_IV: [u64; 8] = [
    0x6a09e667f3bcc908,
    0xbb67ae8584caa73b,
    0x3c6ef372fe94f82b,
    0xa54ff53a5f1d36f1,
    0x510e527fade682d1,
    0x9b05688c2b3e6c1f,
    0x1f83d9abfb41bd6b,
    0x5be0cd19137e2179,
];
const B2_SIGMA: [[usize; 16]; 10] = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
    [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
    [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
    [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
    [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
    [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
    [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
    [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
    [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
    [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];

fn b2_compress(h: &mut [u64; 8], block: &[u8; 128], t: u128, last: bool) {
    let mut m = [0u64; 16];
    for (i, w) in m.iter_mut().enumerate() {
        *w = u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().unwrap());
    }
    let mut v = [0u64; 16];
    v[..8].copy_from_slice(h);
    v[8..].copy_from_slice(&B2_IV);
    v[12] ^= t as u64;
    v[13] ^= (t >> 64) as u64;
    if last {
        v[14] = !v[14];
    }
    fn g(v: &mut [u64; 16], a: usize, b: usize, c: usize, d: usize, x: u64, y: u64) {
        v[a] = v[a].wrapping_add(v[b]).wrapping_add(x);
        v[d] = (v[d] ^ v[a]).rotate_right(32);
        v[c] = v[c].wrapping_add(v[d]);
        v[b] = (v[b] ^ v[c]).rotate_right(24);
        v[a] = v[a].wrapping_add(v[b]).wrapping_add(y);
        v[d] = (v[d] ^ v[a]).rotate_right(16);
        v[c] = v[c].wrapping_add(v[d]);
        v[b] = (v[b] ^ v[c]).rotate_right(63);
    }
    for r in 0..12 {
        let s = &B2_SIGMA[r % 10];
        g(&mut v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
        g(&mut v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
        g(&mut v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
        g(&mut v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
        g(&mut v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
        g(&mut v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
        g(&mut v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
        g(&mut v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for i in 0..8 {
        h[i] ^= v[i] ^ v[i + 8];
    }
}

/// BLAKE2b with a 32-byte digest and no key (`blake2b.New256(nil)`).
pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    let mut h = B2_IV;
    h[0] ^= 0x0101_0000 ^ 32;
    let n = data.len();
    let mut off = 0;
    // Every full block except the last one.
    while n - off > 128 {
        let block: [u8; 128] = data[off..off + 128].try_into().unwrap();
        off += 128;
        b2_compress(&mut h, &block, off as u128, false);
    }
    let mut block = [0u8; 128];
    block[..n - off].copy_from_slice(&data[off..]);
    b2_compress(&mut h, &block, n as u128, true);
    let mut out = [0u8; 32];
    for i in 0..4 {
        out[i * 8..i * 8 + 8].copy_from_slice(&h[i].to_le_bytes());
    }
    out
}

/// Standard base64 with padding (Go's `encoding/json` for `[]byte`).
pub fn base64(b: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(b.len().div_ceil(3) * 4);
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn blake2b_256_known_vectors() {
        assert_eq!(
            hex(&blake2b_256(b"")),
            "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
        );
        assert_eq!(
            hex(&blake2b_256(b"abc")),
            "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319"
        );
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }

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
