//! Shared helpers for the contract tests: an in-process fake with frozen
//! simulated time (scale 0) that tests move forward explicitly, a reqwest
//! client, and shortcuts for the control surface. Sections (§N) refer to
//! `shared/reference/gce-mig.md`.
#![allow(dead_code)]

use std::time::Duration;

use gce_sim::state::Timing;
use gce_sim::{Config, Sim, serve};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z
pub const START_NS: i64 = 1_767_225_600_000_000_000;
pub const PROJECT: &str = "proj";
pub const ZONE: &str = "us-central1-a";
pub const REGION: &str = "us-central1";
/// Zonal path prefix.
pub const Z: &str = "/compute/v1/projects/proj/zones/us-central1-a";
/// Regional path prefix.
pub const R: &str = "/compute/v1/projects/proj/regions/us-central1";
pub const URL_BASE: &str = "https://www.googleapis.com/compute/v1/";

pub struct T {
    pub sim: Sim,
    pub url: String,
    pub http: Client,
}

/// Timings for tests: operations answer RUNNING once, instances take 30 s
/// (simulated) to delete, `wait` gives up after 300 ms (real).
pub fn test_timing() -> Timing {
    Timing {
        operation_polls: 1,
        operation_duration_s: 0.0,
        delete_duration_s: 30.0,
        wait_max_ms: 300,
        ..Timing::default()
    }
}

pub async fn start() -> T {
    start_with(test_timing()).await
}

pub async fn start_with(timing: Timing) -> T {
    let sim = serve(Config {
        time_scale: 0.0,
        seed: Some(7),
        start_time_ns: Some(START_NS),
        timing,
        ..Config::default()
    })
    .await
    .expect("fake starts");
    let url = sim.url();
    T {
        sim,
        url,
        http: Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    }
}

impl T {
    pub fn u(&self, p: &str) -> String {
        format!("{}{}", self.url, p)
    }

    pub async fn get(&self, p: &str) -> Response {
        self.http.get(self.u(p)).send().await.unwrap()
    }

    /// A POST with the SDK's `{}` body when `body` is `None` (§4.3).
    pub async fn post(&self, p: &str, body: Option<Value>) -> Response {
        self.http
            .post(self.u(p))
            .json(&body.unwrap_or(json!({})))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_ok(&self, p: &str) -> Value {
        ok(self.get(p).await, p).await
    }

    pub async fn post_ok(&self, p: &str, body: Option<Value>) -> Value {
        ok(self.post(p, body).await, p).await
    }

    /// A control call that must succeed.
    pub async fn ctl(&self, p: &str, body: Value) -> Value {
        self.post_ok(p, Some(body)).await
    }

    /// Creates a zonal group `name` with `n` instances; returns their names.
    pub async fn zonal(&self, name: &str, n: usize) -> Vec<String> {
        let v = self
            .ctl(
                "/sim/groups",
                json!({"project": PROJECT, "zone": ZONE, "name": name, "target_size": n}),
            )
            .await;
        names(&v["managed_instances"])
    }

    pub async fn igm(&self, name: &str) -> Value {
        self.get_ok(&format!("{Z}/instanceGroupManagers/{name}"))
            .await
    }

    /// All managed instances of a zonal group (PAGELESS).
    pub async fn instances(&self, name: &str) -> Vec<Value> {
        let v = self
            .post_ok(
                &format!("{Z}/instanceGroupManagers/{name}/listManagedInstances"),
                None,
            )
            .await;
        v["managedInstances"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn advance(&self, secs: f64) {
        self.ctl("/sim/time", json!({"advance_s": secs})).await;
    }

    pub async fn fault(&self, rule: Value) {
        self.ctl("/sim/faults", rule).await;
    }

    /// The request log (`/compute/` requests only).
    pub async fn requests(&self) -> Vec<Value> {
        self.get_ok("/sim/requests").await["requests"]
            .as_array()
            .unwrap()
            .clone()
    }
}

pub async fn ok(r: Response, what: &str) -> Value {
    let s = r.status();
    let t = r.text().await.unwrap();
    assert_eq!(s, StatusCode::OK, "{what}: {t}");
    serde_json::from_str(&t).unwrap()
}

/// Status and JSON body of an answer expected to be an error.
pub async fn err(r: Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/json"), "{ct}");
    (s, r.json().await.unwrap())
}

pub fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|i| i["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// A zonal instance's partial URL (R-DEL accepts these).
pub fn partial(name: &str) -> String {
    format!("zones/{ZONE}/instances/{name}")
}

pub fn full(name: &str) -> String {
    format!("{URL_BASE}projects/{PROJECT}/zones/{ZONE}/instances/{name}")
}

/// Polls an operation (GET, as the SDK's poller does, §4.4) until DONE;
/// returns it and the number of polls.
pub async fn poll_done(t: &T, op: &Value) -> (Value, usize) {
    let link = op["selfLink"].as_str().unwrap();
    let path = link.strip_prefix("https://www.googleapis.com").unwrap();
    for n in 1..=20 {
        let v = t.get_ok(path).await;
        if v["status"] == "DONE" {
            return (v, n);
        }
    }
    panic!("operation never DONE: {op}");
}
