//! `/v1/event/stream`, `/v1/status/leader`, `/v1/agent/self`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::json;
use tokio::sync::{broadcast, mpsc};

use super::{ApiError, Resp, authorize, json_bytes, parse_pairs, set_meta, to_json};
use crate::App;
use crate::acl::Capability;
use crate::events::TopicFilter;

pub const NOMAD_VERSION: &str = "1.11.1";

pub(super) async fn events(app: &Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let pairs = parse_pairs(req.uri().query());
    let mut index = 0u64;
    let mut topics: Vec<(String, String)> = Vec::new();
    for (k, v) in &pairs {
        match k.as_str() {
            "index" => {
                index = v
                    .parse()
                    .map_err(|e| ApiError::BadRequest(format!("Unable to parse index: {e}")))?
            }
            "topic" => {
                let parts: Vec<&str> = v.split(':').collect();
                match parts.as_slice() {
                    [t] => topics.push((t.to_string(), "*".into())),
                    [t, key] => topics.push((t.to_string(), key.to_string())),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "Invalid topic query: {v} contains more than one \":\""
                        )));
                    }
                }
            }
            "region" if !v.is_empty() && *v != app.cfg.region => {
                return Err(ApiError::Internal("No path to region".into()));
            }
            _ => {}
        }
    }
    if topics.is_empty() {
        topics.push(("*".into(), "*".into()));
    }
    for (t, _) in &topics {
        let cap = match t.as_str() {
            "Node" => Capability::NodeRead,
            "Allocation" | "Job" | "Evaluation" | "Deployment" | "Service" => Capability::ReadJob,
            _ => Capability::Management,
        };
        authorize(app, req.headers(), cap)?;
    }
    let filter = TopicFilter(topics);
    let (backlog, mut live) = app.cluster.read().unwrap().events.subscribe(index);
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let hb = app.cfg.event_heartbeat;
    tokio::spawn(async move {
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
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map_frames();
    let body = StreamBody::new(stream).boxed();
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::OK;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut()
        .insert("cache-control", "no-cache".parse().unwrap());
    Ok(r)
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
            "Version": {"Version": NOMAD_VERSION, "VersionPrerelease": "", "VersionMetadata": "", "Revision": "nomad-sim"},
            "ACL": {"Enabled": app.acl.enabled()},
            "Server": {"Enabled": true},
            "Client": {"Enabled": false},
        },
        "member": {
            "Name": format!("nomad-sim.{}", cfg.region),
            "Addr": "127.0.0.1",
            "Port": 4648,
            "Tags": {"role": "nomad", "region": cfg.region, "dc": cfg.datacenter,
                     "build": NOMAD_VERSION, "vsn": "1", "port": "4647", "rpc_addr": "127.0.0.1"},
            "Status": "alive",
            "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
            "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4
        },
        "stats": {"nomad": {"leader": "true", "server": "true", "known_regions": "1"}},
    });
    Ok(json_bytes(StatusCode::OK, to_json(&body, false)))
}
