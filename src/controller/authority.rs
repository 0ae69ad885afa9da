//! Who may act on what: which pools may use the operator's own cloud
//! identity, and which pool may drive a group.
//!
//! Both close the same hole. A pool is written by whoever may create pools in
//! its namespace; the operator acts with its own privileges on what the pool
//! names. Without these checks a pool in one namespace, naming another team's
//! group and pointing at a Nomad it controls, had the operator terminate that
//! team's busy VMs (a confused deputy). The operator's ambient identity is
//! therefore lent only to namespaces its configuration lists, and a group is
//! driven only by the pool its own tag names (see [`ownership`]).

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use kube::ResourceExt;

use crate::api::NomadClientPool;
use crate::provider::{GroupState, OwnershipRefusal, ProviderConfig, ownership};

/// The `run` flag and environment variable that list the namespaces.
pub const AMBIENT_FLAG: &str = "--ambient-credentials-namespaces";
pub const AMBIENT_ENV: &str = "NPO_AMBIENT_CREDENTIALS_NAMESPACES";

/// The namespaces whose pools may use the operator's own cloud identity (the
/// cloud SDK's default chain: workload identity, environment, instance
/// metadata) instead of naming
/// a credentials Secret. Nobody by default, as Cluster API lends its
/// controller identity to no namespace until `allowedNamespaces` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AmbientCredentials {
    #[default]
    Nobody,
    Everyone,
    Namespaces(BTreeSet<String>),
}

impl AmbientCredentials {
    /// From the flag's comma-separated items: `*` is every namespace; empty
    /// items are ignored, so an empty value means nobody.
    pub fn from_list<S: AsRef<str>>(items: &[S]) -> Self {
        let names: BTreeSet<String> = items
            .iter()
            .map(|s| s.as_ref().trim())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        if names.contains("*") {
            AmbientCredentials::Everyone
        } else if names.is_empty() {
            AmbientCredentials::Nobody
        } else {
            AmbientCredentials::Namespaces(names)
        }
    }

    pub fn allows(&self, namespace: &str) -> bool {
        match self {
            AmbientCredentials::Nobody => false,
            AmbientCredentials::Everyone => true,
            AmbientCredentials::Namespaces(names) => names.contains(namespace),
        }
    }

    /// Refuse a pool in `namespace` whose cloud provider would fall back to
    /// the operator's own identity when that namespace is not allowed it.
    pub fn check(&self, namespace: &str, provider: Option<&ProviderConfig>) -> Result<(), Refusal> {
        let Some(provider) = provider.filter(|p| p.uses_ambient_identity()) else {
            return Ok(());
        };
        if self.allows(namespace) {
            return Ok(());
        }
        let (cloud, field) = provider.credentials_field();
        Err(Refusal::AmbientCredentialsNotAllowed {
            namespace: namespace.to_owned(),
            allowed: self.to_string(),
            cloud,
            field,
        })
    }
}

impl fmt::Display for AmbientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmbientCredentials::Nobody => f.write_str("none"),
            AmbientCredentials::Everyone => f.write_str("*"),
            AmbientCredentials::Namespaces(names) => {
                f.write_str(&names.iter().cloned().collect::<Vec<_>>().join(","))
            }
        }
    }
}

/// Why a pool may not act; becomes its Degraded condition and an Event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the pool names no {field}, and the operator's own {cloud} identity is not lent to namespace {namespace} (allowed: {allowed}); set credentialsSecretRef, or have the operator's administrator add {namespace} to {AMBIENT_FLAG} (env {AMBIENT_ENV})"
    )]
    AmbientCredentialsNotAllowed {
        namespace: String,
        allowed: String,
        cloud: &'static str,
        field: &'static str,
    },
    #[error("{0}")]
    Ownership(OwnershipRefusal),
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::AmbientCredentialsNotAllowed { .. } => "AmbientCredentialsNotAllowed",
            Refusal::Ownership(o) => o.reason(),
        }
    }

    /// When to look again. A tag may be set any moment by the group's owner;
    /// the operator's configuration changes only with a restart, and an edit
    /// of the pool wakes it anyway.
    pub fn retry(&self) -> Duration {
        match self {
            Refusal::AmbientCredentialsNotAllowed { .. } => Duration::from_secs(120),
            Refusal::Ownership(_) => Duration::from_secs(30),
        }
    }
}

/// Whether `pool` may act on `group` (described as `group_name` in
/// messages): the group's ownership tag must name it.
pub fn group_owned(
    pool: &NomadClientPool,
    group_name: &str,
    group: &GroupState,
) -> Result<(), Refusal> {
    let key = format!(
        "{}/{}",
        pool.namespace().unwrap_or_default(),
        pool.name_any()
    );
    ownership::check(group_name, group.owner_tag.as_deref(), &key).map_err(Refusal::Ownership)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider acting with the operator's identity, or with a Secret's.
    fn provider(ambient: bool) -> ProviderConfig {
        let spec = crate::provider::config::sample_spec((!ambient).then_some("creds"));
        let read = |_: &str, _: &str| Some(b"AKIAEXAMPLE".to_vec());
        ProviderConfig::build(&spec, &read).unwrap().unwrap()
    }

    #[test]
    fn nobody_may_use_the_ambient_identity_by_default() {
        let policy = AmbientCredentials::default();
        let refusal = policy.check("team-a", Some(&provider(true))).unwrap_err();
        assert_eq!(refusal.reason(), "AmbientCredentialsNotAllowed");
        let text = refusal.to_string();
        for needle in [
            "credentialsSecretRef",
            "team-a",
            AMBIENT_FLAG,
            AMBIENT_ENV,
            "allowed: none",
        ] {
            assert!(text.contains(needle), "{needle} missing: {text}");
        }
        assert_eq!(AmbientCredentials::from_list::<&str>(&[]), policy);
        assert_eq!(AmbientCredentials::from_list(&["", " "]), policy);
    }

    #[test]
    fn a_credentials_secret_needs_no_permission() {
        let secret = provider(false);
        assert_eq!(
            AmbientCredentials::Nobody.check("team-a", Some(&secret)),
            Ok(())
        );
        assert_eq!(AmbientCredentials::Nobody.check("team-a", None), Ok(()));
    }

    #[test]
    fn listed_namespaces_and_the_wildcard() {
        let ambient = provider(true);
        let listed = AmbientCredentials::from_list(&["ci", " platform "]);
        assert!(listed.check("ci", Some(&ambient)).is_ok());
        assert!(listed.check("platform", Some(&ambient)).is_ok());
        let refused = listed.check("team-a", Some(&ambient)).unwrap_err();
        assert!(refused.to_string().contains("(allowed: ci,platform)"));
        // A prefix or a different case is another namespace.
        assert!(!listed.allows("ci-2") && !listed.allows("CI"));
        let all = AmbientCredentials::from_list(&["ci", "*"]);
        assert_eq!(all, AmbientCredentials::Everyone);
        assert!(all.check("anything", Some(&ambient)).is_ok());
    }
}
