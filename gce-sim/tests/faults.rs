//! Contract tests for fault injection and the request log (§5.1.8,
//! §5.1.11, §5.3): Google-shaped HTTP errors (403 rateLimitExceeded, 503),
//! a failure before the request is carried out (no effect) and a lost
//! answer after it (effect, no answer), latency, and instance states set
//! through the control surface.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

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

/// Statuses of `n` reads of group `pool` under whatever rules are set.
async fn read_statuses(t: &T, n: usize) -> Vec<u16> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(
            t.get(&format!("{Z}/instanceGroupManagers/pool"))
                .await
                .status()
                .as_u16(),
        );
    }
    out
}

#[tokio::test]
async fn a_rule_with_a_probability_fails_a_seeded_fraction_of_calls_reproducibly() {
    let rule = |seed: u64| {
        json!({"method": "GET", "times": 0, "probability": 0.3, "seed": seed,
               "action": {"error_preset": "backendError"}})
    };
    let mut runs = Vec::new();
    for seed in [11, 11, 12] {
        let t = start().await;
        t.zonal("pool", 1).await;
        t.fault(rule(seed)).await;
        let statuses = read_statuses(&t, 200).await;
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 503),
            "{statuses:?}"
        );
        let failed = statuses.iter().filter(|s| **s == 503).count();
        // 200 draws at 0.3: 60 expected; 35..85 is beyond five sigma.
        assert!((35..=85).contains(&failed), "{failed} of 200 failed");
        let rules = t.get_ok("/sim/faults").await;
        assert_eq!(rules["rules"][0]["rolled"], 200);
        assert_eq!(rules["rules"][0]["fired"], failed);
        assert_eq!(rules["rules"][0]["seed"], seed);
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1], "the same seed fails the same calls");
    assert_ne!(runs[0], runs[2], "another seed, other calls");
}

#[tokio::test]
async fn a_call_the_dice_spare_goes_to_the_next_rule_and_the_seed_is_shown() {
    let t = start().await;
    t.zonal("pool", 1).await;
    // No seed given: derived from the fake's (7), and shown.
    t.fault(json!({"method": "GET", "times": 0, "probability": 0.5,
                   "action": {"error_preset": "backendError"}}))
        .await;
    t.fault(json!({"method": "GET", "times": 0, "action": {"error_preset": "notFound"}}))
        .await;
    let statuses = read_statuses(&t, 40).await;
    assert!(
        statuses.contains(&503) && statuses.contains(&404),
        "{statuses:?}"
    );
    assert!(!statuses.contains(&200), "{statuses:?}");
    let rules = t.get_ok("/sim/faults").await["rules"].clone();
    assert!(rules[0]["seed"].is_u64(), "{rules}");
    assert_eq!(rules[1].get("seed"), None, "no dice, no seed: {rules}");
    let fired = |i: usize| rules[i]["fired"].as_u64().unwrap();
    assert_eq!(fired(0) + fired(1), 40);
    assert_eq!(rules[0]["rolled"], 40);
    for p in [-0.1, 1.5] {
        let r = t
            .post(
                "/sim/faults",
                Some(json!({"probability": p, "action": "drop"})),
            )
            .await;
        assert_eq!(r.status(), 400, "probability {p}");
    }
}

#[tokio::test]
async fn the_log_says_which_calls_were_carried_out_and_names_the_fault_as_json() {
    let t = start().await;
    let n = t.zonal("pool", 4).await;
    let rid = |i: u8| format!("6f1c2a9e-0b3d-4c5e-8f70-1122334455{i:02x}");
    let delete = |i: usize, id: String| {
        let body = json!({"instances": [partial(&n[i])], "skipInstancesOnValidationError": true});
        let url = t.u(&format!("{}?requestId={id}", del("pool")));
        let http = t.http.clone();
        async move { http.post(url).json(&body).send().await }
    };
    let failure = json!({"code": "RESOURCE_NOT_READY", "message": "The resource is not ready",
                         "http_status": 400, "http_message": "BAD REQUEST"});
    // Failed Operation: answered 200, nothing done.
    t.fault(json!({"path_contains": "/deleteInstances", "action": {"fail_operation": failure}}))
        .await;
    assert_eq!(delete(0, rid(1)).await.unwrap().status(), 200);
    // Lost answer after the work: carried out.
    t.fault(json!({"path_contains": "/deleteInstances", "after": true, "action": "drop"}))
        .await;
    assert!(delete(1, rid(2)).await.is_err());
    // Dropped before: nothing done.
    t.fault(json!({"path_contains": "/deleteInstances", "action": "drop"}))
        .await;
    assert!(delete(2, rid(3)).await.is_err());
    // Refused with a preset error: nothing done.
    t.fault(json!({"path_contains": "/deleteInstances", "action": {"error_preset": "rateLimitExceeded"}}))
        .await;
    assert_eq!(delete(2, rid(4)).await.unwrap().status(), 403);
    // Plain, then the same requestId again (the first call's Operation).
    assert_eq!(delete(3, rid(5)).await.unwrap().status(), 200);
    assert_eq!(delete(3, rid(5)).await.unwrap().status(), 200);
    // A repeated failed requestId is answered with the failed Operation.
    assert_eq!(delete(0, rid(1)).await.unwrap().status(), 200);
    assert_eq!(
        t.igm("pool").await["targetSize"],
        2,
        "only n[1] and n[3] went"
    );

    let log = t.requests().await;
    let got: Vec<(Value, Value, bool)> = log
        .iter()
        .filter(|r| r["path"] == del("pool").as_str())
        .map(|r| {
            (
                r["status"].clone(),
                r["fault"].clone(),
                r["carried_out"].as_bool().unwrap(),
            )
        })
        .collect();
    let rate_limited = json!({"error": {"code": 403, "reason": "rateLimitExceeded",
        "message": "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'.",
        "domain": "usageLimits", "status": null}});
    assert_eq!(
        got,
        [
            (json!(200), json!({"fail_operation": failure}), false),
            (Value::Null, json!("drop"), true),
            (Value::Null, json!("drop"), false),
            (json!(403), rate_limited, false),
            (json!(200), Value::Null, true),
            (json!(200), Value::Null, false),
            (json!(200), Value::Null, false),
        ]
    );
    // A read that was answered counts as carried out.
    t.igm("pool").await;
    assert_eq!(t.requests().await.last().unwrap()["carried_out"], true);
}

#[tokio::test]
async fn the_log_is_in_arrival_order_whatever_order_the_answers_left_in() {
    let t = start().await;
    t.zonal("pool", 1).await;
    // The first read is held 500 ms; a second, sent 100 ms later, is
    // answered before it.
    t.fault(json!({"method": "GET", "delay_ms": 500, "action": "delay"}))
        .await;
    let slow = {
        let (http, url) = (
            t.http.clone(),
            t.u(&format!("{Z}/instanceGroupManagers/pool")),
        );
        tokio::spawn(async move { http.get(url).send().await.unwrap().status() })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/pool/listManagedInstances"),
        None,
    )
    .await;
    assert_eq!(
        t.requests().await.len(),
        1,
        "the held read is not answered yet"
    );
    assert_eq!(slow.await.unwrap(), 200);
    let log = t.requests().await;
    let order: Vec<(u64, &str)> = log
        .iter()
        .map(|r| (r["seq"].as_u64().unwrap(), r["method"].as_str().unwrap()))
        .collect();
    assert_eq!(order, [(1, "GET"), (2, "POST")]);
}
