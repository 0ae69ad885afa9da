//! `/v1/event/stream`, `/v1/status/leader`, `/v1/agent/self`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::{ApiError, Resp, auth, authorize, json_bytes, parse_pairs, set_meta, to_json};
use crate::App;
use crate::acl::Capability;
use crate::events::{Batch, TopicFilter};

pub(super) async fn events(app: &Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let StreamQuery {
        index,
        namespace,
        topics,
    } = stream_query(app, req.uri().query())?;
    if app.faults.lock().unwrap().event_stream_refused {
        return refuse(app);
    }
    let namespaces = permitted_namespaces(app, req.headers(), &namespace, &topics);
    let Some(namespaces) = namespaces else {
        return refuse(app);
    };
    let filter = TopicFilter { topics, namespaces };
    let (backlog, live) = app.cluster.read().unwrap().events.subscribe(index);
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let hb = app.cfg.event_heartbeat;
    tokio::spawn(pump(tx, filter, backlog, live, hb));
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map_frames();
    let body = StreamBody::new(stream).boxed();
    Ok(stream_response(app, body))
}

/// The stream's query: `index`, `topic` (`Topic` or `Topic:Key`,
/// repeatable; none means every topic), `namespace`; another `region` is
/// refused as Nomad does.
struct StreamQuery {
    index: u64,
    namespace: String,
    topics: BTreeMap<String, Vec<String>>,
}

fn stream_query(app: &App, query: Option<&str>) -> Result<StreamQuery, ApiError> {
    let pairs = parse_pairs(query);
    let mut index = 0u64;
    let mut namespace = "default".to_string();
    let mut topics: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in &pairs {
        match k.as_str() {
            "index" => {
                index = v
                    .parse()
                    .map_err(|e| ApiError::BadRequest(format!("Unable to parse index: {e}")))?
            }
            "topic" => {
                let parts: Vec<&str> = v.split(':').collect();
                let (t, key) = match parts.as_slice() {
                    [t] => (t.to_string(), "*".to_string()),
                    [t, key] => (t.to_string(), key.to_string()),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "Invalid topic query: error parsing topics: Invalid key value pair for topic, topic: {v}"
                        )));
                    }
                };
                topics.entry(t).or_default().push(key);
            }
            "namespace" if !v.is_empty() => namespace = v.clone(),
            "region" if !v.is_empty() && *v != app.cfg.region => {
                return Err(ApiError::Internal("No path to region".into()));
            }
            _ => {}
        }
    }
    if topics.is_empty() {
        topics.insert("*".into(), vec!["*".into()]);
    }
    Ok(StreamQuery {
        index,
        namespace,
        topics,
    })
}

/// Event.stream: Authenticate, then validateACL for every namespace
/// asked for (`*` = every namespace that exists), each topic. The
/// namespaces to stream, or `None`: refused.
fn permitted_namespaces(
    app: &App,
    headers: &hyper::HeaderMap,
    namespace: &str,
    topics: &BTreeMap<String, Vec<String>>,
) -> Option<Vec<String>> {
    match auth(app, headers) {
        Ok(a) => {
            let nses: Vec<String> = if namespace == "*" {
                app.cluster
                    .read()
                    .unwrap()
                    .namespaces
                    .keys()
                    .cloned()
                    .collect()
            } else {
                vec![namespace.to_string()]
            };
            let ok = nses.iter().all(|ns| {
                topics.keys().all(|t| match t.as_str() {
                    "Deployment" | "Evaluation" | "Allocation" | "Job" | "Service"
                    | "CSIPlugin" => a.allow_ns_op(ns, "read-job"),
                    "HostVolume" => a.allow_ns_op(ns, "host-volume-read"),
                    "CSIVolume" => a.allow_ns_op(ns, "csi-read-volume"),
                    "Node" => a.node_read(),
                    _ => a.management(),
                })
            });
            ok.then_some(nses)
        }
        Err(_) => None,
    }
}

/// Writes the stream: `{}` at once, the backlog after the asked index,
/// then live batches with a `{}` heartbeat every `hb`, until the client
/// goes away or falls behind.
async fn pump(
    tx: mpsc::Sender<Bytes>,
    filter: TopicFilter,
    backlog: Vec<Arc<Batch>>,
    mut live: broadcast::Receiver<Arc<Batch>>,
    hb: Duration,
) {
    if tx.send(Bytes::from_static(b"{}\n")).await.is_err() {
        return;
    }
    let mut last = 0u64;
    for b in backlog {
        last = b.index;
        if let Some(line) = filter.render(&b)
            && tx.send(Bytes::from(line)).await.is_err()
        {
            return;
        }
    }
    let mut tick = tokio::time::interval(hb);
    tick.tick().await;
    loop {
        tokio::select! {
            r = live.recv() => match r {
                Ok(b) => {
                    if b.index <= last { continue; }
                    last = b.index;
                    if let Some(line) = filter.render(&b)
                        && tx.send(Bytes::from(line)).await.is_err() {
                        return;
                    }
                }
                // A subscriber that falls too far behind is closed, as
                // Nomad does; the client reconnects with its last index.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if tx.send(Bytes::from_static(b"{}\n")).await.is_err() { return; }
            }
            _ = tx.closed() => return,
        }
    }
}

/// The stream's `200 OK`. Nomad >= 1.11.2 hijacks the connection and writes
/// the response itself with `http.Response.Write` and `ContentLength: -1`,
/// which adds `Connection: close` (the body ends when the connection does).
fn stream_response(app: &App, body: super::Body) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("cache-control", "no-cache".parse().unwrap());
    if !app.cfg.legacy_event_stream_refusal {
        h.insert("connection", "close".parse().unwrap());
    }
    r
}

/// A refused subscription (unknown token, or a topic the token may not
/// read). Nomad >= 1.11.2 has already written `200 OK` and the stream
/// headers when the RPC's `403` comes back, so the client sees a 200 whose
/// connection closes with an empty body (not even the `{}` heartbeat: the
/// RPC fails before the JSON stream starts). Before 1.11.2 it was a plain
/// `403 Permission denied`.
fn refuse(app: &App) -> Result<Resp, ApiError> {
    if app.cfg.legacy_event_stream_refusal {
        return Err(ApiError::PermissionDenied);
    }
    let empty = futures::stream::empty::<Bytes>().map_frames();
    Ok(stream_response(app, StreamBody::new(empty).boxed()))
}

trait MapFrames {
    fn map_frames(
        self,
    ) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static;
}

impl<S> MapFrames for S
where
    S: futures::Stream<Item = Bytes> + Send + Sync + 'static,
{
    fn map_frames(
        self,
    ) -> impl futures::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
        use futures::StreamExt;
        self.map(|b| Ok(Frame::data(b)))
    }
}

pub(super) fn leader(
    app: &Arc<App>,
    req: Request<Incoming>,
    known_leader: bool,
) -> Result<Resp, ApiError> {
    let _ = req;
    let leader = if known_leader { "127.0.0.1:4647" } else { "" };
    let mut r = json_bytes(StatusCode::OK, to_json(&leader, false));
    set_meta(&mut r, app.cluster.read().unwrap().index, known_leader);
    Ok(r)
}

pub(super) fn agent_self(app: &Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    authorize(app, req.headers(), Capability::None)?;
    let cfg = &app.cfg;
    let body = json!({
        "config": {
            "Region": cfg.region,
            "Datacenter": cfg.datacenter,
            "NodeName": "nomad-sim",
            "Version": {"Version": app.nomad_version(), "VersionPrerelease": "", "VersionMetadata": "", "Revision": "nomad-sim"},
            "ACL": {"Enabled": app.acl.enabled()},
            "Server": {"Enabled": true},
            "Client": {"Enabled": false},
        },
        "member": {
            "Name": format!("nomad-sim.{}", cfg.region),
            "Addr": "127.0.0.1",
            "Port": 4648,
            "Tags": {"role": "nomad", "region": cfg.region, "dc": cfg.datacenter,
                     "build": app.nomad_version(), "vsn": "1", "port": "4647", "rpc_addr": "127.0.0.1"},
            "Status": "alive",
            "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
            "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4
        },
        "stats": {"nomad": {"leader": "true", "server": "true", "known_regions": "1"}},
    });
    Ok(json_bytes(StatusCode::OK, to_json(&body, false)))
}
