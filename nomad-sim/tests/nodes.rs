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
        .post(
            "/sim/allocations",
            json!({"job_id": "x", "kill_timeout_s": -1}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

fn last_event(node: &Value) -> Value {
    node["Events"].as_array().unwrap().last().unwrap().clone()
}

fn events_with(node: &Value, msg: &str) -> usize {
    node["Events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["Message"] == msg)
        .count()
}

/// Two nodes; on n0 a tolerant service alloc (`max_client_disconnect_s`)
/// and an intolerant batch alloc, both running at t=1.
async fn partition_setup(t: &T, lost_after: f64) -> (Vec<String>, String, String) {
    let n = t.nodes(json!({"count": 2})).await;
    let web = t
        .allocs(json!({"type": "service", "job_id": "web", "node_id": n[0],
                       "max_client_disconnect_s": lost_after}))
        .await;
    let plain = t
        .allocs(json!({"type": "batch", "job_id": "plain", "node_id": n[0]}))
        .await;
    t.advance(1.0).await;
    (n, web[0].clone(), plain[0].clone())
}

/// At the first missed heartbeat (TTL + grace) of a disconnected node:
/// the node is `disconnected`, `web` (which tolerates it) is unknown and
/// replaced elsewhere, `plain` is lost and replaced, and nothing new is
/// placed on the node. Returns the index of that write and the
/// replacement of `web`.
async fn first_missed_heartbeat(t: &T, n: &[String], web: &str, plain: &str) -> (u64, String) {
    let r = t.get(&format!("/v1/node/{}", n[0])).await;
    let hdr = index_of(&r);
    let node: Value = r.json().await.unwrap();
    assert_eq!(node["Status"], "disconnected");
    let ev = last_event(&node);
    assert_eq!(ev["Message"], "Node heartbeat missed");
    assert_eq!(ev["Subsystem"], "Cluster");
    let idx = node["ModifyIndex"].as_u64().unwrap();
    assert_eq!(hdr, idx);
    assert_eq!(ev["CreateIndex"], idx);
    assert_eq!(node["LastMissedHeartbeatIndex"], idx);
    assert_eq!(node["StatusUpdatedAt"], START_NS / 1_000_000_000 + 21);

    let w = t.alloc(web).await;
    assert_eq!(w["ClientStatus"], "unknown");
    assert_eq!(
        w["ClientDescription"],
        "alloc is unknown since its node is disconnected"
    );
    assert_eq!(w["DesiredStatus"], "run");
    assert!(
        w["ModifyIndex"].as_u64().unwrap() > idx,
        "the scheduler's write follows"
    );
    let repl = w["NextAllocation"].as_str().unwrap().to_string();
    let r = t.alloc(&repl).await;
    assert_eq!(r["NodeID"], n[1].as_str(), "replaced elsewhere");
    assert_eq!(r["PreviousAllocation"], web);
    let p = t.alloc(plain).await;
    assert_eq!(p["ClientStatus"], "lost", "no tolerance: lost");
    assert_eq!(p["DesiredStatus"], "stop");
    assert_eq!(
        p["DesiredDescription"],
        "alloc is lost since its node is down"
    );
    assert_ne!(p["NextAllocation"], "", "and replaced");
    // A disconnected node is not schedulable.
    let ids = t.allocs(json!({"type": "batch", "node_id": n[0]})).await;
    assert!(ids.is_empty());
    (idx, repl)
}

/// `nomad/heartbeat.go` `invalidateHeartbeat` + `disconnectState`,
/// `node_endpoint.go` `UpdateStatus`, `state_store.go`
/// `updateNodeStatusTxn`, `scheduler/reconciler/filters.go`
/// `filterByTainted`, `reconcile_cluster.go` `computeDisconnecting`,
/// `structs` `(*Allocation).Expired`.
#[tokio::test]
async fn disconnect_unknown_then_lost_then_down() {
    let t = start().await;
    let (n, web, plain) = partition_setup(&t, 50.0).await;
    let before = t.node(&n[0]).await;
    let v = t
        .post_ok(&format!("/sim/nodes/{}/disconnect", n[0]), json!({}))
        .await;
    assert_eq!(v["node_id"], n[0].as_str());
    // Nothing visible until TTL + grace (10 s + 10 s).
    t.advance(19.9).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "ready");
    assert_eq!(node["ModifyIndex"], before["ModifyIndex"]);
    assert_eq!(t.alloc(&web).await["ClientStatus"], "running");
    let sim_nodes = t.get_json("/sim/nodes").await;
    let me = sim_nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == n[0].as_str())
        .unwrap()
        .clone();
    assert_eq!(me["connected"], false);
    assert_eq!(me["vm_alive"], true);

    t.advance(0.1).await; // t = 21
    let (idx, repl) = first_missed_heartbeat(&t, &n, &web, &plain).await;

    // The heartbeat timer is reset: every TTL + grace another missed
    // heartbeat is written while the node stays disconnected.
    t.advance(20.0).await; // t = 41
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "disconnected");
    assert_eq!(events_with(&node, "Node heartbeat missed"), 2);
    assert!(node["ModifyIndex"].as_u64().unwrap() > idx);
    assert_eq!(
        node["LastMissedHeartbeatIndex"], idx,
        "set once, when it became unresponsive"
    );

    // lost_after (50 s) after it became unknown: lost.
    t.advance(29.9).await; // t = 70.9
    assert_eq!(t.alloc(&web).await["ClientStatus"], "unknown");
    t.advance(0.1).await; // t = 71
    let w = t.alloc(&web).await;
    assert_eq!(w["ClientStatus"], "lost");
    assert_eq!(w["DesiredStatus"], "stop");
    assert_eq!(
        w["DesiredDescription"],
        "alloc is lost since its node is down"
    );
    assert_eq!(w["NextAllocation"], repl.as_str(), "no second replacement");
    assert_eq!(t.node(&n[0]).await["Status"], "disconnected");
    // The next missed heartbeat (t = 81) finds nothing left to reconnect.
    t.advance(10.0).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "down");
    let ev = last_event(&node);
    assert_eq!(ev["Message"], "Node heartbeat missed");
    assert_eq!(ev["Subsystem"], "Cluster");
    assert_eq!(events_with(&node, "Node heartbeat missed"), 4);
    assert_eq!(node["LastMissedHeartbeatIndex"], idx);
}

/// Without any allocation that tolerates a disconnect the node goes `down`
/// (`disconnectState` returns false); when the partition heals, the
/// heartbeat brings it back `ready` with `Node reregistered by heartbeat`
/// (`node_endpoint.go` `UpdateStatus`, `NodeHeartbeatEventReregistered`).
#[tokio::test]
async fn disconnect_without_tolerance_goes_down() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let a = t.allocs(json!({"type": "service", "node_id": n[0]})).await;
    t.advance(1.0).await;
    t.post_ok(&format!("/sim/nodes/{}/disconnect", n[0]), json!({}))
        .await;
    t.advance(20.0).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "down");
    assert_eq!(last_event(&node)["Subsystem"], "Cluster");
    assert_eq!(node["LastMissedHeartbeatIndex"], node["ModifyIndex"]);
    let al = t.alloc(&a[0]).await;
    assert_eq!(al["ClientStatus"], "lost");
    t.post_ok(&format!("/sim/nodes/{}/reconnect", n[0]), json!({}))
        .await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "ready");
    assert_eq!(node["LastMissedHeartbeatIndex"], 0);
    let ev = last_event(&node);
    assert_eq!(ev["Message"], "Node reregistered by heartbeat");
    assert_eq!(ev["Subsystem"], "Cluster");
    assert_eq!(t.violations().await["count"], 0, "nothing was killed");
}

/// Reconnect: `disconnected` -> `initializing` (no event), the client's
/// allocation sync reports the `unknown` allocation `running` again, the
/// reconnect evaluation keeps the original and stops the replacement
/// (`alloc not needed due to disconnected client reconnect`), and the next
/// heartbeat makes the node `ready` (`UpdateStatus`: a disconnected node's
/// `ready` is turned into `initializing`; `UpdateAlloc` refuses updates
/// from `disconnected` nodes; `computeReconnecting`, `reconnecting_picker.go`
/// `best_score` keeps the original on a tie).
#[tokio::test]
async fn reconnect_keeps_original_and_stops_replacement() {
    let t = start().await;
    let (n, web, plain) = partition_setup(&t, 300.0).await;
    t.post_ok(&format!("/sim/nodes/{}/disconnect", n[0]), json!({}))
        .await;
    t.advance(20.0).await; // t = 21
    let disc = t.node(&n[0]).await;
    assert_eq!(disc["Status"], "disconnected");
    let repl = t.alloc(&web).await["NextAllocation"]
        .as_str()
        .unwrap()
        .to_string();
    t.advance(1.0).await;
    assert_eq!(t.alloc(&repl).await["ClientStatus"], "running");

    t.post_ok(&format!("/sim/nodes/{}/reconnect", n[0]), json!({}))
        .await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "initializing");
    assert_eq!(node["Events"], disc["Events"], "no node event");
    assert!(node["ModifyIndex"].as_u64().unwrap() > disc["ModifyIndex"].as_u64().unwrap());
    assert_eq!(t.alloc(&web).await["ClientStatus"], "unknown");

    t.advance(0.2).await; // the client's alloc sync
    let w = t.alloc(&web).await;
    assert_eq!(w["ClientStatus"], "running");
    assert_eq!(w["DesiredStatus"], "run");
    let r = t.alloc(&repl).await;
    assert_eq!(r["DesiredStatus"], "stop");
    assert_eq!(
        r["DesiredDescription"],
        "alloc not needed due to disconnected client reconnect"
    );
    assert_eq!(
        r["ClientStatus"], "running",
        "stopping for its kill_timeout"
    );
    assert_eq!(t.alloc(&plain).await["ClientStatus"], "lost", "stays lost");
    assert_eq!(t.node(&n[0]).await["Status"], "initializing");
    t.advance(5.0).await;
    assert_eq!(t.alloc(&repl).await["ClientStatus"], "complete");
    // Next heartbeat: TTL (10 s) after the reconnect.
    t.advance(4.7).await;
    assert_eq!(t.node(&n[0]).await["Status"], "initializing");
    t.advance(0.1).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "ready");
    assert_eq!(node["LastMissedHeartbeatIndex"], 0);
    assert_eq!(node["Events"], disc["Events"], "no node event");
    // Stays up: heartbeats flow again.
    t.advance(600.0).await;
    assert_eq!(t.node(&n[0]).await["Status"], "ready");
    assert_eq!(t.alloc(&web).await["ClientStatus"], "running");
}

/// A drain on a disconnected node (`nomad/drainer`): `unknown` allocations
/// are not client-terminal, so the drain stays open (`IsDone`); service
/// ones are marked for migration and stopped (their replacement already
/// runs); at the deadline the rest are stopped and the drain completes at
/// once, while every one of them stays `unknown`: the client cannot report
/// and its tasks still run. With nothing left that wants to run, the next
/// missed heartbeat takes the node `down`; the stopped `unknown`
/// allocations stay `unknown` (the reconciler skips server-terminal
/// allocations). Killing the VM then is a violation.
#[tokio::test]
async fn drain_on_disconnected_node_completes_at_deadline_with_unknown_allocs() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let web = t
        .allocs(json!({"type": "service", "job_id": "web", "node_id": n[0],
                       "max_client_disconnect_s": 3600}))
        .await;
    let job = t
        .allocs(json!({"type": "batch", "job_id": "etl", "node_id": n[0],
                       "max_client_disconnect_s": 3600}))
        .await;
    t.advance(1.0).await;
    t.post_ok(&format!("/sim/nodes/{}/disconnect", n[0]), json!({}))
        .await;
    t.advance(20.0).await; // t = 21: disconnected
    assert_eq!(t.node(&n[0]).await["Status"], "disconnected");
    t.drain(&n[0], json!({"DrainSpec": {"Deadline": 30_000_000_000i64}}))
        .await;
    t.advance(0.5).await;
    let w = t.alloc(&web[0]).await;
    assert_eq!(w["DesiredTransition"]["Migrate"], true);
    assert_eq!(w["DesiredStatus"], "stop");
    assert_eq!(w["DesiredDescription"], "alloc is being migrated");
    assert_eq!(w["ClientStatus"], "unknown");
    let b = t.alloc(&job[0]).await;
    assert_eq!(b["DesiredStatus"], "run", "batch waits for the deadline");
    assert_eq!(b["ClientStatus"], "unknown");
    t.advance(29.0).await; // t = 50.5
    let node = t.node(&n[0]).await;
    assert_eq!(
        node["LastDrain"]["Status"], "draining",
        "unknown is not terminal"
    );
    t.advance(0.5).await; // t = 51: deadline
    let node = t.node(&n[0]).await;
    assert_eq!(node["DrainStrategy"], Value::Null);
    assert_eq!(node["LastDrain"]["Status"], "complete");
    assert_eq!(last_event(&node)["Details"]["deadline_reached"], "true");
    let b = t.alloc(&job[0]).await;
    assert_eq!(b["DesiredStatus"], "stop");
    assert_eq!(b["DesiredTransition"]["MigrateDisablePlacement"], true);
    assert_eq!(b["ClientStatus"], "unknown");
    // No client to report a stop: they stay unknown.
    t.advance(9.9).await; // t = 60.9
    assert_eq!(t.node(&n[0]).await["Status"], "disconnected");
    t.advance(0.1).await; // t = 61: next missed heartbeat, nothing wants to run
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "down");
    t.advance(3600.0).await;
    for id in [&web[0], &job[0]] {
        let a = t.alloc(id).await;
        assert_eq!(a["ClientStatus"], "unknown", "{id}");
        assert_eq!(a["DesiredStatus"], "stop");
    }
    assert_eq!(t.violations().await["count"], 0);
    // The AWS side terminates the VM: that work was still running.
    t.post_ok(&format!("/sim/nodes/{}/kill", n[0]), json!({}))
        .await;
    let v = t.violations().await;
    assert_eq!(v["count"], 1);
    let allocs = v["violations"][0]["allocs"].as_array().unwrap();
    assert_eq!(allocs.len(), 2);
    assert!(allocs.iter().all(|a| a["client_status"] == "unknown"));
}

fn header(r: &reqwest::Response, h: &str) -> String {
    r.headers()
        .get(h)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// A lagging follower (`stale_reads`): reads get the state frozen when the
/// fault was set, with its lower `X-Nomad-Index`, `X-Nomad-LastContact` and
/// `X-Nomad-KnownLeader` from the fault (`command/agent/http.go` `setMeta`
/// copies the follower's QueryMeta). A blocking query for an index above
/// the follower's blocks until its wait runs out (`nomad/rpc.go`
/// `blockingRPC` re-runs the query only when the index passes
/// `MinQueryIndex` or the timeout fires) and then answers with the lower
/// index.
#[tokio::test]
async fn stale_reads_go_backwards() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    let r = t.get(&format!("/v1/node/{}", n[0])).await;
    let before = index_of(&r);
    assert_eq!(header(&r, "x-nomad-lastcontact"), "0");
    let v = t
        .post_ok(
            "/sim/faults",
            json!({"stale_reads": {"last_contact_ms": 1500, "known_leader": false}}),
        )
        .await;
    assert_eq!(
        v["stale_reads"]["frozen_at_index"].as_u64().unwrap(),
        before
    );
    let r = t
        .post(
            &format!("/v1/node/{}/drain", n[0]),
            json!({"DrainSpec": {"Deadline": HOUR_NS}}),
        )
        .await;
    let written = index_of(&r);
    assert!(written > before);
    // Reads lag: older index than the write returned, older data.
    let r = t.get(&format!("/v1/node/{}", n[0])).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(index_of(&r), before);
    assert_eq!(header(&r, "x-nomad-lastcontact"), "1500");
    assert_eq!(header(&r, "x-nomad-knownleader"), "false");
    let node: Value = r.json().await.unwrap();
    assert_eq!(node["DrainStrategy"], Value::Null);
    assert_eq!(node["SchedulingEligibility"], "eligible");
    let r = t.get("/v1/nodes").await;
    assert!(index_of(&r) < written);
    // Blocking on the index the write returned: waits out `wait`.
    let t0 = std::time::Instant::now();
    let r = t
        .get(&format!("/v1/node/{}?index={written}&wait=400ms", n[0]))
        .await;
    assert!(t0.elapsed() >= std::time::Duration::from_millis(400));
    assert_eq!(index_of(&r), before);
    // Writes still go to the leader; the leader's state is current.
    t.http.delete(t.u("/sim/faults")).send().await.unwrap();
    let r = t.get(&format!("/v1/node/{}", n[0])).await;
    // (the empty node's drain may already have completed: >= the write)
    assert!(index_of(&r) >= written);
    assert_eq!(header(&r, "x-nomad-knownleader"), "true");
    let node: Value = r.json().await.unwrap();
    assert_eq!(node["SchedulingEligibility"], "ineligible");
}

/// Only `?stale` reads may be answered by a follower; default reads are
/// forwarded to the leader (`only_stale_param`).
#[tokio::test]
async fn stale_reads_only_for_stale_param() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    let before = index_of(&t.get(&format!("/v1/node/{}", n[0])).await);
    t.post_ok(
        "/sim/faults",
        json!({"stale_reads": {"only_stale_param": true, "last_contact_ms": 70}}),
    )
    .await;
    t.post_ok(
        &format!("/v1/node/{}/eligibility", n[0]),
        json!({"Eligibility": "ineligible"}),
    )
    .await;
    let lead = t.get(&format!("/v1/node/{}", n[0])).await;
    assert!(index_of(&lead) > before);
    assert_eq!(header(&lead, "x-nomad-lastcontact"), "0");
    let stale = t.get(&format!("/v1/node/{}?stale", n[0])).await;
    assert_eq!(index_of(&stale), before);
    assert_eq!(header(&stale, "x-nomad-lastcontact"), "70");
    assert_eq!(header(&stale, "x-nomad-knownleader"), "true");
}

/// `POST /sim/index/rewind`: the cluster's index moves back once (a
/// cluster rebuilt from an older snapshot). Reads answer with the lower
/// index; a blocking query for the old index waits out its `wait`
/// (`blockingRPC`); later writes continue from the lower index.
#[tokio::test]
async fn index_rewind() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    t.allocs(json!({"type": "service", "node_id": n[0]})).await;
    t.advance(1.0).await;
    let r = t.get(&format!("/v1/node/{}", n[0])).await;
    let seen = index_of(&r);
    let all = index_of(&t.get("/v1/nodes").await);
    let v = t.post_ok("/sim/index/rewind", json!({"by": 3})).await;
    let now = v["index"].as_u64().unwrap();
    assert_eq!(v["before"].as_u64().unwrap() - 3, now);
    assert!(now < all);
    let r = t.get("/v1/nodes").await;
    assert!(index_of(&r) <= now);
    let t0 = std::time::Instant::now();
    let r = t.get(&format!("/v1/nodes?index={all}&wait=300ms")).await;
    assert!(t0.elapsed() >= std::time::Duration::from_millis(300));
    assert!(index_of(&r) < all);
    let w = t
        .post(
            &format!("/v1/node/{}/eligibility", n[1]),
            json!({"Eligibility": "ineligible"}),
        )
        .await;
    assert_eq!(index_of(&w), now + 1);
    let node = t.node(&n[1]).await;
    assert_eq!(node["ModifyIndex"].as_u64().unwrap(), now + 1);
    assert!(now < seen.max(all), "went backwards");
    assert_eq!(
        t.post("/sim/index/rewind", json!({})).await.status(),
        StatusCode::BAD_REQUEST
    );
}
