//! HTTP entry point: routing, request counting, fault injection, ACL checks,
//! query parsing and blocking queries. The handler error and the responses
//! are `http_common`'s (shared with the control surface), re-exported here
//! for the handlers.
//!
//! Errors are plain text (`text/plain; charset=utf-8`) with Nomad's status
//! codes; successes are JSON with `X-Nomad-Index`, `X-Nomad-KnownLeader` and
//! `X-Nomad-LastContact` on reads.

mod acl;
mod allocs;
mod nodes;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use rand::Rng;
use tokio::sync::watch;

use crate::App;
use crate::acl::{Auth, Capability, Identity, token_from_headers};
use crate::clock::parse_go_duration;
use crate::faults::FaultAction;
use crate::http_common::err_resp;
pub use crate::http_common::{
    ApiError, Body, Resp, full, json_bytes, parse_pairs, percent_decode, set_meta, text, to_json,
};
use crate::state::Cluster;

/// Parsed common query parameters.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pub index: u64,
    pub wait: Duration,
    pub prefix: String,
    pub filter: Option<String>,
    pub per_page: Option<usize>,
    pub next_token: Option<String>,
    pub namespace: String,
    pub resources: bool,
    pub os: bool,
    pub reverse: bool,
    pub task_states: bool,
    pub pretty: bool,
    pub topics: Vec<String>,
    pub raw: Vec<(String, String)>,
}

fn parse_bool(v: &str) -> bool {
    matches!(v, "" | "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// Parses the common parameters the way `command/agent/http.go` does.
pub fn parse_query(app: &App, q: Option<&str>) -> Result<Query, ApiError> {
    let pairs = parse_pairs(q);
    let mut out = Query {
        namespace: "default".into(),
        task_states: true,
        ..Default::default()
    };
    let mut wait_set = false;
    for (k, v) in &pairs {
        match k.as_str() {
            "index" => {
                out.index = v
                    .parse()
                    .map_err(|_| ApiError::BadRequest("Invalid index".into()))?
            }
            "wait" => {
                out.wait = parse_go_duration(v)
                    .ok_or_else(|| ApiError::BadRequest("Invalid wait time".into()))?;
                wait_set = true;
            }
            "stale" if !matches!(v.as_str(), "" | "true" | "false") => {
                return Err(ApiError::BadRequest(
                    "Expect `true` or `false` for `stale` query string parameter".into(),
                ));
            }
            "prefix" => out.prefix = v.clone(),
            "filter" => out.filter = Some(v.clone()),
            "per_page" => {
                out.per_page = Some(v.parse().map_err(|_| {
                    ApiError::BadRequest(format!("Failed to parse value of \"per_page\" ({v})"))
                })?)
            }
            "next_token" => out.next_token = Some(v.clone()),
            "namespace" => out.namespace = v.clone(),
            "resources" => out.resources = parse_bool(v),
            "os" => out.os = parse_bool(v),
            "reverse" => out.reverse = parse_bool(v),
            "task_states" => out.task_states = parse_bool(v),
            "pretty" => out.pretty = v.is_empty() || parse_bool(v),
            "topic" => out.topics.push(v.clone()),
            "region" if !v.is_empty() && *v != app.cfg.region => {
                return Err(ApiError::Internal("No path to region".into()));
            }
            _ => {}
        }
    }
    // Nomad's blockingRPC: cap at 5 min, default 5 min, plus up to wait/16
    // of random jitter.
    let max = Duration::from_secs(300);
    if !wait_set || out.wait.is_zero() || out.wait > max {
        out.wait = max;
    }
    let jitter_ns = (out.wait.as_nanos() / 16) as u64;
    if jitter_ns > 0 {
        out.wait += Duration::from_nanos(rand::rng().random_range(0..jitter_ns));
    }
    out.raw = pairs;
    Ok(out)
}

/// Writes parse only the write options (`parseWriteRequest`): the region.
/// Blocking-query parameters on a write are ignored, as in Nomad.
pub fn parse_write(app: &App, q: Option<&str>) -> Result<(), ApiError> {
    for (k, v) in parse_pairs(q) {
        if k == "region" && !v.is_empty() && v != app.cfg.region {
            return Err(ApiError::Internal("No path to region".into()));
        }
    }
    Ok(())
}

tokio::task_local! {
    /// The lagging follower's state answering this request (`stale_reads`).
    static FOLLOWER: Option<Arc<Cluster>>;
}

fn follower() -> Option<Arc<Cluster>> {
    FOLLOWER.try_with(|f| f.clone()).ok().flatten()
}

/// The state a read is answered from: the leader's, or a lagging
/// follower's under the `stale_reads` fault.
pub enum View<'a> {
    Leader(std::sync::RwLockReadGuard<'a, Cluster>),
    Follower(Arc<Cluster>),
}

impl std::ops::Deref for View<'_> {
    type Target = Cluster;
    fn deref(&self) -> &Cluster {
        match self {
            View::Leader(g) => g,
            View::Follower(c) => c,
        }
    }
}

pub fn read_state(app: &App) -> View<'_> {
    match follower() {
        Some(c) => View::Follower(c),
        None => View::Leader(app.cluster.read().unwrap()),
    }
}

/// Runs a blocking query: `probe` returns the current index of the watched
/// data and a receiver that fires when that data may have changed. Returns
/// once the index is above `q.index` or the wait ran out.
pub async fn block_until(
    app: &App,
    q: &Query,
    probe: impl Fn(&Cluster) -> (u64, Option<watch::Receiver<u64>>),
) {
    if q.index == 0 {
        return;
    }
    struct Parked<'a>(&'a std::sync::atomic::AtomicI64);
    impl Drop for Parked<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    app.waiters
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _parked = Parked(&app.waiters);
    let deadline = tokio::time::Instant::now() + q.wait;
    if let Some(f) = follower() {
        // A follower that does not apply the log never moves: an index at
        // or above its own blocks until the wait runs out (blockingRPC).
        if probe(&f).0 <= q.index {
            tokio::time::sleep_until(deadline).await;
        }
        return;
    }
    loop {
        let (idx, rx) = {
            let c = app.cluster.read().unwrap();
            probe(&c)
        };
        if idx > q.index {
            return;
        }
        let Some(mut rx) = rx else { return };
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() {
                    // The watched object is gone; re-probe (it will fall
                    // back to a table watch).
                    continue;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
        }
    }
}

fn route_pattern(method: &Method, path: &str) -> String {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let pat = match segs.as_slice() {
        ["v1", "node", _] => "/v1/node/:id".to_string(),
        ["v1", "node", _, sub] => format!("/v1/node/:id/{sub}"),
        ["v1", "allocation", _] => "/v1/allocation/:id".to_string(),
        ["v1", "acl", "role", _] => "/v1/acl/role/:id".to_string(),
        ["sim", "nodes", _, sub] => format!("/sim/nodes/:id/{sub}"),
        ["sim", "allocations", _, sub] => format!("/sim/allocations/:id/{sub}"),
        ["sim", "workload", _] => "/sim/workload/:id".to_string(),
        _ => path.to_string(),
    };
    format!("{method} {pat}")
}

/// One request, end to end. An `Err` closes the connection without an
/// answer (the dropped-connection fault).
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    _peer: SocketAddr,
) -> Result<Resp, std::io::Error> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    {
        let mut s = app.stats.lock().unwrap();
        *s.requests.entry(route_pattern(&method, &path)).or_default() += 1;
    }
    let known_leader;
    if path.starts_with("/v1/") {
        let faults = app.faults.lock().unwrap().clone();
        known_leader = !(faults.leader_lost && faults.applies(&path));
        if faults.applies(&path) && faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        let action = faults.decide(&path);
        if action != FaultAction::None {
            let mut s = app.stats.lock().unwrap();
            *s.faults.entry(action.name().to_string()).or_default() += 1;
        }
        match action {
            FaultAction::Drop => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "nomad-sim: injected dropped connection",
                ));
            }
            FaultAction::Error => {
                let r = text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "rpc error: nomad-sim injected fault",
                );
                count_status(&app, r.status());
                return Ok(r);
            }
            FaultAction::NoLeader => {
                let mut r = text(StatusCode::INTERNAL_SERVER_ERROR, "No cluster leader");
                set_meta(&mut r, 0, false);
                count_status(&app, r.status());
                return Ok(r);
            }
            FaultAction::None => {}
        }
    } else {
        known_leader = true;
    }
    let res = if path.starts_with("/sim/") || path == "/sim" {
        crate::control::handle(&app, req).await
    } else {
        let (fstate, stale) = if method == Method::GET {
            let f = app.faults.lock().unwrap().clone();
            let st = f.follower_for(&path, req.uri().query());
            (st.clone(), st.and(f.stale_reads))
        } else {
            (None, None)
        };
        let r = FOLLOWER
            .scope(fstate, route_v1(&app, req, &path, known_leader))
            .await;
        match (r, stale) {
            (Ok(mut r), Some(sr)) => {
                // setMeta from the follower's QueryMeta.
                let h = r.headers_mut();
                if h.contains_key("x-nomad-index") {
                    h.insert(
                        "x-nomad-lastcontact",
                        sr.last_contact_ms.to_string().parse().unwrap(),
                    );
                    if !sr.known_leader {
                        h.insert("x-nomad-knownleader", "false".parse().unwrap());
                    }
                }
                Ok(r)
            }
            (r, _) => r,
        }
    };
    let r = match res {
        Ok(r) => r,
        Err(e) => err_resp(&e),
    };
    let r = crate::faults::truncate_json(&app, &path, r).await;
    count_status(&app, r.status());
    Ok(r)
}

fn count_status(app: &App, s: StatusCode) {
    let mut st = app.stats.lock().unwrap();
    *st.responses.entry(s.as_u16()).or_default() += 1;
}

/// Checks the request's token against `cap`.
pub fn authorize(
    app: &App,
    headers: &hyper::HeaderMap,
    cap: Capability,
) -> Result<Option<Identity>, ApiError> {
    let tok = token_from_headers(headers);
    app.acl
        .check(tok.as_deref(), cap)
        .map_err(|_| ApiError::PermissionDenied)
}

/// Resolves the request's token (`Authenticate` + `ResolveACL`) without
/// checking a capability; an unknown token is `403 Permission denied`.
pub fn auth(app: &App, headers: &hyper::HeaderMap) -> Result<Auth, ApiError> {
    let tok = token_from_headers(headers);
    app.acl
        .resolve(tok.as_deref())
        .map_err(|_| ApiError::PermissionDenied)
}

/// Reads a request body for a write endpoint (Nomad's `decodeBody`).
pub async fn read_body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
    fields: &[&str],
    nested: &[(&str, &[&str])],
) -> Result<T, ApiError> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .to_bytes();
    if bytes.is_empty() {
        return Err(ApiError::BadRequest("Request body is empty".into()));
    }
    let mut v: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    crate::wire::canonical_keys(&mut v, fields, nested);
    serde_json::from_value(v).map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn route_v1(
    app: &Arc<App>,
    req: Request<Incoming>,
    path: &str,
    known_leader: bool,
) -> Result<Resp, ApiError> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method().clone();
    let is_get = method == Method::GET;
    let is_write = method == Method::PUT || method == Method::POST;
    match segs.as_slice() {
        ["v1", "nodes"] => {
            allow_method(is_get)?;
            nodes::list(app, req, known_leader).await
        }
        ["v1", "node", ""] | ["v1", "node"] => Err(ApiError::BadRequest("Missing node ID".into())),
        ["v1", "node", id] => {
            allow_method(is_get)?;
            nodes::read(app, req, id, known_leader).await
        }
        ["v1", "node", id, "allocations"] => {
            allow_method(is_get)?;
            nodes::allocations(app, req, id, known_leader).await
        }
        ["v1", "node", id, "drain"] => {
            allow_method(is_write)?;
            nodes::drain(app, req, id).await
        }
        ["v1", "node", id, "eligibility"] => {
            allow_method(is_write)?;
            nodes::eligibility(app, req, id).await
        }
        ["v1", "node", id, "purge"] => {
            allow_method(is_write)?;
            nodes::purge(app, req, id).await
        }
        ["v1", "allocations"] => {
            allow_method(is_get)?;
            allocs::list(app, req, known_leader).await
        }
        ["v1", "allocation", id] => {
            allow_method(is_get)?;
            allocs::read(app, req, id, known_leader).await
        }
        ["v1", "namespaces"] => {
            allow_method(is_get)?;
            acl::namespaces(app, req, known_leader)
        }
        ["v1", "acl", "token", "self"] => {
            allow_method(is_get)?;
            acl::token_self(app, req, known_leader)
        }
        ["v1", "acl", "policies"] | ["v1", "acl", "policy", "self"] => {
            allow_method(is_get)?;
            acl::policies(app, req, known_leader)
        }
        ["v1", "acl", "policy", ""] => Err(ApiError::BadRequest("Missing Policy Name".into())),
        ["v1", "acl", "policy", name] => {
            // PUT/POST/DELETE are Nomad's policy writes, which the simulator
            // does not serve (policies come from the control surface).
            allow_method(is_get)?;
            acl::policy(app, req, name, known_leader)
        }
        ["v1", "acl", "role", ""] => Err(ApiError::BadRequest("missing ACL role ID".into())),
        ["v1", "acl", "role", id] => {
            allow_method(is_get)?;
            acl::role(app, req, id, known_leader)
        }
        ["v1", "event", "stream"] => {
            allow_method(is_get)?;
            stream::events(app, req).await
        }
        ["v1", "system", "gc"] => {
            // PUT only (POST is 405), management token.
            allow_method(method == Method::PUT)?;
            authorize(app, req.headers(), Capability::Management)?;
            app.write().force_gc();
            Ok(Response::new(full(Bytes::new())))
        }
        ["v1", "status", "leader"] => {
            allow_method(is_get)?;
            stream::leader(app, req, known_leader)
        }
        ["v1", "agent", "self"] => {
            allow_method(is_get)?;
            stream::agent_self(app, req)
        }
        _ => Err(ApiError::NotFound(format!("Invalid URL path {path}"))),
    }
}

/// Nomad's `405 Invalid method` for a route that does not take the
/// request's method.
fn allow_method(allowed: bool) -> Result<(), ApiError> {
    if allowed {
        Ok(())
    } else {
        Err(ApiError::InvalidMethod)
    }
}

/// Paginates an ID-ordered list like Nomad's paginator: `next_token` is the
/// ID of the first item of the next page.
pub fn paginate<T>(items: Vec<(String, T)>, q: &Query) -> (Vec<T>, Option<String>) {
    let mut items = items;
    if q.reverse {
        items.reverse();
    }
    let start = match &q.next_token {
        Some(t) if !t.is_empty() => items
            .iter()
            .position(|(id, _)| {
                if q.reverse {
                    id.as_str() <= t.as_str()
                } else {
                    id.as_str() >= t.as_str()
                }
            })
            .unwrap_or(items.len()),
        _ => 0,
    };
    let mut it: Vec<(String, T)> = items.into_iter().skip(start).collect();
    let mut next = None;
    if let Some(pp) = q.per_page
        && pp > 0
        && it.len() > pp
    {
        next = Some(it[pp].0.clone());
        it.truncate(pp);
    }
    (it.into_iter().map(|(_, t)| t).collect(), next)
}
