//! Google credentials for the Compute clients: Application Default
//! Credentials by default (Workload Identity Federation for GKE reaches the
//! SDK through the metadata server, §4.7), or a service-account key from a
//! Kubernetes Secret. The key never appears in Debug output or messages.

use std::fmt;

use google_cloud_auth::credentials::{Credentials, anonymous, service_account};

use super::GceError;

/// The Secret key that holds a service-account key file.
pub const SERVICE_ACCOUNT_KEY: &str = "key.json";

#[derive(Clone, PartialEq, Eq, Default)]
pub enum GceCredentials {
    /// ADC: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud's file, then the
    /// metadata server (Workload Identity on GKE).
    #[default]
    ApplicationDefault,
    /// A service-account key file's JSON, read from a Kubernetes Secret.
    ServiceAccountKey(String),
    /// No credentials at all, for emulators. The pool spec cannot select
    /// this; only code that builds a config directly (tests) can.
    Anonymous,
}

impl fmt::Debug for GceCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GceCredentials::ApplicationDefault => f.write_str("ApplicationDefault"),
            GceCredentials::Anonymous => f.write_str("Anonymous"),
            // The account's e-mail identifies the key without granting anything.
            GceCredentials::ServiceAccountKey(json) => f
                .debug_struct("ServiceAccountKey")
                .field("client_email", &key_field(json, "client_email"))
                .field("private_key", &"** redacted **")
                .finish(),
        }
    }
}

fn key_field(json: &str, field: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get(field)?.as_str().map(str::to_owned)
}

impl GceCredentials {
    /// `None`: let the client builder use ADC (its default).
    pub(super) fn build(&self) -> Result<Option<Credentials>, GceError> {
        match self {
            GceCredentials::ApplicationDefault => Ok(None),
            GceCredentials::Anonymous => Ok(Some(anonymous::Builder::new().build())),
            GceCredentials::ServiceAccountKey(json) => {
                let value: serde_json::Value =
                    serde_json::from_str(json).map_err(|e| GceError::Config {
                        // serde's message names a line and column, never the content.
                        message: format!(
                            "the service-account key in {SERVICE_ACCOUNT_KEY} is not JSON: {e}"
                        ),
                    })?;
                service_account::Builder::new(value)
                    .build()
                    .map(Some)
                    .map_err(|e| GceError::Config {
                        message: format!(
                            "the service-account key in {SERVICE_ACCOUNT_KEY} is unusable: {}",
                            super::super::scrub_message(
                                &e.to_string(),
                                &self
                                    .secrets()
                                    .iter()
                                    .map(String::as_str)
                                    .collect::<Vec<_>>()
                            )
                        ),
                    })
            }
        }
    }

    /// Values to scrub from messages: the key's private parts.
    pub(super) fn secrets(&self) -> Vec<String> {
        match self {
            GceCredentials::ServiceAccountKey(json) => ["private_key", "private_key_id"]
                .iter()
                .filter_map(|f| key_field(json, f))
                .chain(std::iter::once(json.clone()))
                .collect(),
            _ => Vec::new(),
        }
    }
}
