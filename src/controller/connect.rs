//! Turning a pool's spec and its Secrets into a Nomad client configuration and
//! a cloud provider. Secret values go straight into the clients; they are never
//! formatted into errors, events or logs.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client};

use super::secret_use::{self, NotLabelled};
use crate::api::{NomadClientPoolSpec, SecretKeyRef};
use crate::nomad::{NomadConfig, NomadTlsConfig, SecretToken};
use crate::provider::config::utf8;
use crate::provider::{MissingKey, ProviderConfig};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("Secret {namespace}/{name} not found")]
    SecretNotFound { namespace: String, name: String },
    #[error("Secret {namespace}/{name} has no key {key:?}")]
    SecretKeyMissing {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("reading Secret {namespace}/{name} failed: {source}")]
    SecretRead {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{}", .refused.describe(.namespace))]
    SecretNotLabelled {
        namespace: String,
        refused: NotLabelled,
    },
}

impl ConnectError {
    fn key_missing(namespace: &str, missing: MissingKey) -> Self {
        ConnectError::SecretKeyMissing {
            namespace: namespace.into(),
            name: missing.secret,
            key: missing.key.into(),
        }
    }
}

impl ConnectError {
    /// The condition reason (and Event reason) for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            ConnectError::SecretNotLabelled { .. } => "SecretNotLabelled",
            _ => "InvalidSpec",
        }
    }

    /// The condition message: what failed and what to do about it.
    pub fn message(&self) -> String {
        match self {
            ConnectError::SecretNotLabelled { .. } => self.to_string(),
            _ => format!("{self}; create it or fix the reference in the pool's spec"),
        }
    }

    /// Whether the pool must stop using what it built from its Secrets
    /// before: a Secret's owner withdrew the label (or the spec now names a
    /// Secret not meant for it), so nothing may be sent with it any more.
    pub fn revokes_consent(&self) -> bool {
        matches!(self, ConnectError::SecretNotLabelled { .. })
    }
}

/// Everything needed to connect, plus a fingerprint that changes whenever
/// any input (spec or Secret content) changes, so cached clients are rebuilt.
pub struct Connection {
    pub nomad: NomadConfig,
    /// `None` when the spec names no provider.
    pub provider: Option<ProviderConfig>,
    pub fingerprint: u64,
}

struct Secrets<'a> {
    api: Api<Secret>,
    namespace: &'a str,
    cache: BTreeMap<String, BTreeMap<String, ByteString>>,
    labels: BTreeMap<String, BTreeMap<String, String>>,
    hasher: DefaultHasher,
}

impl Secrets<'_> {
    /// Read every Secret the spec names and refuse the lot unless each is
    /// labelled for the use its reference makes of it. Runs before any key
    /// is read, so a refused pool builds no client and sends nothing.
    async fn check_labels(&mut self, spec: &NomadClientPoolSpec) -> Result<(), ConnectError> {
        for reference in secret_use::references(spec) {
            self.load(&reference.name).await?;
            secret_use::check(&reference, &self.labels[&reference.name]).map_err(|refused| {
                ConnectError::SecretNotLabelled {
                    namespace: self.namespace.into(),
                    refused,
                }
            })?;
        }
        Ok(())
    }

    async fn key(&mut self, name: &str, key: &str) -> Result<Vec<u8>, ConnectError> {
        self.load(name).await?;
        self.cache[name]
            .get(key)
            .map(|v| v.0.clone())
            .ok_or_else(|| ConnectError::SecretKeyMissing {
                namespace: self.namespace.into(),
                name: name.into(),
                key: key.into(),
            })
    }

    async fn load(&mut self, name: &str) -> Result<(), ConnectError> {
        if !self.cache.contains_key(name) {
            let secret =
                self.api
                    .get_opt(name)
                    .await
                    .map_err(|source| ConnectError::SecretRead {
                        namespace: self.namespace.into(),
                        name: name.into(),
                        source,
                    })?;
            let secret = secret.ok_or_else(|| ConnectError::SecretNotFound {
                namespace: self.namespace.into(),
                name: name.into(),
            })?;
            // Hash the resourceVersion, not the content: a rotated Secret
            // rebuilds the clients without secret bytes entering any hash.
            secret.metadata.resource_version.hash(&mut self.hasher);
            self.labels
                .insert(name.into(), secret.metadata.labels.unwrap_or_default());
            self.cache
                .insert(name.into(), secret.data.unwrap_or_default());
        }
        Ok(())
    }

    async fn key_ref(
        &mut self,
        r: &SecretKeyRef,
        default_key: &str,
    ) -> Result<Vec<u8>, ConnectError> {
        self.key(&r.name, r.key.as_deref().unwrap_or(default_key))
            .await
    }
}

pub async fn resolve(
    client: &Client,
    namespace: &str,
    spec: &NomadClientPoolSpec,
) -> Result<Connection, ConnectError> {
    let mut secrets = Secrets {
        api: Api::namespaced(client.clone(), namespace),
        namespace,
        cache: BTreeMap::new(),
        labels: BTreeMap::new(),
        hasher: DefaultHasher::new(),
    };
    secrets.check_labels(spec).await?;
    let token = match &spec.nomad.token_secret_ref {
        Some(r) => Some(SecretToken::new(utf8(secrets.key_ref(r, "token").await?))),
        None => None,
    };
    let mut tls = NomadTlsConfig::default();
    if let Some(t) = &spec.nomad.tls {
        if let Some(r) = &t.ca_secret_ref {
            tls.ca_pem = Some(secrets.key_ref(r, "ca.crt").await?);
        }
        if let Some(r) = &t.client_cert_secret_ref {
            tls.client_cert_pem = Some(secrets.key(&r.name, "tls.crt").await?);
            tls.client_key_pem = Some(secrets.key(&r.name, "tls.key").await?);
        }
        tls.server_name = t.server_name.clone();
        tls.insecure_skip_verify = t.insecure_skip_verify;
    }
    let nomad = NomadConfig {
        address: spec.nomad.address.trim_end_matches('/').to_string(),
        region: spec.nomad.region.clone(),
        token,
        tls,
    };
    // Every Secret the spec names was read by check_labels: the provider's
    // keys are looked up in that copy.
    let cache = &secrets.cache;
    let read = |name: &str, key: &str| cache.get(name)?.get(key).map(|v| v.0.clone());
    let provider = ProviderConfig::build(&spec.provider, &read)
        .map_err(|missing| ConnectError::key_missing(namespace, missing))?;
    let mut hasher = secrets.hasher;
    serde_json::to_string(&spec.nomad)
        .unwrap_or_default()
        .hash(&mut hasher);
    serde_json::to_string(&spec.provider)
        .unwrap_or_default()
        .hash(&mut hasher);
    serde_json::to_string(&spec.selector)
        .unwrap_or_default()
        .hash(&mut hasher);
    Ok(Connection {
        nomad,
        provider,
        fingerprint: hasher.finish(),
    })
}
