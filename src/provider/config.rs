//! From a pool's `spec.provider` (and the Secret keys it names) to what a
//! provider is built from: a pure step, apart from the factory that connects.
//!
//! Everything cloud-specific about a pool's spec lives here, so the
//! controller resolves Secrets and asks this room what they mean, without
//! knowing which clouds exist.

use crate::api::ProviderSpec;

use super::aws::{AwsAsgConfig, AwsCredentials, BatchTerminations};
use super::gce::{GceCredentials, GceLocation, GceMigConfig, SERVICE_ACCOUNT_KEY};

/// Which cloud group a pool drives, and with which credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProviderConfig {
    AwsAutoScalingGroup(AwsAsgConfig),
    GceManagedInstanceGroup(GceMigConfig),
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
const GCE_CREDENTIALS_FIELD: &str = "provider.gceManagedInstanceGroup.credentialsSecretRef";

/// The credentials Secret `spec` names, if any.
pub fn credentials_reference(spec: &ProviderSpec) -> Option<CredentialsReference> {
    if let Some(mig) = &spec.gce_managed_instance_group {
        let r = mig.credentials_secret_ref.as_ref()?;
        return Some(CredentialsReference {
            field: GCE_CREDENTIALS_FIELD,
            secret: r.name.clone(),
            label: "gcp-credentials",
        });
    }
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
        if let Some(mig) = &spec.gce_managed_instance_group {
            return build_gce(mig, read).map(Some);
        }
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
            batch: asg.batch_terminations.then(|| BatchTerminations {
                own_hook: asg.lifecycle_hook.as_ref().map(|h| h.name.clone()),
            }),
        })))
    }

    /// Whether the provider would act with the operator's own identity (no
    /// credentials Secret named).
    pub fn uses_ambient_identity(&self) -> bool {
        match self {
            ProviderConfig::AwsAutoScalingGroup(c) => c.credentials == AwsCredentials::DefaultChain,
            ProviderConfig::GceManagedInstanceGroup(c) => {
                c.credentials == GceCredentials::ApplicationDefault
            }
        }
    }

    /// The cloud's name and the spec field that would name credentials, for
    /// the message that refuses the operator's identity.
    pub fn credentials_field(&self) -> (&'static str, &'static str) {
        match self {
            ProviderConfig::AwsAutoScalingGroup(_) => ("AWS", AWS_CREDENTIALS_FIELD),
            ProviderConfig::GceManagedInstanceGroup(_) => ("Google Cloud", GCE_CREDENTIALS_FIELD),
        }
    }

    /// The group's name as the spec gives it (for messages before a provider exists).
    pub fn group_name(&self) -> &str {
        match self {
            ProviderConfig::AwsAutoScalingGroup(c) => &c.group_name,
            ProviderConfig::GceManagedInstanceGroup(c) => &c.name,
        }
    }
}

/// The GCE arm of [`ProviderConfig::build`]. The CRD's CEL rule guarantees
/// exactly one of zone and region; a spec that slipped past it (an older
/// CRD) is read as zonal when both are set, and as a region of "" (refused
/// when the provider is built) when neither is.
fn build_gce(
    mig: &crate::api::GceManagedInstanceGroup,
    read: &dyn Fn(&str, &str) -> Option<Vec<u8>>,
) -> Result<ProviderConfig, MissingKey> {
    let credentials = match &mig.credentials_secret_ref {
        Some(r) => GceCredentials::ServiceAccountKey(
            read(&r.name, SERVICE_ACCOUNT_KEY)
                .map(utf8)
                .ok_or_else(|| MissingKey {
                    secret: r.name.clone(),
                    key: SERVICE_ACCOUNT_KEY,
                })?,
        ),
        None => GceCredentials::ApplicationDefault,
    };
    let location = match (&mig.zone, &mig.region) {
        (Some(zone), _) => GceLocation::Zone(zone.clone()),
        (None, region) => GceLocation::Region(region.clone().unwrap_or_default()),
    };
    Ok(ProviderConfig::GceManagedInstanceGroup(GceMigConfig {
        project: mig.project.clone(),
        location,
        name: mig.name.clone(),
        endpoint: mig.endpoint.clone(),
        credentials,
    }))
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
            batch_terminations: false,
        }),
        gce_managed_instance_group: None,
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
        let ProviderConfig::AwsAutoScalingGroup(c) = &built else {
            panic!("an AWS spec builds an AWS config: {built:?}");
        };
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

    #[test]
    fn batch_terminations_carry_the_pools_own_hook() {
        let batch_of = |spec: &ProviderSpec| match ProviderConfig::build(spec, &|_, _| None) {
            Ok(Some(ProviderConfig::AwsAutoScalingGroup(c))) => c.batch,
            other => panic!("an AWS spec without a Secret builds: {other:?}"),
        };
        let mut spec = spec(None);
        assert_eq!(batch_of(&spec), None);
        let asg = spec.aws_auto_scaling_group.as_mut().unwrap();
        asg.batch_terminations = true;
        assert_eq!(batch_of(&spec), Some(BatchTerminations { own_hook: None }));
        let asg = spec.aws_auto_scaling_group.as_mut().unwrap();
        asg.lifecycle_hook = Some(crate::api::LifecycleHookSpec {
            name: "drain".into(),
            ..Default::default()
        });
        let own_hook = Some("drain".to_string());
        assert_eq!(batch_of(&spec), Some(BatchTerminations { own_hook }));
    }
}

#[cfg(test)]
mod gce_tests {
    use super::*;
    use crate::api::{GceManagedInstanceGroup, SecretRef};

    fn spec(zone: bool, credentials: Option<&str>) -> ProviderSpec {
        ProviderSpec {
            aws_auto_scaling_group: None,
            gce_managed_instance_group: Some(GceManagedInstanceGroup {
                project: "ci-prod-123456".into(),
                zone: zone.then(|| "us-central1-a".into()),
                region: (!zone).then(|| "us-central1".into()),
                name: "ci-clients".into(),
                endpoint: None,
                credentials_secret_ref: credentials.map(|name| SecretRef { name: name.into() }),
            }),
        }
    }

    #[test]
    fn gce_credentials_come_from_key_json_or_application_default() {
        assert_eq!(
            credentials_reference(&spec(true, Some("gcp"))),
            Some(CredentialsReference {
                field: "provider.gceManagedInstanceGroup.credentialsSecretRef",
                secret: "gcp".into(),
                label: "gcp-credentials",
            })
        );
        assert_eq!(credentials_reference(&spec(true, None)), None);
        let read = |secret: &str, key: &str| {
            assert_eq!((secret, key), ("gcp", "key.json"));
            Some(b"{\"type\": \"service_account\"}\n".to_vec())
        };
        let built = ProviderConfig::build(&spec(false, Some("gcp")), &read)
            .unwrap()
            .unwrap();
        let ProviderConfig::GceManagedInstanceGroup(c) = &built else {
            panic!("a GCE spec builds a GCE config: {built:?}");
        };
        assert_eq!(c.location, GceLocation::Region("us-central1".into()));
        assert_eq!(
            c.credentials,
            GceCredentials::ServiceAccountKey("{\"type\": \"service_account\"}".into())
        );
        assert!(!built.uses_ambient_identity());
        assert_eq!(built.group_name(), "ci-clients");
        let missing = ProviderConfig::build(&spec(true, Some("gcp")), &|_, _| None).unwrap_err();
        assert_eq!(missing.key, "key.json");
        let ambient = ProviderConfig::build(&spec(true, None), &read)
            .unwrap()
            .unwrap();
        assert!(ambient.uses_ambient_identity());
        let ProviderConfig::GceManagedInstanceGroup(c) = &ambient else {
            panic!("a GCE spec builds a GCE config: {ambient:?}");
        };
        assert_eq!(c.location, GceLocation::Zone("us-central1-a".into()));
    }
}
