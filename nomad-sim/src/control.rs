//! The control surface under `/sim/` (never under `/v1/`): register and kill
//! nodes, submit workload, finish allocations, control simulated time,
//! inject faults, read request counts and safety violations. Documented in
//! `nomad-sim/README.md`. It needs no ACL token.
//!
//! This file routes `/sim/...` and reads request bodies; the endpoints
//! live in rooms by what they act on: `cluster` (nodes, allocations,
//! workloads, namespaces), `acl` (ACL objects), `sim` (time, faults,
//! statistics, reset), and `scenario` (the start-up file).

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

use crate::App;
use crate::http_common::{ApiError, Resp, json_bytes, to_json};

mod acl;
mod cluster;
mod scenario;
mod sim;

pub use cluster::{AllocReq, NamespaceReq, RegisterNodes, WorkloadReq};
pub use scenario::{Scenario, ScenarioError, apply_scenario};

/// Dispatches `/sim/...`.
pub async fn handle(app: &Arc<App>, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(str::to_string)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let m = req.method().clone();
    match (m, segs.as_slice()) {
        (Method::POST, ["sim", "nodes"]) => cluster::register_nodes(app, req).await,
        (Method::GET, ["sim", "nodes"]) => cluster::list_nodes(app),
        (Method::POST, ["sim", "nodes", key, action]) => cluster::vm_action(app, key, action),
        (Method::POST, ["sim", "allocations"]) => cluster::submit_allocations(app, req).await,
        (Method::POST, ["sim", "allocations", id, "finish"]) => {
            cluster::finish_allocation(app, id, req).await
        }
        (Method::POST, ["sim", "workload"]) => cluster::start_workload(app, req).await,
        (Method::DELETE, ["sim", "workload"]) => cluster::stop_workloads(app),
        (Method::DELETE, ["sim", "workload", id]) => cluster::stop_workload(app, id),
        (Method::POST, ["sim", "namespaces"]) => cluster::create_namespace(app, req).await,
        (Method::POST, ["sim", "acl", "policies"]) => acl::upsert_policy(app, req).await,
        (Method::POST, ["sim", "acl", "roles"]) => acl::upsert_role(app, req).await,
        (Method::POST, ["sim", "acl", "tokens"]) => acl::upsert_token(app, req).await,
        (Method::GET, ["sim", "time"]) => Ok(ok(&sim::time_json(app))),
        (Method::POST, ["sim", "time"]) => sim::set_time(app, req).await,
        (Method::GET, ["sim", "faults"]) => sim::get_faults(app),
        (Method::POST, ["sim", "faults"]) => sim::set_faults(app, req).await,
        (Method::POST, ["sim", "index", "rewind"]) => sim::rewind(app, req).await,
        (Method::DELETE, ["sim", "faults"]) => sim::clear_faults(app),
        (Method::GET, ["sim", "stats"]) => sim::stats(app),
        (Method::GET, ["sim", "violations"]) => sim::violations(app),
        (Method::POST, ["sim", "reset"]) => sim::reset(app),
        _ => Err(ApiError::NotFound(format!(
            "unknown control endpoint {path}"
        ))),
    }
}

async fn body_json<T: serde::de::DeserializeOwned + Default>(
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let b = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .to_bytes();
    if b.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(&b).map_err(|e| ApiError::BadRequest(e.to_string()))
}

async fn body_required<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, ApiError> {
    let b = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiError::BadRequest(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&b).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn ok(v: &Value) -> Resp {
    json_bytes(StatusCode::OK, to_json(v, true))
}
