//! Policy parsing: Nomad JSON policy rules, validated strictly as
//! `ACLPolicy.Validate` does and expanded as `acl/policy.go` `Parse` does
//! (a namespace's `policy` becomes its capabilities). Separate from
//! enforcement (`resolve`): this is what a policy write accepts, not what a
//! request may do.

use serde_json::{Value, json};

use crate::goquote::go_quote;

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

pub(super) fn valid_name(s: &str, extra: &[char]) -> bool {
    (1..=128).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c))
}

/// Why a policy's rules were refused. The texts are the simulator's
/// answers to `POST /sim/acl/policies` (behind `failed to parse rules: `),
/// worded after `ACLPolicy.Validate` and `acl.Parse`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    #[error("Failed to parse ACL Policy: rules must be a JSON object")]
    RulesNotObject,
    /// Rules without any block (Nomad's `Invalid policy`).
    #[error("Invalid policy: {rules}")]
    NoRules { rules: Value },
    #[error("Invalid or duplicate policy keys: {key} (not supported by nomad-sim)")]
    UnsupportedBlock { key: String },
    #[error("Failed to parse ACL Policy: {block} must be an object")]
    BlockNotObject { block: &'static str },
    #[error("Failed to parse ACL Policy: {block}.policy")]
    BlockPolicyNotString { block: &'static str },
    #[error("Invalid or duplicate policy keys: {key} (in {block})")]
    UnknownBlockKey { block: &'static str, key: String },
    #[error("Invalid {block} policy: {}", go_quote(.policy))]
    InvalidBlockPolicy { block: &'static str, policy: String },
    #[error("Failed to parse ACL Policy: namespace must be an object keyed by namespace name")]
    NamespacesNotObject,
    #[error("Invalid namespace name: {}", go_quote(.name))]
    InvalidNamespaceName { name: String },
    #[error("Failed to parse ACL Policy: namespace {}", go_quote(.namespace))]
    NamespaceNotObject { namespace: String },
    /// `policy` is not a string: the JSON given is shown.
    #[error("Invalid namespace policy: {value}")]
    NamespacePolicyNotString { value: Value },
    #[error("Invalid namespace policy: {}", go_quote(.policy))]
    InvalidNamespacePolicy { policy: String },
    #[error("Failed to parse ACL Policy: capabilities of {}", go_quote(.namespace))]
    CapabilitiesNotArray { namespace: String },
    #[error("Invalid namespace capability '{capability}': {}", go_quote(.namespace))]
    InvalidCapability {
        namespace: String,
        capability: String,
    },
    #[error(
        "Invalid or duplicate policy keys: {key} (in namespace {}; not supported by nomad-sim)",
        go_quote(.namespace)
    )]
    UnsupportedNamespaceKey { namespace: String, key: String },
}

fn block_policy(v: &Value, block: &'static str) -> Result<String, PolicyError> {
    let o = v.as_object().ok_or(PolicyError::BlockNotObject { block })?;
    let mut policy = String::new();
    for (k, val) in o {
        match k.as_str() {
            "policy" => {
                policy = val
                    .as_str()
                    .ok_or(PolicyError::BlockPolicyNotString { block })?
                    .to_string()
            }
            other => {
                return Err(PolicyError::UnknownBlockKey {
                    block,
                    key: other.to_string(),
                });
            }
        }
    }
    if !valid_policy(&policy) {
        return Err(PolicyError::InvalidBlockPolicy { block, policy });
    }
    Ok(policy)
}

/// Parses Nomad JSON policy rules (strictly, as `ACLPolicy.Validate`
/// does). `null` is the empty policy (`Rules: ""`). Supported blocks:
/// `namespace` (`policy`, `capabilities`), `node`, `agent`, `operator`,
/// `quota`, `plugin`; anything else is refused with 400 rather than ignored.
pub fn parse_rules(v: &Value) -> Result<Rules, PolicyError> {
    let mut r = Rules::default();
    let o = match v {
        Value::Null => return Ok(r),
        Value::Object(o) => o,
        _ => return Err(PolicyError::RulesNotObject),
    };
    for (k, val) in o {
        match k.as_str() {
            "namespace" => {
                let m = val.as_object().ok_or(PolicyError::NamespacesNotObject)?;
                for (name, body) in m {
                    r.namespaces.push(namespace_rule(name, body)?);
                }
            }
            "node" => r.node = Some(block_policy(val, "node")?),
            "agent" => r.agent = Some(block_policy(val, "agent")?),
            "operator" => r.operator = Some(block_policy(val, "operator")?),
            "quota" => r.quota = Some(block_policy(val, "quota")?),
            "plugin" => r.plugin = Some(block_policy(val, "plugin")?),
            other => {
                return Err(PolicyError::UnsupportedBlock {
                    key: other.to_string(),
                });
            }
        }
    }
    if r == Rules::default() {
        return Err(PolicyError::NoRules { rules: v.clone() });
    }
    Ok(r)
}

/// One namespace block: its name (a glob allowed), `policy` and
/// `capabilities`, validated, with the policy expanded into capabilities
/// and the host-volume capabilities' implications added.
fn namespace_rule(name: &str, body: &Value) -> Result<NamespaceRule, PolicyError> {
    if !valid_name(name, &['*']) {
        return Err(PolicyError::InvalidNamespaceName { name: name.into() });
    }
    let b = body
        .as_object()
        .ok_or_else(|| PolicyError::NamespaceNotObject {
            namespace: name.into(),
        })?;
    let mut policy = String::new();
    let mut caps: Option<Vec<String>> = None;
    for (bk, bv) in b {
        match bk.as_str() {
            "policy" => {
                policy = bv
                    .as_str()
                    .ok_or_else(|| PolicyError::NamespacePolicyNotString { value: bv.clone() })?
                    .to_string()
            }
            "capabilities" => {
                let a = bv
                    .as_array()
                    .ok_or_else(|| PolicyError::CapabilitiesNotArray {
                        namespace: name.into(),
                    })?;
                let mut out = Vec::new();
                for c in a {
                    let c = c.as_str().unwrap_or_default();
                    if !VALID_NS_CAPS.contains(&c) {
                        return Err(PolicyError::InvalidCapability {
                            namespace: name.into(),
                            capability: c.into(),
                        });
                    }
                    out.push(c.to_string());
                }
                caps = Some(out);
            }
            other => {
                return Err(PolicyError::UnsupportedNamespaceKey {
                    namespace: name.into(),
                    key: other.into(),
                });
            }
        }
    }
    if !policy.is_empty() && !valid_policy(&policy) {
        return Err(PolicyError::InvalidNamespacePolicy { policy });
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
                "host-volume-register" => extra.extend(["host-volume-create", "host-volume-read"]),
                "host-volume-create" => extra.push("host-volume-read"),
                _ => {}
            }
        }
        c.extend(extra.into_iter().map(str::to_string));
    }
    Ok(NamespaceRule {
        name: name.to_string(),
        policy,
        capabilities: caps,
    })
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
