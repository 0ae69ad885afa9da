//! What a client is built from (address, token, TLS, timeouts) and how the
//! HTTP client is built from it. The token never leaves `SecretToken`
//! except into its request header.

use super::*;

/// An ACL token. It is sent only in the `X-Nomad-Token` header and prints as
/// `<redacted>` so it cannot end up in logs or errors by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretToken(String);

impl SecretToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretToken {
    fn from(token: String) -> Self {
        Self(token)
    }
}

impl fmt::Debug for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for SecretToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// TLS settings with the semantics of Nomad's CLI (`NOMAD_CACERT`,
/// `NOMAD_CLIENT_CERT`, `NOMAD_CLIENT_KEY`, `NOMAD_TLS_SERVER_NAME`,
/// `NOMAD_SKIP_VERIFY`).
#[derive(Clone, Default)]
pub struct NomadTlsConfig {
    /// PEM bundle of CAs. When set, these are the **only** trusted roots, as
    /// with `NOMAD_CACERT`: a Nomad cluster CA is private, and also trusting
    /// the public web PKI would let any public certificate for the name pass.
    pub ca_pem: Option<Vec<u8>>,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    /// Name to verify the server certificate against (and send as SNI), e.g.
    /// `server.global.nomad` while `address` is an IP or load balancer.
    /// Implemented by connecting to the address's host while addressing the
    /// request to this name, so the `Host` header carries it too (Nomad does
    /// not look at `Host`). It does not combine with an HTTPS proxy, which
    /// would have to resolve the name itself.
    pub server_name: Option<String>,
    /// Accept any server certificate. Only for tests; never the default.
    pub insecure_skip_verify: bool,
}

impl fmt::Debug for NomadTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NomadTlsConfig")
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|_| "<pem>"),
            )
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("server_name", &self.server_name)
            .field("insecure_skip_verify", &self.insecure_skip_verify)
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct NomadConfig {
    /// `http://host:4646` or `https://host:4646`; a path prefix is kept for
    /// reverse proxies.
    pub address: String,
    /// Sent as `?region=` on every request when set.
    pub region: Option<String>,
    pub token: Option<SecretToken>,
    pub tls: NomadTlsConfig,
}

/// Client-side timeouts. A blocking query gets
/// `wait + wait/16 + blocking_margin` instead of `request`, because Nomad
/// holds it for up to `wait` plus a random jitter of up to `wait/16`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub request: Duration,
    pub blocking_margin: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
            blocking_margin: Duration::from_secs(15),
        }
    }
}

pub(super) fn parse_address(address: &str) -> Result<Url, NomadError> {
    let invalid = |reason: &str| NomadError::InvalidAddress(reason.to_owned());
    let url = Url::parse(address.trim()).map_err(|e| {
        NomadError::InvalidAddress(format!("{e}; expected e.g. http://127.0.0.1:4646"))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("missing host"));
    }
    // Credentials in the URL would reach logs through error messages; the
    // token has its own field.
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "credentials in the address are not supported; use the token",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("address must not have a query or fragment"));
    }
    Ok(url)
}

pub(super) fn configure_tls(
    mut builder: reqwest::ClientBuilder,
    tls: &NomadTlsConfig,
    base: &mut Url,
) -> Result<reqwest::ClientBuilder, NomadError> {
    let invalid = |what: &str, e: &dyn std::error::Error| {
        NomadError::InvalidTls(format!("{what}: {}", error_chain(e)))
    };
    if let Some(ca) = &tls.ca_pem {
        let certs = Certificate::from_pem_bundle(ca).map_err(|e| invalid("CA PEM", &e))?;
        if certs.is_empty() {
            return Err(NomadError::InvalidTls(
                "CA PEM contains no certificate".into(),
            ));
        }
        builder = builder.tls_certs_only(certs);
    }
    match (&tls.client_cert_pem, &tls.client_key_pem) {
        (Some(cert), Some(key)) => {
            let mut pem = cert.clone();
            pem.push(b'\n');
            pem.extend_from_slice(key);
            let identity =
                Identity::from_pem(&pem).map_err(|e| invalid("client certificate/key PEM", &e))?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(NomadError::InvalidTls(
                "client certificate and key must be given together".into(),
            ));
        }
    }
    if tls.insecure_skip_verify {
        tracing::warn!("Nomad TLS certificate verification is disabled (insecure_skip_verify)");
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    if let Some(name) = tls.server_name.as_deref().filter(|n| !n.is_empty()) {
        builder = override_server_name(builder, name, base)?;
    }
    Ok(builder)
}

/// reqwest verifies the certificate against, and sends SNI for, the URL's
/// host, and has no separate setting for either. So the request is addressed
/// to `server_name` and a resolver maps that name back to the configured
/// host. This keeps rustls' standard verification intact, which a custom
/// verifier would not, and needs no direct rustls dependency.
pub(super) fn override_server_name(
    builder: reqwest::ClientBuilder,
    server_name: &str,
    base: &mut Url,
) -> Result<reqwest::ClientBuilder, NomadError> {
    let host = base
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if base.scheme() != "https" || server_name.eq_ignore_ascii_case(&host) {
        return Ok(builder);
    }
    if server_name.parse::<IpAddr>().is_ok() {
        return Err(NomadError::InvalidTls(format!(
            "server_name {server_name:?} must be a DNS name when it differs from the address host"
        )));
    }
    base.set_host(Some(server_name))
        .map_err(|e| NomadError::InvalidTls(format!("server_name {server_name:?}: {e}")))?;
    let resolver = ServerNameResolver {
        server_name: base.host_str().unwrap_or(server_name).to_owned(),
        target: host,
    };
    Ok(builder.dns_resolver(resolver))
}

struct ServerNameResolver {
    server_name: String,
    target: String,
}

impl Resolve for ServerNameResolver {
    fn resolve(&self, name: Name) -> Resolving {
        // Other names (e.g. a proxy's) resolve normally.
        let host = if name.as_str().eq_ignore_ascii_case(&self.server_name) {
            self.target.clone()
        } else {
            name.as_str().to_owned()
        };
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}
