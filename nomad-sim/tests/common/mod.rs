//! Shared helpers for the contract tests: an in-process simulator with
//! frozen simulated time (scale 0) that tests move forward explicitly, and
//! the reqwest client the operator uses.
#![allow(dead_code)]

use std::time::Duration;

use nomad_sim::acl::Policy;
use nomad_sim::{Config, Sim, serve};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z
pub const START_NS: i64 = 1_767_225_600_000_000_000;
pub const HOUR_NS: i64 = 3_600_000_000_000;

pub struct T {
    pub sim: Sim,
    pub url: String,
    pub http: Client,
}

pub async fn start() -> T {
    start_with(Config::default(), vec![]).await
}

pub async fn start_with(mut cfg: Config, tokens: Vec<(&str, Policy)>) -> T {
    cfg.time_scale = 0.0;
    cfg.seed = Some(7);
    cfg.start_time_ns = Some(START_NS);
    cfg.tick = Duration::from_millis(20);
    cfg.acl_tokens = tokens
        .into_iter()
        .map(|(s, p)| (s.to_string(), p))
        .collect();
    let sim = serve(cfg).await.expect("sim starts");
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

    pub async fn get_json(&self, p: &str) -> Value {
        let r = self.get(p).await;
        assert_eq!(r.status(), StatusCode::OK, "GET {p}");
        r.json().await.unwrap()
    }

    pub async fn post(&self, p: &str, body: Value) -> Response {
        self.http.post(self.u(p)).json(&body).send().await.unwrap()
    }

    pub async fn post_ok(&self, p: &str, body: Value) -> Value {
        let r = self.post(p, body).await;
        let s = r.status();
        let t = r.text().await.unwrap();
        assert_eq!(s, StatusCode::OK, "POST {p}: {t}");
        serde_json::from_str(&t).unwrap()
    }

    /// Registers nodes; returns their IDs.
    pub async fn nodes(&self, body: Value) -> Vec<String> {
        let v = self.post_ok("/sim/nodes", body).await;
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_string())
            .collect()
    }

    pub async fn allocs(&self, body: Value) -> Vec<String> {
        let v = self.post_ok("/sim/allocations", body).await;
        v["alloc_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    /// Moves simulated time forward and processes everything due.
    pub async fn advance(&self, secs: f64) {
        self.post_ok("/sim/time", json!({"advance_s": secs})).await;
    }

    pub async fn node(&self, id: &str) -> Value {
        self.get_json(&format!("/v1/node/{id}")).await
    }

    pub async fn node_allocs(&self, id: &str) -> Vec<Value> {
        self.get_json(&format!("/v1/node/{id}/allocations"))
            .await
            .as_array()
            .unwrap()
            .clone()
    }

    pub async fn alloc(&self, id: &str) -> Value {
        self.get_json(&format!("/v1/allocation/{id}")).await
    }

    pub async fn drain(&self, id: &str, body: Value) -> Value {
        self.post_ok(&format!("/v1/node/{id}/drain"), body).await
    }

    pub async fn violations(&self) -> Value {
        self.get_json("/sim/violations").await
    }
}

/// Reads an NDJSON response (the event stream) one JSON line at a time.
pub struct Lines {
    r: Response,
    buf: Vec<u8>,
}

impl Lines {
    pub fn new(r: Response) -> Lines {
        Lines { r, buf: vec![] }
    }

    /// The next line, within 5 s; None once the stream has ended.
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(p) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=p).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let c = tokio::time::timeout(Duration::from_secs(5), self.r.chunk())
                .await
                .expect("a line within 5 s")
                .unwrap()?;
            self.buf.extend_from_slice(&c);
        }
    }

    /// The next line that is not a heartbeat (`{}`); the stream must stay
    /// open until then.
    pub async fn next_events(&mut self) -> Value {
        loop {
            let v = self.next().await.expect("stream open");
            if v != json!({}) {
                return v;
            }
        }
    }
}

pub fn index_of(r: &Response) -> u64 {
    r.headers()
        .get("x-nomad-index")
        .expect("X-Nomad-Index")
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub async fn plain(r: Response) -> (StatusCode, String, String) {
    let s = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (s, ct, r.text().await.unwrap())
}
