//! Whether the pool's token can see every allocation.
//!
//! Nomad silently leaves out allocations in namespaces where the token lacks
//! `read-job`, on `/v1/node/:id/allocations` and on `/v1/allocations`. A
//! pool whose token reads only some namespaces would count zero live
//! allocations on a client running another team's jobs and terminate it. So
//! before any termination the pool proves, from the token's own policies,
//! that it reads jobs in every namespace. Every call used here is one a token
//! may always make about itself: `GET /v1/acl/token/self`, the roles linked
//! to it and the policies attached to it (`nomad/acl_endpoint.go`).
//!
//! How Nomad resolves a namespace (`acl/acl.go`): the namespace rules of all
//! of a token's policies are merged per name (capabilities are united, and
//! `deny` anywhere wins), then a namespace is looked up by exact name, else
//! the closest matching glob. Every namespace therefore resolves to *some*
//! rule with `read-job` exactly when a `*` rule exists and every merged rule
//! grants `read-job` without `deny`; that is what [`prove`] checks. It never
//! needs to know which namespaces exist.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use super::client::NodeScope;
use super::{NomadClient, NomadError, QueryOptions};

/// `GET /v1/acl/token/self`, only the fields used here: the secret it also
/// returns is never kept.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclTokenSelf {
    /// `acls-disabled` for the built-in token Nomad answers with when ACLs
    /// are off (a client token without policies).
    #[serde(rename = "AccessorID", default)]
    pub accessor_id: String,
    /// `client` or `management`.
    #[serde(rename = "Type", default)]
    pub token_type: String,
    #[serde(default)]
    pub policies: Option<Vec<String>>,
    #[serde(default)]
    pub roles: Option<Vec<AclRoleLink>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclRoleLink {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// `GET /v1/acl/role/:id`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclRole {
    #[serde(default)]
    pub policies: Option<Vec<AclPolicyLink>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicyLink {
    pub name: String,
}

/// `GET /v1/acl/policy/:name`. `RulesJSON` is Nomad's own parse of the
/// rules (HCL or JSON), so no HCL parser is needed here.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AclPolicy {
    pub name: String,
    #[serde(rename = "RulesJSON", default)]
    pub rules_json: Option<PolicyRules>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyRules {
    #[serde(default)]
    pub namespaces: Option<Vec<NamespaceRule>>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NamespaceRule {
    pub name: String,
    #[serde(default)]
    pub policy: String,
    #[serde(default)]
    pub capabilities: Option<Vec<String>>,
}

const READ_JOB: &str = "read-job";
/// `structs.ACLsDisabledToken.AccessorID`.
const ACLS_DISABLED_ACCESSOR: &str = "acls-disabled";
const DENY: &str = "deny";

/// What the pool knows about the token's view of allocations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Visibility {
    /// ACLs are off: every request sees everything.
    AclsDisabled,
    Management,
    /// A client token whose rules grant `read-job` in every namespace.
    EveryNamespace,
    Unproven(VisibilityGap),
}

impl Visibility {
    pub fn proven(&self) -> bool {
        !matches!(self, Visibility::Unproven(_))
    }
}

/// Why the token cannot be shown to read jobs everywhere.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VisibilityGap {
    #[error("no policy of the Nomad token grants read-job in namespace \"*\"")]
    NoWildcardRule,
    #[error(
        "the Nomad token's rules for namespace(s) {} do not grant read-job, so allocations there are hidden from it",
        quoted(.0)
    )]
    NarrowerRules(Vec<String>),
    #[error("policy {0:?} of the Nomad token came back without its parsed rules (RulesJSON)")]
    RulesMissing(String),
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The policy to add, for messages: Nomad's read policy includes `read-job`.
pub const MINIMAL_NAMESPACE_RULE: &str = r#"namespace "*" { policy = "read" }"#;

/// Decide from a client token's policies (those attached directly and
/// through roles; a policy that no longer exists grants nothing and is left
/// out by the caller).
pub fn prove(policies: &[AclPolicy]) -> Visibility {
    // Merged capabilities per namespace rule name, as Nomad merges them.
    let mut merged: BTreeMap<&str, (bool, bool)> = BTreeMap::new(); // (read_job, deny)
    for p in policies {
        let Some(rules) = &p.rules_json else {
            return Visibility::Unproven(VisibilityGap::RulesMissing(p.name.clone()));
        };
        for ns in rules.namespaces.iter().flatten() {
            let caps = ns.capabilities.iter().flatten().map(String::as_str);
            // Nomad expands `policy` into capabilities before it stores
            // RulesJSON; expanding it again here costs nothing and does not
            // depend on that.
            let from_policy: &[&str] = match ns.policy.as_str() {
                "read" | "write" | "scale" => &[READ_JOB],
                "deny" => &[DENY],
                _ => &[],
            };
            let entry = merged.entry(ns.name.as_str()).or_default();
            for cap in caps.chain(from_policy.iter().copied()) {
                match cap {
                    READ_JOB => entry.0 = true,
                    DENY => entry.1 = true,
                    _ => {}
                }
            }
        }
    }
    let grants = |(read_job, deny): (bool, bool)| read_job && !deny;
    if !merged.get("*").copied().is_some_and(grants) {
        return Visibility::Unproven(VisibilityGap::NoWildcardRule);
    }
    let narrower: Vec<String> = merged
        .iter()
        .filter(|(_, caps)| !grants(**caps))
        .map(|(name, _)| (*name).to_string())
        .collect();
    if narrower.is_empty() {
        Visibility::EveryNamespace
    } else {
        Visibility::Unproven(VisibilityGap::NarrowerRules(narrower))
    }
}

impl NomadClient {
    /// Proves or disproves that the token reads jobs in every namespace:
    /// `GET /v1/acl/token/self`, then each linked role and each policy.
    /// With ACLs off, Nomad (`ACL.WhoAmI`) answers with its built-in
    /// `acls-disabled` token; versions that still used `ACL.ResolveToken`
    /// answered `400 ACL support disabled`. Either way every request then
    /// sees everything.
    pub async fn check_visibility(&self) -> Result<Visibility, NomadError> {
        let token: AclTokenSelf = match self.acl_get(&["acl", "token", "self"]).await {
            Ok(t) => t,
            Err(NomadError::Api {
                status: 400,
                message,
                ..
            }) if message.contains("ACL support disabled") => return Ok(Visibility::AclsDisabled),
            Err(e) => return Err(e),
        };
        if token.accessor_id == ACLS_DISABLED_ACCESSOR {
            return Ok(Visibility::AclsDisabled);
        }
        if token.token_type == "management" {
            return Ok(Visibility::Management);
        }
        let mut names: BTreeSet<String> = token.policies.unwrap_or_default().into_iter().collect();
        for role in token.roles.unwrap_or_default() {
            // A role deleted since the token was made grants nothing.
            if let Some(role) =
                missing_is_none(self.acl_get::<AclRole>(&["acl", "role", &role.id]).await)?
            {
                names.extend(
                    role.policies
                        .unwrap_or_default()
                        .into_iter()
                        .map(|p| p.name),
                );
            }
        }
        let mut policies = Vec::new();
        for name in &names {
            if let Some(p) = missing_is_none(self.acl_get(&["acl", "policy", name]).await)? {
                policies.push(p);
            }
        }
        Ok(prove(&policies))
    }

    async fn acl_get<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
    ) -> Result<T, NomadError> {
        Ok(self
            .query(
                path,
                Vec::new(),
                &QueryOptions::default(),
                NodeScope::None,
                super::client::SMALL_LIMIT,
            )
            .await?
            .value)
    }
}

/// Nomad's `404 ACL policy not found` / `ACL role not found`: a dangling
/// link, which grants nothing.
fn missing_is_none<T>(r: Result<T, NomadError>) -> Result<Option<T>, NomadError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(NomadError::Api { status: 404, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, rules: serde_json::Value) -> AclPolicy {
        serde_json::from_value(json!({"Name": name, "Rules": "", "RulesJSON": rules})).unwrap()
    }

    #[test]
    fn a_wildcard_read_rule_proves_every_namespace() {
        let p = policy(
            "ops",
            json!({"Namespaces": [{"Name": "*", "Policy": "read", "Capabilities": ["list-jobs", "read-job"]}],
                   "Node": {"Policy": "write"}}),
        );
        assert_eq!(prove(&[p]), Visibility::EveryNamespace);
    }

    #[test]
    fn one_namespace_only_is_not_enough() {
        let p = policy(
            "team-a",
            json!({"Namespaces": [{"Name": "team-a", "Policy": "read", "Capabilities": ["read-job"]}]}),
        );
        assert_eq!(
            prove(&[p]),
            Visibility::Unproven(VisibilityGap::NoWildcardRule)
        );
    }

    #[test]
    fn an_exact_rule_without_read_job_hides_that_namespace_despite_the_wildcard() {
        // Nomad looks a namespace up by exact name before any glob: this
        // token reads nothing in team-b.
        let p = policy(
            "mixed",
            json!({"Namespaces": [
                {"Name": "*", "Policy": "read", "Capabilities": ["read-job"]},
                {"Name": "team-b", "Policy": "", "Capabilities": ["list-jobs"]},
                {"Name": "team-*", "Policy": "write", "Capabilities": null}
            ]}),
        );
        assert_eq!(
            prove(&[p]),
            Visibility::Unproven(VisibilityGap::NarrowerRules(vec!["team-b".into()]))
        );
    }

    #[test]
    fn rules_merge_across_policies_and_deny_wins() {
        let wildcard = policy(
            "a",
            json!({"Namespaces": [{"Name": "*", "Capabilities": ["read-job"]}]}),
        );
        let grant_b = policy(
            "b",
            json!({"Namespaces": [{"Name": "team-b", "Capabilities": ["list-jobs"]}]}),
        );
        let read_b = policy(
            "c",
            json!({"Namespaces": [{"Name": "team-b", "Policy": "scale"}]}),
        );
        assert_eq!(
            prove(&[wildcard.clone(), grant_b.clone(), read_b.clone()]),
            Visibility::EveryNamespace,
            "the union of b and c grants read-job in team-b"
        );
        let deny = policy(
            "d",
            json!({"Namespaces": [{"Name": "*", "Policy": "deny", "Capabilities": ["deny"]}]}),
        );
        assert_eq!(
            prove(&[wildcard, deny]),
            Visibility::Unproven(VisibilityGap::NoWildcardRule)
        );
    }

    #[test]
    fn a_policy_without_parsed_rules_proves_nothing() {
        let p: AclPolicy = serde_json::from_value(json!({"Name": "old", "Rules": "x"})).unwrap();
        assert_eq!(
            prove(&[p]),
            Visibility::Unproven(VisibilityGap::RulesMissing("old".into()))
        );
    }

    #[test]
    fn the_token_self_reply_keeps_no_secret() {
        let t: AclTokenSelf = serde_json::from_value(json!({
            "AccessorID": "a", "SecretID": "s3cr3t", "Name": "op", "Type": "client",
            "Policies": ["ops"], "Roles": [{"ID": "r1", "Name": "readers"}], "Global": false
        }))
        .unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert_eq!(t.roles.unwrap()[0].id, "r1");
    }
}
