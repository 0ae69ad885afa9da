//! A misbehaving HTTP proxy in front of the Nomad simulator, for what a
//! broken network path (a buffering reverse proxy, a load balancer, a
//! compromised or confused server) does to Nomad's answers and the
//! simulator itself never does: bodies far larger than any real cluster's,
//! bodies that never end, an event stream that never sends its headers,
//! that sends only heartbeats, or that goes silent after some bytes.
//!
//! Everything else is forwarded as is, streamed (a blocking query or the
//! event stream passes through without being buffered), with Nomad's
//! headers. Every request is counted by `METHOD path` (query left out).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::Value;

use super::{LocalServer, Upstream};

/// What the event stream (`GET /v1/event/stream`) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StreamFault {
    #[default]
    None,
    /// The connection is accepted and nothing is ever answered.
    NoHeaders,
    /// `200` and a `{}` heartbeat every `heartbeat`, and never an event,
    /// as from a proxy that answers the subscription itself.
    HeartbeatsOnly { heartbeat: Duration },
    /// The upstream stream's first `bytes` bytes, then silence on an open
    /// connection (a proxy buffering the rest).
    SilentAfter { bytes: usize },
}

#[derive(Clone, Debug, Default)]
pub struct NomadFaults {
    /// `GET /v1/nodes` (a full list, not `per_page`) answers the upstream
    /// list and copies of its first node under new IDs until the body is at
    /// least this many bytes: a real list, only far larger.
    pub node_list_padded_to: Option<usize>,
    /// `GET /v1/nodes` (a full list) answers `200` with Nomad's headers and
    /// a body that never ends: `[` and the upstream's first node, repeated.
    pub node_list_endless: bool,
    pub stream: StreamFault,
    /// A blocking `GET /v1/node/:id/allocations` (with `index`) is answered
    /// at once, from the upstream's current state, with an `X-Nomad-Index`
    /// half the one asked for: Nomad's index going backwards, as behind one
    /// address a cluster restored from an older snapshot answers.
    pub alloc_index_backwards: bool,
}

struct Inner {
    upstream: Upstream,
    faults: Mutex<NomadFaults>,
    requests: Mutex<BTreeMap<String, u64>>,
}

pub struct NomadProxy {
    pub url: String,
    inner: Arc<Inner>,
    _server: LocalServer,
}

impl NomadProxy {
    /// Listen on 127.0.0.1:0 and forward to `upstream` (the simulator's URL).
    pub async fn start(upstream: &str) -> NomadProxy {
        let inner = Arc::new(Inner {
            upstream: Upstream::new(upstream),
            faults: Mutex::new(NomadFaults::default()),
            requests: Mutex::new(BTreeMap::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let server = LocalServer::start(app).await;
        NomadProxy {
            url: server.url.clone(),
            inner,
            _server: server,
        }
    }

    pub fn set_faults(&self, faults: NomadFaults) {
        *self.inner.faults.lock().unwrap() = faults;
    }

    /// Requests so far by `METHOD path`.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// Requests so far whose `METHOD path` satisfies `pred`.
    pub fn count(&self, pred: impl Fn(&str) -> bool) -> u64 {
        self.requests()
            .iter()
            .filter(|(k, _)| pred(k))
            .map(|(_, n)| n)
            .sum()
    }
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    *inner
        .requests
        .lock()
        .unwrap()
        .entry(format!("{method} {}", uri.path()))
        .or_default() += 1;
    let faults = inner.faults.lock().unwrap().clone();
    let full_list = method == Method::GET
        && uri.path() == "/v1/nodes"
        && !uri.query().unwrap_or("").contains("per_page");
    if uri.path() == "/v1/event/stream" {
        match faults.stream {
            StreamFault::None => {}
            StreamFault::NoHeaders => std::future::pending::<()>().await,
            StreamFault::HeartbeatsOnly { heartbeat } => return heartbeats(heartbeat),
            StreamFault::SilentAfter { bytes } => {
                let resp = forward(&inner, method, &uri, headers, body).await;
                return silent_after(resp, bytes);
            }
        }
    }
    let allocs = method == Method::GET
        && uri.path().starts_with("/v1/node/")
        && uri.path().ends_with("/allocations");
    if allocs && faults.alloc_index_backwards {
        let asked: u64 = uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix("index="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if asked > 0 {
            let plain: Uri = uri.path().parse().unwrap();
            let mut resp = forward(&inner, method, &plain, headers, body).await;
            let behind = (asked / 2).max(1).to_string();
            resp.headers_mut()
                .insert("x-nomad-index", behind.parse().unwrap());
            return resp;
        }
    }
    if full_list && faults.node_list_endless {
        let resp = forward(&inner, method, &uri, headers, body).await;
        return endless_list(resp).await;
    }
    if full_list && let Some(size) = faults.node_list_padded_to {
        let resp = forward(&inner, method, &uri, headers, body).await;
        return padded_list(resp, size).await;
    }
    forward(&inner, method, &uri, headers, body).await
}

async fn forward(
    inner: &Inner,
    method: Method,
    uri: &Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let upstream = inner.upstream.send(method, path, headers, body).await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => {
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("nomad proxy: upstream failed: {e}")))
                .unwrap();
        }
    };
    let mut resp = Response::builder().status(upstream.status().as_u16());
    for (k, v) in upstream.headers() {
        if k != header::CONTENT_LENGTH && k != header::TRANSFER_ENCODING && k != header::CONNECTION
        {
            resp = resp.header(k, v);
        }
    }
    let chunks = futures::stream::unfold(upstream, |mut r| async move {
        match r.chunk().await {
            Ok(Some(c)) => Some((Ok::<Bytes, std::io::Error>(c), r)),
            _ => None,
        }
    });
    resp.body(Body::from_stream(chunks)).unwrap()
}

fn heartbeats(every: Duration) -> Response {
    let beats = futures::stream::unfold(true, move |first| async move {
        if !first {
            tokio::time::sleep(every).await;
        }
        Some((
            Ok::<Bytes, std::io::Error>(Bytes::from_static(b"{}\n")),
            false,
        ))
    });
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(beats))
        .unwrap()
}

fn silent_after(resp: Response, limit: usize) -> Response {
    let (parts, body) = resp.into_parts();
    let mut left = limit;
    let passed = body.into_data_stream().filter_map(move |c| {
        let out = match c {
            Ok(c) if left > 0 => {
                let n = c.len().min(left);
                left -= n;
                Some(Ok::<Bytes, std::io::Error>(c.slice(..n)))
            }
            _ => None,
        };
        async move { out }
    });
    // After the first bytes the connection stays open and says nothing.
    let then_silent = passed.chain(futures::stream::pending());
    Response::from_parts(parts, Body::from_stream(then_silent))
}

async fn upstream_list(resp: Response) -> (axum::http::response::Parts, Vec<Value>) {
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let list = serde_json::from_slice(&bytes).unwrap_or_default();
    (parts, list)
}

/// The upstream's list followed by copies of its first node under new IDs
/// (a cluster of tens of thousands of clients), until the body reaches
/// `size` bytes.
async fn padded_list(resp: Response, size: usize) -> Response {
    let (parts, mut list) = upstream_list(resp).await;
    let template = list
        .first()
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let per_node = serde_json::to_vec(&template).unwrap().len() + 1;
    let mut total = serde_json::to_vec(&list).unwrap().len();
    let mut i = 0u64;
    while total < size {
        let mut node = template.clone();
        node["ID"] = Value::from(format!("{i:08x}-0000-4000-8000-{i:012x}"));
        node["Name"] = Value::from(format!("padding-{i}"));
        list.push(node);
        total += per_node;
        i += 1;
    }
    let body = Bytes::from(serde_json::to_vec(&list).unwrap());
    // Sent in chunks without a length, as a re-encoding proxy does: the
    // client cannot refuse it up front, only while reading.
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..body.len())
        .step_by(64 * 1024)
        .map(|at| Ok(body.slice(at..(at + 64 * 1024).min(body.len()))))
        .collect();
    let mut resp = Response::from_parts(parts, Body::from_stream(futures::stream::iter(chunks)));
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    resp
}

/// `[` and the upstream's first node, repeated forever, fast.
async fn endless_list(resp: Response) -> Response {
    let (parts, list) = upstream_list(resp).await;
    let node = list
        .first()
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    let mut chunk = Vec::new();
    while chunk.len() < 64 * 1024 {
        serde_json::to_writer(&mut chunk, &node).unwrap();
        chunk.push(b',');
    }
    let chunk = Bytes::from(chunk);
    let open =
        futures::stream::once(async { Ok::<Bytes, std::io::Error>(Bytes::from_static(b"[")) });
    let endless = futures::stream::repeat_with(move || Ok(chunk.clone()));
    let mut resp = Response::from_parts(parts, Body::from_stream(open.chain(endless)));
    resp.headers_mut().remove(header::CONTENT_LENGTH);
    resp
}
