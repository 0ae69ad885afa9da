//! A queue-fed pool (`lifecycleHook.queueURL`): held VMs are found through
//! the hook's notifications (ref §3), fed by the hook's own notification
//! target or by an EventBridge rule, both of which the extended moto
//! delivers to its SQS. Group reads stay the safety net, so each test also
//! checks the operator's log for the queue's own finding.

use std::time::{Duration, Instant};

use aws_sdk_sqs::Client as SqsClient;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use nomad_pool_operator::api::{RetirePhase, RetireReason};
use npo_testkit::*;
use serde_json::json;

use super::moto_support::{Queue, put_hook_with_target, route_lifecycle_events};
use super::{hook_spec, put_hook, set_desired, waiting};

const T: Duration = Duration::from_secs(60);
/// What the operator logs when the queue names a held VM the group confirmed.
const QUEUE_FOUND: &str = "the queue names a VM held by the lifecycle hook";

/// Messages in the queue, visible or received and not deleted.
async fn messages_in(sqs: &SqsClient, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("GetQueueAttributes");
    let attrs = out.attributes().cloned().unwrap_or_default();
    let n = |a: A| {
        attrs
            .get(&a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    n(A::ApproximateNumberOfMessages) + n(A::ApproximateNumberOfMessagesNotVisible)
}

async fn wait_messages(sqs: &SqsClient, url: &str, what: &str, expected: u64, limit: Duration) {
    wait_for(what, limit, || async {
        (messages_in(sqs, url).await == expected).then_some(())
    })
    .await;
}

/// Lines of the operator's log where the queue found `instance`.
fn queue_findings(w: &World, instance: &str) -> usize {
    let log = w.operator.as_ref().expect("operator").log_text();
    log.lines()
        .filter(|l| l.contains(QUEUE_FOUND) && l.contains(instance))
        .count()
}

/// ref §3.2, §5.4: the hook's own notification target; its test message is
/// deleted, another group's message is left alone, the held VM is found
/// through the queue, drained, and its message deleted only after the
/// action was completed.
#[tokio::test(flavor = "multi_thread")]
async fn a_queue_fed_pool_drains_held_vms_found_through_the_queue() {
    let w = setup("hook-queue", 3).await;
    let sqs = sqs_client();
    let queue = Queue::create(&unique("hook-queue")).await;
    put_hook(&w.asg, &w.group, "drain", 3600).await;
    // Sends the TEST_NOTIFICATION (ref §2.1).
    put_hook_with_target(&w.asg, &w.group, &queue.arn, None).await;
    let theirs = json!({"Service": "AWS Auto Scaling", "AutoScalingGroupName": "someone-elses",
        "LifecycleHookName": "drain", "EC2InstanceId": "i-0123456789abcdef0",
        "LifecycleActionToken": "71514b9d-6a40-4b26-8523-05e7ee35fa40",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING"});
    sqs.send_message()
        .queue_url(&queue.url)
        .message_body(theirs.to_string())
        .send()
        .await
        .expect("another group's message");
    assert_eq!(messages_in(&sqs, &queue.url).await, 2);
    let jobs = w.busy_everywhere().await;
    let spec = hook_spec(json!({"name": "drain", "queueURL": queue.url}));
    w.apply_pool(&w.pool_manifest("pool", spec)).await;
    w.wait_status("pool", "the hook and the queue ready", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
            && condition(s, "LifecycleQueue").is_some_and(|c| c.status == "True")
    })
    .await;
    wait_messages(&sqs, &queue.url, "the test message deleted", 1, T).await;

    set_desired(&w.asg, &w.group, 2).await;
    let started = Instant::now();
    let held = waiting(&w.group().await);
    assert_eq!(held.len(), 1);
    let st = w
        .wait_status("pool", "the held VM's client draining", T, |s| {
            s.retiring.len() == 1
                && s.retiring[0].reason == RetireReason::LifecycleHook
                && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    let found_in = started.elapsed();
    assert_eq!(
        st.retiring[0].instance_id.as_deref(),
        Some(held[0].as_str())
    );
    assert_eq!(queue_findings(&w, &held[0]), 1, "found through the queue");
    // The group reads look every ~5 s and may see it up to ~10 s late.
    assert!(found_in < Duration::from_secs(3), "{found_in:?}");
    // No drain.deadline in the spec: the hook's global timeout (48 h for a
    // 3600 s heartbeat timeout) less 10 minutes is the drain's deadline.
    let deadline = st.retiring[0].drain_deadline.as_ref().expect("a deadline");
    let started = st.retiring[0].drain_started_at.as_ref().expect("started");
    let secs = deadline.0.duration_since(started.0).as_secs();
    assert!((172_100..=172_200).contains(&secs), "{secs}");
    let c = condition(&st, "LifecycleGlobalTimeout").expect("condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "DrainDeadlineCapped")
    );
    w.wait_event("DrainDeadlineCapped", |r, _| r == "DrainDeadlineCapped", T)
        .await;

    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(waiting(&w.group().await), held, "its job still runs");
    assert_eq!(
        messages_in(&sqs, &queue.url).await,
        2,
        "not deleted before completion"
    );
    let (_, alloc) = jobs
        .iter()
        .find(|(n, _)| *n == st.retiring[0].node_id)
        .unwrap();
    w.sim.finish(alloc).await;
    w.wait_status("pool", "retired", T, |s| {
        s.retiring.is_empty() && s.retired_total == 1
    })
    .await;
    let st = w.status("pool").await;
    let c = condition(&st, "LifecycleGlobalTimeout").expect("condition");
    assert_eq!(c.status, "True", "nothing drains under the cap any more");
    wait_messages(&sqs, &queue.url, "its message deleted", 1, T).await;
    assert!(!w.group().await.instances.iter().any(|i| i.id == held[0]));
    // The test message went before the scale-in; what is left is the
    // other group's message.
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// ref §3.1, §5.4: an EventBridge rule feeds the queue; the operator is
/// SIGKILLed after it received the message and before the action was
/// completed: the message stays, the restarted operator receives it again,
/// completes the action once the job ends, and only then deletes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_sees_the_message_again_and_deletes_it_after_completing() {
    let test = "hook-queue-kill";
    let mut w = World::new(
        test,
        WorldOptions {
            size: 2,
            ..Default::default()
        },
    )
    .await;
    w.create_aws_secret().await;
    w.operator = Some(
        Operator::start_with(
            &w.namespace,
            test,
            "nomad-pool-operator",
            &["--leader-elect", "false"],
        )
        .await,
    );
    let sqs = sqs_client();
    let queue = Queue::create(&unique("hook-events")).await;
    route_lifecycle_events(&w.group, &queue.arn).await;
    put_hook(&w.asg, &w.group, "drain", 3600).await;
    let jobs = w.busy_everywhere().await;
    let spec = hook_spec(json!({"name": "drain", "queueURL": queue.url}));
    w.apply_pool(&w.pool_manifest("pool", spec)).await;
    w.wait_status("pool", "the hook and the queue ready", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
            && condition(s, "LifecycleQueue").is_some_and(|c| c.status == "True")
    })
    .await;

    set_desired(&w.asg, &w.group, 1).await;
    let held = waiting(&w.group().await);
    assert_eq!(held.len(), 1);
    let st = w
        .wait_status("pool", "the held VM's client draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    wait_for("the queue's finding logged", T, || async {
        (queue_findings(&w, &held[0]) == 1).then_some(())
    })
    .await;
    // The queue's token is recorded in the retirement before the kill.
    let name = st.retirements[0].metadata.name.clone().unwrap();
    let recorded = w
        .wait_retirement(&name, "the token recorded", T, |r| {
            recorded_token(r).is_some()
        })
        .await;
    let token = recorded_token(&recorded).unwrap();
    assert_eq!(token.len(), 36, "a UUID: {token}");

    let op = w.operator.as_mut().unwrap();
    op.kill().await;
    op.restart();
    // The message comes back after its visibility timeout (30 s).
    wait_for("the restarted operator receives it again", T, || async {
        (queue_findings(&w, &held[0]) == 2).then_some(())
    })
    .await;
    assert_eq!(messages_in(&sqs, &queue.url).await, 1, "still there");
    assert_eq!(waiting(&w.group().await), held, "its job still runs");

    let (_, alloc) = jobs
        .iter()
        .find(|(n, _)| *n == st.retiring[0].node_id)
        .unwrap();
    w.sim.finish(alloc).await;
    w.wait_status("pool", "retired", T, |s| {
        s.retiring.is_empty() && s.retired_total == 1
    })
    .await;
    wait_messages(&sqs, &queue.url, "the message deleted", 0, T).await;
    assert!(!w.group().await.instances.iter().any(|i| i.id == held[0]));
    // Completed once, by the restarted operator.
    completed_once(&w, &name, &token).await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

fn recorded_token(r: &nomad_pool_operator::api::NomadClientRetirement) -> Option<String> {
    r.status.as_ref()?.lifecycle_action.as_ref()?.token.clone()
}

/// Completed once: the retirement `name` records it with the token, one
/// Event says it, and no Event names the token.
async fn completed_once(w: &World, name: &str, token: &str) {
    let done = w.retirements_api().get(name).await.unwrap();
    let action = done.status.and_then(|s| s.lifecycle_action).unwrap();
    assert_eq!(action.token.as_deref(), Some(token));
    assert!(action.completed_at.is_some());
    w.wait_event(
        "LifecycleActionCompleted",
        |r, _| r == "LifecycleActionCompleted",
        T,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let api: Api<Event> = Api::namespaced(w.client.clone(), &w.namespace);
    let events = api.list(&Default::default()).await.expect("events").items;
    let completed: Vec<u32> = (events.iter())
        .filter(|e| e.reason.as_deref() == Some("LifecycleActionCompleted"))
        .map(|e| e.series.as_ref().map_or(1, |s| s.count as u32))
        .collect();
    assert_eq!(completed, [1], "one Event, published once");
    assert!(
        !(events.iter()).any(|e| e.note.as_deref().is_some_and(|n| n.contains(token))),
        "no Event names the token"
    );
}

/// A queue that does not exist: a condition and Event that say what to fix,
/// while the group reads still find and drain the held VM.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_queue_is_reported_and_group_reads_go_on() {
    let w = setup("hook-queue-missing", 2).await;
    put_hook(&w.asg, &w.group, "drain", 3600).await;
    let url = format!(
        "{}/123456789012/{}",
        moto_endpoint(),
        unique("no-such-queue")
    );
    let spec = hook_spec(json!({"name": "drain", "queueURL": url}));
    w.apply_pool(&w.pool_manifest("pool", spec)).await;
    let st = w
        .wait_status("pool", "the queue reported missing", T, |s| {
            condition(s, "LifecycleQueue")
                .is_some_and(|c| c.status == "False" && c.reason == "QueueNotFound")
        })
        .await;
    let message = &condition(&st, "LifecycleQueue").unwrap().message;
    assert!(
        message.contains("create the queue or correct lifecycleHook.queueURL")
            && message.contains("found from the group"),
        "{message}"
    );
    w.wait_event("QueueNotFound", |r, _| r == "QueueNotFound", T)
        .await;
    set_desired(&w.asg, &w.group, 1).await;
    // No job runs: the group reads find it and let it go at once.
    w.wait_status("pool", "retired through the group reads", T, |s| {
        s.retiring.is_empty() && s.retired_total == 1
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
