//! The requests exactly as google-cloud-compute-v1 4.1.0 puts them on the
//! wire (§4.3): encoded `$alt`/`$apiVersion`, an empty `pageToken=` on the
//! first page, `{}` bodies on POSTs without a request message, the
//! `x-goog-api-client` header, no Authorization (anonymous credentials,
//! §4.2), and the poller's `GET …/operations/{op}?$alt=json` (§4.4).

mod common;

use common::*;
use reqwest::Response;
use serde_json::{Value, json};

const API: &str = "%24alt=json&%24apiVersion=2026-09-01";

async fn send(t: &T, method: reqwest::Method, path_query: &str, body: Option<Value>) -> Response {
    let mut rb = t
        .http
        .request(method, t.u(path_query))
        .header("x-goog-api-client", "gl-rust/1.91.0 gax/1.15.0 gapic/4.1.0");
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    rb.send().await.unwrap()
}

#[tokio::test]
async fn a_scale_in_as_the_sdk_sends_it() {
    let t = start_with(gce_sim::state::Timing {
        operation_polls: 2,
        ..test_timing()
    })
    .await;
    let n = t.zonal("pool", 3).await;
    let igm = format!("{Z}/instanceGroupManagers/pool");
    let g: Value = ok(
        send(&t, reqwest::Method::GET, &format!("{igm}?{API}"), None).await,
        "get",
    )
    .await;
    assert_eq!(g["targetSize"], 3);
    // by_page(): first request with `pageToken=` (empty), then the system params.
    let list = format!("{igm}/listManagedInstances?pageToken=&{API}");
    let l: Value = ok(
        send(&t, reqwest::Method::POST, &list, Some(json!({}))).await,
        "list",
    )
    .await;
    assert_eq!(l["managedInstances"].as_array().unwrap().len(), 3);
    assert!(l.get("nextPageToken").is_none(), "the paginator stops");
    // deleteInstances: `noGracefulShutdown, requestId` when set, then system params.
    let del = format!("{igm}/deleteInstances?requestId=0b6c1f4e-3a2d-4e5f-9a8b-7c6d5e4f3a2b&{API}");
    let body = json!({"instances": [full(&n[0])], "skipInstancesOnValidationError": true});
    let op: Value = ok(
        send(&t, reqwest::Method::POST, &del, Some(body)).await,
        "delete",
    )
    .await;
    assert_eq!(op["status"], "PENDING");
    // The poller: GET …/operations/{name} with `$alt=json` only.
    let poll = format!(
        "{Z}/operations/{}?%24alt=json",
        op["name"].as_str().unwrap()
    );
    let mut statuses = Vec::new();
    loop {
        let v: Value = ok(send(&t, reqwest::Method::GET, &poll, None).await, "poll").await;
        statuses.push(v["status"].as_str().unwrap().to_string());
        if v["status"] == "DONE" {
            assert!(v.get("error").is_none() && v.get("httpErrorStatusCode").is_none());
            break;
        }
    }
    assert_eq!(statuses, ["RUNNING", "RUNNING", "DONE"]);
    // ZoneOperations::wait: POST with `{}` and the system params.
    let wait = format!("{Z}/operations/{}/wait?{API}", op["name"].as_str().unwrap());
    let w: Value = ok(
        send(&t, reqwest::Method::POST, &wait, Some(json!({}))).await,
        "wait",
    )
    .await;
    assert_eq!(w["status"], "DONE");
    // resize: `requestId, size`, body `{}`.
    let resize = format!("{igm}/resize?size=4&{API}");
    ok(
        send(&t, reqwest::Method::POST, &resize, Some(json!({}))).await,
        "resize",
    )
    .await;
    let g: Value = ok(
        send(&t, reqwest::Method::GET, &format!("{igm}?{API}"), None).await,
        "get",
    )
    .await;
    assert_eq!(g["targetSize"], 4);
    // Every request reached the fake as sent, header included.
    let log = t.requests().await;
    assert!(
        log.iter()
            .all(|r| r["api_client"].is_string() && r["status"] == 200)
    );
    assert!(log.iter().all(|r| {
        r["query"]
            .as_array()
            .unwrap()
            .iter()
            .any(|kv| kv[0] == "$alt")
    }));
}

/// The operator's instances.list for VM creation times as the SDK sends
/// it: `filter` form-urlencoded (space as `+`, `(`, `|`, `)` and `"`
/// escaped), then the empty first `pageToken`, then `$alt`/`$apiVersion`.
#[tokio::test]
async fn a_filtered_instances_list_as_the_sdk_sends_it() {
    let t = start().await;
    let n = t.zonal("pool", 3).await;
    let filter = format!("name+eq+%22%28{}%7C{}%29%22", n[0], n[2]);
    let r = send(
        &t,
        reqwest::Method::GET,
        &format!("{Z}/instances?filter={filter}&pageToken=&{API}"),
        None,
    )
    .await;
    let v = ok(r, "instances.list").await;
    assert_eq!(names(&v["items"]), vec![n[0].clone(), n[2].clone()]);
    assert!(v["items"][0]["creationTimestamp"].is_string());
    assert!(v.get("nextPageToken").is_none());
}
