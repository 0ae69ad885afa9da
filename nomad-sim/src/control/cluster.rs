//! The simulated cluster as tests and benchmarks drive it: nodes registered,
//! killed, partitioned and restarted (one by one or per VM), allocations
//! submitted and finished, workload generators, namespaces. Request bodies
//! are strict (`deny_unknown_fields`), so a misspelled setting fails loudly.

use hyper::Request;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{body_json, body_required, ok};
use crate::App;
use crate::goquote::go_quote;
use crate::http_common::{ApiError, Resp};
use crate::secs_to_ns;
use crate::state::{Cluster, DEFAULT_KILL_TIMEOUT_NS, GroupSpec, JobSpec, NodeSpec, Placement};
use crate::wire::StrMap;

/// `POST /sim/nodes` body (also a scenario file's `nodes` entries).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegisterNodes {
    pub count: Option<u32>,
    pub name_prefix: Option<String>,
    pub node_pool: Option<String>,
    pub node_class: Option<String>,
    pub datacenter: Option<String>,
    pub meta: Option<StrMap>,
    pub attributes: Option<StrMap>,
    pub cloud: Option<String>,
    /// Explicit instance IDs, one per node (`count` defaults to their number).
    pub instance_ids: Option<Vec<String>>,
    pub availability_zone: Option<String>,
    pub slots: Option<u32>,
}

/// `POST /sim/workload` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadReq {
    /// Namespace of the submitted jobs (must exist; default `default`).
    #[serde(default = "default_ns")]
    pub namespace: String,
    #[serde(default = "default_pool")]
    pub node_pool: String,
    pub rate_per_minute: f64,
    #[serde(default = "default_dur_min")]
    pub duration_min_s: f64,
    #[serde(default)]
    pub duration_max_s: Option<f64>,
}

fn default_ns() -> String {
    "default".into()
}

fn default_pool() -> String {
    "default".into()
}
fn default_dur_min() -> f64 {
    60.0
}

/// `POST /sim/allocations` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocReq {
    #[serde(default)]
    pub job_id: Option<String>,
    /// Namespace of the job (must exist; default `default`).
    #[serde(default = "default_ns")]
    pub namespace: String,
    /// `batch`, `service` or `system`.
    #[serde(rename = "type", default = "default_type")]
    pub job_type: String,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub node_id: Option<String>,
    #[serde(default = "default_pool")]
    pub node_pool: String,
    /// Simulated seconds; absent or null runs until finished via the API.
    #[serde(default)]
    pub duration_s: Option<f64>,
    #[serde(default = "one")]
    pub max_parallel: u32,
    /// The task's `kill_timeout` in simulated seconds (Nomad's default 5):
    /// every stop leaves the task running this long before it is `complete`.
    #[serde(default)]
    pub kill_timeout_s: Option<f64>,
    /// The group's `disconnect { lost_after }` / `max_client_disconnect` in
    /// simulated seconds: how long the allocation may stay `unknown` on a
    /// disconnected node. Absent: no tolerance (the allocation is `lost`).
    #[serde(default)]
    pub max_client_disconnect_s: Option<f64>,
}

fn default_type() -> String {
    "batch".into()
}
fn one() -> u32 {
    1
}

pub(super) fn register(c: &mut Cluster, r: &RegisterNodes) -> Result<Value, ApiError> {
    let count = r
        .count
        .unwrap_or_else(|| r.instance_ids.as_ref().map(|v| v.len() as u32).unwrap_or(1));
    if let Some(ids) = &r.instance_ids
        && ids.len() as u32 != count
    {
        return Err(ApiError::BadRequest(
            "instance_ids must have exactly `count` entries".into(),
        ));
    }
    let mut out = Vec::new();
    for i in 0..count {
        let spec = NodeSpec {
            name: r
                .name_prefix
                .as_ref()
                .map(|p| format!("{p}-{}", c.node_seq + 1)),
            node_pool: r.node_pool.clone(),
            node_class: r.node_class.clone(),
            datacenter: r.datacenter.clone(),
            meta: r.meta.clone(),
            attributes: r.attributes.clone(),
            cloud: r.cloud.clone(),
            instance_id: r.instance_ids.as_ref().map(|v| v[i as usize].clone()),
            availability_zone: r.availability_zone.clone(),
            slots: r.slots,
        };
        let (id, iid) = c.register_node(&spec);
        let name = c.nodes[&id].node.name.clone();
        out.push(json!({"id": id, "name": name, "instance_id": iid}));
    }
    c.schedule_pending();
    Ok(json!({"nodes": out}))
}

/// `POST /sim/namespaces` body (also a scenario file's `namespaces`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceReq {
    pub name: String,
    #[serde(default)]
    pub description: String,
}

fn known_namespace(c: &Cluster, ns: &str) -> Result<(), ApiError> {
    if c.namespaces.contains_key(ns) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "namespace {} does not exist (create it with POST /sim/namespaces)",
            go_quote(ns)
        )))
    }
}

pub(super) fn submit(c: &mut Cluster, a: &AllocReq) -> Result<Value, ApiError> {
    known_namespace(c, &a.namespace)?;
    if !matches!(a.job_type.as_str(), "batch" | "service" | "system") {
        return Err(ApiError::BadRequest(format!(
            "type must be batch, service or system, not {}",
            go_quote(&a.job_type)
        )));
    }
    if let Some(n) = &a.node_id
        && !c.nodes.contains_key(n)
    {
        return Err(ApiError::NotFound("node not found".into()));
    }
    let kill = match a.kill_timeout_s {
        Some(k) if !(k >= 0.0 && k.is_finite()) => {
            return Err(ApiError::BadRequest("kill_timeout_s must be >= 0".into()));
        }
        Some(k) => secs_to_ns(k),
        None => DEFAULT_KILL_TIMEOUT_NS,
    };
    let lost_after = match a.max_client_disconnect_s {
        Some(l) if !(l > 0.0 && l.is_finite()) => {
            return Err(ApiError::BadRequest(
                "max_client_disconnect_s must be > 0".into(),
            ));
        }
        Some(l) => Some(secs_to_ns(l)),
        None => None,
    };
    if let Some(j) = a
        .job_id
        .as_ref()
        .and_then(|id| c.jobs.get(&crate::wire::Job::key_of(&a.namespace, id)))
        && (j.kill_timeout_ns != kill || j.lost_after_ns != lost_after)
    {
        // Allocations of one job share its task group's settings.
        return Err(ApiError::BadRequest(format!(
            "job {} exists with another kill_timeout_s or max_client_disconnect_s",
            go_quote(&j.id)
        )));
    }
    let job = c.new_job(JobSpec {
        id: a.job_id.clone(),
        namespace: &a.namespace,
        job_type: &a.job_type,
        pool: &a.node_pool,
        count: a.count,
        max_parallel: a.max_parallel,
        group: GroupSpec {
            kill_timeout_ns: kill,
            lost_after_ns: lost_after,
        },
    });
    if a.job_type == "system" {
        let ids = c.submit_system_job(job.clone());
        return Ok(json!({"job_id": job.id, "alloc_ids": ids, "queued": 0}));
    }
    let mut ids = Vec::new();
    let mut queued = 0;
    for i in 0..a.count {
        let p = Placement {
            job: job.clone(),
            index_in_job: i,
            previous: None,
            duration_ns: a.duration_s.map(secs_to_ns),
            node: a.node_id.clone(),
        };
        match c.place_one(&p) {
            Some(id) => ids.push(id),
            None => {
                queued += 1;
                c.enqueue(p);
            }
        }
    }
    Ok(json!({"job_id": job.id, "alloc_ids": ids, "queued": queued}))
}

pub(super) fn add_workload(c: &mut Cluster, w: &WorkloadReq) -> Result<String, ApiError> {
    known_namespace(c, &w.namespace)?;
    let min = secs_to_ns(w.duration_min_s);
    let max = secs_to_ns(w.duration_max_s.unwrap_or(w.duration_min_s));
    Ok(c.add_workload(&w.namespace, &w.node_pool, w.rate_per_minute, min, max))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FinishReq {
    failed: bool,
}

/// `POST /sim/nodes`.
pub(super) async fn register_nodes(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: RegisterNodes = body_json(req).await?;
    let v = register(&mut app.write(), &r)?;
    Ok(ok(&v))
}

/// `GET /sim/nodes`: every node as the control surface sees it.
pub(super) fn list_nodes(app: &App) -> Result<Resp, ApiError> {
    let c = app.cluster.read().unwrap();
    let v: Vec<Value> = c
        .nodes
        .values()
        .map(|r| {
            json!({"id": r.node.id, "name": r.node.name, "instance_id": r.instance_id,
               "status": r.node.status, "eligibility": r.node.scheduling_eligibility,
               "draining": r.node.drain_strategy.is_some(), "vm_alive": r.alive,
               "connected": r.connected,
               "slots": r.slots, "used_slots": r.used_slots,
               "node_pool": r.node.node_pool})
        })
        .collect();
    Ok(ok(&json!({"nodes": v})))
}

/// `POST /sim/nodes/:key/:action`: acts on a node, or on every node of a VM.
pub(super) fn vm_action(app: &App, key: &str, action: &str) -> Result<Resp, ApiError> {
    if !matches!(
        action,
        "kill" | "restart" | "disconnect" | "reconnect" | "reregister"
    ) {
        return Err(ApiError::NotFound(format!("unknown action {action}")));
    }
    let mut c = app.write();
    let ids = c.vm_action(key, action).map_err(|e| match e {
        crate::state::StateError::NodeNotFound => ApiError::NotFound("node not found".into()),
        other => other.into(),
    })?;
    // The node acted on (for `reregister`, the new one), and all of them.
    let id = ids.last().cloned().unwrap_or_default();
    let iid = c.nodes.get(&id).and_then(|r| r.instance_id.clone());
    Ok(ok(
        &json!({"node_id": id, "instance_id": iid, "node_ids": ids}),
    ))
}

/// `POST /sim/allocations`.
pub(super) async fn submit_allocations(
    app: &App,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let r: AllocReq = body_required(req).await?;
    let v = submit(&mut app.write(), &r)?;
    Ok(ok(&v))
}

/// `POST /sim/allocations/:id/finish`.
pub(super) async fn finish_allocation(
    app: &App,
    id: &str,
    req: Request<Incoming>,
) -> Result<Resp, ApiError> {
    let id = id.to_string();
    let r: FinishReq = body_json(req).await?;
    app.write().finish_alloc(&id, r.failed)?;
    Ok(ok(&json!({"alloc_id": id, "failed": r.failed})))
}

/// `POST /sim/workload`.
pub(super) async fn start_workload(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: WorkloadReq = body_required(req).await?;
    let id = add_workload(&mut app.write(), &r)?;
    Ok(ok(&json!({"id": id})))
}

/// `DELETE /sim/workload`.
pub(super) fn stop_workloads(app: &App) -> Result<Resp, ApiError> {
    app.write().workloads.clear();
    Ok(ok(&json!({"stopped": "all"})))
}

/// `DELETE /sim/workload/:id`.
pub(super) fn stop_workload(app: &App, id: &str) -> Result<Resp, ApiError> {
    let mut c = app.write();
    let before = c.workloads.len();
    c.workloads.retain(|w| w.id != id);
    if c.workloads.len() == before {
        return Err(ApiError::NotFound("workload not found".into()));
    }
    Ok(ok(&json!({"stopped": id})))
}

/// `POST /sim/namespaces`.
pub(super) async fn create_namespace(app: &App, req: Request<Incoming>) -> Result<Resp, ApiError> {
    let r: NamespaceReq = body_required(req).await?;
    let idx = app.write().upsert_namespace(&r.name, &r.description)?;
    Ok(ok(&json!({"name": r.name, "index": idx})))
}
