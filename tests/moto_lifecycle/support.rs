//! Helpers of the lifecycle-hook contract tests: groups with a hook, the two
//! lifecycle actions, and plain-HTTP access to moto's SQS (JSON protocol),
//! EventBridge (JSON protocol) and EC2 (Query protocol).

use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_autoscaling::config::http::HttpResponse;
use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};
use npo_testkit::*;
use serde_json::{Value, json};

pub const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
/// The name of the hook `group_with_hook` puts on its group.
pub const HOOK: &str = "drain";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/npo-lifecycle";
/// The fake's per-group time-scale knob (tests/env/README.md).
const TIME_SCALE_TAG: &str = "npo-moto:time-scale";

/// A group of `desired` instances (MinSize 0, MaxSize 10) with the
/// terminating hook `HOOK`.
pub async fn group_with_hook(
    asg: &AsgClient,
    prefix: &str,
    desired: i32,
    heartbeat: i32,
    default_result: &str,
) -> String {
    let name = unique(prefix);
    create_group(asg, &name, 0, 10, desired).await;
    put_hook(asg, &name, HOOK, heartbeat, default_result).await;
    name
}

pub async fn put_hook(asg: &AsgClient, group: &str, hook: &str, heartbeat: i32, result: &str) {
    asg.put_lifecycle_hook()
        .auto_scaling_group_name(group)
        .lifecycle_hook_name(hook)
        .lifecycle_transition(TERMINATING)
        .heartbeat_timeout(heartbeat)
        .default_result(result)
        .send()
        .await
        .expect("putting a terminating hook");
}

/// Updates `HOOK` to notify `queue_arn`; LifecycleTransition is left out, as
/// an update may (ref §2.1).
pub async fn put_hook_with_target(
    asg: &AsgClient,
    group: &str,
    queue_arn: &str,
    metadata: Option<&str>,
) {
    asg.put_lifecycle_hook()
        .auto_scaling_group_name(group)
        .lifecycle_hook_name(HOOK)
        .role_arn(ROLE)
        .notification_target_arn(queue_arn)
        .set_notification_metadata(metadata.map(str::to_string))
        .send()
        .await
        .expect("pointing the hook at a queue");
}

pub async fn set_time_scale(asg: &AsgClient, group: &str, scale: f64) {
    let tag = aws_sdk_autoscaling::types::Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(TIME_SCALE_TAG)
        .value(scale.to_string())
        .propagate_at_launch(false)
        .build();
    asg.create_or_update_tags()
        .tags(tag)
        .send()
        .await
        .expect("setting the group's time scale");
}

pub async fn set_desired(asg: &AsgClient, group: &str, desired: i32) {
    asg.set_desired_capacity()
        .auto_scaling_group_name(group)
        .desired_capacity(desired)
        .send()
        .await
        .expect("setting the desired capacity");
}

pub fn ids(group: &Group) -> Vec<String> {
    group.instances.iter().map(|i| i.id.clone()).collect()
}

pub fn in_state(group: &Group, state: &str) -> Vec<String> {
    group
        .instances
        .iter()
        .filter(|i| i.lifecycle == state)
        .map(|i| i.id.clone())
        .collect()
}

/// LifecycleState from DescribeAutoScalingInstances; empty once it is gone.
pub async fn autoscaling_instance_state(asg: &AsgClient, id: &str) -> String {
    let out = asg
        .describe_auto_scaling_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("describing the instance");
    out.auto_scaling_instances()
        .first()
        .and_then(|i| i.lifecycle_state())
        .unwrap_or_default()
        .to_string()
}

pub enum Target<'a> {
    Token(&'a str),
    Instance(&'a str),
}

type Answer<O, E> = Result<O, SdkError<E, HttpResponse>>;

pub async fn complete(
    asg: &AsgClient,
    group: &str,
    hook: &str,
    target: Target<'_>,
    result: &str,
) -> Answer<
    aws_sdk_autoscaling::operation::complete_lifecycle_action::CompleteLifecycleActionOutput,
    aws_sdk_autoscaling::operation::complete_lifecycle_action::CompleteLifecycleActionError,
> {
    let call = asg
        .complete_lifecycle_action()
        .auto_scaling_group_name(group)
        .lifecycle_hook_name(hook)
        .lifecycle_action_result(result);
    match target {
        Target::Token(token) => call.lifecycle_action_token(token),
        Target::Instance(id) => call.instance_id(id),
    }
    .send()
    .await
}

pub async fn heartbeat(
    asg: &AsgClient,
    group: &str,
    target: Target<'_>,
) -> Answer<
    aws_sdk_autoscaling::operation::record_lifecycle_action_heartbeat::RecordLifecycleActionHeartbeatOutput,
    aws_sdk_autoscaling::operation::record_lifecycle_action_heartbeat::RecordLifecycleActionHeartbeatError,
>{
    let call = asg
        .record_lifecycle_action_heartbeat()
        .auto_scaling_group_name(group)
        .lifecycle_hook_name(HOOK);
    match target {
        Target::Token(token) => call.lifecycle_action_token(token),
        Target::Instance(id) => call.instance_id(id),
    }
    .send()
    .await
}

/// The message of a refusal that must be HTTP 400 with code ValidationError
/// (moto's status for it; AWS's is not documented, ref §2.3).
pub fn validation<O: std::fmt::Debug, E: ProvideErrorMetadata>(answer: Answer<O, E>) -> String {
    let err = answer.expect_err("AWS refuses this request");
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!((status, err.code()), (Some(400), Some("ValidationError")));
    err.message().unwrap_or_default().to_string()
}

pub async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn assert_keys(object: &Value, expected: &[&str]) {
    let mut keys: Vec<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = expected.to_vec();
    keys.sort_unstable();
    expected.sort_unstable();
    assert_eq!(keys, expected, "fields of {object}");
}

/// A request in one of AWS's JSON protocols; moto reads the service from the
/// credential scope and the operation from X-Amz-Target.
async fn aws_json(service: &str, target: &str, version: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(moto_endpoint())
        .header("X-Amz-Target", target)
        .header("Content-Type", format!("application/x-amz-json-{version}"))
        .header("Authorization", authorization(service))
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("{target}: {e}"));
    let status = response.status();
    let text = response.text().await.expect("reading the answer");
    assert!(status.is_success(), "{target}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{target}: {e}: {text}"))
}

fn authorization(service: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=0"
    )
}

/// The EC2 state name of an instance (DescribeInstances, Query protocol).
pub async fn ec2_state(id: &str) -> String {
    let body = format!("Action=DescribeInstances&Version=2016-11-15&InstanceId.1={id}");
    let text = reqwest::Client::new()
        .post(moto_endpoint())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Authorization", authorization("ec2"))
        .body(body)
        .send()
        .await
        .expect("DescribeInstances")
        .text()
        .await
        .expect("reading DescribeInstances");
    let state = text
        .split("<instanceState>")
        .nth(1)
        .unwrap_or_else(|| panic!("no instanceState for {id}: {text}"));
    let name = state
        .split("<name>")
        .nth(1)
        .and_then(|s| s.split("</name>").next());
    name.unwrap_or_else(|| panic!("no state name: {state}"))
        .to_string()
}

/// EC2 TerminateInstances (Query protocol), as someone outside the group does.
pub async fn ec2_terminate(id: &str) {
    let body = format!("Action=TerminateInstances&Version=2016-11-15&InstanceId.1={id}");
    let response = reqwest::Client::new()
        .post(moto_endpoint())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Authorization", authorization("ec2"))
        .body(body)
        .send()
        .await
        .expect("TerminateInstances");
    assert!(
        response.status().is_success(),
        "TerminateInstances: {}",
        response.status()
    );
}

pub struct Queue {
    pub url: String,
    pub arn: String,
}

impl Queue {
    pub async fn create(name: &str) -> Queue {
        let out = sqs("CreateQueue", json!({ "QueueName": name })).await;
        let url = out["QueueUrl"].as_str().expect("QueueUrl").to_string();
        let attrs = sqs(
            "GetQueueAttributes",
            json!({ "QueueUrl": url, "AttributeNames": ["QueueArn"] }),
        )
        .await;
        let arn = attrs["Attributes"]["QueueArn"]
            .as_str()
            .expect("QueueArn")
            .to_string();
        Queue { url, arn }
    }

    /// The bodies (parsed) of the messages waiting now, deleted once read.
    pub async fn receive(&self) -> Vec<Value> {
        let mut bodies = Vec::new();
        loop {
            let out = sqs(
                "ReceiveMessage",
                json!({ "QueueUrl": self.url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0 }),
            )
            .await;
            let messages = out["Messages"].as_array().cloned().unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            for message in messages {
                let body = message["Body"].as_str().expect("Body");
                bodies.push(serde_json::from_str(body).expect("a JSON body"));
                let handle = message["ReceiptHandle"].clone();
                sqs(
                    "DeleteMessage",
                    json!({ "QueueUrl": self.url, "ReceiptHandle": handle }),
                )
                .await;
            }
        }
    }

    /// The next lifecycle action message, skipping the TEST_NOTIFICATION.
    pub async fn next_action(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .receive()
                .await
                .into_iter()
                .find(|m| m.get("LifecycleActionToken").is_some());
            if let Some(message) = found {
                return message;
            }
            assert!(Instant::now() < deadline, "no lifecycle action message");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn sqs(action: &str, body: Value) -> Value {
    aws_json("sqs", &format!("AmazonSQS.{action}"), "1.0", body).await
}

/// A rule sending the group's terminate lifecycle events to `queue_arn`
/// (the pattern of ref §3.1).
pub async fn route_lifecycle_events(group: &str, queue_arn: &str) {
    let pattern = json!({
        "source": ["aws.autoscaling"],
        "detail-type": ["EC2 Instance-terminate Lifecycle Action"],
        "detail": { "AutoScalingGroupName": [group] },
    });
    let events = |action: &str| format!("AWSEvents.{action}");
    aws_json(
        "events",
        &events("PutRule"),
        "1.1",
        json!({ "Name": group, "EventPattern": pattern.to_string() }),
    )
    .await;
    aws_json(
        "events",
        &events("PutTargets"),
        "1.1",
        json!({ "Rule": group, "Targets": [{ "Id": "queue", "Arn": queue_arn }] }),
    )
    .await;
}
