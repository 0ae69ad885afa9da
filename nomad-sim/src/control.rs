//! The control surface under `/sim/` (never under `/v1/`): register and kill
//! nodes, submit workload, finish allocations, control simulated time,
//! inject faults, read request counts and safety violations. Documented in
//! `nomad-sim/README.md`. It needs no ACL token.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::faults::Faults;
use crate::http_common::{ApiError, Resp, json_bytes, to_json};
use crate::state::{Cluster, DEFAULT_KILL_TIMEOUT_NS, GroupSpec, JobSpec, NodeSpec, Placement};
use crate::wire::StrMap;
use crate::{App, secs_to_ns};

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

/// A scenario file (`--scenario FILE`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Namespaces to create before anything else.
    pub namespaces: Vec<NamespaceReq>,
    pub nodes: Vec<RegisterNodes>,
    pub allocations: Vec<AllocReq>,
    pub workloads: Vec<WorkloadReq>,
    pub time_scale: Option<f64>,
}

pub fn apply_scenario(app: &App, sc: &Scenario) -> Result<(), String> {
    if let Some(s) = sc.time_scale {
        app.clock.set_scale(s);
    }
    let mut c = app.write();
    for n in &sc.namespaces {
        c.upsert_namespace(&n.name, &n.description)
            .map_err(|e| e.to_string())?;
    }
    for n in &sc.nodes {
        register(&mut c, n).map_err(|e| e.to_string())?;
    }
    for a in &sc.allocations {
        submit(&mut c, a).map_err(|e| e.to_string())?;
    }
    for w in &sc.workloads {
        add_workload(&mut c, w).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn register(c: &mut Cluster, r: &RegisterNodes) -> Result<Value, ApiError> {
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
            "namespace {ns:?} does not exist (create it with POST /sim/namespaces)"
        )))
    }
}

/// `POST /sim/acl/policies` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyReq {
    name: String,
    #[serde(default)]
    description: String,
    /// A Nomad JSON policy object; `null` is a policy without rules.
    #[serde(default)]
    rules: Value,
}

/// `POST /sim/acl/roles` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleReq {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    policies: Vec<String>,
}

/// `POST /sim/acl/tokens` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenReq {
    secret: String,
    #[serde(rename = "type", default = "client")]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    policies: Vec<String>,
    /// Role names.
    #[serde(default)]
    roles: Vec<String>,
}

fn client() -> String {
    "client".into()
}

fn submit(c: &mut Cluster, a: &AllocReq) -> Result<Value, ApiError> {
    known_namespace(c, &a.namespace)?;
    if !matches!(a.job_type.as_str(), "batch" | "service" | "system") {
        return Err(ApiError::BadRequest(format!(
            "type must be batch, service or system, not {:?}",
            a.job_type
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
            "job {:?} exists with another kill_timeout_s or max_client_disconnect_s",
            j.id
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

fn add_workload(c: &mut Cluster, w: &WorkloadReq) -> Result<String, ApiError> {
    known_namespace(c, &w.namespace)?;
    let min = secs_to_ns(w.duration_min_s);
    let max = secs_to_ns(w.duration_max_s.unwrap_or(w.duration_min_s));
    Ok(c.add_workload(&w.namespace, &w.node_pool, w.rate_per_minute, min, max))
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

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FinishReq {
    failed: bool,
}

fn time_json(app: &App) -> Value {
    let now = app.clock.now();
    json!({"now": crate::clock::rfc3339(now), "now_ns": now, "scale": app.clock.scale()})
}

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
        (Method::POST, ["sim", "nodes"]) => {
            let r: RegisterNodes = body_json(req).await?;
            let v = register(&mut app.write(), &r)?;
            Ok(ok(&v))
        }
        (Method::GET, ["sim", "nodes"]) => {
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
        (Method::POST, ["sim", "nodes", key, action]) => {
            if !matches!(
                *action,
                "kill" | "restart" | "disconnect" | "reconnect" | "reregister"
            ) {
                return Err(ApiError::NotFound(format!("unknown action {action}")));
            }
            let mut c = app.write();
            let ids = c.vm_action(key, action).map_err(|e| match e {
                crate::state::StateError::NodeNotFound => {
                    ApiError::NotFound("node not found".into())
                }
                other => other.into(),
            })?;
            // The node acted on (for `reregister`, the new one), and all of them.
            let id = ids.last().cloned().unwrap_or_default();
            let iid = c.nodes.get(&id).and_then(|r| r.instance_id.clone());
            Ok(ok(
                &json!({"node_id": id, "instance_id": iid, "node_ids": ids}),
            ))
        }
        (Method::POST, ["sim", "allocations"]) => {
            let r: AllocReq = body_required(req).await?;
            let v = submit(&mut app.write(), &r)?;
            Ok(ok(&v))
        }
        (Method::POST, ["sim", "allocations", id, "finish"]) => {
            let id = id.to_string();
            let r: FinishReq = body_json(req).await?;
            app.write().finish_alloc(&id, r.failed)?;
            Ok(ok(&json!({"alloc_id": id, "failed": r.failed})))
        }
        (Method::POST, ["sim", "workload"]) => {
            let r: WorkloadReq = body_required(req).await?;
            let id = add_workload(&mut app.write(), &r)?;
            Ok(ok(&json!({"id": id})))
        }
        (Method::DELETE, ["sim", "workload"]) => {
            app.write().workloads.clear();
            Ok(ok(&json!({"stopped": "all"})))
        }
        (Method::DELETE, ["sim", "workload", id]) => {
            let mut c = app.write();
            let before = c.workloads.len();
            c.workloads.retain(|w| w.id != *id);
            if c.workloads.len() == before {
                return Err(ApiError::NotFound("workload not found".into()));
            }
            Ok(ok(&json!({"stopped": id})))
        }
        (Method::POST, ["sim", "namespaces"]) => {
            let r: NamespaceReq = body_required(req).await?;
            let idx = app.write().upsert_namespace(&r.name, &r.description)?;
            Ok(ok(&json!({"name": r.name, "index": idx})))
        }
        (Method::POST, ["sim", "acl", "policies"]) => {
            let r: PolicyReq = body_required(req).await?;
            let idx = app.write().bump();
            let v = app
                .acl
                .upsert_policy(&r.name, &r.description, &r.rules, idx)
                .map_err(ApiError::BadRequest)?;
            Ok(ok(&v))
        }
        (Method::POST, ["sim", "acl", "roles"]) => {
            let r: RoleReq = body_required(req).await?;
            let idx = app.write().bump();
            let v = app
                .acl
                .upsert_role(&r.name, &r.description, &r.policies, idx)
                .map_err(ApiError::BadRequest)?;
            Ok(ok(&v))
        }
        (Method::POST, ["sim", "acl", "tokens"]) => {
            let r: TokenReq = body_required(req).await?;
            let (idx, now) = {
                let mut c = app.write();
                (c.bump(), c.now)
            };
            let v = app
                .acl
                .upsert_token(&r.secret, &r.kind, &r.name, &r.policies, &r.roles, idx, now)
                .map_err(ApiError::BadRequest)?;
            Ok(ok(&v))
        }
        (Method::GET, ["sim", "time"]) => Ok(ok(&time_json(app))),
        (Method::POST, ["sim", "time"]) => {
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
        (Method::GET, ["sim", "faults"]) => {
            let f = app.faults.lock().unwrap().clone();
            Ok(ok(&serde_json::to_value(f).unwrap()))
        }
        (Method::POST, ["sim", "faults"]) => {
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
            *app.faults.lock().unwrap() = f.clone();
            Ok(ok(&serde_json::to_value(f).unwrap()))
        }
        (Method::POST, ["sim", "index", "rewind"]) => {
            let r: RewindReq = body_required(req).await?;
            let mut c = app.write();
            let before = c.index;
            let after = c.rewind(r.by);
            Ok(ok(&json!({"before": before, "index": after})))
        }
        (Method::DELETE, ["sim", "faults"]) => {
            *app.faults.lock().unwrap() = Faults::default();
            Ok(ok(&json!({})))
        }
        (Method::GET, ["sim", "stats"]) => {
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
        (Method::GET, ["sim", "violations"]) => {
            let c = app.cluster.read().unwrap();
            Ok(ok(
                &json!({"count": c.violations.len(), "violations": c.violations}),
            ))
        }
        (Method::POST, ["sim", "reset"]) => {
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
        _ => Err(ApiError::NotFound(format!(
            "unknown control endpoint {path}"
        ))),
    }
}
