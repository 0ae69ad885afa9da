//! Contract tests over real HTTP for the "Drain behaviours a faithful
//! simulator must reproduce" (items 1-15 of shared/reference/nomad-api.md).
//! Simulated time is frozen and moved with `/sim/time`.

mod common;

use common::*;
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

fn event_msgs(node: &Value) -> Vec<String> {
    node["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Message"].as_str().unwrap().to_string())
        .collect()
}

/// 1. Drain makes the node ineligible at once, flat DrainStrategy, Drain=true.
#[tokio::test]
async fn b01_drain_sets_ineligible_and_flat_strategy() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    // A long batch alloc keeps the drain open.
    t.allocs(json!({"type": "batch", "node_id": n[0], "duration_s": 7200}))
        .await;
    t.advance(1.0).await;
    let r = t
        .post(
            &format!("/v1/node/{}/drain", n[0]),
            json!({"DrainSpec": {"Deadline": HOUR_NS, "IgnoreSystemJobs": false},
                   "Meta": {"message": "retire"}}),
        )
        .await;
    let hdr_idx = index_of(&r);
    let resp: Value = r.json().await.unwrap();
    assert_eq!(resp["EvalIDs"], Value::Null);
    assert_eq!(resp["EvalCreateIndex"], 0);
    assert_eq!(resp["Index"], hdr_idx);
    assert_eq!(resp["NodeModifyIndex"], hdr_idx);
    let node = t.node(&n[0]).await;
    assert_eq!(node["Drain"], true);
    assert_eq!(node["SchedulingEligibility"], "ineligible");
    assert_eq!(node["ModifyIndex"], hdr_idx);
    let ds = &node["DrainStrategy"];
    assert_eq!(
        keys(ds),
        ["Deadline", "ForceDeadline", "IgnoreSystemJobs", "StartedAt"]
    );
    assert_eq!(ds["Deadline"], HOUR_NS);
    assert_eq!(ds["StartedAt"], "2026-01-01T00:00:01Z");
    assert_eq!(ds["ForceDeadline"], "2026-01-01T01:00:01Z");
    assert_eq!(node["LastDrain"]["Status"], "draining");
    assert_eq!(node["LastDrain"]["Meta"]["message"], "retire");
    assert_eq!(node["LastDrain"]["AccessorID"], "token:acls-disabled");
    assert!(event_msgs(&node).contains(&"Node drain strategy set".to_string()));
    let list = t.get_json("/v1/nodes").await;
    assert_eq!(list[0]["Drain"], true);
    assert!(
        list[0].get("DrainStrategy").is_none(),
        "stub has no DrainStrategy"
    );
}

/// 2. Deadline encoding: 0 = none, < 0 = force, update keeps StartedAt and
/// recomputes ForceDeadline from the update time.
#[tokio::test]
async fn b02_deadline_encoding() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    for id in &n {
        t.allocs(json!({"type": "batch", "node_id": id})).await; // until finished
    }
    t.advance(1.0).await;
    // No deadline.
    t.drain(&n[0], json!({"DrainSpec": {"Deadline": 0}})).await;
    let node = t.node(&n[0]).await;
    // A zero time.Time: Nomad's HTTP JSON (go-msgpack, time builtin)
    // writes null, not "0001-01-01T00:00:00Z".
    assert_eq!(node["DrainStrategy"]["ForceDeadline"], Value::Null);
    t.advance(10.0 * 3600.0).await;
    let node = t.node(&n[0]).await;
    assert_eq!(
        node["Drain"], true,
        "a running batch alloc blocks a no-deadline drain"
    );
    let started = node["DrainStrategy"]["StartedAt"].clone();
    // Update: StartedAt kept, ForceDeadline = update time + deadline.
    t.drain(&n[0], json!({"DrainSpec": {"Deadline": HOUR_NS}}))
        .await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["DrainStrategy"]["StartedAt"], started);
    assert_eq!(
        node["DrainStrategy"]["ForceDeadline"],
        "2026-01-01T11:00:01Z"
    );
    assert_eq!(
        event_msgs(&node).last().unwrap(),
        "Node drain strategy updated"
    );
    // Negative: force.
    t.drain(&n[1], json!({"DrainSpec": {"Deadline": -1_000_000_000}}))
        .await;
    t.advance(0.0).await;
    let node = t.node(&n[1]).await;
    assert_eq!(node["DrainStrategy"], Value::Null);
    assert_eq!(node["LastDrain"]["Status"], "complete");
    let last = node["Events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["Message"], "Node drain complete");
    assert_eq!(last["Details"]["deadline_reached"], "true");
    let a = &t.node_allocs(&n[1]).await[0];
    assert_eq!(a["DesiredStatus"], "stop");
    assert_eq!(a["DesiredTransition"]["Migrate"], true);
    assert_eq!(a["DesiredTransition"]["MigrateDisablePlacement"], true);
    // Forced completion can precede the client actually stopping.
    assert_eq!(a["ClientStatus"], "running");
    // The task keeps running for its kill_timeout (Nomad's default 5 s).
    t.advance(4.9).await;
    assert_eq!(t.node_allocs(&n[1]).await[0]["ClientStatus"], "running");
    t.advance(0.1).await;
    let a = &t.node_allocs(&n[1]).await[0];
    assert_eq!(a["ClientStatus"], "complete");
    assert_eq!(a["NextAllocation"], "", "batch is not replaced");
}

/// 3. Service allocations migrate: Migrate=true, then stop, then complete;
/// replacements elsewhere; at most max_parallel in flight.
#[tokio::test]
async fn b03_service_migrates_in_limited_batches() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let ids = t
        .allocs(json!({"type": "service", "job_id": "web", "count": 3,
                       "node_id": n[0], "max_parallel": 1}))
        .await;
    assert_eq!(ids.len(), 3);
    t.advance(1.0).await;
    t.drain(&n[0], json!({"DrainSpec": {"Deadline": HOUR_NS}}))
        .await;
    t.advance(0.0).await;
    let allocs = t.node_allocs(&n[0]).await;
    let marked: Vec<&Value> = allocs
        .iter()
        .filter(|a| a["DesiredTransition"]["Migrate"] == true)
        .collect();
    assert_eq!(marked.len(), 1, "max_parallel=1");
    let first = marked[0]["ID"].as_str().unwrap().to_string();
    assert_eq!(
        marked[0]["DesiredStatus"], "run",
        "Migrate is written before the stop"
    );
    t.advance(0.5).await;
    let a = t.alloc(&first).await;
    assert_eq!(a["DesiredStatus"], "stop");
    assert_eq!(a["DesiredDescription"], "alloc is being migrated");
    assert_eq!(a["ClientStatus"], "running");
    let next = a["NextAllocation"].as_str().unwrap().to_string();
    assert!(!next.is_empty());
    let r = t.alloc(&next).await;
    assert_eq!(r["NodeID"], n[1].as_str(), "replacement placed elsewhere");
    assert_eq!(r["PreviousAllocation"], first.as_str());
    // kill_timeout (default 5 s) before the client reports it complete.
    t.advance(4.9).await;
    assert_eq!(t.alloc(&first).await["ClientStatus"], "running");
    t.advance(0.1).await;
    assert_eq!(t.alloc(&first).await["ClientStatus"], "complete");
    assert_eq!(t.alloc(&next).await["ClientStatus"], "running");
    // The next one waits until the replacement has been healthy for
    // min_healthy_time (10 s).
    let marked = t
        .node_allocs(&n[0])
        .await
        .iter()
        .filter(|a| a["DesiredTransition"]["Migrate"] == true)
        .count();
    assert_eq!(marked, 1);
    t.advance(60.0).await;
    t.advance(60.0).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["DrainStrategy"], Value::Null);
    assert_eq!(node["LastDrain"]["Status"], "complete");
    assert_eq!(
        node["Events"].as_array().unwrap().last().unwrap()["Details"],
        Value::Null
    );
    let on_b = t.node_allocs(&n[1]).await;
    let running = on_b
        .iter()
        .filter(|a| a["ClientStatus"] == "running")
        .count();
    assert_eq!(running, 3);
}

/// 4. Batch allocations run to completion until the deadline; then they are
/// stopped and not replaced.
#[tokio::test]
async fn b04_batch_runs_until_deadline() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    t.allocs(json!({"type": "batch", "job_id": "short", "node_id": n[0], "duration_s": 100}))
        .await;
    t.allocs(json!({"type": "batch", "job_id": "long", "node_id": n[1], "duration_s": 7200}))
        .await;
    t.advance(1.0).await;
    for id in &n {
        t.drain(id, json!({"DrainSpec": {"Deadline": HOUR_NS}}))
            .await;
    }
    t.advance(50.0).await;
    let a = &t.node_allocs(&n[0]).await[0];
    assert_eq!(a["ClientStatus"], "running");
    assert_eq!(
        a["DesiredTransition"]["Migrate"],
        Value::Null,
        "batch is never marked before the deadline"
    );
    t.advance(60.0).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["DrainStrategy"], Value::Null);
    assert_eq!(t.node_allocs(&n[0]).await[0]["ClientStatus"], "complete");
    // The long one hits the deadline.
    let node = t.node(&n[1]).await;
    assert_eq!(node["Drain"], true);
    t.advance(3600.0).await;
    let node = t.node(&n[1]).await;
    assert_eq!(node["DrainStrategy"], Value::Null);
    assert_eq!(
        node["Events"].as_array().unwrap().last().unwrap()["Details"]["deadline_reached"],
        "true"
    );
    let a = &t.node_allocs(&n[1]).await[0];
    assert_eq!(a["DesiredStatus"], "stop");
    assert_eq!(a["DesiredTransition"]["MigrateDisablePlacement"], true);
    let all = t.get_json("/v1/allocations").await;
    let long_allocs = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["JobID"] == "long")
        .count();
    assert_eq!(long_allocs, 1, "not replaced");
}

/// 5. System allocations are stopped last, in the completing step, or
/// never with IgnoreSystemJobs.
#[tokio::test]
async fn b05_system_allocs_last_or_ignored() {
    let t = start().await;
    let n = t.nodes(json!({"count": 3})).await;
    let sys = t.allocs(json!({"type": "system", "job_id": "logs"})).await;
    assert_eq!(sys.len(), 3, "one per node");
    t.allocs(json!({"type": "batch", "node_id": n[0], "duration_s": 30}))
        .await;
    t.advance(1.0).await;
    t.drain(&n[0], json!({"DrainSpec": {"Deadline": HOUR_NS}}))
        .await;
    t.drain(
        &n[1],
        json!({"DrainSpec": {"Deadline": HOUR_NS, "IgnoreSystemJobs": true}}),
    )
    .await;
    t.advance(0.0).await;
    // n0: the system alloc keeps running while the batch alloc runs.
    let sys0 = t
        .node_allocs(&n[0])
        .await
        .into_iter()
        .find(|a| a["JobID"] == "logs")
        .unwrap();
    assert_eq!(sys0["DesiredStatus"], "run");
    // n1: only a system alloc; ignored, so the drain completes at once and
    // the system alloc keeps running.
    let node1 = t.node(&n[1]).await;
    assert_eq!(node1["DrainStrategy"], Value::Null);
    let sys1 = &t.node_allocs(&n[1]).await[0];
    assert_eq!(sys1["DesiredStatus"], "run");
    assert_eq!(sys1["ClientStatus"], "running");
    t.advance(30.0).await;
    let node0 = t.node(&n[0]).await;
    assert_eq!(
        node0["DrainStrategy"],
        Value::Null,
        "completes without waiting"
    );
    let sys0 = t.alloc(sys0["ID"].as_str().unwrap()).await;
    assert_eq!(sys0["DesiredStatus"], "stop");
    assert_eq!(
        sys0["ClientStatus"], "running",
        "still stopping on the client"
    );
    // Stopped in the completing step (when the batch alloc finished); it
    // completes one kill_timeout (default 5 s) after that stop.
    t.advance(5.0).await;
    let sys0 = t.alloc(sys0["ID"].as_str().unwrap()).await;
    assert_eq!(sys0["ClientStatus"], "complete");
    assert_eq!(sys0["NextAllocation"], "");
}

/// 6 + 7. An empty node completes almost immediately; completion leaves
/// DrainStrategy null, the node ineligible, LastDrain complete with the
/// request's Meta and AccessorID, and a `Node drain complete` event.
#[tokio::test]
async fn b06_b07_empty_node_completion_state() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    t.drain(
        &n[0],
        json!({"DrainSpec": {"Deadline": HOUR_NS}, "Meta": {"message": "m"}}),
    )
    .await;
    t.advance(0.0).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["DrainStrategy"], Value::Null);
    assert_eq!(node["Drain"], false);
    assert_eq!(node["SchedulingEligibility"], "ineligible");
    let ld = &node["LastDrain"];
    assert_eq!(
        keys(ld),
        ["AccessorID", "Meta", "StartedAt", "Status", "UpdatedAt"]
    );
    assert_eq!(ld["Status"], "complete");
    assert_eq!(ld["Meta"], json!({"message": "m"}));
    assert_eq!(ld["AccessorID"], "token:acls-disabled");
    assert_eq!(ld["StartedAt"], "2026-01-01T00:00:00Z");
    let last = node["Events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["Message"], "Node drain complete");
    assert_eq!(last["Subsystem"], "Drain");
    let list = t.get_json("/v1/nodes").await;
    assert_eq!(list[0]["Drain"], false);
    assert_eq!(list[0]["LastDrain"]["Status"], "complete");
}

/// 8. Cancel: canceled, eligible only with MarkEligible; cancelling when not
/// draining leaves LastDrain unchanged but applies MarkEligible.
#[tokio::test]
async fn b08_cancel_and_mark_eligible() {
    let t = start().await;
    let n = t.nodes(json!({"count": 1})).await;
    t.allocs(json!({"type": "batch", "node_id": n[0]})).await;
    t.advance(1.0).await;
    t.drain(
        &n[0],
        json!({"DrainSpec": {"Deadline": 0}, "Meta": {"a": "1"}}),
    )
    .await;
    t.advance(5.0).await;
    let r = t
        .drain(&n[0], json!({"DrainSpec": null, "MarkEligible": false}))
        .await;
    assert_eq!(r["EvalIDs"], Value::Null);
    let node = t.node(&n[0]).await;
    assert_eq!(node["DrainStrategy"], Value::Null);
    assert_eq!(node["SchedulingEligibility"], "ineligible");
    assert_eq!(node["LastDrain"]["Status"], "canceled");
    assert_eq!(
        node["LastDrain"]["Meta"],
        json!({"a": "1"}),
        "empty Meta keeps the old one"
    );
    assert_eq!(event_msgs(&node).last().unwrap(), "Node drain disabled");
    let before = node["ModifyIndex"].as_u64().unwrap();
    let ld_before = node["LastDrain"].clone();
    let n_events = node["Events"].as_array().unwrap().len();
    // Not draining any more: cancel again with MarkEligible.
    t.advance(5.0).await;
    let r = t.drain(&n[0], json!({"MarkEligible": true})).await;
    assert!(
        r["EvalIDs"].as_array().is_some_and(|a| !a.is_empty()),
        "evals when becoming eligible"
    );
    let node = t.node(&n[0]).await;
    assert_eq!(node["SchedulingEligibility"], "eligible");
    assert_eq!(node["LastDrain"], ld_before, "LastDrain unchanged");
    assert!(
        node["ModifyIndex"].as_u64().unwrap() > before,
        "the write still happens"
    );
    assert_eq!(
        node["Events"].as_array().unwrap().len(),
        n_events,
        "no node event"
    );
}

/// 10. Eligibility rules.
#[tokio::test]
async fn b10_eligibility_rules() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let p = format!("/v1/node/{}/eligibility", n[0]);
    let r = t.post(&p, json!({"Eligibility": "ineligible"})).await;
    assert_eq!(r.status(), 200);
    let idx = index_of(&r);
    let v: Value = r.json().await.unwrap();
    assert!(idx > 0);
    assert_eq!(v["Index"], idx);
    assert_eq!(v["NodeModifyIndex"], 0, "never set by Nomad's code");
    assert_eq!(v["EvalIDs"], Value::Null);
    let node = t.node(&n[0]).await;
    assert_eq!(node["SchedulingEligibility"], "ineligible");
    assert_eq!(
        event_msgs(&node).last().unwrap(),
        "Node marked as ineligible for scheduling"
    );
    // Same value: no-op with every index 0.
    let r = t.post(&p, json!({"Eligibility": "ineligible"})).await;
    assert_eq!(index_of(&r), 0);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        json!({"EvalCreateIndex": 0, "EvalIDs": null, "Index": 0, "NodeModifyIndex": 0})
    );
    // Bad value.
    let (s, ct, body) = plain(t.post(&p, json!({"Eligibility": "foo"})).await).await;
    assert_eq!(
        (s.as_u16(), body.as_str()),
        (500, "invalid scheduling eligibility \"foo\"")
    );
    assert!(ct.starts_with("text/plain"));
    // eligible while draining. A long batch alloc keeps the drain open: an
    // empty node's drain can complete before the next request lands.
    t.allocs(json!({"type": "batch", "node_id": n[1], "duration_s": 7200}))
        .await;
    t.advance(1.0).await;
    t.post_ok(
        &format!("/v1/node/{}/drain", n[1]),
        json!({"DrainSpec": {"Deadline": 0}}),
    )
    .await;
    let (s, _, body) = plain(
        t.post(
            &format!("/v1/node/{}/eligibility", n[1]),
            json!({"Eligibility": "eligible"}),
        )
        .await,
    )
    .await;
    assert_eq!(s.as_u16(), 500);
    assert_eq!(
        body,
        "can not set node's scheduling eligibility to eligible while it is draining"
    );
    // NodeID in the body overrides the path; PUT works too.
    let r = t
        .http
        .put(t.u(&format!("/v1/node/{}/eligibility", n[1])))
        .json(&json!({"Eligibility": "eligible", "NodeID": n[0]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(t.node(&n[0]).await["SchedulingEligibility"], "eligible");
}

/// 14. Re-registration keeps drain state; a node that goes down while
/// draining loses its allocations and the drain finishes.
#[tokio::test]
async fn b14_reregistration_and_down_while_draining() {
    let t = start().await;
    let n = t
        .nodes(json!({"count": 2, "instance_ids": ["i-0aaa", "i-0bbb"]}))
        .await;
    t.allocs(json!({"type": "batch", "job_id": "j", "node_id": n[0]}))
        .await;
    t.advance(1.0).await;
    t.drain(
        &n[0],
        json!({"DrainSpec": {"Deadline": 0}, "Meta": {"k": "v"}}),
    )
    .await;
    // Restart before the servers notice: nothing changes.
    t.post_ok("/sim/nodes/i-0aaa/kill", json!({})).await;
    t.advance(5.0).await;
    t.post_ok(&format!("/sim/nodes/{}/restart", n[0]), json!({}))
        .await;
    t.advance(30.0).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "ready");
    assert_eq!(node["Drain"], true);
    // Kill for good: down after TTL + grace (10 s + 10 s).
    t.post_ok("/sim/nodes/i-0aaa/kill", json!({})).await;
    t.advance(19.0).await;
    assert_eq!(t.node(&n[0]).await["Status"], "ready");
    t.advance(2.0).await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "down");
    assert!(event_msgs(&node).contains(&"Node heartbeat missed".to_string()));
    let a = &t.node_allocs(&n[0]).await[0];
    assert_eq!(a["ClientStatus"], "lost");
    assert_eq!(
        a["DesiredDescription"],
        "alloc is lost since its node is down"
    );
    assert_eq!(
        node["DrainStrategy"],
        Value::Null,
        "lost allocs let the drain finish"
    );
    assert_eq!(node["LastDrain"]["Status"], "complete");
    // Comes back: keeps eligibility and LastDrain.
    t.post_ok(&format!("/sim/nodes/{}/restart", n[0]), json!({}))
        .await;
    let node = t.node(&n[0]).await;
    assert_eq!(node["Status"], "ready");
    assert_eq!(node["SchedulingEligibility"], "ineligible");
    assert_eq!(node["LastDrain"]["Meta"], json!({"k": "v"}));
    assert_eq!(event_msgs(&node).last().unwrap(), "Node re-registered");
    // Killing a VM with a running alloc is a safety violation.
    let v = t.violations().await;
    assert_eq!(v["count"], 2, "{v}");
    assert_eq!(v["violations"][0]["kind"], "killed");
    assert_eq!(v["violations"][0]["instance_id"], "i-0aaa");
    assert_eq!(v["violations"][0]["allocs"][0]["job_id"], "j");
    assert_eq!(v["violations"][0]["allocs"][0]["job_type"], "batch");
}

/// 15. Purge deletes the node at once; purging with a running allocation is
/// a violation; the allocation is lost and replaced.
#[tokio::test]
async fn b15_purge() {
    let t = start().await;
    let n = t.nodes(json!({"count": 2})).await;
    let r = t.post(&format!("/v1/node/{}/purge", n[1]), json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["EvalIDs"], Value::Null);
    assert!(v["Index"].as_u64().unwrap() > 0);
    assert_eq!(t.get(&format!("/v1/node/{}", n[1])).await.status(), 404);
    assert_eq!(t.violations().await["count"], 0);
    t.nodes(json!({"count": 1})).await;
    t.allocs(json!({"type": "service", "job_id": "web", "node_id": n[0]}))
        .await;
    t.advance(1.0).await;
    t.post_ok(&format!("/sim/nodes/{}/kill", n[0]), json!({}))
        .await;
    // Killed and then purged before it went down: two violations.
    let v = t
        .post_ok(&format!("/v1/node/{}/purge", n[0]), json!({}))
        .await;
    assert_eq!(v["EvalIDs"].as_array().unwrap().len(), 1);
    let viol = t.violations().await;
    assert_eq!(viol["count"], 2);
    assert_eq!(viol["violations"][1]["kind"], "purged");
    assert_eq!(viol["violations"][1]["allocs"][0]["job_type"], "service");
    let a = &t.node_allocs(&n[0]).await[0];
    assert_eq!(
        a["ClientStatus"], "lost",
        "allocs of a purged node stay readable"
    );
    t.advance(2.0).await;
    let all = t.get_json("/v1/allocations").await;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|a| a["JobID"] == "web" && a["ClientStatus"] == "running")
    );
}

/// 15 (GC part). Only `down` nodes whose allocations are all terminal are
/// collected: at once with `PUT /v1/system/gc`, or after 24 h.
#[tokio::test]
async fn b15_node_gc() {
    let t = start().await;
    let n = t.nodes(json!({"count": 3})).await;
    t.allocs(json!({"type": "batch", "node_id": n[0]})).await;
    t.advance(1.0).await;
    for id in &n[..2] {
        t.post_ok(&format!("/sim/nodes/{id}/kill"), json!({})).await;
    }
    t.advance(21.0).await;
    assert_eq!(t.node(&n[0]).await["Status"], "down");
    let r = t.http.post(t.u("/v1/system/gc")).send().await.unwrap();
    assert_eq!(r.status(), 405, "PUT only");
    let r = t.http.put(t.u("/v1/system/gc")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(
        t.get(&format!("/v1/node/{}", n[0])).await.status(),
        404,
        "lost allocs are terminal"
    );
    assert_eq!(t.get(&format!("/v1/node/{}", n[1])).await.status(), 404);
    // A ready node is never collected; a down one is, after 24 h.
    t.post_ok(&format!("/sim/nodes/{}/kill", n[2]), json!({}))
        .await;
    t.advance(21.0).await;
    t.advance(23.0 * 3600.0).await;
    assert_eq!(t.node(&n[2]).await["Status"], "down");
    t.advance(3600.0).await;
    assert_eq!(t.get(&format!("/v1/node/{}", n[2])).await.status(), 404);
}
