//! The control surface: injected faults and their scope, the workload
//! generator and stats, allocations finished or failed on request.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn faults_are_injected_and_scoped() {
    let t = start().await;
    t.nodes(json!({"count": 1})).await;
    t.post_ok(
        "/sim/faults",
        json!({"error_rate": 1.0, "path_prefix": "/v1/nodes"}),
    )
    .await;
    let (s, _, _) = plain(t.get("/v1/nodes").await).await;
    assert_eq!(s.as_u16(), 500);
    assert_eq!(
        t.get("/v1/agent/self").await.status(),
        200,
        "outside the prefix"
    );
    t.post_ok("/sim/faults", json!({"leader_lost": true})).await;
    let r = t.get("/v1/nodes").await;
    assert_eq!(r.headers()["x-nomad-knownleader"], "false");
    assert_eq!(plain(r).await.2, "No cluster leader");
    assert_eq!(t.get_json("/v1/status/leader").await, json!(""));
    t.post_ok("/sim/faults", json!({"drop_rate": 1.0})).await;
    assert!(
        t.http.get(t.u("/v1/nodes")).send().await.is_err(),
        "connection dropped"
    );
    t.post_ok("/sim/faults", json!({"latency_ms": 300})).await;
    let t0 = Instant::now();
    assert_eq!(t.get("/v1/nodes").await.status(), 200);
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let r = t.http.delete(t.u("/sim/faults")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let t0 = Instant::now();
    assert_eq!(t.get("/v1/nodes").await.status(), 200);
    assert!(t0.elapsed() < Duration::from_millis(300));
    let stats = t.get_json("/sim/stats").await;
    assert!(stats["requests"]["GET /v1/nodes"].as_u64().unwrap() >= 5);
    assert!(stats["faults_injected"]["Drop"].as_u64().unwrap() >= 1);
}

/// A seed makes the dice repeatable: the same requests meet the same
/// faults after the same POST, so a failing run can be replayed.
#[tokio::test]
async fn seeded_faults_repeat_their_sequence() {
    let t = start().await;
    t.nodes(json!({"count": 1})).await;
    let statuses = |seed: u64| {
        let t = &t;
        async move {
            let faults = json!({"error_rate": 0.5, "path_prefix": "/v1/nodes", "seed": seed});
            t.post_ok("/sim/faults", faults).await;
            let mut seen = Vec::new();
            for _ in 0..40 {
                seen.push(t.get("/v1/nodes").await.status().as_u16());
            }
            seen
        }
    };
    let first = statuses(7).await;
    assert!(first.contains(&500) && first.contains(&200), "{first:?}");
    assert_eq!(statuses(7).await, first, "the same seed, the same faults");
    assert_ne!(statuses(8).await, first, "another seed, other faults");
    let echoed = t.get_json("/sim/faults").await;
    assert_eq!(echoed["seed"], 8, "{echoed}");
}

#[tokio::test]
async fn workload_scheduler_and_stats() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2, "slots": 2})).await;
    t.post_ok("/sim/workload", json!({"node_pool": "default", "rate_per_minute": 60, "duration_min_s": 30, "duration_max_s": 30})).await;
    t.advance(10.0).await;
    let s = t.get_json("/sim/stats").await;
    let c = &s["cluster"];
    assert_eq!(c["allocations"]["total"], 4, "{s}");
    assert!(
        c["allocations"]["blocked_placements"].as_u64().unwrap() >= 5,
        "no room: queued"
    );
    assert_eq!(c["nodes"]["by_status"]["ready"], 2);
    // Cordoned nodes get no new work.
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[0]),
        json!({"Eligibility": "ineligible"}),
    )
    .await;
    t.advance(31.0).await;
    let on0 = t.node_allocs(&n[0]).await;
    assert!(on0.iter().all(|a| a["ClientStatus"] == "complete"));
    let on1 = t.node_allocs(&n[1]).await;
    assert!(
        on1.iter()
            .filter(|a| a["ClientStatus"] == "running")
            .count()
            == 2
    );
    let r = t.http.delete(t.u("/sim/workload")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Explicit allocations: finish and fail.
    let ids = t.allocs(json!({"type": "service", "node_id": n[0]})).await;
    assert!(ids.is_empty(), "ineligible node: queued, not placed");
    let s = t.get_json("/sim/stats").await;
    assert!(
        s["requests"]["POST /v1/node/:id/eligibility"]
            .as_u64()
            .unwrap()
            == 1
    );
    assert!(s["cluster"]["nodes"]["by_eligibility"]["ineligible"] == 1);
    // Reset clears everything.
    t.post_ok("/sim/reset", json!({})).await;
    assert_eq!(t.get_json("/v1/nodes").await, json!([]));
}

#[tokio::test]
async fn finish_and_fail_allocations() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    let ids = t
        .allocs(json!({"type": "batch", "count": 2, "node_id": n[0]}))
        .await;
    t.advance(1.0).await;
    assert_eq!(t.alloc(&ids[0]).await["ClientStatus"], "running");
    t.post_ok(&format!("/sim/allocations/{}/finish", ids[0]), json!({}))
        .await;
    t.post_ok(
        &format!("/sim/allocations/{}/finish", ids[1]),
        json!({"failed": true}),
    )
    .await;
    assert_eq!(t.alloc(&ids[0]).await["ClientStatus"], "complete");
    let a = t.alloc(&ids[1]).await;
    assert_eq!(a["ClientStatus"], "failed");
    assert_eq!(a["TaskStates"]["task"]["Failed"], true);
    let stub = &t.get_json("/v1/allocations?task_states=false").await[0];
    assert!(stub.get("TaskStates").is_none());
    assert!(stub.get("Job").is_none());
    assert_eq!(stub["JobType"], "batch");
}

/// A scenario whose write is refused stops the start with that write's
/// own text, and says which part of the scenario it was.
#[tokio::test]
async fn a_refused_scenario_names_the_write() {
    use nomad_sim::control::{Scenario, ScenarioError};
    use nomad_sim::{Config, ServeError, serve};
    let start = |sc: serde_json::Value| {
        let cfg = Config {
            scenario: Some(serde_json::from_value::<Scenario>(sc).unwrap()),
            ..Config::default()
        };
        serve(cfg)
    };
    let Err(e) = start(json!({"namespaces": [{"name": "a b"}]})).await else {
        panic!("a bad namespace name starts");
    };
    assert!(
        matches!(&e, ServeError::Scenario(ScenarioError::Namespace(_))),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        r#"scenario: invalid name "a b". Must match regex ^[a-zA-Z0-9-]{1,128}$"#
    );
    let Err(e) = start(json!({"allocations": [{"namespace": "nope"}]})).await else {
        panic!("an allocation in an unknown namespace starts");
    };
    assert!(
        matches!(&e, ServeError::Scenario(ScenarioError::Allocations(_))),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        r#"scenario: namespace "nope" does not exist (create it with POST /sim/namespaces)"#
    );
}
