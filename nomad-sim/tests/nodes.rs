//! Contract tests for disconnected clients, `unknown` allocations, per-job
//! kill timeouts, stale reads and index rewinds. Each pins what Nomad's
//! source (v1.11.1) does; the file is cited on each test.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// `client/allocrunner` kills a stopped task only after the task's
/// `kill_timeout` (`structs.DefaultKillTimeout` = 5 s when unset): the
/// allocation stays `running` until then. Every stop (drain migration,
/// deadline, force) waits for it.
#[tokio::test]
async fn kill_timeout_on_every_stop() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let slow = t
        .allocs(json!({"type": "batch", "job_id": "slow", "node_id": n[0],
                       "kill_timeout_s": 30}))
        .await;
    let dflt = t
        .allocs(json!({"type": "batch", "job_id": "dflt", "node_id": n[0]}))
        .await;
    t.advance(1.0).await;
    let a = t.alloc(&slow[0]).await;
    assert_eq!(
        a["Job"]["TaskGroups"][0]["Tasks"][0]["KillTimeout"],
        30_000_000_000i64
    );
    assert_eq!(
        t.alloc(&dflt[0]).await["Job"]["TaskGroups"][0]["Tasks"][0]["KillTimeout"],
        5_000_000_000i64
    );
    // Force drain: both stopped at once, the drain completes at once.
    t.drain(&n[0], json!({"DrainSpec": {"Deadline": -1}})).await;
    t.advance(0.0).await;
    assert_eq!(t.node(&n[0]).await["LastDrain"]["Status"], "complete");
    for id in [&slow[0], &dflt[0]] {
        let a = t.alloc(id).await;
        assert_eq!(a["DesiredStatus"], "stop");
        assert_eq!(a["ClientStatus"], "running");
    }
    t.advance(5.0).await;
    assert_eq!(t.alloc(&dflt[0]).await["ClientStatus"], "complete");
    assert_eq!(t.alloc(&slow[0]).await["ClientStatus"], "running");
    t.advance(24.9).await;
    assert_eq!(t.alloc(&slow[0]).await["ClientStatus"], "running");
    t.advance(0.1).await;
    assert_eq!(t.alloc(&slow[0]).await["ClientStatus"], "complete");
    // One job, one task group: a second submission must agree.
    let r = t
        .post(
            "/sim/allocations",
            json!({"job_id": "slow", "kill_timeout_s": 1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = t
        .post("/sim/allocations", json!({"job_id": "x", "kill_timeout_s": -1}))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}
