//! From a pool's `spec.provider` (and the Secret keys it names) to what a
//! provider is built from: a pure step, apart from the factory that connects.
//!
//! Everything cloud-specific about a pool's spec lives here, so the
//! controller resolves Secrets and asks this room what they mean, without
//! knowing which clouds exist.

use crate::api::ProviderSpec;

use super::aws::{AwsAsgConfig, AwsCredentials};

/// Which cloud group a pool drives, and with which credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderConfig {
    AwsAutoScalingGroup(AwsAsgConfig),
}

/// The Secret a provider's credentials come from, as the spec names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsReference {
    /// Where in the spec, as a user writes it (for messages).
    pub field: &'static str,
    pub secret: String,
    /// The value of the Secret's type label that allows this use.
    pub label: &'static str,
}

/// A Secret key the provider needs is missing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("Secret {secret} has no key {key}")]
pub struct MissingKey {
    pub secret: String,
    pub key: &'static str,
}

const AWS_CREDENTIALS_FIELD: &str = "provider.awsAutoScalingGroup.credentialsSecretRef";

/// The credentials Secret `spec` names, if any.
pub fn credentials_reference(spec: &ProviderSpec) -> Option<CredentialsReference> {
    let asg = spec.aws_auto_scaling_group.as_ref()?;
    let r = asg.credentials_secret_ref.as_ref()?;
    Some(CredentialsReference {
        field: AWS_CREDENTIALS_FIELD,
        secret: r.name.clone(),
        label: "aws-credentials",
    })
}

impl ProviderConfig {
    /// Build from the spec; `read(secret, key)` gives a key of a Secret the
    /// spec names (already fetched and checked by the caller). `None` when
    /// the spec names no provider.
    pub fn build(
        spec: &ProviderSpec,
        read: &dyn Fn(&str, &str) -> Option<Vec<u8>>,
    ) -> Result<Option<Self>, MissingKey> {
        let Some(asg) = &spec.aws_auto_scaling_group else {
            return Ok(None);
        };
        let credentials = match &asg.credentials_secret_ref {
            Some(r) => {
                let key = |key: &'static str| {
                    read(&r.name, key).map(utf8).ok_or_else(|| MissingKey {
                        secret: r.name.clone(),
                        key,
                    })
                };
                AwsCredentials::Static {
                    access_key_id: key("AWS_ACCESS_KEY_ID")?,
                    secret_access_key: key("AWS_SECRET_ACCESS_KEY")?,
                    session_token: key("AWS_SESSION_TOKEN").ok(),
                }
            }
            None => AwsCredentials::DefaultChain,
        };
        Ok(Some(ProviderConfig::AwsAutoScalingGroup(AwsAsgConfig {
            group_name: asg.name.clone(),
            region: asg.region.clone(),
            endpoint: asg.endpoint.clone(),
            credentials,
        })))
    }

    /// Whether the provider would act with the operator's own identity (no
    /// credentials Secret named).
    pub fn uses_ambient_identity(&self) -> bool {
        match self {
            ProviderConfig::AwsAutoScalingGroup(c) => c.credentials == AwsCredentials::DefaultChain,
        }
    }

    /// The cloud's name and the spec field that would name credentials, for
    /// the message that refuses the operator's identity.
    pub fn credentials_field(&self) -> (&'static str, &'static str) {
        match self {
            ProviderConfig::AwsAutoScalingGroup(_) => ("AWS", AWS_CREDENTIALS_FIELD),
        }
    }

    /// The group's name as the spec gives it (for messages before a provider exists).
    pub fn group_name(&self) -> &str {
        match self {
            ProviderConfig::AwsAutoScalingGroup(c) => &c.group_name,
        }
    }
}

/// A Secret value as text: lossy UTF-8, surrounding whitespace (a
/// trailing newline from `kubectl create secret --from-file`) trimmed.
pub fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim().to_string()
}

/// A `spec.provider` naming a group, with a credentials Secret if given
/// (for tests elsewhere that need a provider spec without naming a cloud).
#[cfg(test)]
pub fn sample_spec(credentials: Option<&str>) -> ProviderSpec {
    use crate::api::{AwsAutoScalingGroup, SecretRef};
    ProviderSpec {
        aws_auto_scaling_group: Some(AwsAutoScalingGroup {
            name: "ci".into(),
            region: "us-east-1".into(),
            endpoint: None,
            credentials_secret_ref: credentials.map(|name| SecretRef { name: name.into() }),
            lifecycle_hook: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(credentials: Option<&str>) -> ProviderSpec {
        sample_spec(credentials)
    }

    #[test]
    fn the_credentials_secret_is_named_with_its_field_and_label() {
        assert_eq!(
            credentials_reference(&spec(Some("aws"))),
            Some(CredentialsReference {
                field: "provider.awsAutoScalingGroup.credentialsSecretRef",
                secret: "aws".into(),
                label: "aws-credentials",
            })
        );
        assert_eq!(credentials_reference(&spec(None)), None);
    }

    #[test]
    fn keys_are_read_trimmed_and_the_session_token_is_optional() {
        let read = |secret: &str, key: &str| {
            assert_eq!(secret, "aws");
            match key {
                "AWS_ACCESS_KEY_ID" => Some(b"AKIAEXAMPLE\n".to_vec()),
                "AWS_SECRET_ACCESS_KEY" => Some(b"s3cret".to_vec()),
                _ => None,
            }
        };
        let built = ProviderConfig::build(&spec(Some("aws")), &read)
            .unwrap()
            .unwrap();
        let ProviderConfig::AwsAutoScalingGroup(c) = &built;
        assert_eq!(
            c.credentials,
            AwsCredentials::Static {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "s3cret".into(),
                session_token: None,
            }
        );
        assert!(!built.uses_ambient_identity());
        let missing = ProviderConfig::build(&spec(Some("aws")), &|_, _| None).unwrap_err();
        assert_eq!(missing.key, "AWS_ACCESS_KEY_ID");
        let ambient = ProviderConfig::build(&spec(None), &read).unwrap().unwrap();
        assert!(ambient.uses_ambient_identity());
        assert_eq!(
            ProviderConfig::build(&ProviderSpec::default(), &read),
            Ok(None)
        );
    }
}
