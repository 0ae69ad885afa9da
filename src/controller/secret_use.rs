//! Which Secrets a pool may use, and for what.
//!
//! Anyone who may create a pool names Secrets and a Nomad address (or a cloud
//! endpoint) of their choice, and the operator reads those Secrets with its
//! own rights. Without a check, a user who may not read a Secret could point
//! `nomad.tokenSecretRef` at it and an address they control, and receive its
//! value as `X-Nomad-Token`. So a Secret is used only if its owner labelled it
//! for that use (`nomadpool.dev/secret-type`), the way Argo CD only takes
//! Secrets labelled `argocd.argoproj.io/secret-type` as repository
//! credentials. One value per Secret: a Secret labelled for cloud credentials
//! is not sent to Nomad as a token either.

use std::collections::BTreeMap;
use std::fmt;

use crate::api::NomadClientPoolSpec;
use crate::provider;

/// The label a Secret must carry to be used by a pool.
pub const SECRET_TYPE_LABEL: &str = "nomadpool.dev/secret-type";

/// What a pool uses a Secret for; the label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretUse {
    /// `nomad.tokenSecretRef`: sent to Nomad as `X-Nomad-Token`.
    NomadToken,
    /// `nomad.tls.caSecretRef`, `nomad.tls.clientCertSecretRef`.
    Tls,
    /// The provider's credentials Secret (see
    /// `provider::credentials_reference`): signs the cloud's requests. The
    /// label value is the provider's.
    CloudCredentials { label: &'static str },
}

impl SecretUse {
    pub fn label_value(self) -> &'static str {
        match self {
            SecretUse::NomadToken => "nomad-token",
            SecretUse::Tls => "tls",
            SecretUse::CloudCredentials { label } => label,
        }
    }
}

impl fmt::Display for SecretUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label_value())
    }
}

/// One Secret reference in a pool's spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretReference {
    /// Where in the spec, as a user would write it (for messages).
    pub field: &'static str,
    pub name: String,
    pub used_as: SecretUse,
}

/// Every Secret the spec names, with the use each reference makes of it.
pub fn references(spec: &NomadClientPoolSpec) -> Vec<SecretReference> {
    let mut out = Vec::new();
    let mut push = |field, name: &str, used_as| {
        out.push(SecretReference {
            field,
            name: name.to_string(),
            used_as,
        })
    };
    if let Some(r) = &spec.nomad.token_secret_ref {
        push("nomad.tokenSecretRef", &r.name, SecretUse::NomadToken);
    }
    if let Some(tls) = &spec.nomad.tls {
        if let Some(r) = &tls.ca_secret_ref {
            push("nomad.tls.caSecretRef", &r.name, SecretUse::Tls);
        }
        if let Some(r) = &tls.client_cert_secret_ref {
            push("nomad.tls.clientCertSecretRef", &r.name, SecretUse::Tls);
        }
    }
    if let Some(r) = provider::credentials_reference(&spec.provider) {
        push(
            r.field,
            &r.secret,
            SecretUse::CloudCredentials { label: r.label },
        );
    }
    out
}

/// A Secret whose labels do not allow the use a reference makes of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotLabelled {
    pub field: &'static str,
    pub name: String,
    pub wanted: SecretUse,
    /// The label's value when it names another use; None when it is absent.
    pub found: Option<String>,
}

impl NotLabelled {
    /// What is wrong and how its owner allows the use, for the condition and
    /// the Event. Names and label values only: never anything from `data`.
    pub fn describe(&self, namespace: &str) -> String {
        let found = match &self.found {
            Some(v) => format!(" (it is labelled {SECRET_TYPE_LABEL}={v})"),
            None => String::new(),
        };
        format!(
            "Secret {namespace}/{name} (named by {field}) is not labelled \
             {SECRET_TYPE_LABEL}={wanted}{found}, so the operator does not use it: a Secret is \
             used only for what its owner labelled it for. If it is meant as this pool's {wanted}, \
             label it: kubectl label secret -n {namespace} {name} {SECRET_TYPE_LABEL}={wanted}",
            name = self.name,
            field = self.field,
            wanted = self.wanted,
        )
    }
}

/// Check one reference against the Secret's labels.
pub fn check(
    reference: &SecretReference,
    labels: &BTreeMap<String, String>,
) -> Result<(), NotLabelled> {
    let found = labels.get(SECRET_TYPE_LABEL);
    if found.map(String::as_str) == Some(reference.used_as.label_value()) {
        return Ok(());
    }
    Err(NotLabelled {
        field: reference.field,
        name: reference.name.clone(),
        wanted: reference.used_as,
        found: found.cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{NomadTls, SecretKeyRef, SecretRef};

    fn labels(v: Option<&str>) -> BTreeMap<String, String> {
        v.map(|v| (SECRET_TYPE_LABEL.to_string(), v.to_string()))
            .into_iter()
            .collect()
    }

    fn full_spec() -> NomadClientPoolSpec {
        let mut spec = NomadClientPoolSpec {
            nomad: Default::default(),
            selector: Default::default(),
            provider: Default::default(),
            replicas: None,
            retire: vec![],
            drain: Default::default(),
            disruption: Default::default(),
            max_node_age: None,
            replace_drifted: false,
            remediation: None,
            retirement_history_limit: None,
        };
        spec.nomad.token_secret_ref = Some(SecretKeyRef {
            name: "tok".into(),
            key: Some("password".into()),
        });
        spec.nomad.tls = Some(NomadTls {
            ca_secret_ref: Some(SecretKeyRef {
                name: "ca".into(),
                key: None,
            }),
            client_cert_secret_ref: Some(SecretRef {
                name: "client".into(),
            }),
            ..Default::default()
        });
        spec.provider = provider::config::sample_spec(Some("creds"));
        spec
    }

    #[test]
    fn every_secret_reference_of_the_spec_is_listed_with_its_use() {
        let spec = full_spec();
        let cloud = provider::credentials_reference(&spec.provider).unwrap();
        let refs = references(&spec);
        let refs: Vec<(&str, &str, SecretUse)> = refs
            .iter()
            .map(|r| (r.field, r.name.as_str(), r.used_as))
            .collect();
        assert_eq!(
            refs,
            [
                ("nomad.tokenSecretRef", "tok", SecretUse::NomadToken),
                ("nomad.tls.caSecretRef", "ca", SecretUse::Tls),
                ("nomad.tls.clientCertSecretRef", "client", SecretUse::Tls),
                (
                    cloud.field,
                    "creds",
                    SecretUse::CloudCredentials { label: cloud.label }
                ),
            ]
        );
    }

    #[test]
    fn only_the_label_for_the_same_use_allows_a_secret() {
        let token = &references(&full_spec())[0];
        assert_eq!(check(token, &labels(Some("nomad-token"))), Ok(()));
        let unlabelled = check(token, &labels(None)).unwrap_err();
        assert_eq!(unlabelled.found, None);
        assert_eq!(unlabelled.wanted, SecretUse::NomadToken);
        let cloud = &references(&full_spec())[3];
        let other_use = check(token, &labels(Some(cloud.used_as.label_value()))).unwrap_err();
        assert_eq!(
            other_use.found.as_deref(),
            Some(cloud.used_as.label_value())
        );
        // Values are compared exactly: no case folding, no lists.
        assert!(check(token, &labels(Some("Nomad-Token"))).is_err());
        assert!(check(token, &labels(Some("nomad-token,tls"))).is_err());
        let mut other_key = BTreeMap::new();
        other_key.insert("secret-type".to_string(), "nomad-token".to_string());
        assert!(check(token, &other_key).is_err());
    }
}
