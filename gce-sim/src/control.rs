//! The control surface under `/sim/` (never under `/compute/`): create
//! groups, instances and autoscalers, set an instance's state, change
//! timings, move simulated time, inject faults, read the request log.
//! Bodies are snake_case JSON with unknown fields refused. Documented in
//! `gce-sim/README.md`.

mod vms;

use std::sync::Arc;

use bytes::Bytes;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::App;
use crate::clock::secs;
use crate::error::ErrorSpec;
use crate::faults::{FaultAction, FaultRule};
use crate::http::{Resp, json as json_resp};
use crate::state::views::template_url;
use crate::state::{
    Autoscaler, CURRENT_ACTIONS, Group, INSTANCE_STATUSES, Key, ListMode, Scope, Timing, World,
};

/// What a control request got wrong.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("invalid body: {0}")]
    Body(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("unknown control endpoint {0}")]
    UnknownEndpoint(String),
}

impl ControlError {
    pub fn response(&self) -> Resp {
        let status = match self {
            ControlError::Body(_) | ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
            ControlError::NotFound(_) | ControlError::UnknownEndpoint(_) => StatusCode::NOT_FOUND,
            ControlError::Exists(_) => StatusCode::CONFLICT,
        };
        json_resp(status, &json!({"error": self.to_string()}))
    }
}

/// Where a resource lives: a project and exactly one of zone or region.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    pub project: String,
    #[serde(default)]
    pub zone: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

impl Place {
    fn scope(&self) -> Result<Scope, ControlError> {
        match (&self.zone, &self.region) {
            (Some(z), None) => Ok(Scope::Zone(z.clone())),
            (None, Some(r)) => Ok(Scope::Region(r.clone())),
            _ => Err(ControlError::Invalid(
                "give exactly one of zone or region".into(),
            )),
        }
    }

    fn key(&self, name: &str) -> Result<Key, ControlError> {
        Ok(Key {
            project: self.project.clone(),
            scope: self.scope()?,
            name: name.to_string(),
        })
    }
}

/// `POST /sim/groups` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    #[serde(flatten)]
    pub place: Place,
    pub name: String,
    /// Instances to start with (default: `target_size`, or the names given).
    #[serde(default)]
    pub instance_names: Option<Vec<String>>,
    #[serde(default)]
    pub target_size: Option<i32>,
    #[serde(default)]
    pub base_instance_name: Option<String>,
    /// The group's `description` (§1.1), set at creation: the only free text
    /// a MIG carries, where the operator reads its owner from.
    #[serde(default)]
    pub description: Option<String>,
    /// Template name or URL (default `<name>-template`).
    #[serde(default)]
    pub instance_template: Option<String>,
    #[serde(default)]
    pub list_managed_instances_results: ListMode,
    /// Regional groups: distribution zones (default `<region>-a,b,c`).
    #[serde(default)]
    pub zones: Option<Vec<String>>,
}

/// `POST /sim/instances` body: set one managed instance's state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceState {
    #[serde(flatten)]
    pub place: Place,
    pub group: String,
    pub name: String,
    #[serde(default)]
    pub instance_status: Option<String>,
    #[serde(default)]
    pub current_action: Option<String>,
    /// Simulated seconds until the action ends (absent: it does not end).
    #[serde(default)]
    pub action_duration_s: Option<f64>,
    /// Make the VM look this many simulated seconds old: its
    /// `creationTimestamp` becomes now minus this (a VM made long ago,
    /// for `maxNodeAge`).
    #[serde(default)]
    pub age_s: Option<f64>,
}

/// `POST /sim/autoscalers` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoscalerSpec {
    #[serde(flatten)]
    pub place: Place,
    pub name: String,
    /// Name of the group in the same zone or region.
    pub target: String,
    pub min_num_replicas: i32,
    pub max_num_replicas: i32,
    /// `ON`, `OFF`, `ONLY_SCALE_OUT` or `ONLY_UP` (§2).
    pub mode: String,
    #[serde(default = "cool_down")]
    pub cool_down_period_sec: i32,
    #[serde(default)]
    pub recommended_size: Option<i32>,
}

fn cool_down() -> i32 {
    60
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct TimeReq {
    scale: Option<f64>,
    advance_s: Option<f64>,
}

fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, ControlError> {
    let b: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(b).map_err(|e| ControlError::Body(e.to_string()))
}

fn ok(v: &Value) -> Resp {
    json_resp(StatusCode::OK, v)
}

fn create_group(w: &mut World, now: i64, s: &GroupSpec) -> Result<Value, ControlError> {
    let key = s.place.key(&s.name)?;
    if w.groups.contains_key(&key) {
        return Err(ControlError::Exists(key.path("instanceGroupManagers")));
    }
    let zones = match (&key.scope, &s.zones) {
        (Scope::Zone(z), None) => vec![z.clone()],
        (Scope::Zone(_), Some(_)) => {
            return Err(ControlError::Invalid("zones is for regional groups".into()));
        }
        (Scope::Region(r), None) => ["a", "b", "c"].map(|x| format!("{r}-{x}")).to_vec(),
        (Scope::Region(_), Some(z)) if z.is_empty() => {
            return Err(ControlError::Invalid("zones must not be empty".into()));
        }
        (Scope::Region(_), Some(z)) => z.clone(),
    };
    let names = s.instance_names.clone();
    let count = names
        .as_ref()
        .map(|n| n.len() as i32)
        .unwrap_or(s.target_size.unwrap_or(0));
    let group = Group {
        key: key.clone(),
        id: w.new_id(),
        created_ns: now,
        base_instance_name: s.base_instance_name.clone().unwrap_or(s.name.clone()),
        description: s.description.clone(),
        template: template_url(
            &key.project,
            s.instance_template
                .as_deref()
                .unwrap_or(&format!("{}-template", s.name)),
        ),
        target_size: s.target_size.unwrap_or(count),
        list_mode: s.list_managed_instances_results,
        zones,
        fingerprint: w.fingerprint(),
        instances: Default::default(),
        open_ops: Default::default(),
        autoscaler: None,
        changed_ns: now,
    };
    if group.target_size < 0 || group.target_size > group.max_size() {
        return Err(ControlError::Invalid("target_size out of range".into()));
    }
    w.add_template(&group.template);
    w.groups.insert(key.clone(), group);
    for i in 0..count {
        let name = names.as_ref().map(|n| n[i as usize].clone());
        w.add_instance(&key, name, None, "NONE", None);
    }
    let list = w
        .all_managed(&key)
        .map_err(|e| ControlError::Invalid(e.to_string()))?;
    Ok(json!({
        "group": w.igm_view(&key).map_err(|e| ControlError::Invalid(e.to_string()))?,
        "managed_instances": list,
    }))
}

fn set_instance(w: &mut World, now: i64, s: &InstanceState) -> Result<Value, ControlError> {
    let key = s.place.key(&s.group)?;
    let g = w
        .groups
        .get_mut(&key)
        .ok_or_else(|| ControlError::NotFound(key.path("instanceGroupManagers")))?;
    let i = g
        .instances
        .get_mut(&s.name)
        .ok_or_else(|| ControlError::NotFound(format!("instance {}", s.name)))?;
    if let Some(st) = &s.instance_status {
        if !INSTANCE_STATUSES.contains(&st.as_str()) {
            return Err(ControlError::Invalid(format!("instance_status {st}")));
        }
        i.instance_status = Some(st.clone());
    }
    if let Some(a) = &s.current_action {
        if !CURRENT_ACTIONS.contains(&a.as_str()) {
            return Err(ControlError::Invalid(format!("current_action {a}")));
        }
        i.current_action = a.clone();
        i.due_ns = s.action_duration_s.map(|d| now + secs(d));
    }
    if let Some(age) = s.age_s {
        if !(age >= 0.0 && age.is_finite()) {
            return Err(ControlError::Invalid("age_s must be >= 0".into()));
        }
        i.created_ns = now - secs(age);
    }
    Ok(json!({"name": i.name, "instance_status": i.instance_status,
              "current_action": i.current_action,
              "creation_timestamp": crate::clock::timestamp(i.created_ns)}))
}

/// `POST /sim/instance_templates` body: an instance template now exists
/// (global, or regional with `region`), for setInstanceTemplate to name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    pub project: String,
    #[serde(default)]
    pub region: Option<String>,
    pub name: String,
}

fn create_template(w: &mut World, s: &TemplateSpec) -> Result<Value, ControlError> {
    let path = match &s.region {
        None => format!("projects/{}/global/instanceTemplates/{}", s.project, s.name),
        Some(r) => format!(
            "projects/{}/regions/{r}/instanceTemplates/{}",
            s.project, s.name
        ),
    };
    if crate::state::templates::template_path(&s.project, &path).is_none() {
        return Err(ControlError::Invalid(format!("template {path}")));
    }
    let url = template_url(&s.project, &path);
    w.add_template(&url);
    Ok(json!({"self_link": url}))
}

/// `POST /sim/groups/description` body: the group's owner edits its
/// description (the harness marks which pool owns a group this way).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptionSpec {
    #[serde(flatten)]
    pub place: Place,
    pub name: String,
    pub description: String,
}

fn set_description(w: &mut World, s: &DescriptionSpec) -> Result<Value, ControlError> {
    let key = s.place.key(&s.name)?;
    let g = w
        .groups
        .get_mut(&key)
        .ok_or_else(|| ControlError::NotFound(key.path("instanceGroupManagers")))?;
    g.description = Some(s.description.clone());
    Ok(json!({"name": s.name, "description": s.description}))
}

fn create_autoscaler(w: &mut World, now: i64, s: &AutoscalerSpec) -> Result<Value, ControlError> {
    let key = s.place.key(&s.name)?;
    let target = s.place.key(&s.target)?;
    if !matches!(s.mode.as_str(), "ON" | "OFF" | "ONLY_SCALE_OUT" | "ONLY_UP") {
        return Err(ControlError::Invalid(format!("mode {}", s.mode)));
    }
    if s.min_num_replicas < 0 || s.max_num_replicas < s.min_num_replicas {
        return Err(ControlError::Invalid(
            "0 <= min_num_replicas <= max_num_replicas".into(),
        ));
    }
    let id = w.new_id();
    let url = key.url("autoscalers");
    let g = w
        .groups
        .get_mut(&target)
        .ok_or_else(|| ControlError::NotFound(target.path("instanceGroupManagers")))?;
    g.autoscaler = Some(url);
    w.autoscalers.insert(
        key.clone(),
        Autoscaler {
            id,
            created_ns: now,
            target: target.clone(),
            min_num_replicas: s.min_num_replicas,
            max_num_replicas: s.max_num_replicas,
            cool_down_period_sec: s.cool_down_period_sec,
            mode: s.mode.clone(),
            recommended_size: s.recommended_size,
        },
    );
    let v = w
        .autoscaler_view(&key)
        .map_err(|e| ControlError::Invalid(e.to_string()))?;
    Ok(serde_json::to_value(v).expect("serializes"))
}

/// `POST /sim/config`: changes the given timings, keeps the others.
fn set_config(w: &mut World, body: &Bytes) -> Result<Value, ControlError> {
    let patch: serde_json::Map<String, Value> = parse(body)?;
    let mut cur = serde_json::to_value(&w.timing).expect("serializes");
    for (k, v) in patch {
        cur[k] = v;
    }
    w.timing =
        serde_json::from_value::<Timing>(cur).map_err(|e| ControlError::Body(e.to_string()))?;
    Ok(serde_json::to_value(&w.timing).expect("serializes"))
}

fn time_json(app: &App) -> Value {
    let now = app.clock.now();
    json!({"now": crate::clock::timestamp(now), "now_ns": now, "scale": app.clock.scale()})
}

/// One control request: what the routes read of it.
pub struct ControlRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    /// Decoded query pairs (only `GET /sim/groups/vms` takes any).
    pub query: &'a [(String, String)],
    pub if_none_match: Option<&'a str>,
    pub body: &'a Bytes,
}

/// Dispatches `/sim/...`.
pub async fn handle(app: &Arc<App>, req: ControlRequest<'_>) -> Result<Resp, ControlError> {
    let now = app.clock.now();
    let (method, path, body) = (req.method, req.path, req.body);
    match (method.clone(), path) {
        (Method::POST, "/sim/groups") => {
            Ok(ok(&create_group(&mut app.world(), now, &parse(body)?)?))
        }
        (Method::GET, "/sim/groups") => {
            let w = app.world();
            // Each group with all its managed instances, whatever its
            // listing mode: what a bridge needs to follow the VMs.
            let v: Vec<Value> = w
                .groups
                .keys()
                .filter_map(|k| Some((w.igm_view(k).ok()?, w.all_managed(k).ok()?)))
                .map(|(g, mi)| json!({"group": g, "managed_instances": mi}))
                .collect();
            Ok(ok(&json!({"groups": v})))
        }
        (Method::GET, "/sim/groups/vms") => vms::handle(&app.world(), req.query, req.if_none_match),
        (Method::POST, "/sim/groups/description") => {
            Ok(ok(&set_description(&mut app.world(), &parse(body)?)?))
        }
        (Method::POST, "/sim/instance_templates") => {
            Ok(ok(&create_template(&mut app.world(), &parse(body)?)?))
        }
        (Method::POST, "/sim/instances") => {
            Ok(ok(&set_instance(&mut app.world(), now, &parse(body)?)?))
        }
        (Method::POST, "/sim/autoscalers") => Ok(ok(&create_autoscaler(
            &mut app.world(),
            now,
            &parse(body)?,
        )?)),
        (Method::POST, "/sim/service_accounts") => {
            let key: crate::auth::AccountKey = parse(body)?;
            app.accounts
                .lock()
                .unwrap()
                .add(key.clone())
                .map_err(ControlError::Invalid)?;
            Ok(ok(&serde_json::to_value(key).expect("serializes")))
        }
        (Method::GET, "/sim/service_accounts") => {
            let keys = app.accounts.lock().unwrap().list();
            Ok(ok(&json!({"service_accounts": keys})))
        }
        (Method::GET, "/sim/config") => Ok(ok(
            &serde_json::to_value(&app.world().timing).expect("serializes")
        )),
        (Method::POST, "/sim/config") => Ok(ok(&set_config(&mut app.world(), body)?)),
        (Method::GET, "/sim/time") => Ok(ok(&time_json(app))),
        (Method::POST, "/sim/time") => {
            let r: TimeReq = parse(body)?;
            if let Some(s) = r.scale {
                if !(s >= 0.0 && s.is_finite()) {
                    return Err(ControlError::Invalid("scale must be >= 0".into()));
                }
                app.clock.set_scale(s);
            }
            if let Some(a) = r.advance_s {
                if !(a >= 0.0 && a.is_finite()) {
                    return Err(ControlError::Invalid("advance_s must be >= 0".into()));
                }
                app.clock.advance(secs(a));
            }
            drop(app.world());
            Ok(ok(&time_json(app)))
        }
        (Method::GET, "/sim/faults") => Ok(ok(
            &serde_json::to_value(&*app.faults.lock().unwrap()).expect("serializes")
        )),
        (Method::POST, "/sim/faults") => {
            let mut r: FaultRule = parse(body)?;
            if r.after && matches!(r.action, FaultAction::FailOperation(_) | FaultAction::Delay) {
                return Err(ControlError::Invalid(
                    "after applies to error and drop only".into(),
                ));
            }
            if let FaultAction::ErrorPreset(name) = &r.action {
                if ErrorSpec::preset(name).is_none() {
                    return Err(ControlError::Invalid(format!("no error preset {name:?}")));
                }
                r.action = r.action.resolved();
            }
            let r = (app.faults.lock().unwrap())
                .add(r, app.seed)
                .map_err(|e| ControlError::Invalid(e.to_string()))?;
            Ok(ok(&serde_json::to_value(r).expect("serializes")))
        }
        (Method::DELETE, "/sim/faults") => {
            app.faults.lock().unwrap().rules.clear();
            Ok(ok(&json!({})))
        }
        (Method::GET, "/sim/requests") => {
            let log = app.log.lock().unwrap();
            Ok(ok(&json!({"requests": *log})))
        }
        (Method::DELETE, "/sim/requests") => {
            app.log.lock().unwrap().clear();
            Ok(ok(&json!({})))
        }
        (Method::POST, "/sim/reset") => {
            let mut w = app.world.lock().unwrap();
            let timing = w.timing.clone();
            *w = World::new(app.seed, timing);
            w.now = app.clock.now();
            app.faults.lock().unwrap().rules.clear();
            app.log.lock().unwrap().clear();
            *app.accounts.lock().unwrap() = Default::default();
            Ok(ok(&json!({"reset": true})))
        }
        _ => Err(ControlError::UnknownEndpoint(path.to_string())),
    }
}
