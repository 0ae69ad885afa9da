//! Status that tells the truth, end to end (operator binary, real API
//! server, moto with its capacity-bounds correction, the simulator): each
//! problem gets its own reason, every problem is listed, a finished retire
//! entry reads as done, and a drain Nomad accepts without applying it is
//! reported instead of being re-sent forever in silence.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use nomad_pool_operator::api::{NomadClientPoolStatus, RetirePhase};
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

fn degraded(s: &NomadClientPoolStatus) -> Option<&Condition> {
    condition(s, "Degraded").filter(|c| c.status == "True")
}

fn degraded_by(s: &NomadClientPoolStatus, reason: &str) -> bool {
    degraded(s).is_some_and(|c| c.reason == reason)
}

async fn set_max_size(w: &World, max: i32) {
    w.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&w.group)
        .max_size(max)
        .send()
        .await
        .expect("lowering the group's MaxSize");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_selector_matching_no_client_is_degraded_not_settled() {
    let w = setup("no-match", 2).await;
    let mut manifest = w.pool_manifest("pool", json!({"replicas": 2}));
    manifest["spec"]["selector"] = json!({"nodePool": "gpu"});
    w.apply_pool(&manifest).await;
    let st = w
        .wait_status("pool", "Degraded NoMatchingClients", T, |s| {
            degraded_by(s, "NoMatchingClients")
        })
        .await;
    let c = degraded(&st).unwrap();
    assert!(c.message.contains("spec.selector"), "{}", c.message);
    let ready = condition(&st, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NoMatchingClients")
    );
    assert_eq!(st.nodes, 0);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_above_max_size_are_never_sent_and_are_reported() {
    let w = setup("above-max", 3).await;
    set_max_size(&w, 4).await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 6})))
        .await;
    // The group grows to its MaxSize and no further, and the pool says why.
    let st = w
        .wait_status("pool", "Degraded ReplicasAboveMaxSize", T, |s| {
            degraded_by(s, "ReplicasAboveMaxSize") && s.group_desired_capacity == Some(4)
        })
        .await;
    let c = degraded(&st).unwrap();
    assert!(
        c.message.contains("spec.replicas is 6") && c.message.contains("at most 4"),
        "{}",
        c.message
    );
    // Several reconciles later: still the same, no refused call.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let st = w.status("pool").await;
    assert!(
        degraded_by(&st, "ReplicasAboveMaxSize"),
        "{:?}",
        st.conditions
    );
    assert_eq!(w.group().await.desired, 4);
    let failed: Vec<_> = w
        .events()
        .await
        .into_iter()
        .filter(|(reason, _)| reason == "ActionFailed")
        .collect();
    assert!(
        failed.is_empty(),
        "the cloud was asked for more than MaxSize: {failed:?}"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_finished_retire_entry_reads_as_done_and_hides_no_other_problem() {
    let w = setup("retire-done", 3).await;
    let victim = w.ready_nodes().await[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    w.apply_pool(&w.pool_manifest("pool", json!({"retire": [{"nodeName": victim}]})))
        .await;
    let st = w
        .wait_status("pool", "the named client retired, pool settled", T, |s| {
            s.retired_total == 1
                && s.retiring.is_empty()
                && condition(s, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    let ready = condition(&st, "Ready").unwrap();
    assert_eq!(ready.reason, "Settled");
    assert!(
        ready.message.contains("already retired") && ready.message.contains(&victim),
        "{}",
        ready.message
    );
    assert!(degraded(&st).is_none(), "{:?}", st.conditions);
    assert_eq!(st.retired.len(), 1);
    assert_eq!(st.retired[0].node_name, victim);

    // Two more problems: each is listed, the done entry is not one of them.
    set_max_size(&w, 3).await;
    w.patch_spec(
        "pool",
        json!({"replicas": 5, "retire": [{"nodeName": victim}, {"nodeName": "ghost-client"}]}),
    )
    .await;
    let st = w
        .wait_status("pool", "both problems listed", T, |s| {
            degraded(s).is_some_and(|c| {
                c.message.contains("ghost-client") && c.message.contains("ReplicasAboveMaxSize")
            })
        })
        .await;
    let c = degraded(&st).unwrap();
    assert!(
        !c.message.contains(&victim),
        "a done entry is no problem: {}",
        c.message
    );
    assert!(c.message.starts_with("2 problems"), "{}", c.message);
    assert_eq!(st.retired_total, 1, "the name is not retired again");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_json_from_nomad_is_not_called_unreachable() {
    let w = setup("bad-json", 2).await;
    w.sim
        .post(
            "/sim/faults",
            json!({"truncated_json": true, "path_prefix": "/v1/nodes"}),
        )
        .await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    let st = w
        .wait_status("pool", "Degraded NomadResponseInvalid", T, |s| {
            degraded_by(s, "NomadResponseInvalid")
        })
        .await;
    let c = degraded(&st).unwrap();
    assert!(c.message.contains("/v1/nodes"), "{}", c.message);
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_drain_nomad_accepts_but_never_applies_is_reported() {
    let w = setup("drain-unapplied", 3).await;
    w.sim
        .post(
            "/sim/faults",
            json!({"drains_not_applied": true, "path_prefix": "/v1/node/"}),
        )
        .await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    // First send, then a re-send each time the write log gives up waiting.
    let st = w
        .wait_status(
            "pool",
            "Degraded DrainNotApplied",
            Duration::from_secs(150),
            |s| degraded_by(s, "DrainNotApplied"),
        )
        .await;
    let entry = &st.retiring[0];
    assert_eq!(entry.phase, RetirePhase::Cordoned);
    let c = degraded(&st).unwrap();
    assert!(
        c.message
            .contains("Nomad accepted the drain but does not show it")
            && c.message.contains(&entry.node_name),
        "{}",
        c.message
    );
    // Events are published after the status write, off the reconcile path.
    let events: Vec<_> = wait_for("the DrainNotApplied Event", T, || async {
        let found: Vec<_> = w
            .events()
            .await
            .into_iter()
            .filter(|(reason, _)| reason == "DrainNotApplied")
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].1.contains(&entry.node_name), "{events:?}");

    // Nomad applies drains again: the next re-send lands and the report goes.
    w.sim
        .control(reqwest::Method::DELETE, "/sim/faults", None)
        .await;
    w.wait_status("pool", "the drain shows, no longer degraded", T, |s| {
        degraded(s).is_none() && s.retiring.iter().all(|r| r.phase != RetirePhase::Cordoned)
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
