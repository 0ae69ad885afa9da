//! Compute API faults during a GCE scale-in, end to end: the operator binary
//! against a managed instance group in gce-sim that fails an Operation
//! (DONE with an error, nothing deleted), answers a deleteInstances with
//! `403 rateLimitExceeded` (which the SDK never retries, reference §4.5),
//! loses the answer to one it carried out, rate-limits reads, and takes
//! seconds to finish each Operation. The pool must still settle with the
//! group shrunk by exactly what was asked (never a second shrink for one
//! client), no VM deleted under a running allocation, and the instance
//! whose Operation failed retired in the end. And a SIGKILL while an
//! Operation runs: the restarted operator never shrinks the group again.

use std::collections::BTreeSet;
use std::time::Duration;

use nomad_pool_operator::api::RetirePhase;
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);

fn deletes(log: &[Value]) -> Vec<&Value> {
    log.iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().unwrap().ends_with("/deleteInstances")
        })
        .collect()
}

fn body_instances(r: &Value) -> Vec<String> {
    let b: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    b["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_str().unwrap().rsplit('/').next().unwrap().to_string())
        .collect()
}

fn request_id(r: &Value) -> Option<String> {
    r["query"]
        .as_array()
        .unwrap()
        .iter()
        .find(|kv| kv[0] == "requestId")
        .map(|kv| kv[1].as_str().unwrap().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_operations_rate_limits_and_lost_answers_never_shrink_twice() {
    let w = setup_on(Cloud::Gce, "compute-faults", 4).await;
    let gce = w.gce();
    // Every Operation takes 2 s to be DONE: the operator must wait for it.
    gce.post("/sim/config", json!({"operation_duration_s": 2.0}))
        .await;
    // Matched in order, each once.
    for rule in [
        json!({"path_contains": "/deleteInstances", "action": {"fail_operation": {
            "code": "RESOURCE_NOT_READY", "message": "The resource is not ready",
            "http_status": 400, "http_message": "BAD REQUEST"}}}),
        json!({"path_contains": "/deleteInstances", "action": {"error_preset": "rateLimitExceeded"}}),
        json!({"path_contains": "/deleteInstances", "after": true, "action": "drop"}),
        json!({"method": "POST", "path_contains": "/listManagedInstances", "times": 2,
               "action": {"error_preset": "rateLimitExceeded"}}),
    ] {
        gce.fault(rule).await;
    }
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2}}),
    ))
    .await;
    let st = w
        .wait_status("pool", "two clients draining", T, |s| {
            s.retiring.len() == 2 && s.retiring.iter().all(|r| r.phase == RetirePhase::Draining)
        })
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        w.group().await.desired,
        4,
        "no VM may go while its job runs"
    );
    for (node, alloc) in &jobs {
        if st.retiring.iter().any(|r| &r.node_id == node) {
            w.sim.finish(alloc).await;
        }
    }
    let st = w
        .wait_status("pool", "pool settled at 2", T, |s| {
            s.retiring.is_empty()
                && s.retired_total == 2
                && condition(s, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(st.desired_nodes, Some(2));
    // And it stays there: nothing shrinks the group a second time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let g = w.group().await;
    assert_eq!(g.desired, 2, "targetSize dropped by exactly two: {g:?}");
    assert_eq!(g.instances.len(), 2, "{g:?}");

    let faults = gce.get("/sim/faults").await;
    for r in faults["rules"].as_array().unwrap() {
        assert!(
            r["fired"].as_u64().unwrap() >= 1,
            "every fault fired: {faults:#}"
        );
    }
    let log = gce.requests().await;
    let dels = deletes(&log);
    let targeted: BTreeSet<String> = dels.iter().flat_map(|r| body_instances(r)).collect();
    assert_eq!(
        targeted.len(),
        2,
        "only the two retired VMs were ever targeted: {dels:#?}"
    );
    for r in &dels {
        assert_eq!(body_instances(r).len(), 1, "one VM per call");
        let b: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(b["skipInstancesOnValidationError"], true);
        assert!(request_id(r).is_some(), "every delete carries a requestId");
    }
    assert_failed_delete_retried_under_a_new_id(&dels);
    assert_each_vm_deleted_under_one_id(&dels, &targeted);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// The call whose Operation failed is found by its fault, not by its
/// place: two deleteInstances can race, and whichever reaches the fault
/// rules first gets the failure, whatever order they arrived or were
/// answered in. The VM it named was still deleted later, under a requestId
/// of its own (Compute would answer the old one with the failed Operation
/// again).
fn assert_failed_delete_retried_under_a_new_id(dels: &[&Value]) {
    let failed: Vec<&&Value> = dels
        .iter()
        .filter(|r| r["fault"].get("fail_operation").is_some())
        .collect();
    assert_eq!(failed.len(), 1, "one Operation failed: {dels:#?}");
    let failed = failed[0];
    assert_eq!(
        failed["carried_out"], false,
        "a failed Operation does nothing"
    );
    let name = &body_instances(failed)[0];
    println!(
        "[compute-faults] deleteInstances seq:vm:status: {}; the failed Operation's call is seq {}",
        dels.iter()
            .map(|r| format!("{}:{}:{}", r["seq"], body_instances(r)[0], r["status"]))
            .collect::<Vec<_>>()
            .join(" "),
        failed["seq"]
    );
    let retries: Vec<&&Value> = dels
        .iter()
        .filter(|r| r["seq"].as_u64() > failed["seq"].as_u64() && body_instances(r)[0] == *name)
        .collect();
    assert!(
        !retries.is_empty(),
        "the failed delete was retried: {dels:#?}"
    );
    assert!(
        retries.iter().all(|r| request_id(r) != request_id(failed)),
        "a retry after a failed Operation uses a new requestId: {dels:#?}"
    );
}

/// Never shrunk twice: each VM was deleted under one requestId only (a
/// repeated ID is one call to Compute).
fn assert_each_vm_deleted_under_one_id(dels: &[&Value], targeted: &BTreeSet<String>) {
    for vm in targeted {
        let carried: BTreeSet<Option<String>> = dels
            .iter()
            .filter(|r| r["carried_out"] == true && body_instances(r)[0] == *vm)
            .map(|r| request_id(r))
            .collect();
        assert_eq!(
            carried.len(),
            1,
            "{vm} deleted under {carried:?}: {dels:#?}"
        );
    }
}

/// SIGKILL while a deleteInstances Operation is still RUNNING: the
/// restarted operator reads the group afresh, finds the VM already leaving
/// it and never asks for a second shrink.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_while_a_delete_operation_runs_never_shrinks_twice() {
    let mut w = setup_on(Cloud::Gce, "kill-mid-delete", 3).await;
    // Operations take 6 s: long enough to kill the operator while it waits.
    w.gce()
        .post("/sim/config", json!({"operation_duration_s": 6.0}))
        .await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    wait_for("the deleteInstances call", T, || async {
        (!deletes(&w.gce().requests().await).is_empty()).then_some(())
    })
    .await;
    w.restart_operator().await;
    let st = w
        .wait_status("pool", "retired after the restart", T, |s| {
            s.retiring.is_empty() && s.retired_total == 1
        })
        .await;
    assert_eq!(st.desired_nodes, Some(2));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let g = w.group().await;
    assert_eq!(g.desired, 2, "exactly one shrink: {g:?}");
    assert_eq!(g.instances.len(), 2, "{g:?}");
    let log = w.gce().requests().await;
    let targeted: BTreeSet<String> = deletes(&log)
        .iter()
        .flat_map(|r| body_instances(r))
        .collect();
    assert_eq!(targeted.len(), 1, "one VM ever targeted: {targeted:?}");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
