//! A small fault-injecting reverse proxy for the AWS Query-protocol API
//! (Auto Scaling), put between the operator and moto, because moto itself
//! never throttles or fails.
//!
//! For a configurable, seeded fraction of requests it answers, without
//! forwarding, AWS's throttling error (`400 Throttling: Rate exceeded`) or a
//! `500 InternalFailure` / `503 ServiceUnavailable`; for another fraction it
//! forwards the request and then replaces moto's answer by a `500` (the
//! dangerous case: the call was carried out but the caller sees an error).
//! Everything else is forwarded as is (but for the launch times of VMs a
//! test made older, `launch_times`), after a latency a test may set. It
//! counts requests per `Action` (parsed from the form body), by outcome and
//! the most at once, and records every `TerminateInstanceInAutoScalingGroup`
//! call with its instance and result.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::Response;
use k8s_openapi::jiff::SignedDuration;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::launch_times::age_launch_times;
use super::{LocalServer, Upstream};

/// What the proxy does to requests. Rates are fractions in `0..=1`, drawn
/// one after the other for each request (throttle first).
#[derive(Clone, Debug, Default)]
pub struct AwsFaults {
    /// Answered `400` with code `Throttling`, not forwarded.
    pub throttle_rate: f64,
    /// Answered `500 InternalFailure` or `503 ServiceUnavailable` (half
    /// each), not forwarded.
    pub error_rate: f64,
    /// Forwarded, and then answered `500 InternalFailure` whatever moto said.
    pub error_after_forward_rate: f64,
    /// Only these Actions are affected (all when empty).
    pub only_actions: Vec<String>,
    /// Added before each forwarded request of those Actions goes to moto,
    /// which answers in milliseconds where a real region takes longer: it
    /// makes calls that overlap in time overlap in the counts too
    /// (`ActionStats::most_at_once`).
    pub latency: std::time::Duration,
}

/// Requests seen for one `Action`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActionStats {
    pub requests: u64,
    pub throttled: u64,
    pub server_errors: u64,
    /// Forwarded to moto (including those answered 500 afterwards).
    pub forwarded: u64,
    pub failed_after_forward: u64,
    /// The most requests of this Action in the proxy at the same time.
    pub most_at_once: u64,
}

/// One `TerminateInstanceInAutoScalingGroup` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminateCall {
    pub instance_id: String,
    pub decrement: Option<bool>,
    /// moto's status when forwarded; `None` when the proxy answered alone.
    pub upstream_status: Option<u16>,
    /// What the caller got.
    pub answered: u16,
}

struct Inner {
    upstream: Upstream,
    faults: Mutex<AwsFaults>,
    rng: Mutex<StdRng>,
    stats: Mutex<BTreeMap<String, ActionStats>>,
    terminates: Mutex<Vec<TerminateCall>>,
    request_ids: std::sync::atomic::AtomicU64,
    /// How much earlier than moto says each of these instances launched.
    older: Mutex<BTreeMap<String, SignedDuration>>,
    /// Requests in the proxy now, per Action.
    in_flight: Mutex<BTreeMap<String, u64>>,
}

/// Counts a request in flight from its arrival to its answer.
struct InFlight {
    inner: Arc<Inner>,
    action: String,
}

impl InFlight {
    fn enter(inner: &Arc<Inner>, action: &str) -> InFlight {
        let now = {
            let mut in_flight = inner.in_flight.lock().unwrap();
            let n = in_flight.entry(action.to_owned()).or_default();
            *n += 1;
            *n
        };
        let mut stats = inner.stats.lock().unwrap();
        let s = stats.entry(action.to_owned()).or_default();
        s.most_at_once = s.most_at_once.max(now);
        InFlight {
            inner: inner.clone(),
            action: action.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut in_flight = self.inner.in_flight.lock().unwrap();
        if let Some(n) = in_flight.get_mut(&self.action) {
            *n -= 1;
        }
    }
}

pub struct FaultProxy {
    pub url: String,
    inner: Arc<Inner>,
    _server: LocalServer,
}

impl FaultProxy {
    /// Listen on 127.0.0.1:0 and forward to `upstream` (e.g. moto's URL).
    /// `seed` makes the sequence of fault decisions repeatable (the order in
    /// which requests arrive still depends on timing).
    pub async fn start(upstream: &str, seed: u64) -> FaultProxy {
        let inner = Arc::new(Inner {
            upstream: Upstream::new(upstream),
            faults: Mutex::new(AwsFaults::default()),
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            stats: Mutex::new(BTreeMap::new()),
            terminates: Mutex::new(Vec::new()),
            request_ids: std::sync::atomic::AtomicU64::new(1),
            older: Mutex::new(BTreeMap::new()),
            in_flight: Mutex::new(BTreeMap::new()),
        });
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let server = LocalServer::start(app).await;
        FaultProxy {
            url: server.url.clone(),
            inner,
            _server: server,
        }
    }

    /// Replace the fault configuration.
    pub fn set_faults(&self, faults: AwsFaults) {
        *self.inner.faults.lock().unwrap() = faults;
    }

    /// From now on EC2 answers show `instances` launched `by` earlier than
    /// they were (see `launch_times`): set before the operator first
    /// reads them, as EC2 never changes a launch time.
    pub fn make_older(&self, instances: impl IntoIterator<Item = String>, by: SignedDuration) {
        let mut older = self.inner.older.lock().unwrap();
        older.extend(instances.into_iter().map(|i| (i, by)));
    }

    /// Requests per Action so far.
    pub fn stats(&self) -> BTreeMap<String, ActionStats> {
        self.inner.stats.lock().unwrap().clone()
    }

    /// Every request so far, all Actions together.
    /// (`most_at_once`: the most of any one Action.)
    pub fn total(&self) -> ActionStats {
        let mut t = ActionStats::default();
        for s in self.inner.stats.lock().unwrap().values() {
            t.requests += s.requests;
            t.throttled += s.throttled;
            t.server_errors += s.server_errors;
            t.forwarded += s.forwarded;
            t.failed_after_forward += s.failed_after_forward;
            t.most_at_once = t.most_at_once.max(s.most_at_once);
        }
        t
    }

    pub fn terminate_calls(&self) -> Vec<TerminateCall> {
        self.inner.terminates.lock().unwrap().clone()
    }

    /// Terminate calls that moto carried out (answered 200 upstream), per instance.
    pub fn executed_terminates(&self) -> BTreeMap<String, u32> {
        let mut out = BTreeMap::new();
        for c in self.terminate_calls() {
            if c.upstream_status == Some(200) {
                *out.entry(c.instance_id).or_default() += 1;
            }
        }
        out
    }
}

/// `application/x-www-form-urlencoded` fields, percent-decoded.
fn form_fields(body: &[u8], query: Option<&str>) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .chain(query.unwrap_or("").split('&'))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn error_response(status: StatusCode, kind: &str, code: &str, message: &str, id: u64) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"https://autoscaling.amazonaws.com/doc/2011-01-01/\">\
         <Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error>\
         <RequestId>00000000-0000-4000-8000-{id:012x}</RequestId></ErrorResponse>"
    );
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/xml")
        .body(Body::from(body))
        .unwrap()
}

impl Inner {
    /// What happens to one request. Always draws the same numbers, so a
    /// configuration change does not shift the sequence of later decisions.
    fn decide(&self, faults: &AwsFaults, applies: bool) -> Decision {
        let mut rng = self.rng.lock().unwrap();
        let (a, b, c, half) = (
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random::<f64>(),
            rng.random_bool(0.5),
        );
        if !applies {
            Decision::Forward
        } else if a < faults.throttle_rate {
            Decision::Throttle
        } else if b < faults.error_rate {
            Decision::ServerError(if half {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            })
        } else if c < faults.error_after_forward_rate {
            Decision::ErrorAfterForward
        } else {
            Decision::Forward
        }
    }

    fn count(&self, action: &str, decision: &Decision) {
        let mut stats = self.stats.lock().unwrap();
        let s = stats.entry(action.to_owned()).or_default();
        s.requests += 1;
        match decision {
            Decision::Throttle => s.throttled += 1,
            Decision::ServerError(_) => s.server_errors += 1,
            Decision::ErrorAfterForward => {
                s.forwarded += 1;
                s.failed_after_forward += 1;
            }
            Decision::Forward => s.forwarded += 1,
        }
    }
}

enum Decision {
    Forward,
    Throttle,
    ServerError(StatusCode),
    ErrorAfterForward,
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // A caller killed mid-request (the SIGKILL tests) makes the server drop
    // this future; the request may already be on its way to moto. Finishing
    // it in its own task keeps the counts and the terminate record true to
    // what moto carried out, as a real network path would.
    tokio::spawn(process(inner, method, uri, headers, body))
        .await
        .unwrap_or_else(|e| {
            Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("fault proxy: {e}")))
                .unwrap()
        })
}

async fn process(
    inner: Arc<Inner>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form_fields(&body, uri.query());
    let action = fields
        .get("Action")
        .cloned()
        .unwrap_or_else(|| "(none)".into());
    let id = inner
        .request_ids
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let _in_flight = InFlight::enter(&inner, &action);
    let faults = inner.faults.lock().unwrap().clone();
    let applies = faults.only_actions.is_empty() || faults.only_actions.contains(&action);
    let decision = inner.decide(&faults, applies);
    inner.count(&action, &decision);
    let record_terminate = |upstream: Option<u16>, answered: u16| {
        if action == "TerminateInstanceInAutoScalingGroup" {
            inner.terminates.lock().unwrap().push(TerminateCall {
                instance_id: fields.get("InstanceId").cloned().unwrap_or_default(),
                decrement: fields
                    .get("ShouldDecrementDesiredCapacity")
                    .map(|v| v == "true"),
                upstream_status: upstream,
                answered,
            });
        }
    };
    match decision {
        Decision::Throttle => {
            record_terminate(None, 400);
            return error_response(
                StatusCode::BAD_REQUEST,
                "Sender",
                "Throttling",
                "Rate exceeded",
                id,
            );
        }
        Decision::ServerError(status) => {
            record_terminate(None, status.as_u16());
            let (code, message) = if status == StatusCode::SERVICE_UNAVAILABLE {
                ("ServiceUnavailable", "Service is unavailable")
            } else {
                ("InternalFailure", "An internal error occurred")
            };
            return error_response(status, "Receiver", code, message, id);
        }
        Decision::Forward | Decision::ErrorAfterForward => {}
    }

    if applies {
        tokio::time::sleep(faults.latency).await;
    }
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let upstream = inner.upstream.send(method, path, headers, body).await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(e) => {
            record_terminate(None, 502);
            return Response::builder()
                .status(StatusCode::BAD_GATEWAY)
                .body(Body::from(format!("fault proxy: upstream failed: {e}")))
                .unwrap();
        }
    };
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = upstream.bytes().await.unwrap_or_default();
    if matches!(decision, Decision::ErrorAfterForward) {
        record_terminate(Some(status.as_u16()), 500);
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Receiver",
            "InternalFailure",
            "An internal error occurred",
            id,
        );
    }
    record_terminate(Some(status.as_u16()), status.as_u16());
    let bytes = if action == "DescribeInstances" && status.is_success() {
        let older = inner.older.lock().unwrap().clone();
        let xml = String::from_utf8_lossy(&bytes);
        Bytes::from(age_launch_times(&xml, &older))
    } else {
        bytes
    };
    let mut resp = Response::builder().status(status.as_u16());
    if let Some(ct) = content_type {
        resp = resp.header(header::CONTENT_TYPE, ct);
    }
    resp.body(Body::from(bytes)).unwrap()
}
