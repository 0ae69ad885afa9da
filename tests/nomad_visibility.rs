//! What Nomad does not show must not be terminated: allocations hidden from
//! a namespace-scoped token, `unknown` allocations behind a partition, and
//! the Nomad behaviours that could hide them from the operator (missing
//! meta keys in filters, an index going backwards; the event-stream refusal
//! of Nomad >= 1.11.2 is in tests/retire.rs beside the other unusable stream). The operator binary against the real API server,
//! moto and the simulator; every test ends with no safety violation.

use std::time::Duration;

use nomad_pool_operator::api::RetirePhase;
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(90);
const MANAGEMENT: &str = "00000000-0000-4000-8000-00000000mgmt";
const POOL_TOKEN: &str = "11111111-1111-4111-8111-111111111111";

async fn world(test: &str, size: i32, acl: bool) -> World {
    let mut opts = WorldOptions {
        size,
        ..Default::default()
    };
    if acl {
        opts.sim.acl_tokens = vec![(MANAGEMENT.into(), nomad_sim::acl::Policy::Management)];
    }
    setup_with(test, opts).await
}

async fn create_token_secret(w: &World, token: &str) {
    let data = json!({"token": token});
    create_secret(&w.client, &w.namespace, "nomad-token", "nomad-token", data).await;
}

async fn set_policy(w: &World, namespaces: Value) {
    w.sim
        .post(
            "/sim/acl/policies",
            json!({"name": "pool", "description": "the pool's token",
                   "rules": {"node": {"policy": "write"}, "namespace": namespaces}}),
        )
        .await;
}

/// A batch allocation that runs until finished and, once told to stop,
/// keeps running for `kill_timeout_s` (as a real task does).
async fn long_batch(w: &World, node_id: &str, job: &str, extra: Value) -> String {
    let mut body = json!({"job_id": job, "type": "batch", "node_id": node_id,
                          "node_pool": "ci", "kill_timeout_s": 15});
    merge(&mut body, extra);
    let v = w.sim.post("/sim/allocations", body).await;
    let id = v["alloc_ids"][0]
        .as_str()
        .unwrap_or_else(|| panic!("no allocation ID in {v}"))
        .to_string();
    // Running before the pool starts: a placement still pending on a node
    // that turns ineligible may go elsewhere.
    wait_for("the allocation to run", Duration::from_secs(20), || async {
        // The management token: ignored where ACLs are off.
        let a: Value = reqwest::Client::new()
            .get(format!("{}/v1/allocation/{id}", w.sim.url))
            .header("X-Nomad-Token", MANAGEMENT)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (a["ClientStatus"] == "running").then_some(())
    })
    .await;
    id
}

fn node_id(n: &Value) -> String {
    n["id"].as_str().or(n["ID"].as_str()).unwrap().to_string()
}

/// Retire exactly `node` (no replacement) with a short drain deadline, so
/// Nomad marks the drain complete while the allocation is still stopping.
fn retire_one(w: &World, node: &str, extra: Value) -> Value {
    let mut spec = json!({
        "retire": [{"nodeID": node, "replace": false}],
        "drain": {"deadline": "2s"},
    });
    merge(&mut spec, extra);
    w.pool_manifest("pool", spec)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_cannot_read_every_namespace_drains_but_terminates_nothing_until_fixed() {
    let w = world("hidden-ns", 2, true).await;
    w.sim
        .post("/sim/namespaces", json!({"name": "team-b"}))
        .await;
    // The pool's token reads jobs in `default` only: team-b's allocations
    // are invisible to it, as real Nomad hides them.
    set_policy(&w, json!({"default": {"policy": "read"}})).await;
    w.sim
        .post(
            "/sim/acl/tokens",
            json!({"secret": POOL_TOKEN, "type": "client", "name": "pool", "policies": ["pool"]}),
        )
        .await;
    create_token_secret(&w, POOL_TOKEN).await;
    let victim = node_id(&w.ready_nodes().await[0]);
    // Told to stop at the drain deadline, it keeps running for 40 s: long
    // enough to still run when the policy is fixed below.
    long_batch(
        &w,
        &victim,
        "team-b-build",
        json!({"namespace": "team-b", "kill_timeout_s": 40}),
    )
    .await;

    w.apply_pool(&retire_one(
        &w,
        &victim,
        json!({"nomad": {"tokenSecretRef": {"name": "nomad-token"}}}),
    ))
    .await;
    let st = w
        .wait_status("pool", "termination withheld", T, |s| {
            s.retiring
                .first()
                .is_some_and(|r| r.phase == RetirePhase::Drained)
                && condition(s, "Degraded")
                    .is_some_and(|c| c.status == "True" && c.reason == "AllocationsNotVisible")
        })
        .await;
    let message = &condition(&st, "Degraded").unwrap().message;
    assert!(
        message.contains("read-job") && message.contains(r#"namespace "*""#),
        "the condition names the capability and the rule to add: {message}"
    );
    let withheld = |reason: &str, _: &str| reason == "TerminateWithheld";
    w.wait_event("TerminateWithheld", withheld, Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let g = w.group().await;
    assert_eq!((g.desired, g.instances.len()), (2, 2), "nothing terminated");
    w.sim.assert_no_violations().await;

    // The policy is fixed: the pool now sees team-b's allocation, waits for
    // it to stop, and only then terminates.
    set_policy(&w, json!({"*": {"policy": "read"}})).await;
    w.wait_status("pool", "the hidden allocation now counted", T, |s| {
        s.retiring
            .first()
            .is_some_and(|r| r.allocations_left == 1 && r.blocking_jobs == ["team-b-build"])
    })
    .await;
    assert_eq!(w.group().await.instances.len(), 2, "still running: kept");
    let st = w
        .wait_status("pool", "retired after the fix", T, |s| {
            s.retired_total == 1 && s.retiring.is_empty()
        })
        .await;
    // (Degraded may now say the retire entry names a client that is gone.)
    assert!(condition(&st, "Degraded").is_some_and(|c| c.reason != "AllocationsNotVisible"));
    assert_eq!(w.group().await.desired, 1);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_partitioned_mid_drain_is_not_terminated_while_its_work_may_run() {
    let w = world("partition", 2, false).await;
    let victim = node_id(&w.ready_nodes().await[0]);
    long_batch(
        &w,
        &victim,
        "build",
        json!({"max_client_disconnect_s": 600}),
    )
    .await;
    // The partition starts before the drain's deadline and outlasts it:
    // Nomad marks the drain complete with the allocation still `unknown`.
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"retire": [{"nodeID": victim, "replace": false}], "drain": {"deadline": "8s"}}),
    ))
    .await;
    w.wait_status("pool", "draining", T, |s| {
        s.retiring
            .first()
            .is_some_and(|r| r.phase == RetirePhase::Draining)
    })
    .await;
    w.sim
        .post(&format!("/sim/nodes/{victim}/disconnect"), json!({}))
        .await;
    let st = w
        .wait_status("pool", "waiting behind the partition", T, |s| {
            s.retiring.first().is_some_and(|r| {
                r.message
                    .as_deref()
                    .is_some_and(|m| m.contains("disconnected"))
            })
        })
        .await;
    assert!(st.retiring[0].allocations_left >= 1);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let g = w.group().await;
    assert_eq!(
        (g.desired, g.instances.len()),
        (2, 2),
        "a VM whose work may run is kept"
    );
    w.sim.assert_no_violations().await;

    // The partition heals: the stopped allocation finishes stopping on the
    // client, and only then does the VM go.
    w.sim
        .post(&format!("/sim/nodes/{victim}/reconnect"), json!({}))
        .await;
    w.wait_status("pool", "retired after reconnect", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    assert_eq!(w.group().await.desired, 1);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_meta_selector_pool_works_where_some_nodes_lack_the_key() {
    let mut w = World::new(
        "meta-sel",
        WorldOptions {
            size: 3,
            node_meta: json!({"role": "ci"}),
            ..Default::default()
        },
    )
    .await;
    w.create_aws_secret().await;
    w.start_operator().await;
    // A mixed cluster: two clients outside the group, without the key.
    // Nomad >= 1.6 evaluates `Meta["role"] == "ci"` on them as false, not
    // as an error (the simulator used to answer 400 here).
    let v = w
        .sim
        .post(
            "/sim/nodes",
            json!({"count": 2, "node_pool": "ci", "cloud": "none"}),
        )
        .await;
    let outsiders: Vec<String> = v["nodes"]
        .as_array()
        .or(v["ids"].as_array())
        .map(|a| {
            a.iter()
                .map(|n| n.as_str().map(str::to_string).unwrap_or_else(|| node_id(n)))
                .collect()
        })
        .unwrap_or_default();
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"selector": {"nodePool": "ci", "meta": {"role": "ci"}}, "replicas": 2}),
    ))
    .await;
    let st = w
        .wait_status("pool", "settled at 2", T, |s| {
            s.retired_total == 1
                && s.retiring.is_empty()
                && condition(s, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(st.nodes, 2, "only the group's clients are in the pool");
    assert_eq!(w.group().await.desired, 2);
    let live: Vec<String> = w.sim.nodes().await.iter().map(node_id).collect();
    for o in &outsiders {
        assert!(live.contains(o), "a client without the key was touched");
    }
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_in_completes_safely_while_nomad_indexes_go_backwards() {
    let w = world("index-back", 4, false).await;
    let jobs: std::collections::HashMap<String, String> =
        w.busy_everywhere().await.into_iter().collect();
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 1}}),
    ))
    .await;
    let draining = |what: &'static str, retired: i64| {
        w.wait_status("pool", what, T, move |s| {
            s.retired_total == retired
                && s.retiring.len() == 1
                && s.retiring[0].phase == RetirePhase::Draining
                && s.retiring[0].allocations_left == 1
        })
    };
    // First retirement: half the reads are answered by a follower that
    // stopped applying the log (older data, a lower index, no known leader).
    let st = draining("first client draining", 0).await;
    w.sim
        .post(
            "/sim/faults",
            json!({"stale_reads": {"last_contact_ms": 5000, "known_leader": false, "rate": 0.5}}),
        )
        .await;
    w.sim.finish(&jobs[&st.retiring[0].node_id]).await;
    w.wait_status("pool", "first retired under stale reads", T, |s| {
        s.retired_total == 1
    })
    .await;
    w.sim.assert_no_violations().await;
    w.sim
        .control(reqwest::Method::DELETE, "/sim/faults", None)
        .await;

    // Second retirement: the cluster is restored from an older snapshot
    // mid-drain, so every index the operator holds is now ahead of Nomad's.
    let st = draining("second client draining", 1).await;
    let rewound = w
        .sim
        .post("/sim/index/rewind", json!({"by": 1_000_000}))
        .await;
    assert!(rewound["index"].as_u64() < rewound["before"].as_u64());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.group().await.desired, 3, "its job still runs: kept");
    w.sim.finish(&jobs[&st.retiring[0].node_id]).await;
    w.wait_status("pool", "settled at 2 after the rewind", T, |s| {
        s.retired_total == 2
            && s.retiring.is_empty()
            && condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    let g = w.group().await;
    assert_eq!((g.desired, g.instances.len()), (2, 2));
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
