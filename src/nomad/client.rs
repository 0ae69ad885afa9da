use std::collections::BTreeMap;
use std::convert::identity;
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

mod body;
pub mod budget;
mod config;
mod event_stream;
mod meta;
mod transport;

use body::{
    ALLOCATIONS_LIMIT, NODE_ALLOCATIONS_LIMIT, NODE_LIMIT, NODE_LIST_LIMIT, Reply, decode_list,
    read_capped,
};
pub(crate) use body::{SMALL_LIMIT, show_size};
pub use budget::{DEFAULT_MAX_CONNECTIONS, MIN_MAX_CONNECTIONS, set_max_connections};

use super::error::error_chain;
use budget::Lane;
use config::parse_address;
pub use config::{NomadConfig, NomadTlsConfig, SecretToken, Timeouts};
pub use event_stream::{EVENT_STREAM_LIFETIME, EventFrame, NodeEventStream, NomadEvent};
use meta::{query_meta, status_error};

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
    /// A blocking query that only keeps a status fresh: it waits in its own
    /// lane of the connection budget, so it never holds up one that the
    /// next step of a retirement needs (see `budget`).
    pub background: bool,
}

impl QueryOptions {
    pub fn blocking(index: u64, wait: Duration) -> Self {
        Self {
            index,
            wait: Some(wait),
            stale: false,
            background: false,
        }
    }

    /// The lane of the connection budget a read of `path` waits in: a
    /// blocking query may be held by Nomad for minutes, a plain read is
    /// answered at once, and a blocking node list is a pool's node view.
    fn lane(&self, path: &[&str]) -> Lane {
        match (self.index, self.background) {
            (0, _) => Lane::Short,
            (_, true) => Lane::Status,
            _ if path == ["nodes"] => Lane::View,
            _ => Lane::Parked,
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
    /// Connections and their budget, shared with every client of the same
    /// Nomad agent (see `transport`).
    transport: Arc<transport::Transport>,
    base: Url,
    region: Option<String>,
    timeouts: Timeouts,
    /// `X-Nomad-Token`, marked sensitive so hyper/reqwest debug output
    /// leaves it out.
    token: Option<HeaderValue>,
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
        let token = match &cfg.token {
            Some(token) => {
                let mut value = HeaderValue::from_str(token.expose_secret())
                    .map_err(|_| NomadError::InvalidToken)?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };
        let transport = transport::transport(&cfg.address, &cfg.tls, &timeouts)?;
        Ok(Self {
            inner: Arc::new(Inner {
                base: transport.base.clone(),
                transport,
                region: cfg.region.filter(|r| !r.is_empty()),
                timeouts,
                token,
            }),
        })
    }

    /// A request to `url` with this client's token, not sent yet.
    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let req = self.inner.transport.http.request(method, url);
        match &self.inner.token {
            Some(token) => req.header("X-Nomad-Token", token.clone()),
            None => req,
        }
    }

    /// Waits for a free connection of `lane` in the agent's budget.
    /// The wait is recorded per lane: a lane that stays full shows up as
    /// retirement latency nothing else explains.
    async fn permit(&self, lane: Lane) -> budget::Permit {
        let asked = std::time::Instant::now();
        let permit = self.inner.transport.budget.acquire(lane).await;
        crate::metrics::metrics().connection_wait(lane.name(), asked.elapsed());
        permit
    }

    /// `GET /v1/nodes`. `filter` is a go-bexpr expression evaluated against
    /// the full node (see [`super::filter`]); an empty string means none.
    pub async fn list_nodes(
        &self,
        filter: Option<&str>,
        q: &QueryOptions,
    ) -> Result<QueryResponse<Vec<Arc<NodeListStub>>>, NomadError> {
        let mut params = Vec::new();
        push_filter(&mut params, filter);
        // Each node in its own allocation as it is decoded: the watch shares
        // them as `Arc`s anyway, and a list of pointers grows without moving
        // 384-byte stubs (at 40 MiB of list, a 25 MB `Vec` copied into one
        // twice its size).
        self.query_list(&["nodes"], params, q, NODE_LIST_LIMIT, Arc::new)
            .await
    }

    /// `GET /v1/node/:id`. The response index is the node's `ModifyIndex`,
    /// so a blocking read wakes only when this node changes.
    pub async fn node(
        &self,
        node_id: &str,
        q: &QueryOptions,
    ) -> Result<QueryResponse<Node>, NomadError> {
        let node_id = checked_node_id(node_id)?;
        let scope = NodeScope::Node(node_id);
        self.query(&["node", node_id], Vec::new(), q, scope, NODE_LIMIT)
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
        let path = ["node", node_id, "allocations"];
        self.query_list(&path, Vec::new(), q, NODE_ALLOCATIONS_LIMIT, identity)
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
        self.query_list(&["allocations"], params, q, ALLOCATIONS_LIMIT, identity)
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
            Lane::Short,
            Method::GET,
            &["status", "leader"],
            Vec::new(),
            None,
            timeout,
            NodeScope::None,
        )
        .await?
        .json(SMALL_LIMIT)
        .await
    }

    /// `GET /v1/nodes?per_page=1`: fails with
    /// [`NomadError::PermissionDenied`] when the token lacks `node:read`,
    /// before any watch is started.
    pub async fn check_node_read(&self) -> Result<(), NomadError> {
        let params = vec![("per_page", "1".to_owned())];
        let timeout = self.inner.timeouts.request;
        let reply = self
            .send(
                Lane::Short,
                Method::GET,
                &["nodes"],
                params,
                None,
                timeout,
                NodeScope::None,
            )
            .await?;
        read_capped(reply.resp, SMALL_LIMIT, &reply.endpoint)
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
                SMALL_LIMIT,
            )
            .await?;
        Ok(resp.index)
    }

    /// A read whose answer is decoded whole, up to `limit` bytes.
    pub(super) async fn query<T: DeserializeOwned>(
        &self,
        path: &[&str],
        params: Vec<(&'static str, String)>,
        q: &QueryOptions,
        scope: NodeScope<'_>,
        limit: usize,
    ) -> Result<QueryResponse<T>, NomadError> {
        let (meta, reply) = self.query_reply(path, params, q, scope).await?;
        Ok(meta.with(reply.json(limit).await?))
    }

    /// A read of a list, decoded element by element as it streams in, up
    /// to `limit` bytes; `each` turns an element into what the list holds.
    async fn query_list<T: DeserializeOwned, U>(
        &self,
        path: &[&str],
        params: Vec<(&'static str, String)>,
        q: &QueryOptions,
        limit: usize,
        each: fn(T) -> U,
    ) -> Result<QueryResponse<Vec<U>>, NomadError> {
        let (meta, reply) = self.query_reply(path, params, q, NodeScope::None).await?;
        Ok(meta.with(decode_list(reply.resp, limit, &reply.endpoint, each).await?))
    }

    async fn query_reply(
        &self,
        path: &[&str],
        mut params: Vec<(&'static str, String)>,
        q: &QueryOptions,
        scope: NodeScope<'_>,
    ) -> Result<(QueryResponse<()>, Reply), NomadError> {
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
            .send(
                q.lane(path),
                Method::GET,
                path,
                params,
                None,
                timeout,
                scope,
            )
            .await?;
        let (index, known_leader, last_contact) =
            query_meta(reply.resp.headers(), &reply.endpoint)?;
        let meta = QueryResponse {
            index,
            known_leader,
            last_contact,
            value: (),
        };
        Ok((meta, reply))
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
        self.send(
            Lane::Short,
            Method::POST,
            path,
            Vec::new(),
            body,
            timeout,
            scope,
        )
        .await?
        .json(SMALL_LIMIT)
        .await
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

    /// Sends once a connection of `lane` is free; the permit goes with the
    /// reply and is given back once its body is read or dropped.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        lane: Lane,
        method: Method,
        path: &[&str],
        params: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        timeout: Duration,
        scope: NodeScope<'_>,
    ) -> Result<Reply, NomadError> {
        let (url, endpoint) = self.url(&method, path, params);
        let permit = self.permit(lane).await;
        let mut req = self.request(method, url).timeout(timeout);
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
        // The body is read by the caller, with the endpoint's limit; the
        // request's timeout covers it too.
        let status = resp.status();
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
            let body = body::error_body(resp).await;
            return Err(status_error(status, &body, endpoint, scope));
        }
        Ok(Reply {
            endpoint,
            resp,
            _permit: permit,
        })
    }
}

fn request_timeout(q: &QueryOptions, t: &Timeouts) -> Duration {
    match q.max_server_hold() {
        None => t.request,
        Some(wait) => (wait + wait / 16 + t.blocking_margin).max(t.request),
    }
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

#[cfg(test)]
mod tests;
