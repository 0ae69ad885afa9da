//! Contract tests for operations (§1.6, §4.4, §5.1.6, §5.1.7, §5.3):
//! PENDING in the call's answer, RUNNING for N polls and a simulated
//! duration, then DONE; failed operations; zone and region operations get
//! and wait.

mod common;

use common::*;
use gce_sim::state::Timing;
use serde_json::json;

fn del(group: &str) -> String {
    format!("{Z}/instanceGroupManagers/{group}/deleteInstances")
}

#[tokio::test]
async fn an_operation_stays_running_for_n_polls_then_is_done() {
    let t = start_with(Timing {
        operation_polls: 3,
        ..test_timing()
    })
    .await;
    let n = t.zonal("pool", 2).await;
    let op = t
        .post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    // §5.1.6: the fields the SDK and the poller need.
    assert_eq!(op["status"], "PENDING");
    let name = op["name"].as_str().unwrap();
    assert!(
        name.starts_with("operation-") && !name.contains('/'),
        "{name}"
    );
    assert_eq!(
        op["selfLink"],
        format!("{URL_BASE}projects/proj/zones/{ZONE}/operations/{name}")
    );
    assert_eq!(
        op["targetLink"],
        format!("{URL_BASE}projects/proj/zones/{ZONE}/instanceGroupManagers/pool")
    );
    assert_eq!(op["targetId"], t.igm("pool").await["id"]);
    assert_eq!(op["zone"], format!("{URL_BASE}projects/proj/zones/{ZONE}"));
    assert!(op["id"].as_str().unwrap().parse::<u64>().is_ok());
    assert_eq!(op["progress"], 0);
    assert!(op["insertTime"].as_str().unwrap().ends_with("-08:00"));
    assert!(op.get("endTime").is_none());
    assert!(op.get("clientOperationId").is_none());
    // §5.3: RUNNING for N polls, then DONE (GET …/operations/{name}, §4.4).
    let p = format!("{Z}/operations/{name}");
    for _ in 0..3 {
        let v = t.get_ok(&p).await;
        assert_eq!(v["status"], "RUNNING");
        assert!(v["startTime"].is_string());
    }
    let v = t.get_ok(&p).await;
    assert_eq!(v["status"], "DONE");
    assert_eq!(v["progress"], 100);
    assert!(v["endTime"].is_string());
    assert!(v.get("error").is_none());
    // The request log shows the poller's GETs.
    let polls = t
        .requests()
        .await
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"] == p.as_str())
        .count();
    assert_eq!(polls, 4);
}

#[tokio::test]
async fn an_operation_also_waits_for_its_simulated_duration() {
    let t = start_with(Timing {
        operation_polls: 0,
        operation_duration_s: 10.0,
        ..test_timing()
    })
    .await;
    let n = t.zonal("pool", 1).await;
    let op = t
        .post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    let p = format!("{Z}/operations/{}", op["name"].as_str().unwrap());
    assert_eq!(t.get_ok(&p).await["status"], "RUNNING");
    t.advance(9.0).await;
    assert_eq!(t.get_ok(&p).await["status"], "RUNNING");
    t.advance(1.0).await;
    assert_eq!(t.get_ok(&p).await["status"], "DONE");
}

#[tokio::test]
async fn with_no_polls_and_no_duration_the_answer_is_already_done() {
    let t = start_with(Timing {
        operation_polls: 0,
        ..test_timing()
    })
    .await;
    let n = t.zonal("pool", 1).await;
    let op = t
        .post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    assert_eq!(op["status"], "DONE");
    // §1.4: DONE while the instance is still DELETING.
    assert_eq!(t.instances("pool").await[0]["currentAction"], "DELETING");
}

#[tokio::test]
async fn wait_returns_done_or_gives_up_not_done() {
    let t = start_with(Timing {
        operation_polls: 0,
        operation_duration_s: 5.0,
        ..test_timing()
    })
    .await;
    let n = t.zonal("pool", 1).await;
    let op = t
        .post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    let p = format!("{Z}/operations/{}/wait", op["name"].as_str().unwrap());
    // §1.6: wait may return not-DONE (here after wait_max_ms, 300 ms real).
    let started = std::time::Instant::now();
    let v = t.post_ok(&p, None).await;
    assert_eq!(v["status"], "RUNNING");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    // It returns as soon as the operation is DONE.
    let waiter = {
        let http = t.http.clone();
        let url = t.u(&p);
        tokio::spawn(async move { http.post(url).json(&json!({})).send().await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    t.advance(5.0).await;
    let v: serde_json::Value = waiter.await.unwrap().json().await.unwrap();
    assert_eq!(v["status"], "DONE");
    // wait is POST only (§1).
    assert_eq!(t.get(&p).await.status(), 404);
}

#[tokio::test]
async fn regional_operations_live_under_regions() {
    let t = start().await;
    let v = t
        .ctl(
            "/sim/groups",
            json!({"project": PROJECT, "region": REGION, "name": "rg", "target_size": 2}),
        )
        .await;
    let url = v["managed_instances"][0]["instance"].clone();
    let op = t
        .post_ok(
            &format!("{R}/instanceGroupManagers/rg/deleteInstances"),
            Some(json!({"instances": [url]})),
        )
        .await;
    let name = op["name"].as_str().unwrap();
    // §4.3: the poller GETs …/regions/{r}/operations/{op}.
    assert_eq!(
        op["selfLink"],
        format!("{URL_BASE}projects/proj/regions/{REGION}/operations/{name}")
    );
    assert_eq!(t.get(&format!("{Z}/operations/{name}")).await.status(), 404);
    let (done, polls) = poll_done(&t, &op).await;
    assert_eq!((done["status"].clone(), polls), (json!("DONE"), 2));
    let v = t
        .post_ok(&format!("{R}/operations/{name}/wait"), None)
        .await;
    assert_eq!(v["status"], "DONE");
}

#[tokio::test]
async fn an_injected_operation_failure_is_done_with_error_and_has_no_effect() {
    let t = start().await;
    let n = t.zonal("pool", 2).await;
    t.fault(
        json!({"path_contains": "/deleteInstances", "action": {"fail_operation": {
        "code": "QUOTA_EXCEEDED", "message": "Quota 'CPUS' exceeded.",
        "http_status": 403, "http_message": "FORBIDDEN"}}}),
    )
    .await;
    let op = t
        .post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    // §1.6: the call itself is a 200; the error is on the DONE operation,
    // which the SDK's until_done() returns as Ok (§4.4).
    assert!(op.get("error").is_none());
    let (done, _) = poll_done(&t, &op).await;
    assert_eq!(
        (
            done["error"].clone(),
            done["httpErrorStatusCode"].clone(),
            done["httpErrorMessage"].clone()
        ),
        (
            json!({"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota 'CPUS' exceeded."}]}),
            json!(403),
            json!("FORBIDDEN")
        )
    );
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    // The rule fired once; the next call goes through.
    t.post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    assert_eq!(t.igm("pool").await["targetSize"], 1);
}

#[tokio::test]
async fn an_unknown_operation_is_a_404() {
    let t = start().await;
    let (s, e) = err(t.get(&format!("{Z}/operations/operation-1-2-3-4")).await).await;
    assert_eq!(s, 404);
    assert_eq!(
        e["error"]["message"],
        format!(
            "The resource 'projects/proj/zones/{ZONE}/operations/operation-1-2-3-4' was not found"
        )
    );
}
