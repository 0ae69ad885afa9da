//! HTTP behaviour against a small in-test fake Nomad: the query parameters
//! and headers the client sends, the bodies of its writes, how it reads
//! Nomad's plain-text errors, and its timeouts. The fake records what it
//! saw and answers from the docs fixtures.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nomad_pool_operator::nomad::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::{NODE_ID, TOKEN, fixture, fixture_json};

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: HashMap<String, String>,
    token: Option<String>,
    body: Option<Value>,
}

#[derive(Clone, Default)]
struct FakeNomad {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeNomad {
    async fn start(self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback({
            let this = self.clone();
            move |method, uri, headers, body| {
                let this = this.clone();
                async move { this.handle(method, uri, headers, body).await }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }

    async fn handle(&self, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
        let query: HashMap<String, String> =
            Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
        let token = headers
            .get("x-nomad-token")
            .map(|v| v.to_str().unwrap().to_owned());
        self.seen.lock().unwrap().push(Seen {
            method: method.clone(),
            path: uri.path().to_owned(),
            query: query.clone(),
            token: token.clone(),
            body: (!body.is_empty()).then(|| serde_json::from_slice(&body).unwrap()),
        });

        if token.as_deref() == Some("bad") {
            return text(StatusCode::FORBIDDEN, "Permission denied");
        }
        // Hold blocking queries for `wait`, plus Nomad's maximum jitter.
        if let (Some(_), Some(wait)) = (query.get("index"), query.get("wait")) {
            let ms: u64 = wait.strip_suffix("ms").unwrap().parse().unwrap();
            tokio::time::sleep(Duration::from_millis(ms + ms / 16)).await;
        }

        let path = uri.path();
        let node = path.strip_prefix("/v1/node/");
        match (method.as_str(), path, node) {
            ("GET", "/v1/status/leader", _) => json_resp("\"10.0.0.1:4647\"".into(), None),
            ("GET", "/v1/nodes", _) if query.get("filter").is_some_and(|f| f.contains("bogus")) => {
                text(
                    StatusCode::BAD_REQUEST,
                    "failed to read result page: error finding value in datum",
                )
            }
            ("GET", "/v1/nodes", _) => json_resp(fixture("node-list.json"), Some(42)),
            ("GET", "/v1/allocations", _) => json_resp(fixture("allocations-list.json"), Some(99)),
            ("GET", _, Some(rest)) if rest == NODE_ID => {
                json_resp(fixture("node-read.json"), Some(14))
            }
            ("GET", _, Some(rest)) if rest.ends_with("/allocations") => {
                json_resp(fixture("node-allocations.json"), Some(2567))
            }
            ("GET", _, Some("slow")) => {
                tokio::time::sleep(Duration::from_secs(2)).await;
                json_resp(fixture("node-read.json"), Some(14))
            }
            ("GET", _, Some("no-index")) => json_resp(fixture("node-read.json"), None),
            ("GET", _, Some(_)) => {
                // Nomad sets the metadata headers before answering 404.
                let mut r = text(StatusCode::NOT_FOUND, "node not found");
                set_meta(&mut r, 77);
                r
            }
            ("POST", _, Some(rest)) => {
                let (id, action) = rest.split_once('/').unwrap();
                if id != NODE_ID {
                    return text(StatusCode::INTERNAL_SERVER_ERROR, "node not found");
                }
                let file = match action {
                    "drain" => "node-drain-response.json",
                    "eligibility" => "node-eligibility-response.json",
                    "purge" => "node-purge-response.json",
                    _ => return text(StatusCode::METHOD_NOT_ALLOWED, "Invalid method"),
                };
                json_resp(fixture(file), None)
            }
            _ => text(StatusCode::NOT_FOUND, "404 page not found"),
        }
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [("content-type", "text/plain; charset=utf-8")],
        body.to_owned(),
    )
        .into_response()
}

fn set_meta(r: &mut Response, index: u64) {
    let h = r.headers_mut();
    h.insert("x-nomad-index", index.to_string().parse().unwrap());
    h.insert("x-nomad-knownleader", "true".parse().unwrap());
    h.insert("x-nomad-lastcontact", "7".parse().unwrap());
}

fn json_resp(body: String, index: Option<u64>) -> Response {
    let mut r = ([("content-type", "application/json")], body).into_response();
    if let Some(i) = index {
        set_meta(&mut r, i);
    }
    r
}

fn client(address: &str, token: Option<&str>) -> NomadClient {
    NomadClient::new(NomadConfig {
        address: address.to_owned(),
        region: Some("eu-west".into()),
        token: token.map(SecretToken::new),
        tls: NomadTlsConfig::default(),
    })
    .unwrap()
}

#[tokio::test]
async fn blocking_read_sends_params_and_parses_headers() {
    let fake = FakeNomad::default();
    let c = client(&fake.clone().start().await, Some(TOKEN));

    let q = QueryOptions {
        index: 10,
        wait: Some(Duration::from_millis(150)),
        stale: true,
        background: false,
    };
    let started = Instant::now();
    let resp = c.node(NODE_ID, &q).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "request did block"
    );
    assert_eq!(resp.index, 14);
    assert!(resp.known_leader);
    assert_eq!(resp.last_contact, Duration::from_millis(7));
    assert_eq!(resp.value.id, NODE_ID);
    assert_eq!(resp.next_index(q.index), 14);
    assert!(!resp.index_went_backwards(q.index));

    let seen = fake.last();
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.path, format!("/v1/node/{NODE_ID}"));
    assert_eq!(seen.token.as_deref(), Some(TOKEN));
    assert_eq!(seen.query["index"], "10");
    assert_eq!(seen.query["wait"], "150ms");
    assert_eq!(seen.query["stale"], "true");
    assert_eq!(seen.query["region"], "eu-west");

    // A returned index below the one sent means Nomad's state was restored.
    let resp = c
        .node(
            NODE_ID,
            &QueryOptions::blocking(500, Duration::from_millis(1)),
        )
        .await
        .unwrap();
    assert!(resp.index_went_backwards(500));
    assert_eq!(resp.next_index(500), 0);
}

#[tokio::test]
async fn plain_read_sends_no_blocking_params_and_no_token_when_unset() {
    let fake = FakeNomad::default();
    let c = client(&fake.clone().start().await, None);
    let resp = c.list_nodes(None, &QueryOptions::default()).await.unwrap();
    assert_eq!(resp.index, 42);
    assert_eq!(resp.value[0].name, "nomad-4");
    let seen = fake.last();
    assert_eq!(seen.token, None);
    for p in ["index", "wait", "stale", "filter"] {
        assert!(!seen.query.contains_key(p), "{p} sent: {:?}", seen.query);
    }

    // An empty selector's filter is not sent.
    c.list_nodes(
        Some(&node_pool_filter(&PoolSelector::default())),
        &QueryOptions::default(),
    )
    .await
    .unwrap();
    assert!(!fake.last().query.contains_key("filter"));

    let sel = PoolSelector {
        node_pool: Some("ci".into()),
        ..Default::default()
    };
    c.list_nodes(Some(&node_pool_filter(&sel)), &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(fake.last().query["filter"], r#"NodePool == "ci""#);
}

#[tokio::test]
async fn allocation_reads() {
    let fake = FakeNomad::default();
    let c = client(&fake.clone().start().await, Some(TOKEN));

    let resp = c
        .node_allocations(NODE_ID, &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(resp.index, 2567);
    assert!(resp.value.iter().any(Allocation::is_pending_or_running));
    assert_eq!(fake.last().path, format!("/v1/node/{NODE_ID}/allocations"));

    let filter = filter::allocations_on_node_filter(NODE_ID);
    let resp = c
        .allocations(Some(&filter), &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(resp.index, 99);
    assert_eq!(resp.value[0].job_type(), Some(&JobType::Service));
    let seen = fake.last();
    assert_eq!(seen.path, "/v1/allocations");
    assert_eq!(seen.query["namespace"], "*");
    assert_eq!(seen.query["task_states"], "false");
    assert_eq!(seen.query["filter"], format!(r#"NodeID == "{NODE_ID}""#));
}

#[tokio::test]
async fn writes_send_documented_bodies() {
    let fake = FakeNomad::default();
    let c = client(&fake.clone().start().await, Some(TOKEN));

    let req = DrainRequest {
        drain_spec: Some(DrainSpec::with_deadline(Duration::from_secs(3600), true)),
        mark_eligible: false,
        meta: BTreeMap::from([("message".into(), "drain for maintenance".into())]),
    };
    let resp = c.drain(NODE_ID, &req).await.unwrap();
    assert_eq!(resp.index, 3742);
    let seen = fake.last();
    assert_eq!(seen.method, Method::POST);
    assert_eq!(seen.path, format!("/v1/node/{NODE_ID}/drain"));
    assert_eq!(seen.token.as_deref(), Some(TOKEN));
    assert_eq!(seen.query["region"], "eu-west");
    let body = seen.body.unwrap();
    let documented = fixture_json("node-drain-request.json");
    assert_eq!(body["DrainSpec"], documented["DrainSpec"]);
    assert_eq!(body["Meta"], documented["Meta"]);
    assert_eq!(body["NodeID"], NODE_ID);
    assert_eq!(body["MarkEligible"], false);

    let force = DrainRequest {
        drain_spec: Some(DrainSpec::force(false)),
        ..Default::default()
    };
    c.drain(NODE_ID, &force).await.unwrap();
    assert_eq!(
        fake.last().body.unwrap()["DrainSpec"],
        json!({"Deadline": -1_000_000_000i64, "IgnoreSystemJobs": false})
    );

    let cancel = DrainRequest {
        drain_spec: None,
        mark_eligible: true,
        meta: BTreeMap::new(),
    };
    c.drain(NODE_ID, &cancel).await.unwrap();
    let body = fake.last().body.unwrap();
    assert_eq!(body["DrainSpec"], Value::Null);
    assert_eq!(body["MarkEligible"], true);

    c.set_eligibility(NODE_ID, false).await.unwrap();
    let seen = fake.last();
    assert_eq!(seen.path, format!("/v1/node/{NODE_ID}/eligibility"));
    assert_eq!(
        seen.body.unwrap()["Eligibility"],
        fixture_json("node-eligibility-request.json")["Eligibility"]
    );

    let resp = c.purge(NODE_ID).await.unwrap();
    assert_eq!(resp.eval_ids.len(), 1);
    assert_eq!(fake.last().path, format!("/v1/node/{NODE_ID}/purge"));
}

#[tokio::test]
async fn plain_text_errors_map_to_typed_errors() {
    let fake = FakeNomad::default();
    let addr = fake.clone().start().await;
    let c = client(&addr, Some(TOKEN));

    let err = c
        .node("0000-missing", &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NomadError::NodeNotFound { node_id } if node_id == "0000-missing"),
        "{err:?}"
    );
    assert!(!err.is_retryable());

    for err in [
        c.drain("0000-missing", &DrainRequest::default())
            .await
            .unwrap_err(),
        c.set_eligibility("0000-missing", false).await.unwrap_err(),
        c.purge("0000-missing").await.unwrap_err(),
    ] {
        assert!(matches!(err, NomadError::NodeNotFound { .. }), "{err:?}");
    }

    let err = c
        .list_nodes(Some("bogus == 1"), &QueryOptions::default())
        .await
        .unwrap_err();
    match &err {
        NomadError::Api {
            status: 400,
            message,
            endpoint,
        } => {
            assert!(
                message.starts_with("failed to read result page"),
                "{message}"
            );
            assert_eq!(endpoint, "GET /v1/nodes");
        }
        other => panic!("{other:?}"),
    }

    let err = c
        .node("no-index", &QueryOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NomadError::InvalidHeader {
                header: "X-Nomad-Index",
                ..
            }
        ),
        "{err:?}"
    );

    let bad = client(&addr, Some("bad"));
    let err = bad.check_node_read().await.unwrap_err();
    assert_eq!(fake.last().query["per_page"], "1");
    for err in [err, bad.purge(NODE_ID).await.unwrap_err()] {
        let NomadError::PermissionDenied { message, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(message, "Permission denied");
    }

    // No error path may leak the token.
    for err in [
        c.node("0000-missing", &QueryOptions::default())
            .await
            .unwrap_err(),
        c.list_nodes(Some("bogus"), &QueryOptions::default())
            .await
            .unwrap_err(),
    ] {
        let text = format!("{err} {err:?} {}", error_chain(&err));
        assert!(!text.contains(TOKEN), "{text}");
    }

    assert_eq!(c.leader().await.unwrap(), "10.0.0.1:4647");
    c.check_node_read().await.unwrap();
}

#[tokio::test]
async fn request_timeout_covers_blocking_wait_but_not_plain_reads() {
    let fake = FakeNomad::default();
    let addr = fake.clone().start().await;
    let c = NomadClient::with_timeouts(
        NomadConfig {
            address: addr,
            token: Some(SecretToken::new(TOKEN)),
            ..Default::default()
        },
        Timeouts {
            connect: Duration::from_secs(1),
            request: Duration::from_millis(300),
            blocking_margin: Duration::from_millis(400),
        },
    )
    .unwrap();

    // Held for 1000ms + 62ms, beyond the 300ms plain timeout.
    let resp = c
        .node(NODE_ID, &QueryOptions::blocking(1, Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(resp.index, 14);

    let err = c.node("slow", &QueryOptions::default()).await.unwrap_err();
    assert!(matches!(err, NomadError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    let text = format!("{err:?} {}", error_chain(&err));
    assert!(!text.contains(TOKEN), "{text}");
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let c = client(&format!("http://{addr}"), Some(TOKEN));
    let err = c.leader().await.unwrap_err();
    assert!(matches!(err, NomadError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out = format!("{out}: {s:?}");
        src = s.source();
    }
    out
}
