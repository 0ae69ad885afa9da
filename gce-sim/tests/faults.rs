//! Contract tests for fault injection and the request log (§5.1.8,
//! §5.1.11, §5.3): Google-shaped HTTP errors (403 rateLimitExceeded, 503),
//! a failure before the request is carried out (no effect) and a lost
//! answer after it (effect, no answer), latency, and instance states set
//! through the control surface.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

fn del(group: &str) -> String {
    format!("{Z}/instanceGroupManagers/{group}/deleteInstances")
}

#[tokio::test]
async fn rate_limit_exceeded_is_a_403_in_googles_shape() {
    let t = start().await;
    t.zonal("pool", 1).await;
    t.fault(
        json!({"method": "GET", "path_contains": "/instanceGroupManagers/", "times": 2,
        "action": {"error": {"code": 403, "reason": "rateLimitExceeded", "domain": "usageLimits",
            "message": "Quota exceeded for quota metric 'Read requests'."}}}),
    )
    .await;
    for _ in 0..2 {
        let (s, e) = err(t.get(&format!("{Z}/instanceGroupManagers/pool")).await).await;
        // §1.7: rateLimitExceeded is a 403; the SDK reads errors[].reason (§4.6).
        assert_eq!(s, 403);
        assert_eq!(
            e,
            json!({"error": {"code": 403, "message": "Quota exceeded for quota metric 'Read requests'.",
                "status": "PERMISSION_DENIED",
                "errors": [{"message": "Quota exceeded for quota metric 'Read requests'.",
                    "domain": "usageLimits", "reason": "rateLimitExceeded"}]}})
        );
    }
    t.igm("pool").await;
    let faults = t.get_ok("/sim/faults").await;
    assert_eq!(faults["rules"][0]["fired"], 2);
}

#[tokio::test]
async fn a_503_before_delete_has_no_effect_and_a_lost_answer_after_it_has() {
    let t = start().await;
    let n = t.zonal("pool", 3).await;
    // §5.3: a 503 on deleteInstances surfaces (POSTs are not retried, §4.5).
    t.fault(json!({"path_contains": "/deleteInstances",
        "action": {"error": {"code": 503, "reason": "backendError", "message": "Internal error."}}}))
        .await;
    let (s, e) = err(t
        .post(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await)
    .await;
    assert_eq!(
        (s, e["error"]["status"].clone()),
        (503, json!("UNAVAILABLE"))
    );
    assert_eq!(t.igm("pool").await["targetSize"], 3);
    // `after`: carried out, then the connection drops — the provider must
    // re-read before it calls again.
    t.fault(json!({"path_contains": "/deleteInstances", "after": true, "action": "drop"}))
        .await;
    let r = t
        .http
        .post(t.u(&del("pool")))
        .json(&json!({"instances": [partial(&n[1])]}))
        .send()
        .await;
    assert!(r.is_err(), "the answer is lost");
    let g = t.igm("pool").await;
    assert_eq!(
        (
            g["targetSize"].clone(),
            g["currentActions"]["deleting"].clone()
        ),
        (json!(2), json!(1))
    );
    // A drop before the request: no effect.
    t.fault(json!({"path_contains": "/deleteInstances", "action": "drop"}))
        .await;
    let r = t
        .http
        .post(t.u(&del("pool")))
        .json(&json!({"instances": [partial(&n[2])]}))
        .send()
        .await;
    assert!(r.is_err());
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    let log = t.requests().await;
    let statuses: Vec<_> = log
        .iter()
        .filter(|r| r["path"] == del("pool").as_str())
        .map(|r| r["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(503), json!(null), json!(null)]);
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let t = start().await;
    t.zonal("pool", 1).await;
    t.fault(json!({"method": "GET", "delay_ms": 200, "action": "delay"}))
        .await;
    let started = Instant::now();
    t.igm("pool").await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    let started = Instant::now();
    t.igm("pool").await;
    assert!(started.elapsed() < Duration::from_millis(200), "fired once");
    t.http.delete(t.u("/sim/faults")).send().await.unwrap();
}

#[tokio::test]
async fn the_request_log_records_method_path_decoded_query_body_and_header() {
    let t = start().await;
    let n = t.zonal("pool", 1).await;
    t.http
        .post(t.u(&format!(
            "{}?requestId=6f1c2a9e-0b3d-4c5e-8f70-112233445566&%24alt=json",
            del("pool")
        )))
        .header("x-goog-api-client", "gl-rust/1.91 gccl/4.1.0")
        .json(&json!({"instances": [partial(&n[0])]}))
        .send()
        .await
        .unwrap();
    let log = t.requests().await;
    let r = log.last().unwrap();
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], del("pool"));
    // §4.3: `$alt` arrives as `%24alt`; the log shows it decoded.
    assert_eq!(
        r["query"],
        json!([
            ["requestId", "6f1c2a9e-0b3d-4c5e-8f70-112233445566"],
            ["$alt", "json"]
        ])
    );
    let body: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body, json!({"instances": [partial(&n[0])]}));
    assert_eq!(r["api_client"], "gl-rust/1.91 gccl/4.1.0");
    assert_eq!(r["status"], 200);
    // Control calls are not logged; the log can be cleared.
    assert!(
        log.iter()
            .all(|r| r["path"].as_str().unwrap().starts_with("/compute/"))
    );
    t.http.delete(t.u("/sim/requests")).send().await.unwrap();
    assert!(t.requests().await.is_empty());
}

#[tokio::test]
async fn control_can_set_an_instance_state_that_the_api_reports() {
    let t = start().await;
    let n = t.zonal("pool", 2).await;
    t.ctl(
        "/sim/instances",
        json!({"project": PROJECT, "zone": ZONE, "group": "pool", "name": n[1],
               "instance_status": "STOPPED", "current_action": "VERIFYING"}),
    )
    .await;
    let g = t.igm("pool").await;
    assert_eq!(g["currentActions"]["verifying"], 1);
    assert_eq!(g["status"]["isStable"], false);
    let mi = t.instances("pool").await;
    let i = mi.iter().find(|i| i["name"] == n[1].as_str()).unwrap();
    assert_eq!(
        (i["instanceStatus"].clone(), i["currentAction"].clone()),
        (json!("STOPPED"), json!("VERIFYING"))
    );
    // Values outside the API's enums are refused (§1.2).
    let r = t
        .post(
            "/sim/instances",
            Some(
                json!({"project": PROJECT, "zone": ZONE, "group": "pool", "name": n[1],
                        "current_action": "BUSY"}),
            ),
        )
        .await;
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn error_presets_give_computes_codes_and_unknown_presets_are_refused() {
    let t = start().await;
    t.zonal("pool", 1).await;
    let p = format!("{Z}/instanceGroupManagers/pool");
    // §1.7: rateLimitExceeded is 403 (not 429); §5.3 also wants a 429 form.
    for (preset, code, status) in [
        ("rateLimitExceeded", 403, "PERMISSION_DENIED"),
        ("tooManyRequests", 429, "RESOURCE_EXHAUSTED"),
        ("backendError", 503, "UNAVAILABLE"),
        ("notFound", 404, "NOT_FOUND"),
    ] {
        t.fault(json!({"action": {"error_preset": preset}})).await;
        let (s, e) = err(t.get(&p).await).await;
        assert_eq!(s, code, "{preset}");
        assert_eq!(e["error"]["errors"][0]["reason"], preset);
        assert_eq!(e["error"]["status"], status);
    }
    let r = t
        .post(
            "/sim/faults",
            Some(json!({"action": {"error_preset": "nope"}})),
        )
        .await;
    assert_eq!(r.status(), 400);
    t.igm("pool").await;
}

#[tokio::test]
async fn the_control_group_list_shows_every_instance_of_paginated_groups() {
    let t = start().await;
    t.ctl(
        "/sim/groups",
        json!({"project": PROJECT, "zone": ZONE, "name": "pg", "target_size": 501,
               "list_managed_instances_results": "PAGINATED"}),
    )
    .await;
    let v = t.get_ok("/sim/groups").await;
    assert_eq!(v["groups"][0]["group"]["targetSize"], 501);
    assert_eq!(
        v["groups"][0]["managed_instances"]
            .as_array()
            .unwrap()
            .len(),
        501
    );
    // The API pages them (§1.3: maxResults defaults to 500).
    let page = t
        .post_ok(
            &format!("{Z}/instanceGroupManagers/pg/listManagedInstances"),
            None,
        )
        .await;
    assert_eq!(page["managedInstances"].as_array().unwrap().len(), 500);
    assert!(page["nextPageToken"].is_string());
}
