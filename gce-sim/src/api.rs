//! HTTP entry point and the Compute routes of reference §4.3 under
//! `/compute/v1/projects/{p}/{zones|regions}/{s}/…`: request log, faults,
//! strict query and body checks (a parameter or field the method does not
//! have is Google's `400`, §5 "never more lenient"), then the handlers.
//! Paths or methods the API does not serve get the front end's HTML 404.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::de::DeserializeOwned;

use crate::App;
use crate::error::GceError;
use crate::faults::{FaultAction, LoggedRequest, record};
use crate::http::{Resp, json, parse_pairs};
use crate::state::{Key, OpFailure, Scope, ops::check_request_id};
use crate::wire;

/// Google's system parameters, accepted on every method and ignored (§5.1.1:
/// `$alt`, `$apiVersion`, encoded or not).
const SYSTEM_PARAMS: &[&str] = &[
    "$alt",
    "alt",
    "$apiVersion",
    "$prettyPrint",
    "prettyPrint",
    "$fields",
    "fields",
    "$quotaUser",
    "quotaUser",
    "key",
];

/// One parsed Compute request.
pub struct Call<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub body: &'a Bytes,
    /// An injected operation failure (`fail_operation` fault).
    pub injected: Option<OpFailure>,
    /// Set by a mutating call whose Operation changes nothing: failed, or
    /// an earlier call's returned for a repeated `requestId`.
    no_effect: AtomicBool,
}

impl Call<'_> {
    /// Notes whether the Operation `op` this call answers with does its
    /// work (`replayed`: it is an earlier call's).
    fn started(&self, w: &crate::state::World, op: &Key, replayed: bool) {
        let failed = w.ops.get(op).is_none_or(|o| o.failure.is_some());
        self.no_effect.store(replayed || failed, Ordering::Relaxed);
    }

    /// Refuses parameters outside `allowed` and the system ones.
    fn params(&self, allowed: &[&str]) -> Result<(), GceError> {
        match self
            .query
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()) && !SYSTEM_PARAMS.contains(&k.as_str()))
        {
            Some((k, _)) => Err(GceError::UnknownParameter(k.clone())),
            None => Ok(()),
        }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn request_id(&self) -> Result<Option<&str>, GceError> {
        let id = self.param("requestId").filter(|v| !v.is_empty());
        if let Some(id) = id {
            check_request_id(id)?;
        }
        Ok(id)
    }

    /// The JSON body as `T`, whose fields are `fields`; an empty body is
    /// the empty message.
    fn body<T: DeserializeOwned + Default>(&self, fields: &[&str]) -> Result<T, GceError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(T::default());
        }
        let v: serde_json::Value = serde_json::from_slice(self.body)
            .map_err(|e| GceError::InvalidJson(format!("Syntax error: {e}")))?;
        let Some(obj) = v.as_object() else {
            return Err(GceError::InvalidJson(
                "The request body must be a JSON object.".into(),
            ));
        };
        if let Some(k) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
            return Err(GceError::InvalidJson(format!(
                "Unknown name \"{k}\": Cannot find field."
            )));
        }
        serde_json::from_value(v).map_err(|e| GceError::InvalidJson(format!("Invalid value: {e}")))
    }
}

/// An empty request message (`{}`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

/// One request, end to end. An `Err` closes the connection unanswered
/// (the `drop` fault).
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Resp, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let path = parts.uri.path().to_string();
    let query = parse_pairs(parts.uri.query());
    if path == "/sim" || path.starts_with("/sim/") {
        return Ok(
            match crate::control::handle(
                &app,
                crate::control::ControlRequest {
                    method: &parts.method,
                    path: &path,
                    query: &query,
                    if_none_match: parts
                        .headers
                        .get("if-none-match")
                        .and_then(|v| v.to_str().ok()),
                    body: &body,
                },
            )
            .await
            {
                Ok(r) => r,
                Err(e) => e.response(),
            },
        );
    }
    let mut entry = LoggedRequest {
        seq: app.seq.fetch_add(1, Ordering::Relaxed) + 1,
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
        api_client: parts
            .headers
            .get("x-goog-api-client")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        status: None,
        fault: None,
        carried_out: false,
    };
    // Google's front end authenticates before anything else happens.
    if let Some(r) = refusal(&app, &parts.headers) {
        entry.status = Some(r.status().as_u16());
        record(&mut app.log.lock().unwrap(), entry);
        return Ok(r);
    }
    let rule = app
        .faults
        .lock()
        .unwrap()
        .fire(parts.method.as_str(), &path);
    if let Some(r) = &rule {
        entry.fault = Some(r.action.clone());
        if r.delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(r.delay_ms)).await;
        }
    }
    let (before, after) = match rule {
        Some(r) if r.after => (None, Some(r.action.resolved())),
        Some(r) => (Some(r.action.resolved()), None),
        None => (None, None),
    };
    let mut call = Call {
        method: &parts.method,
        path: &path,
        query,
        body: &body,
        injected: None,
        no_effect: AtomicBool::new(false),
    };
    let with_status = app.world.lock().unwrap().timing.error_status;
    // `ran`: the handlers answered (no fault refused or dropped the call).
    let (answer, ran) = match before {
        Some(FaultAction::Drop) => (None, false),
        Some(FaultAction::Error(spec)) => {
            (Some(GceError::Injected(spec).response(with_status)), false)
        }
        Some(FaultAction::FailOperation(f)) => {
            call.injected = Some(f);
            (Some(respond(&app, &call, with_status).await), true)
        }
        Some(FaultAction::Delay | FaultAction::ErrorPreset(_)) | None => {
            (Some(respond(&app, &call, with_status).await), true)
        }
    };
    entry.carried_out = ran
        && answer.as_ref().is_some_and(|r| r.status().is_success())
        && !call.no_effect.load(Ordering::Relaxed);
    let answer = match (after, answer) {
        (Some(FaultAction::Drop), _) | (_, None) => None,
        (Some(FaultAction::Error(spec)), Some(_)) => {
            Some(GceError::Injected(spec).response(with_status))
        }
        (_, a) => a,
    };
    entry.status = answer.as_ref().map(|r| r.status().as_u16());
    record(&mut app.log.lock().unwrap(), entry);
    answer.ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::ConnectionAborted,
            "gce-sim: injected dropped connection",
        )
    })
}

/// Google's answer to a call without valid credentials, once a service
/// account is registered (`src/auth.rs`); `None` lets the call through.
fn refusal(app: &App, headers: &hyper::HeaderMap) -> Option<Resp> {
    let authorization = headers.get("authorization").map(|v| v.to_str());
    let checked = {
        let accounts = app.accounts.lock().unwrap();
        match authorization {
            _ if !accounts.enforced() => Ok(()),
            Some(Err(_)) => Err(crate::auth::AuthError::Invalid("not ASCII")),
            Some(Ok(h)) => accounts.check(Some(h)),
            None => accounts.check(None),
        }
    };
    checked.err().map(|e| {
        let with_status = app.world.lock().unwrap().timing.error_status;
        crate::auth::response(&e, with_status)
    })
}

/// The handlers' answer to `c`, an error as Google's error body.
async fn respond(app: &Arc<App>, c: &Call<'_>, with_status: bool) -> Resp {
    route(app, c)
        .await
        .unwrap_or_else(|e| e.response(with_status))
}

/// Routes a Compute request.
async fn route(app: &Arc<App>, c: &Call<'_>) -> Result<Resp, GceError> {
    let segs: Vec<&str> = c.path.trim_start_matches('/').split('/').collect();
    let no_such = || GceError::NoSuchMethod(c.path.to_string());
    let ["compute", "v1", "projects", project, kind, scope, rest @ ..] = segs.as_slice() else {
        return Err(no_such());
    };
    let scope = match *kind {
        "zones" => Scope::Zone(scope.to_string()),
        "regions" => Scope::Region(scope.to_string()),
        _ => return Err(no_such()),
    };
    if project.is_empty() || scope.name().is_empty() || rest.iter().any(|s| s.is_empty()) {
        return Err(no_such());
    }
    let key = |name: &str| Key {
        project: project.to_string(),
        scope: scope.clone(),
        name: name.to_string(),
    };
    let get = *c.method == Method::GET;
    let post = *c.method == Method::POST;
    match rest {
        ["instanceGroupManagers", n] if get => {
            c.params(&[])?;
            let v = app.world().igm_view(&key(n))?;
            Ok(json(StatusCode::OK, &v))
        }
        ["instanceGroupManagers", n, verb] if post => igm_post(app, c, &key(n), verb),
        ["operations", op] if get => {
            c.params(&[])?;
            let v = app.world().poll(&key(op))?;
            Ok(json(StatusCode::OK, &v))
        }
        ["operations", op, "wait"] if post => {
            c.params(&[])?;
            c.body::<Empty>(&[])?;
            wait(app, &key(op)).await
        }
        ["instances"] if get && matches!(scope, Scope::Zone(_)) => list_instances(app, c, &key("")),
        ["instances", n] if get && matches!(scope, Scope::Zone(_)) => {
            c.params(&[])?;
            let v = app.world().instance_view(&key(n))?;
            Ok(json(StatusCode::OK, &v))
        }
        ["autoscalers", a] if get => {
            c.params(&[])?;
            let v = app.world().autoscaler_view(&key(a))?;
            Ok(json(StatusCode::OK, &v))
        }
        _ => Err(no_such()),
    }
}

/// The POST verbs on a group.
fn igm_post(app: &App, c: &Call<'_>, key: &Key, verb: &str) -> Result<Resp, GceError> {
    use crate::state::actions::Verb;
    let injected = c.injected.clone();
    let op = match verb {
        "listManagedInstances" => return list_managed(app, c, key),
        "deleteInstances" => {
            c.params(&["requestId", "noGracefulShutdown"])?;
            if let Some(v) = c.param("noGracefulShutdown") {
                parse_bool("noGracefulShutdown", v)?;
            }
            let rid = c.request_id()?;
            let b: wire::DeleteInstancesRequest =
                c.body(&["instances", "skipInstancesOnValidationError"])?;
            let skip = b.skip_instances_on_validation_error.unwrap_or(false);
            let mut w = app.world();
            let replayed = w.replayed(&key.project, rid).is_some();
            let op = w.act_on_instances(key, Verb::Delete, &b.instances, skip, rid, injected)?;
            c.started(&w, &op, replayed);
            w.op_view(&op)
        }
        "abandonInstances" | "recreateInstances" => {
            c.params(&["requestId"])?;
            let rid = c.request_id()?;
            let b: wire::InstancesRequest = c.body(&["instances"])?;
            let v = if verb == "abandonInstances" {
                Verb::Abandon
            } else {
                Verb::Recreate
            };
            let mut w = app.world();
            let replayed = w.replayed(&key.project, rid).is_some();
            let op = w.act_on_instances(key, v, &b.instances, false, rid, injected)?;
            c.started(&w, &op, replayed);
            w.op_view(&op)
        }
        "setInstanceTemplate" => {
            c.params(&["requestId"])?;
            let rid = c.request_id()?;
            let b: wire::SetInstanceTemplateRequest = c.body(&["instanceTemplate"])?;
            let mut w = app.world();
            let replayed = w.replayed(&key.project, rid).is_some();
            let op = w.set_instance_template(key, b.instance_template.as_deref(), rid, injected)?;
            c.started(&w, &op, replayed);
            w.op_view(&op)
        }
        "resize" => {
            c.params(&["requestId", "size"])?;
            let rid = c.request_id()?;
            c.body::<Empty>(&[])?;
            let size = match c.param("size") {
                None | Some("") => {
                    return Err(GceError::Invalid(
                        "Required field 'size' not specified".into(),
                    ));
                }
                Some(s) => s.parse::<i64>().map_err(|_| {
                    GceError::InvalidJson(format!("Invalid value at 'size' (TYPE_INT32), \"{s}\""))
                })?,
            };
            let mut w = app.world();
            let replayed = w.replayed(&key.project, rid).is_some();
            let op = w.resize(key, size, rid, injected)?;
            c.started(&w, &op, replayed);
            w.op_view(&op)
        }
        _ => return Err(GceError::NoSuchMethod(c.path.to_string())),
    };
    Ok(json(StatusCode::OK, &op))
}

fn parse_bool(name: &str, v: &str) -> Result<bool, GceError> {
    match v {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(GceError::InvalidJson(format!(
            "Invalid value at '{name}' (TYPE_BOOL), \"{v}\""
        ))),
    }
}

/// listManagedInstances (§1.3, §5.1.2). `filter` and `orderBy` are
/// refused rather than ignored: the fake does not evaluate them (§5.2) and
/// must not answer as if it had.
fn list_managed(app: &App, c: &Call<'_>, key: &Key) -> Result<Resp, GceError> {
    c.params(&[
        "filter",
        "maxResults",
        "orderBy",
        "pageToken",
        "returnPartialSuccess",
    ])?;
    c.body::<Empty>(&[])?;
    if c.param("orderBy").is_some_and(|v| !v.is_empty()) {
        return Err(GceError::Invalid(
            "Sorting by the 'orderBy' parameter is not supported for this method.".into(),
        ));
    }
    if c.param("filter").is_some_and(|v| !v.is_empty()) {
        return Err(GceError::Invalid(
            "gce-sim does not evaluate 'filter' on listManagedInstances.".into(),
        ));
    }
    let max = match c.param("maxResults") {
        None | Some("") => None,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if n <= crate::state::views::MAX_RESULTS => Some(n),
            _ => {
                return Err(GceError::Invalid(format!(
                    "Invalid value for field 'maxResults': '{s}'. Must be between 0 and 500."
                )));
            }
        },
    };
    let v = app.world().list_managed(key, max, c.param("pageToken"))?;
    Ok(json(StatusCode::OK, &v))
}

/// instances.list in one zone (`state::instances`): the one `filter`
/// shape it evaluates, `maxResults` (0–500) and `pageToken`; `orderBy` is
/// refused rather than ignored, as on listManagedInstances.
fn list_instances(app: &App, c: &Call<'_>, key: &Key) -> Result<Resp, GceError> {
    c.params(&[
        "filter",
        "maxResults",
        "orderBy",
        "pageToken",
        "returnPartialSuccess",
    ])?;
    if c.param("orderBy").is_some_and(|v| !v.is_empty()) {
        return Err(GceError::Invalid(
            "gce-sim does not evaluate 'orderBy' on instances.list.".into(),
        ));
    }
    let filter = crate::state::instances::parse_filter(c.param("filter"))?;
    let max = match c.param("maxResults") {
        None | Some("") => None,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if n <= crate::state::instances::MAX_RESULTS => Some(n),
            _ => {
                return Err(GceError::Invalid(format!(
                    "Invalid value for field 'maxResults': '{s}'. Must be between 0 and 500."
                )));
            }
        },
    };
    let v = app.world().instance_list(
        &key.project,
        key.scope.name(),
        &filter,
        max,
        c.param("pageToken"),
    )?;
    Ok(json(StatusCode::OK, &v))
}

/// zoneOperations.wait / regionOperations.wait (§1.6): counts as one poll;
/// then waits (real time, at most `wait_max_ms`) for `DONE`. While the
/// operation still has polls to answer `RUNNING`, it returns at once
/// ("may return after zero seconds, may return not-DONE").
async fn wait(app: &App, key: &Key) -> Result<Resp, GceError> {
    let (first, polls_left, max) = {
        let mut w = app.world();
        let v = w.poll(key)?;
        (v, w.ops[key].polls_left, w.timing.wait_max_ms)
    };
    if first.status == "DONE" || polls_left > 0 {
        return Ok(json(StatusCode::OK, &first));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(max);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let v = app.world().op_view(key);
        if v.status == "DONE" || tokio::time::Instant::now() >= deadline {
            return Ok(json(StatusCode::OK, &v));
        }
    }
}
