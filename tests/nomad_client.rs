//! The operator's Nomad client against Nomad's documented JSON and against a
//! small in-test HTTP server.
//!
//! The wire types in `src/nomad/types.rs` deliberately duplicate the
//! simulator's encoding (`nomad-sim`) instead of sharing it: both are tested
//! against the same docs fixtures, so each checks the other and neither can
//! drift from Nomad's format unnoticed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use nomad_pool_operator::nomad::*;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

const NODE_ID: &str = "1ac61e33-a465-2ace-f63f-cffa1285e7eb";
const TOKEN: &str = "0f1e2d3c-secret-token";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/nomad/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

// ---------------------------------------------------------------------------
// Docs fixtures decode into the client's types.

#[test]
fn decodes_node_list() {
    let nodes: Vec<NodeListStub> = serde_json::from_str(&fixture("node-list.json")).unwrap();
    let [n] = nodes.as_slice() else {
        panic!("{nodes:?}")
    };
    assert_eq!(n.id, "f7476465-4d6e-c0de-26d0-e383c49be941");
    assert_eq!(n.name, "nomad-4");
    assert_eq!(n.datacenter, "dc1");
    assert_eq!(n.node_pool, "default");
    assert_eq!(n.address, "10.138.0.5");
    assert!(!n.drain);
    assert_eq!(n.scheduling_eligibility, SchedulingEligibility::Eligible);
    assert_eq!(n.status, NodeStatus::Ready);
    assert_eq!(n.last_drain, None);
    assert_eq!((n.create_index, n.modify_index), (6, 2526));
    assert_eq!(n.version, "0.8.0-rc1");
}

#[test]
fn decodes_node_read() {
    let n: Node = serde_json::from_str(&fixture("node-read.json")).unwrap();
    assert_eq!(n.id, NODE_ID);
    assert_eq!(n.name, "mew");
    assert_eq!(n.http_addr, "127.0.0.1:4646");
    assert_eq!(n.status, NodeStatus::Ready);
    assert_eq!(n.scheduling_eligibility, SchedulingEligibility::Eligible);
    assert!(!n.drain);
    assert_eq!(n.drain_strategy, None);
    assert!(!n.is_draining());
    assert_eq!(n.attribute("os.name"), Some("nixos"));
    assert_eq!(n.attribute("no.such.key"), None);
    assert_eq!(n.version(), Some("1.1.0"));
    assert_eq!(n.aws_instance_id(), None);
    assert_eq!(n.gce_instance(), None);
    assert_eq!(
        n.meta.get("connect.log_level").map(String::as_str),
        Some("info")
    );
    assert_eq!(
        n.status_updated_at(),
        Some("2019-08-26T10:23:02Z".parse().unwrap())
    );

    let last = n.last_drain.as_ref().unwrap();
    assert_eq!(last.status, DrainStatus::Complete);
    assert_eq!(last.accessor_id, "4e1b7ce1-f8aa-d7ff-09f1-55c3a0fd3988");
    assert_eq!(
        last.meta.get("message").map(String::as_str),
        Some("node maintenance")
    );
    assert_eq!(
        last.started_at,
        Some("2021-03-31T12:12:20Z".parse().unwrap())
    );

    let messages: Vec<_> = n.events.iter().map(|e| e.message.as_str()).collect();
    assert!(
        messages.contains(&"Node drain strategy set"),
        "{messages:?}"
    );
    assert!(messages.contains(&"Node drain complete"), "{messages:?}");
    assert!(n.events.iter().all(|e| e.timestamp.is_some()));
}

#[test]
fn decodes_node_allocations() {
    let allocs: Vec<Allocation> = serde_json::from_str(&fixture("node-allocations.json")).unwrap();
    let [a] = allocs.as_slice() else {
        panic!("{allocs:?}")
    };
    assert_eq!(a.id, "fefe81d0-08b2-4eca-fae6-6560cde46d31");
    assert_eq!(a.node_id, "f7476465-4d6e-c0de-26d0-e383c49be941");
    assert_eq!(a.job_id, "webapp");
    assert_eq!(a.job.as_ref().unwrap().id, "webapp");
    assert_eq!(a.job_type(), Some(&JobType::Service));
    assert_eq!(a.client_status, ClientStatus::Running);
    assert!(a.is_pending_or_running());
    assert_eq!(a.desired_status, DesiredStatus::Run);
    assert_eq!(a.desired_transition.migrate, None);
    assert_eq!((a.create_index, a.modify_index), (2555, 2567));
    assert_eq!(
        a.modify_time(),
        Some("2018-04-11T23:41:29.807324Z".parse().unwrap())
    );
}

#[test]
fn decodes_allocation_list() {
    let allocs: Vec<AllocationListStub> =
        serde_json::from_str(&fixture("allocations-list.json")).unwrap();
    let [a] = allocs.as_slice() else {
        panic!("{allocs:?}")
    };
    assert_eq!(a.id, "5457f16d-0f87-8e6b-5e91-0c7da3a41eb7");
    assert_eq!(a.node_id, "f476d2b4-02dc-c216-d031-273396727347");
    assert_eq!(a.job_type(), Some(&JobType::Service));
    assert_eq!(a.client_status, ClientStatus::Running);
    assert_eq!(a.desired_status, DesiredStatus::Run);
    assert_eq!(a.namespace, "default");
    assert!(a.is_pending_or_running());
}

#[test]
fn decodes_write_responses() {
    for name in ["node-drain-response.json", "node-eligibility-response.json"] {
        let r: NodeUpdateResponse = serde_json::from_str(&fixture(name)).unwrap();
        assert_eq!(r.index, 3742, "{name}");
        assert!(r.eval_ids.is_empty(), "{name}: EvalIDs null");
    }
    let r: NodeUpdateResponse = serde_json::from_str(&fixture("node-purge-response.json")).unwrap();
    assert_eq!(r.index, 3816);
    assert_eq!(r.eval_create_index, 3817);
    assert_eq!(r.eval_ids, ["71bad787-5ab1-9939-be02-4809441583cd"]);
}

#[test]
fn decodes_node_from_event_stream() {
    let line = fixture("event-node-registration.ndjson");
    let frame: Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    let node = &frame["Events"][0]["Payload"]["Node"];
    let n: Node = serde_json::from_value(node.clone()).unwrap();
    assert_eq!(n.id, "ccc4ce56-7f0a-4124-b8b1-a4015aa82c40");
    assert_eq!(n.name, "nomad-4");
    assert_eq!(
        n.status,
        NodeStatus::from(node["Status"].as_str().unwrap().to_owned())
    );
    assert_eq!(n.drain_strategy, None);
}

// ---------------------------------------------------------------------------
// HTTP behaviour against a fake Nomad.

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

// Throwaway test PKI (P-256), generated for this test only.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBhjCCAS2gAwIBAgIUXQ0YfZ8c5A5icdC/5z5TrkCWnPwwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNVGVzdCBOb21hZCBDQTAgFw0yNjExMjYxNjQ3MjFaGA8yMTI2
MTEwMjE2NDcyMVowGDEWMBQGA1UEAwwNVGVzdCBOb21hZCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABBmFC/59T26XjxSgRsbuPW6y4ypTgfuSLb/l1mlfwT+p
ruzZjp5k/HfNeVdmw1w4yF2J3gNM0OqhdcjUxs9FX4+jUzBRMB0GA1UdDgQWBBTP
xZ2tqzIDJU04lewhfdPnyVPHZDAfBgNVHSMEGDAWgBTPxZ2tqzIDJU04lewhfdPn
yVPHZDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIHvRCXmGful4
0BzsMYGJZ7Wpp+s6Ke2jxmVa+eWX3NAiAiAvz8cRm07RE3cjhMDezh3c7JT5Kq12
MDOog4xBNhHY5A==
-----END CERTIFICATE-----
";
const TEST_CLIENT_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBtzCCAVygAwIBAgIUZ8cbvFyBqLbN0g5Nu49R/4h7VBwwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNVGVzdCBOb21hZCBDQTAgFw0yNjExMjYxNjQ4MzRaGA8yMTI2
MTEwMjE2NDgzNFowGzEZMBcGA1UEAwwQY2xpLmdsb2JhbC5ub21hZDBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABKDxAlx+BsdmWhtfW71uUl/OyG4oXOtiElRUd7vu
tnhXF2dY/ahZM+fTnrJaFOlLuv9DKCVVMuELxOKwX6uiOyKjfzB9MAkGA1UdEwQC
MAAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwGwYDVR0RBBQwEoIQY2xpLmdsb2JhbC5u
b21hZDAdBgNVHQ4EFgQUCpq5jY6nsLHWDHfG3DTL8gCQTQMwHwYDVR0jBBgwFoAU
z8WdrasyAyVNOJXsIX3T58lTx2QwCgYIKoZIzj0EAwIDSQAwRgIhANmFGiG7i1m+
qJ+phmJaiLAt0huxOhZiYRAYRzQNoHrsAiEAm1hpfoazeeW+63FaAJoeVL0sqSDV
p85bWfPXkViUo/w=
-----END CERTIFICATE-----
";
const TEST_CLIENT_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYDz7CDxCubJOvr4c
n4ljz6wfqKw6YZaUcZRw4jT0eEehRANCAASg8QJcfgbHZlobX1u9blJfzshuKFzr
YhJUVHe77rZ4VxdnWP2oWTPn056yWhTpS7r/QyglVTLhC8TisF+rojsi
-----END PRIVATE KEY-----
";

/// With `server_name` set, the TLS connection goes to the configured address
/// but presents (and so verifies) the server name, like
/// `NOMAD_TLS_SERVER_NAME`. Checked on the wire by reading the ClientHello.
#[tokio::test]
async fn tls_server_name_overrides_sni_but_not_destination() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hello = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 5];
        sock.read_exact(&mut buf).await.unwrap();
        let len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
        buf.resize(5 + len, 0);
        sock.read_exact(&mut buf[5..]).await.unwrap();
        buf
    });

    let c = NomadClient::new(NomadConfig {
        address: format!("https://{addr}"),
        token: Some(SecretToken::new(TOKEN)),
        tls: NomadTlsConfig {
            ca_pem: Some(TEST_CA_PEM.into()),
            client_cert_pem: Some(TEST_CLIENT_CERT_PEM.into()),
            client_key_pem: Some(TEST_CLIENT_KEY_PEM.into()),
            server_name: Some("server.global.nomad".into()),
            insecure_skip_verify: false,
        },
        ..Default::default()
    })
    .unwrap();
    let err = c.leader().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    let record = hello.await.unwrap();
    assert_eq!(sni(&record).as_deref(), Some("server.global.nomad"));
}

/// The `server_name` extension of a TLS ClientHello record.
fn sni(record: &[u8]) -> Option<String> {
    let hs = record.get(5..)?;
    assert_eq!(hs[0], 1, "ClientHello");
    let mut p = 4 + 2 + 32; // handshake header, version, random
    p += 1 + *hs.get(p)? as usize; // session id
    p += 2 + u16::from_be_bytes([hs[p], hs[p + 1]]) as usize; // cipher suites
    p += 1 + *hs.get(p)? as usize; // compression methods
    let end = p + 2 + u16::from_be_bytes([hs[p], hs[p + 1]]) as usize;
    p += 2;
    while p + 4 <= end {
        let kind = u16::from_be_bytes([hs[p], hs[p + 1]]);
        let len = u16::from_be_bytes([hs[p + 2], hs[p + 3]]) as usize;
        let data = hs.get(p + 4..p + 4 + len)?;
        if kind == 0 {
            // list length (2), name type (1), name length (2), name
            let n = u16::from_be_bytes([data[3], data[4]]) as usize;
            return String::from_utf8(data[5..5 + n].to_vec()).ok();
        }
        p += 4 + len;
    }
    None
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
