//! `batchTerminations` end to end (AWS): the operator, a real API server,
//! nomad-sim and moto (with the project's DetachInstances corrections).
//! A scale-in ends every retired VM through shared calls and lowers the
//! group once per VM; when EC2 refuses the terminates after the detach
//! landed (every attempt), the detached VMs keep running until the sweep
//! of detached VMs ends them, and the group is never lowered twice.

use std::time::Duration;

use aws_sdk_ec2::types::InstanceStateName;
use npo_testkit::proxy::aws_faults::{AwsFaults, FaultProxy};
use npo_testkit::*;
use serde_json::json;

use nomad_pool_operator::provider::DETACHED_TAG;

const T: Duration = Duration::from_secs(90);

/// The instances of `ids` EC2 shows as ended, and those carrying the
/// detach tag naming `group`.
async fn ended_and_tagged(ids: &[String], group: &str) -> (usize, usize) {
    let instances = npo_testkit::aws::ec2_instances(ids).await;
    let ended = (instances.values())
        .filter(|i| {
            matches!(
                i.state().and_then(|s| s.name()),
                Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
            )
        })
        .count();
    let tagged = (instances.values())
        .filter(|i| {
            (i.tags().iter()).any(|t| t.key() == Some(DETACHED_TAG) && t.value() == Some(group))
        })
        .count();
    (ended, tagged)
}

/// The group's instance IDs.
async fn group_ids(w: &World) -> Vec<String> {
    (w.group().await.instances.into_iter())
        .map(|i| i.id)
        .collect()
}

/// The instances of `before` no longer in the group.
async fn gone_from(w: &World, before: &[String]) -> Vec<String> {
    let g = w.group().await;
    (before.iter())
        .filter(|id| !g.instances.iter().any(|i| &&i.id == id))
        .cloned()
        .collect()
}

/// A pool of `w` through `endpoint`, scaled to `replicas`, with batches.
fn batch_pool(w: &World, endpoint: &str, replicas: i32) -> serde_json::Value {
    let mut pool = w.pool_manifest(
        "pool",
        json!({"replicas": replicas, "disruption": {"maxUnavailable": 6}}),
    );
    let asg = &mut pool["spec"]["provider"]["awsAutoScalingGroup"];
    asg["endpoint"] = json!(endpoint);
    asg["batchTerminations"] = json!(true);
    pool
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_in_in_batches_ends_every_vm_and_lowers_the_group_once_each() {
    let w = setup("batch-scale-in", 8).await;
    let before = group_ids(&w).await;
    w.apply_pool(&batch_pool(&w, &moto_endpoint(), 2)).await;

    w.wait_status("pool", "six retired", T, |s| {
        s.retiring.is_empty() && s.retired_total == 6
    })
    .await;
    let g = w.group().await;
    assert_eq!((g.desired, g.instances.len()), (2, 2), "{g:?}");
    let gone = gone_from(&w, &before).await;
    assert_eq!(gone.len(), 6);
    // The six drains end together; their terminates reach the batcher a
    // few milliseconds apart and share batches (a batch tags before its
    // detach). One that came after its batch's linger goes alone, untagged.
    let (ended, tagged) = ended_and_tagged(&gone, &w.group).await;
    assert_eq!(ended, 6, "every retired VM ended");
    assert!(tagged >= 2, "the VMs shared batches: {tagged} tagged");
    let st = w.wait_status("pool", "settled", T, |_| true).await;
    let c = condition(&st, "BatchTerminations").map(|c| (c.status.as_str(), c.reason.as_str()));
    assert_eq!(c, Some(("True", "Batching")), "{:?}", st.conditions);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_with_another_terminating_hook_says_its_batches_are_off() {
    let w = setup("batch-other-hook", 3).await;
    npo_testkit::put_terminating_hook(&asg_client(), &w.group, "log-shipper").await;
    // Nothing to retire: the group's first read says it.
    w.apply_pool(&batch_pool(&w, &moto_endpoint(), 3)).await;

    let st = w
        .wait_status("pool", "BatchTerminations False", T, |s| {
            condition(s, "BatchTerminations").is_some_and(|c| c.status == "False")
        })
        .await;
    let c = condition(&st, "BatchTerminations").unwrap();
    assert_eq!(c.reason, "OtherTerminatingHooks");
    assert!(c.message.contains("log-shipper"), "{}", c.message);
    // Not a fault of the pool: it stays Ready.
    let ready = condition(&st, "Ready").map(|c| c.status.as_str());
    assert_eq!(ready, Some("True"), "{:?}", st.conditions);
    let note = w
        .wait_event(
            "OtherTerminatingHooks",
            |reason, _| reason == "OtherTerminatingHooks",
            T,
        )
        .await;
    assert!(note.contains("log-shipper"), "{note}");
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn vms_detached_whose_terminate_failed_for_good_are_swept_up() {
    let w = setup("batch-refused", 6).await;
    let before = group_ids(&w).await;
    let proxy = FaultProxy::start(&moto_endpoint(), 7).await;
    proxy.set_faults(AwsFaults {
        error_rate: 1.0,
        only_actions: vec!["TerminateInstances".into()],
        ..Default::default()
    });
    w.apply_pool(&batch_pool(&w, &proxy.url, 2)).await;

    // The detaches land; every EC2 terminate is refused, each batch's as
    // often as the SDK tries it (4 attempts): the batch call has failed for
    // good, and only the operator itself can still end these VMs.
    wait_for(
        "detached VMs whose terminate failed for good",
        T,
        || async {
            let stats = proxy.stats();
            let refused = stats
                .get("TerminateInstances")
                .map_or(0, |s| s.server_errors);
            let detached = stats.get("DetachInstances").map_or(0, |s| s.forwarded);
            (detached >= 1 && refused >= 4 * detached).then_some(())
        },
    )
    .await;
    // A batch's VMs are detached, tagged and still running (a detach
    // means a batch of two or more); a VM that went alone (one call, no EC2
    // terminate) is ended.
    let out = gone_from(&w, &before).await;
    let (ended, tagged) = ended_and_tagged(&out, &w.group).await;
    assert!(tagged >= 2, "{tagged} of {} tagged", out.len());
    assert_eq!(ended + tagged, out.len(), "{ended} ended, {tagged} tagged");

    proxy.set_faults(AwsFaults::default());
    w.wait_status("pool", "four retired", T, |s| {
        s.retiring.is_empty() && s.retired_total == 4
    })
    .await;
    let g = w.group().await;
    assert_eq!(
        (g.desired, g.instances.len()),
        (2, 2),
        "never lowered twice: {g:?}"
    );
    // The sweep that follows a failed terminate of detached VMs ends them
    // (`provider/aws/sweep.rs`), with no reconcile needed to prompt it.
    let gone = gone_from(&w, &before).await;
    wait_for("the detached VMs ended", T, || async {
        (ended_and_tagged(&gone, &w.group).await.0 == 4).then_some(())
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
