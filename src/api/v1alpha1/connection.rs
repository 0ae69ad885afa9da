//! How the pool reaches Nomad: address, token and TLS, each secret by reference.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Connection to the Nomad HTTP API.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.tls) || self.address.startsWith('https://')").message("nomad.tls is set but nomad.address is not https://; use an https:// address or remove tls"))]
pub struct NomadConnection {
    /// Address of a Nomad agent, e.g. `https://nomad.service.consul:4646`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/]+/?$')").message("nomad.address must be a URL like https://nomad.example:4646 (scheme, host and port, no path)"))]
    pub address: String,

    /// Nomad region to address; the agent's own region when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// Secret (in the pool's namespace) holding the Nomad ACL token. The key
    /// defaults to `token`. The token needs `node:write` and namespace `read-job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,

    /// TLS settings for an https:// address. Verification is always on unless
    /// `insecureSkipVerify` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<NomadTls>,
}

/// A key in a Secret in the pool's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret; each reference documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A Secret in the pool's namespace, read with well-known keys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// TLS for the Nomad connection.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.insecureSkipVerify && has(self.caSecretRef))").message("nomad.tls.insecureSkipVerify turns verification off, so caSecretRef would be ignored; remove one of them"))]
pub struct NomadTls {
    /// CA bundle (PEM) that signed the Nomad servers' certificates; key
    /// defaults to `ca.crt`. When set, only this CA is trusted, as with
    /// Nomad's own `NOMAD_CACERT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,

    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`) presented as the
    /// client certificate, for Nomad agents with `verify_https_client`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_secret_ref: Option<SecretRef>,

    /// Name to verify the server certificate against, when it differs from
    /// the address's host (Nomad's default certificates name `server.<region>.nomad`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,

    /// Do not verify the server's certificate. Only for experiments.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}
