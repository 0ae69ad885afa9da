use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Certificate, Identity, Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::NomadError;
use super::types::{
    Allocation, AllocationListStub, DrainRequest, DrainSpec, Node, NodeListStub, NodeUpdateResponse,
};

/// Nomad waits this long when a blocking query sends `index` without `wait`
/// (`DefaultBlockingRPCQueryTime`); it is also the server-side cap.
pub const DEFAULT_BLOCKING_WAIT: Duration = Duration::from_secs(300);

/// Largest error body kept in an error message; proxies can return pages.
const MAX_ERROR_BODY: usize = 512;

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

/// Read options. `index: 0` is a plain read; a non-zero index blocks until
/// Nomad's index for the result exceeds it or `wait` passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryOptions {
    pub index: u64,
    /// `None` (or zero) while blocking means Nomad's default of 5 minutes,
    /// which is also its maximum.
    pub wait: Option<Duration>,
    /// Let any server answer, not just the leader; spreads load for watches.
    pub stale: bool,
}

impl QueryOptions {
    pub fn blocking(index: u64, wait: Duration) -> Self {
        Self {
            index,
            wait: Some(wait),
            stale: false,
        }
    }

    /// The time Nomad may legitimately hold this request, without margin.
    fn max_server_hold(&self) -> Option<Duration> {
        if self.index == 0 {
            return None;
        }
        Some(
            self.wait_ms()
                .map_or(DEFAULT_BLOCKING_WAIT, Duration::from_millis),
        )
    }

    /// Nomad parses `wait` as a Go duration; milliseconds like the Go client.
    fn wait_ms(&self) -> Option<u64> {
        let ms = self.wait?.as_millis();
        (ms > 0).then(|| u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

/// A read result with Nomad's query metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryResponse<T> {
    /// `X-Nomad-Index`: pass it back as [`QueryOptions::index`] via
    /// [`QueryResponse::next_index`] to watch for changes.
    pub index: u64,
    pub known_leader: bool,
    /// How stale a `stale` read may be.
    pub last_contact: Duration,
    pub value: T,
}

impl<T> QueryResponse<T> {
    /// The index to send on the next blocking query, given the index that
    /// produced this response. See [`next_blocking_index`].
    pub fn next_index(&self, sent: u64) -> u64 {
        next_blocking_index(sent, self.index)
    }

    /// Whether Nomad's index went backwards (e.g. a snapshot restore or a
    /// new cluster behind the same address).
    pub fn index_went_backwards(&self, sent: u64) -> bool {
        self.index < sent
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> QueryResponse<U> {
        QueryResponse {
            index: self.index,
            known_leader: self.known_leader,
            last_contact: self.last_contact,
            value: f(self.value),
        }
    }
}

/// Next `index` for a blocking-query loop, following Consul's guidance that
/// Nomad shares: if the index went backwards, reset to 0 (a non-blocking
/// read that resynchronises) instead of blocking until the old index is
/// reached again, possibly forever; otherwise use the returned index, but
/// never 0, since index 0 does not block and the loop would spin.
pub fn next_blocking_index(sent: u64, returned: u64) -> u64 {
    if returned < sent { 0 } else { returned.max(1) }
}

/// Typed client for the Nomad HTTP endpoints the operator uses.
#[derive(Clone)]
pub struct NomadClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    region: Option<String>,
    timeouts: Timeouts,
}

impl fmt::Debug for NomadClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NomadClient")
            .field("base", &self.inner.base.as_str())
            .field("region", &self.inner.region)
            .finish_non_exhaustive()
    }
}

/// How a Nomad "node not found" answer is reported for a request.
#[derive(Clone, Copy)]
pub(super) enum NodeScope<'a> {
    None,
    Node(&'a str),
}

impl NomadClient {
    pub fn new(cfg: NomadConfig) -> Result<Self, NomadError> {
        Self::with_timeouts(cfg, Timeouts::default())
    }

    pub fn with_timeouts(cfg: NomadConfig, timeouts: Timeouts) -> Result<Self, NomadError> {
        let mut base = parse_address(&cfg.address)?;

        let mut headers = HeaderMap::new();
        if let Some(token) = &cfg.token {
            let mut value = HeaderValue::from_str(token.expose_secret())
                .map_err(|_| NomadError::InvalidToken)?;
            // Keeps the value out of hyper/reqwest debug output.
            value.set_sensitive(true);
            headers.insert("X-Nomad-Token", value);
        }

        let builder = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(timeouts.connect)
            .user_agent(concat!("nomad-pool-operator/", env!("CARGO_PKG_VERSION")))
            // Nomad never redirects, and following one would hand the
            // X-Nomad-Token header (not one reqwest strips) to another host.
            .redirect(reqwest::redirect::Policy::none());
        let builder = configure_tls(builder, &cfg.tls, &mut base)?;
        let http = builder
            .build()
            .map_err(|e| NomadError::InvalidTls(error_chain(&e)))?;

        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                region: cfg.region.filter(|r| !r.is_empty()),
                timeouts,
            }),
        })
    }

    /// `GET /v1/nodes`. `filter` is a go-bexpr expression evaluated against
    /// the full node (see [`super::filter`]); an empty string means none.
    pub async fn list_nodes(
        &self,
        filter: Option<&str>,
        q: &QueryOptions,
    ) -> Result<QueryResponse<Vec<NodeListStub>>, NomadError> {
        let mut params = Vec::new();
        push_filter(&mut params, filter);
        self.query(&["nodes"], params, q, NodeScope::None).await
    }

    /// `GET /v1/node/:id`. The response index is the node's `ModifyIndex`,
    /// so a blocking read wakes only when this node changes.
    pub async fn node(
        &self,
        node_id: &str,
        q: &QueryOptions,
    ) -> Result<QueryResponse<Node>, NomadError> {
        let node_id = checked_node_id(node_id)?;
        self.query(&["node", node_id], Vec::new(), q, NodeScope::Node(node_id))
            .await
    }

    /// `GET /v1/node/:id/allocations`: full allocations including `Job`.
    /// An unknown node yields an empty list, not an error, and allocations in
    /// namespaces the token cannot read are silently left out.
    pub async fn node_allocations(
        &self,
        node_id: &str,
        q: &QueryOptions,
    ) -> Result<QueryResponse<Vec<Allocation>>, NomadError> {
        let node_id = checked_node_id(node_id)?;
        self.query(
            &["node", node_id, "allocations"],
            Vec::new(),
            q,
            NodeScope::None,
        )
        .await
    }

    /// `GET /v1/allocations` across all namespaces, without task states.
    pub async fn allocations(
        &self,
        filter: Option<&str>,
        q: &QueryOptions,
    ) -> Result<QueryResponse<Vec<AllocationListStub>>, NomadError> {
        let mut params = vec![
            ("namespace", "*".to_owned()),
            ("task_states", "false".to_owned()),
        ];
        push_filter(&mut params, filter);
        self.query(&["allocations"], params, q, NodeScope::None)
            .await
    }

    /// `POST /v1/node/:id/drain`: start, update (`drain_spec: Some`) or
    /// cancel (`None`) a drain. Starting one also makes the node ineligible.
    pub async fn drain(
        &self,
        node_id: &str,
        req: &DrainRequest,
    ) -> Result<NodeUpdateResponse, NomadError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            #[serde(rename = "NodeID")]
            node_id: &'a str,
            drain_spec: Option<&'a DrainSpec>,
            mark_eligible: bool,
            meta: &'a BTreeMap<String, String>,
        }
        let node_id = checked_node_id(node_id)?;
        let body = Body {
            node_id,
            drain_spec: req.drain_spec.as_ref(),
            mark_eligible: req.mark_eligible,
            meta: &req.meta,
        };
        self.write(&["node", node_id, "drain"], Some(&body), node_id)
            .await
    }

    /// `POST /v1/node/:id/eligibility`. Nomad refuses `eligible` while the
    /// node drains (HTTP 500); setting the current value is a no-op that
    /// returns all-zero indexes.
    pub async fn set_eligibility(
        &self,
        node_id: &str,
        eligible: bool,
    ) -> Result<NodeUpdateResponse, NomadError> {
        #[derive(Serialize)]
        #[serde(rename_all = "PascalCase")]
        struct Body<'a> {
            #[serde(rename = "NodeID")]
            node_id: &'a str,
            eligibility: &'static str,
        }
        let node_id = checked_node_id(node_id)?;
        let body = Body {
            node_id,
            eligibility: if eligible { "eligible" } else { "ineligible" },
        };
        self.write(&["node", node_id, "eligibility"], Some(&body), node_id)
            .await
    }

    /// `POST /v1/node/:id/purge`: delete the node from Nomad's state. A
    /// client that is still alive registers itself again.
    pub async fn purge(&self, node_id: &str) -> Result<NodeUpdateResponse, NomadError> {
        let node_id = checked_node_id(node_id)?;
        self.write::<()>(&["node", node_id, "purge"], None, node_id)
            .await
    }

    /// `GET /v1/status/leader`: the leader's RPC address. A cheap check that
    /// Nomad is reachable, TLS works and the cluster has a leader (the
    /// address is empty without one).
    pub async fn leader(&self) -> Result<String, NomadError> {
        let timeout = self.inner.timeouts.request;
        self.send(
            Method::GET,
            &["status", "leader"],
            Vec::new(),
            None,
            timeout,
            NodeScope::None,
        )
        .await?
        .json()
    }

    /// `GET /v1/nodes?per_page=1`: fails with
    /// [`NomadError::PermissionDenied`] when the token lacks `node:read`,
    /// before any watch is started.
    pub async fn check_node_read(&self) -> Result<(), NomadError> {
        let params = vec![("per_page", "1".to_owned())];
        let timeout = self.inner.timeouts.request;
        self.send(
            Method::GET,
            &["nodes"],
            params,
            None,
            timeout,
            NodeScope::None,
        )
        .await
        .map(drop)
    }

    /// `GET /v1/nodes?per_page=1` from the leader: the index of Nomad's
    /// node table, which only grows unless the cluster itself went back (a
    /// snapshot restore, a rebuilt cluster).
    pub async fn nodes_table_index(&self) -> Result<u64, NomadError> {
        let params = vec![("per_page", "1".to_owned())];
        let resp: QueryResponse<serde_json::Value> = self
            .query(
                &["nodes"],
                params,
                &QueryOptions::default(),
                NodeScope::None,
            )
            .await?;
        Ok(resp.index)
    }

    pub(super) async fn query<T: DeserializeOwned>(
        &self,
        path: &[&str],
        mut params: Vec<(&'static str, String)>,
        q: &QueryOptions,
        scope: NodeScope<'_>,
    ) -> Result<QueryResponse<T>, NomadError> {
        if q.index > 0 {
            params.push(("index", q.index.to_string()));
            if let Some(ms) = q.wait_ms() {
                params.push(("wait", format!("{ms}ms")));
            }
        }
        if q.stale {
            params.push(("stale", "true".to_owned()));
        }
        let timeout = request_timeout(q, &self.inner.timeouts);
        let reply = self
            .send(Method::GET, path, params, None, timeout, scope)
            .await?;
        let (index, known_leader, last_contact) = query_meta(&reply.headers, &reply.endpoint)?;
        Ok(QueryResponse {
            index,
            known_leader,
            last_contact,
            value: reply.json()?,
        })
    }

    async fn write<B: Serialize>(
        &self,
        path: &[&str],
        body: Option<&B>,
        node_id: &str,
    ) -> Result<NodeUpdateResponse, NomadError> {
        let body = body
            .map(serde_json::to_vec)
            .transpose()
            .expect("request bodies are plain structs of strings, bools and maps");
        let timeout = self.inner.timeouts.request;
        let scope = NodeScope::Node(node_id);
        self.send(Method::POST, path, Vec::new(), body, timeout, scope)
            .await?
            .json()
    }

    /// Returns the URL and the `METHOD /path` label used in errors and logs;
    /// the label leaves out the query string.
    fn url(
        &self,
        method: &Method,
        path: &[&str],
        mut params: Vec<(&'static str, String)>,
    ) -> (Url, String) {
        let mut url = self.inner.base.clone();
        url.path_segments_mut()
            .expect("base URL is http(s), which has path segments")
            .pop_if_empty()
            .push("v1")
            .extend(path);
        if let Some(region) = &self.inner.region {
            params.push(("region", region.clone()));
        }
        if !params.is_empty() {
            url.query_pairs_mut().extend_pairs(params);
        }
        let label = format!("{method} {}", url.path());
        (url, label)
    }

    async fn send(
        &self,
        method: Method,
        path: &[&str],
        params: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        timeout: Duration,
        scope: NodeScope<'_>,
    ) -> Result<Reply<impl AsRef<[u8]> + use<>>, NomadError> {
        let (url, endpoint) = self.url(&method, path, params);
        let mut req = self.inner.http.request(method, url).timeout(timeout);
        if let Some(body) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        let started = Instant::now();
        let resp = req.send().await.map_err(|e| {
            crate::metrics::metrics().nomad_request(&endpoint, None, started.elapsed());
            NomadError::from_reqwest(&endpoint, e)
        })?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| NomadError::from_reqwest(&endpoint, e))?;
        crate::metrics::metrics().nomad_request(
            &endpoint,
            Some(status.as_u16()),
            started.elapsed(),
        );
        tracing::debug!(
            %endpoint,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "nomad request"
        );
        if !status.is_success() {
            return Err(status_error(status, body.as_ref(), endpoint, scope));
        }
        Ok(Reply {
            endpoint,
            headers,
            body,
        })
    }
}

/// A successful response. The body is whatever reqwest returns
/// (`bytes::Bytes`), left unnamed so `bytes` need not be a dependency.
struct Reply<B> {
    endpoint: String,
    headers: HeaderMap,
    body: B,
}

impl<B: AsRef<[u8]>> Reply<B> {
    fn json<T: DeserializeOwned>(&self) -> Result<T, NomadError> {
        serde_json::from_slice(self.body.as_ref()).map_err(|source| NomadError::Decode {
            endpoint: self.endpoint.clone(),
            source,
        })
    }
}

fn request_timeout(q: &QueryOptions, t: &Timeouts) -> Duration {
    match q.max_server_hold() {
        None => t.request,
        Some(wait) => (wait + wait / 16 + t.blocking_margin).max(t.request),
    }
}

fn status_error(
    status: StatusCode,
    body: &[u8],
    endpoint: String,
    scope: NodeScope<'_>,
) -> NomadError {
    let text = String::from_utf8_lossy(body);
    let mut message = text.trim().to_owned();
    if message.len() > MAX_ERROR_BODY {
        let cut = (0..=MAX_ERROR_BODY)
            .rev()
            .find(|&i| message.is_char_boundary(i))
            .unwrap_or(0);
        message.truncate(cut);
        message.push('…');
    }
    // Only Nomad's own message counts as "node not found": a bare 404 could
    // come from a proxy, and treating that as a vanished node could get a
    // live VM terminated. Reads answer 404, writes 500 (plain fmt.Errorf).
    let node_missing = matches!(status.as_u16(), 404 | 500) && message.ends_with("node not found");
    match scope {
        NodeScope::Node(node_id) if node_missing => NomadError::NodeNotFound {
            node_id: node_id.to_owned(),
        },
        _ if status == StatusCode::FORBIDDEN => NomadError::PermissionDenied { endpoint, message },
        _ => NomadError::Api {
            status: status.as_u16(),
            message,
            endpoint,
        },
    }
}

fn query_meta(headers: &HeaderMap, endpoint: &str) -> Result<(u64, bool, Duration), NomadError> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let invalid = |header, value: Option<&str>| NomadError::InvalidHeader {
        endpoint: endpoint.to_owned(),
        header,
        value: value.map(str::to_owned),
    };
    // Without the index a watch cannot block and would spin, so it is
    // required; the other two are informational.
    let raw = text("X-Nomad-Index");
    let index = raw
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| invalid("X-Nomad-Index", raw))?;
    let known_leader = text("X-Nomad-KnownLeader") == Some("true");
    let last_contact = match text("X-Nomad-LastContact") {
        None => Duration::ZERO,
        Some(v) => v
            .parse()
            .map(Duration::from_millis)
            .map_err(|_| invalid("X-Nomad-LastContact", Some(v)))?,
    };
    Ok((index, known_leader, last_contact))
}

fn push_filter(params: &mut Vec<(&'static str, String)>, filter: Option<&str>) {
    if let Some(f) = filter.filter(|f| !f.trim().is_empty()) {
        params.push(("filter", f.to_owned()));
    }
}

/// An empty ID would address a different endpoint (`/v1/node/`), so it is
/// reported as the node not existing rather than sent.
fn checked_node_id(node_id: &str) -> Result<&str, NomadError> {
    if node_id.is_empty() {
        return Err(NomadError::NodeNotFound {
            node_id: String::new(),
        });
    }
    Ok(node_id)
}

fn parse_address(address: &str) -> Result<Url, NomadError> {
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

fn configure_tls(
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
fn override_server_name(
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        let t = SecretToken::new("s3cr3t");
        assert_eq!(format!("{t} {t:?}"), "<redacted> <redacted>");
        let cfg = NomadConfig {
            address: "http://x".into(),
            token: Some(t),
            tls: NomadTlsConfig {
                client_key_pem: Some(b"KEY".to_vec()),
                ..Default::default()
            },
            ..Default::default()
        };
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("s3cr3t") && !dbg.contains("KEY") && !dbg.contains("75, 69"));
    }

    #[test]
    fn next_index_resets_when_backwards_and_never_zero() {
        assert_eq!(next_blocking_index(0, 17), 17);
        assert_eq!(next_blocking_index(17, 17), 17);
        assert_eq!(next_blocking_index(17, 20), 20);
        assert_eq!(next_blocking_index(17, 5), 0);
        assert_eq!(next_blocking_index(0, 0), 1);
    }

    #[test]
    fn timeout_covers_wait_and_jitter() {
        let t = Timeouts::default();
        assert_eq!(request_timeout(&QueryOptions::default(), &t), t.request);
        let q = QueryOptions::blocking(5, Duration::from_secs(160));
        assert_eq!(
            request_timeout(&q, &t),
            Duration::from_secs(160 + 10) + t.blocking_margin
        );
        // Blocking without wait: Nomad's 5-minute default applies.
        let q = QueryOptions {
            index: 5,
            ..Default::default()
        };
        assert_eq!(
            request_timeout(&q, &t),
            DEFAULT_BLOCKING_WAIT + DEFAULT_BLOCKING_WAIT / 16 + t.blocking_margin
        );
        // Short waits never get less than the plain request timeout.
        let q = QueryOptions::blocking(5, Duration::from_millis(10));
        assert_eq!(request_timeout(&q, &t), t.request);
    }

    #[test]
    fn address_validation() {
        for bad in [
            "127.0.0.1:4646",
            "ftp://x",
            "http://u:p@x:4646",
            "http://x/?a=b",
            "",
        ] {
            assert!(
                matches!(parse_address(bad), Err(NomadError::InvalidAddress(_))),
                "{bad}"
            );
        }
        assert!(parse_address("https://nomad.example:4646/prefix/").is_ok());
    }

    #[test]
    fn urls_keep_prefix_encode_ids_and_add_region() {
        let client = NomadClient::new(NomadConfig {
            address: "http://nomad:4646/proxy/".into(),
            region: Some("eu west".into()),
            ..Default::default()
        })
        .unwrap();
        let (url, label) = client.url(&Method::POST, &["node", "a/b?c", "drain"], vec![]);
        assert_eq!(
            url.as_str(),
            "http://nomad:4646/proxy/v1/node/a%2Fb%3Fc/drain?region=eu+west"
        );
        assert_eq!(label, "POST /proxy/v1/node/a%2Fb%3Fc/drain");
    }

    #[test]
    fn server_name_rewrites_https_host_only() {
        let mut base = Url::parse("https://10.0.0.5:4646").unwrap();
        let _ = override_server_name(reqwest::Client::builder(), "server.global.nomad", &mut base)
            .unwrap();
        assert_eq!(base.as_str(), "https://server.global.nomad:4646/");

        let mut base = Url::parse("http://10.0.0.5:4646").unwrap();
        let _ = override_server_name(reqwest::Client::builder(), "server.global.nomad", &mut base)
            .unwrap();
        assert_eq!(base.host_str(), Some("10.0.0.5"));

        let mut base = Url::parse("https://nomad:4646").unwrap();
        assert!(matches!(
            override_server_name(reqwest::Client::builder(), "10.0.0.9", &mut base),
            Err(NomadError::InvalidTls(_))
        ));
    }

    #[test]
    fn tls_config_errors() {
        let cfg = |tls| NomadConfig {
            address: "https://nomad:4646".into(),
            tls,
            ..Default::default()
        };
        let err = NomadClient::new(cfg(NomadTlsConfig {
            client_cert_pem: Some(b"x".to_vec()),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(matches!(err, NomadError::InvalidTls(_)), "{err}");

        let err = NomadClient::new(cfg(NomadTlsConfig {
            ca_pem: Some(b"not a pem".to_vec()),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(matches!(err, NomadError::InvalidTls(_)), "{err}");

        let err = NomadClient::new(cfg(NomadTlsConfig {
            ca_pem: Some(
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            ..Default::default()
        }))
        .unwrap_err();
        assert!(matches!(err, NomadError::InvalidTls(_)), "{err}");
    }

    #[test]
    fn invalid_token_is_not_echoed() {
        let err = NomadClient::new(NomadConfig {
            address: "http://nomad:4646".into(),
            token: Some(SecretToken::new("line\nbreak")),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(err, NomadError::InvalidToken));
        assert!(!format!("{err} {err:?}").contains("break"));
    }

    #[test]
    fn status_mapping() {
        let node = NodeScope::Node("n1");
        let e = |status: u16, body: &str, scope| {
            status_error(
                StatusCode::from_u16(status).unwrap(),
                body.as_bytes(),
                "GET /x".into(),
                scope,
            )
        };
        assert!(
            matches!(e(404, "node not found", node), NomadError::NodeNotFound { node_id } if node_id == "n1")
        );
        assert!(matches!(
            e(500, "node not found\n", node),
            NomadError::NodeNotFound { .. }
        ));
        assert!(matches!(
            e(404, "Not Found", node),
            NomadError::Api { status: 404, .. }
        ));
        assert!(matches!(
            e(404, "node not found", NodeScope::None),
            NomadError::Api { status: 404, .. }
        ));
        assert!(matches!(
            e(403, "Permission denied", node),
            NomadError::PermissionDenied { message, .. } if message == "Permission denied"
        ));
        let err = e(500, "No cluster leader", NodeScope::None);
        assert!(err.is_retryable());
        assert!(!e(400, "Invalid wait time", NodeScope::None).is_retryable());
        let long = "é".repeat(1000);
        let NomadError::Api { message, .. } = e(502, &long, NodeScope::None) else {
            panic!()
        };
        assert!(message.len() <= MAX_ERROR_BODY + '…'.len_utf8());
    }
}

/// How long a Node event-stream subscription lives before it is closed and
/// the watcher re-lists: a bounded subscription doubles as a periodic full
/// resync, which repairs anything a gap in Nomad's event buffer hid.
pub const EVENT_STREAM_LIFETIME: Duration = Duration::from_secs(600);

/// Nomad sends `{}` every 30 s; three missed heartbeats mean a dead stream.
const EVENT_STREAM_IDLE: Duration = Duration::from_secs(95);

/// One NDJSON line of `GET /v1/event/stream`. A heartbeat is `{}`: index 0
/// and no events.
#[derive(Debug, Default, serde::Deserialize)]
pub struct EventFrame {
    #[serde(rename = "Index", default)]
    pub index: u64,
    #[serde(rename = "Events", default)]
    pub events: Vec<NomadEvent>,
}

#[derive(Debug, serde::Deserialize)]
pub struct NomadEvent {
    #[serde(rename = "Topic", default)]
    pub topic: String,
    /// `NodeRegistration`, `NodeDeregistration`, `NodeEligibility`,
    /// `NodeDrain`, `NodeStreamEvent` (the docs' `NodeEvent`).
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Index", default)]
    pub index: u64,
    #[serde(rename = "Payload", default)]
    pub payload: EventPayload,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct EventPayload {
    #[serde(rename = "Node", default)]
    pub node: Option<super::types::Node>,
}

/// A live subscription to Node events.
pub struct NodeEventStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    endpoint: String,
}

impl NomadClient {
    /// `GET /v1/event/stream?topic=Node&index=N`: every change to any node,
    /// with the full node as payload, from index `index` (inclusive).
    pub async fn node_events(&self, index: u64) -> Result<NodeEventStream, NomadError> {
        let (url, endpoint) = self.url(
            &Method::GET,
            &["event", "stream"],
            vec![("topic", "Node".to_string()), ("index", index.to_string())],
        );
        let started = Instant::now();
        let resp = self
            .inner
            .http
            .get(url)
            .timeout(EVENT_STREAM_LIFETIME)
            .send()
            .await
            .map_err(|e| {
                crate::metrics::metrics().nomad_request(&endpoint, None, started.elapsed());
                NomadError::from_reqwest(&endpoint, e)
            })?;
        let status = resp.status();
        crate::metrics::metrics().nomad_request(
            &endpoint,
            Some(status.as_u16()),
            started.elapsed(),
        );
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(status_error(status, &body, endpoint, NodeScope::None));
        }
        Ok(NodeEventStream {
            resp,
            buf: Vec::new(),
            endpoint,
        })
    }
}

impl NodeEventStream {
    /// The next frame (heartbeats included), or `None` when the server ended
    /// the stream. The subscription's lifetime ending is an error like any
    /// other: the caller re-lists.
    pub async fn next(&mut self) -> Result<Option<EventFrame>, NomadError> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                return serde_json::from_slice(line).map(Some).map_err(|source| {
                    NomadError::Decode {
                        endpoint: self.endpoint.clone(),
                        source,
                    }
                });
            }
            let chunk = tokio::time::timeout(EVENT_STREAM_IDLE, self.resp.chunk())
                .await
                .map_err(|_| NomadError::Api {
                    status: 0,
                    message: "event stream silent for longer than three heartbeats".into(),
                    endpoint: self.endpoint.clone(),
                })?
                .map_err(|e| NomadError::from_reqwest(&self.endpoint, e))?;
            match chunk {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}
