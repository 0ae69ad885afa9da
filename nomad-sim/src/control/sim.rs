//! The simulator's own knobs: simulated time (scale and jumps), injected
//! faults, the Raft index rewind, request and cluster statistics, safety
//! violations, and reset. Nothing here exists in Nomad.

use std::sync::Arc;

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{body_json, body_required, ok};
use crate::faults::Faults;
use crate::http_common::{ApiError, Resp};
use crate::state::Cluster;
use crate::{App, secs_to_ns};

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TimeReq {
    scale: Option<f64>,
    advance_s: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewindReq {
    by: u64,
}

pub(super) fn time_json(app: &App) -> Value {
    let now = app.clock.now();
    json!({"now": crate::clock::rfc3339(now), "now_ns": now, "scale": app.clock.scale()})
}

/// `POST /sim/time`: sets the time scale, or jumps ahead (every timer
/// up to the new time is handled before the answer).
pub(super) async fn set_time(app: &Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: TimeReq = body_json(req).await?;
    if let Some(s) = r.scale {
        if !(s >= 0.0 && s.is_finite()) {
            return Err(ApiError::BadRequest("scale must be >= 0".into()));
        }
        app.clock.set_scale(s);
    }
    if let Some(a) = r.advance_s {
        app.clock.advance(secs_to_ns(a));
        let app2 = app.clone();
        let _ = tokio::task::spawn_blocking(move || {
            // Drain every timer up to the new time.
            loop {
                let now = app2.clock.now();
                let mut c = app2.cluster.write().unwrap();
                let n = c.advance_to(now, 100_000);
                if n < 100_000 {
                    break;
                }
            }
        })
        .await;
    }
    Ok(ok(&time_json(app)))
}

/// `GET /sim/faults`.
pub(super) fn get_faults(app: &App) -> Result<Resp, ApiError> {
    let f = app.faults.lock().unwrap().clone();
    Ok(ok(&serde_json::to_value(f).unwrap()))
}

/// `POST /sim/faults`: replaces the faults; stale reads freeze a follower now.
pub(super) async fn set_faults(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let mut f: Faults = body_json(req).await?;
    if let Some(sr) = f.stale_reads.as_mut() {
        if !(0.0..=1.0).contains(&sr.rate) {
            return Err(ApiError::BadRequest(
                "stale_reads.rate must be in 0..=1".into(),
            ));
        }
        // The follower stops applying the log now.
        let snap = app.cluster.read().unwrap().read_snapshot();
        sr.frozen_at_index = snap.index;
        f.follower = crate::faults::FollowerState(Some(Arc::new(snap)));
    }
    if let Some(seed) = f.seed {
        // Each POST starts the sequence again.
        f.dice = crate::faults::Dice::seeded(seed);
    }
    *app.faults.lock().unwrap() = f.clone();
    Ok(ok(&serde_json::to_value(f).unwrap()))
}

/// `POST /sim/index/rewind`.
pub(super) async fn rewind(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: RewindReq = body_required(req).await?;
    let mut c = app.write();
    let before = c.index;
    let after = c.rewind(r.by);
    Ok(ok(&json!({"before": before, "index": after})))
}

/// `DELETE /sim/faults`.
pub(super) fn clear_faults(app: &App) -> Result<Resp, ApiError> {
    *app.faults.lock().unwrap() = Faults::default();
    Ok(ok(&json!({})))
}

/// `GET /sim/stats`.
pub(super) fn stats(app: &App) -> Result<Resp, ApiError> {
    let counts = app.cluster.read().unwrap().counts();
    let s = app.stats.lock().unwrap();
    Ok(ok(&json!({
        "requests": s.requests,
        "responses": s.responses,
        "faults_injected": s.faults,
        "blocking_queries_open": app.waiters.load(std::sync::atomic::Ordering::Relaxed),
        "connections": app.conns.stats(),
        "cluster": counts,
        "time": time_json(app),
    })))
}

/// `GET /sim/violations`.
pub(super) fn violations(app: &App) -> Result<Resp, ApiError> {
    let c = app.cluster.read().unwrap();
    Ok(ok(
        &json!({"count": c.violations.len(), "violations": c.violations}),
    ))
}

/// `POST /sim/reset`: a fresh cluster at a higher index; waiters of the old
/// one are woken so they re-read.
pub(super) fn reset(app: &App) -> Result<Resp, ApiError> {
    let mut c = app.cluster.write().unwrap();
    let cfg = c.cfg.clone();
    let idx = c.index + 1;
    let mut fresh = Cluster::new(cfg, idx);
    fresh.now = app.clock.now();
    let old = std::mem::replace(&mut *c, fresh);
    // Wake every waiter of the old state so it re-reads.
    old.nodes_tx.send_replace(idx);
    old.allocs_tx.send_replace(idx);
    for w in old.watches.values() {
        w.node.send_replace(idx);
        w.allocs.send_replace(idx);
    }
    drop(c);
    *app.faults.lock().unwrap() = Faults::default();
    *app.stats.lock().unwrap() = Default::default();
    Ok(ok(&json!({"reset": true, "index": idx})))
}
