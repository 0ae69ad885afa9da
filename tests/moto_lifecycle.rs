//! Contract tests of the moto corrections for terminating lifecycle hooks
//! (`tests/env/moto/asg_lifecycle_hooks.py`, `asg_lifecycle_actions.py`,
//! `asg_lifecycle_notify.py`, `events_envelope.py`; the instance refresh of
//! `asg_instance_refresh.py` in `moto_lifecycle/refresh.rs`; timeouts in
//! `moto_lifecycle/timeouts.rs`, edge cases in `moto_lifecycle/edges.rs`), through the AWS SDK the
//! operator uses. Each test names the fact of
//! `/work/shared/reference/aws-lifecycle-hooks.md` ("ref §…") it pins.
//! Against moto as shipped every test fails but the no-hook baseline, which
//! pins what must not change: moto terminates at once, answers the two
//! lifecycle actions with HTTP 500 and sends no notification (ref §4.1).
//!
//! SQS, EventBridge and EC2 are spoken to with plain HTTP (their JSON and
//! Query protocols): the tests only create a queue and a rule, read messages
//! and one instance's state, which does not justify two more SDK crates
//! (aws-sdk-sqs 1.93.0, what Cargo resolves here, alone took 20.6 s of a
//! 31 s incremental debug build on this 2-core machine).

#[path = "moto_lifecycle/edges.rs"]
mod edges;
#[path = "moto_lifecycle/refresh.rs"]
mod refresh;
#[path = "moto_lifecycle/support.rs"]
mod support;
#[path = "moto_lifecycle/timeouts.rs"]
mod timeouts;

use std::time::Duration;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use npo_testkit::*;
use support::*;

/// ref §1.1 (steps 2-4), §1.2 (SetDesiredCapacity, UpdateAutoScalingGroup):
/// the victim waits in the group, running, uncounted; completing the action
/// moves it through Terminating:Proceed to terminated and out of the group.
#[tokio::test]
async fn lowering_the_desired_capacity_holds_the_victim_in_terminating_wait() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-desired", 4, 3600, "ABANDON").await;

    set_desired(&asg, &name, 3).await;
    let group = describe_group(&asg, &name).await;
    assert_eq!(group.desired, 3);
    assert_eq!(in_state(&group, "InService").len(), 3);
    let waiting = in_state(&group, "Terminating:Wait");
    assert_eq!(waiting.len(), 1, "one victim, still in the group");
    assert_eq!(
        autoscaling_instance_state(&asg, &waiting[0]).await,
        "Terminating:Wait"
    );
    assert_eq!(ec2_state(&waiting[0]).await, "running");

    // UpdateAutoScalingGroup lowering desired takes the same path; the
    // waiting instance is not counted and not chosen again.
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .desired_capacity(2)
        .send()
        .await
        .expect("lowering desired by UpdateAutoScalingGroup");
    let group = describe_group(&asg, &name).await;
    assert_eq!(in_state(&group, "InService").len(), 2);
    let both = in_state(&group, "Terminating:Wait");
    assert_eq!(both.len(), 2);
    assert!(both.contains(&waiting[0]));

    complete(&asg, &name, HOOK, Target::Instance(&waiting[0]), "CONTINUE")
        .await
        .expect("completing a pending action");
    let state = autoscaling_instance_state(&asg, &waiting[0]).await;
    assert!(
        state == "Terminating:Proceed" || state.is_empty(),
        "after CONTINUE the instance proceeds: {state:?}"
    );
    wait_until(
        "the completed instance leaves the group",
        Duration::from_secs(10),
        || async { !ids(&describe_group(&asg, &name).await).contains(&waiting[0]) },
    )
    .await;
    assert_eq!(ec2_state(&waiting[0]).await, "terminated");
    // Nothing was launched to replace it, nothing else was touched.
    let group = describe_group(&asg, &name).await;
    assert_eq!(group.instances.len(), 3);
    assert_eq!(in_state(&group, "InService").len(), 2);
}

/// ref §1.2: TerminateInstanceInAutoScalingGroup runs the hook with and
/// without decrement; without it a replacement is launched (ref §1.2 leaves
/// its timing open; the fake launches at once).
#[tokio::test]
async fn terminate_instance_in_group_waits_with_and_without_decrement() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-terminate", 3, 3600, "ABANDON").await;
    let before = ids(&describe_group(&asg, &name).await);

    let out = asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&before[0])
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .expect("terminate without decrement");
    assert!(out.activity().is_some());
    let group = describe_group(&asg, &name).await;
    assert_eq!(group.desired, 3, "desired unchanged");
    assert_eq!(
        in_state(&group, "Terminating:Wait"),
        vec![before[0].clone()]
    );
    let in_service = in_state(&group, "InService");
    assert_eq!(in_service.len(), 3, "a replacement was launched");
    assert!(in_service.iter().any(|id| !before.contains(id)));
    assert_eq!(ec2_state(&before[0]).await, "running");

    asg.terminate_instance_in_auto_scaling_group()
        .instance_id(&before[1])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("terminate with decrement");
    let group = describe_group(&asg, &name).await;
    assert_eq!(group.desired, 2);
    assert_eq!(in_state(&group, "Terminating:Wait").len(), 2);
    assert_eq!(in_state(&group, "InService").len(), 2, "no replacement");
}

/// ref §1.2 ("the group scales automatically"), §4.2 (ExecutePolicy).
#[tokio::test]
async fn an_executed_scaling_policy_scales_in_through_the_hook() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-policy", 3, 3600, "ABANDON").await;
    asg.put_scaling_policy()
        .auto_scaling_group_name(&name)
        .policy_name("in")
        .policy_type("SimpleScaling")
        .adjustment_type("ChangeInCapacity")
        .scaling_adjustment(-1)
        .send()
        .await
        .expect("a simple scale-in policy");
    asg.execute_policy()
        .auto_scaling_group_name(&name)
        .policy_name("in")
        .honor_cooldown(false)
        .send()
        .await
        .expect("executing it");
    let group = describe_group(&asg, &name).await;
    assert_eq!(group.desired, 2);
    assert_eq!(in_state(&group, "Terminating:Wait").len(), 1);
    assert_eq!(in_state(&group, "InService").len(), 2);
}

/// ref §2.1 (LifecycleTransition), §4.2: only terminating hooks hold
/// instances; without one moto behaves exactly as before.
#[tokio::test]
async fn a_group_without_a_terminating_hook_terminates_at_once() {
    let asg = asg_client();
    let name = unique("lc-nohook");
    create_group(&asg, &name, 0, 10, 3).await;
    asg.put_lifecycle_hook()
        .auto_scaling_group_name(&name)
        .lifecycle_hook_name("launch")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_LAUNCHING")
        .send()
        .await
        .expect("a launching hook");
    let before = ids(&describe_group(&asg, &name).await);
    set_desired(&asg, &name, 2).await;
    let group = describe_group(&asg, &name).await;
    assert_eq!(group.instances.len(), 2);
    assert_eq!(in_state(&group, "InService").len(), 2);
    let gone: Vec<_> = before
        .iter()
        .filter(|id| !ids(&group).contains(id))
        .collect();
    assert_eq!(gone.len(), 1);
    assert_eq!(ec2_state(gone[0]).await, "terminated");
}

/// ref §2.3: complete by token or by instance ID; a finished action answers
/// ValidationError with AWS's two texts; a second completion is refused.
#[tokio::test]
async fn complete_lifecycle_action_by_token_and_by_instance_and_never_twice() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-complete", 3, 3600, "ABANDON").await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    assert_eq!(waiting.len(), 2);
    let unknown = "f66c3d47-e602-4af0-8edd-d4e4d2fe4620";
    let refused = complete(&asg, &name, HOOK, Target::Token(unknown), "CONTINUE").await;
    assert_eq!(
        validation(refused),
        format!("No active Lifecycle Action found with token {unknown}")
    );
    let outsider = "i-09c7205a117f0d09a";
    let refused = complete(&asg, &name, HOOK, Target::Instance(outsider), "CONTINUE").await;
    assert_eq!(
        validation(refused),
        format!("No active Lifecycle Action found with instance ID {outsider}")
    );
    // The hook's name must match too.
    let refused = complete(
        &asg,
        &name,
        "other",
        Target::Instance(&waiting[0]),
        "CONTINUE",
    )
    .await;
    assert_eq!(
        validation(refused),
        format!(
            "No active Lifecycle Action found with instance ID {}",
            waiting[0]
        )
    );

    complete(&asg, &name, HOOK, Target::Instance(&waiting[0]), "ABANDON")
        .await
        .expect("ABANDON by instance ID");
    let again = complete(&asg, &name, HOOK, Target::Instance(&waiting[0]), "CONTINUE").await;
    assert_eq!(
        validation(again),
        format!(
            "No active Lifecycle Action found with instance ID {}",
            waiting[0]
        )
    );

    // The token comes from the notification (ref §3); here from the queue.
    let queue = Queue::create(&unique("lc-complete")).await;
    let name = group_with_hook(&asg, "lc-token", 2, 3600, "ABANDON").await;
    put_hook_with_target(&asg, &name, &queue.arn, None).await;
    set_desired(&asg, &name, 1).await;
    let message = queue.next_action().await;
    let token = message["LifecycleActionToken"]
        .as_str()
        .unwrap()
        .to_string();
    let instance = message["EC2InstanceId"].as_str().unwrap().to_string();
    complete(&asg, &name, HOOK, Target::Token(&token), "CONTINUE")
        .await
        .expect("CONTINUE by token");
    let again = complete(&asg, &name, HOOK, Target::Token(&token), "CONTINUE").await;
    assert_eq!(
        validation(again),
        format!("No active Lifecycle Action found with token {token}")
    );
    wait_until(
        "both completed instances are terminated",
        Duration::from_secs(10),
        || async {
            ec2_state(&instance).await == "terminated"
                && ec2_state(&waiting[0]).await == "terminated"
        },
    )
    .await;
}

/// ref §2.4: a heartbeat on a finished action is refused like a completion;
/// ref §2.3: the token is exactly 36 characters (API model constraint).
#[tokio::test]
async fn heartbeats_need_an_active_action() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-beat", 2, 3600, "ABANDON").await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    heartbeat(&asg, &name, Target::Instance(&waiting[0]))
        .await
        .expect("a heartbeat on a waiting instance");
    complete(&asg, &name, HOOK, Target::Instance(&waiting[0]), "CONTINUE")
        .await
        .expect("completing it");
    let late = heartbeat(&asg, &name, Target::Instance(&waiting[0])).await;
    assert_eq!(
        validation(late),
        format!(
            "No active Lifecycle Action found with instance ID {}",
            waiting[0]
        )
    );
    let short = heartbeat(&asg, &name, Target::Token("not-a-token")).await;
    let err = short.expect_err("a short token is refused");
    assert_eq!(err.code(), Some("ValidationError"));
}

/// ref §2.3/§2.4 (CONTINUE waits for the other hooks, ABANDON stops them)
/// and the API's DeleteLifecycleHook (outstanding terminating actions are
/// completed with CONTINUE).
#[tokio::test]
async fn every_hook_must_continue_unless_one_abandons() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-two", 3, 3600, "ABANDON").await;
    put_hook(&asg, &name, "second", 3600, "ABANDON").await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    assert_eq!(waiting.len(), 2);

    complete(&asg, &name, HOOK, Target::Instance(&waiting[0]), "CONTINUE")
        .await
        .expect("first hook continues");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        autoscaling_instance_state(&asg, &waiting[0]).await,
        "Terminating:Wait"
    );
    complete(
        &asg,
        &name,
        "second",
        Target::Instance(&waiting[0]),
        "CONTINUE",
    )
    .await
    .expect("second hook continues");

    complete(
        &asg,
        &name,
        "second",
        Target::Instance(&waiting[1]),
        "ABANDON",
    )
    .await
    .expect("one hook abandons");
    let other = complete(&asg, &name, HOOK, Target::Instance(&waiting[1]), "CONTINUE").await;
    assert_eq!(
        validation(other),
        format!(
            "No active Lifecycle Action found with instance ID {}",
            waiting[1]
        )
    );
    wait_until(
        "both instances leave the group",
        Duration::from_secs(10),
        || async {
            in_state(&describe_group(&asg, &name).await, "InService").len() == 1
                && describe_group(&asg, &name).await.instances.len() == 1
        },
    )
    .await;

    // Deleting a hook completes its outstanding actions with CONTINUE.
    set_desired(&asg, &name, 0).await;
    let last = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    assert_eq!(last.len(), 1);
    for hook in [HOOK, "second"] {
        asg.delete_lifecycle_hook()
            .auto_scaling_group_name(&name)
            .lifecycle_hook_name(hook)
            .send()
            .await
            .expect("deleting a hook");
    }
    wait_until(
        "the last instance is terminated",
        Duration::from_secs(10),
        || async { ec2_state(&last[0]).await == "terminated" },
    )
    .await;
}

/// ref §2.1/§2.2: DescribeLifecycleHooks echoes target, role, metadata and
/// GlobalTimeout = min(172800, 100 x HeartbeatTimeout); ref §3.2: the queue
/// gets the TEST_NOTIFICATION, then one flat JSON message per action.
#[tokio::test]
async fn the_hooks_queue_gets_the_test_notification_and_each_action() {
    let asg = asg_client();
    let queue = Queue::create(&unique("lc-queue")).await;
    let name = group_with_hook(&asg, "lc-notify", 2, 30, "ABANDON").await;
    put_hook_with_target(&asg, &name, &queue.arn, Some("pool=ci")).await;
    let out = asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&name)
        .send()
        .await
        .expect("describing the hook");
    let hook = &out.lifecycle_hooks()[0];
    assert_eq!(hook.notification_target_arn(), Some(queue.arn.as_str()));
    assert_eq!(hook.role_arn(), Some(ROLE));
    assert_eq!(hook.notification_metadata(), Some("pool=ci"));
    assert_eq!(hook.heartbeat_timeout(), Some(30));
    assert_eq!(hook.global_timeout(), Some(3000));
    assert_eq!(
        hook.lifecycle_transition(),
        Some(TERMINATING),
        "kept on update"
    );

    let test = queue.receive().await;
    assert_eq!(test.len(), 1);
    assert_eq!(test[0]["Event"], "autoscaling:TEST_NOTIFICATION");
    assert_eq!(test[0]["AutoScalingGroupName"], name.as_str());
    assert_keys(
        &test[0],
        &[
            "Service",
            "Time",
            "RequestId",
            "Event",
            "AccountId",
            "AutoScalingGroupName",
            "AutoScalingGroupARN",
        ],
    );

    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    let message = queue.next_action().await;
    assert_keys(
        &message,
        &[
            "Origin",
            "Destination",
            "Service",
            "Time",
            "RequestId",
            "LifecycleActionToken",
            "AccountId",
            "AutoScalingGroupName",
            "LifecycleHookName",
            "EC2InstanceId",
            "LifecycleTransition",
            "NotificationMetadata",
        ],
    );
    assert_eq!(message["Service"], "AWS Auto Scaling");
    assert_eq!(message["LifecycleTransition"], TERMINATING);
    assert_eq!(message["LifecycleHookName"], HOOK);
    assert_eq!(message["EC2InstanceId"], waiting[0].as_str());
    assert_eq!(message["NotificationMetadata"], "pool=ci");
    assert_eq!(message["LifecycleActionToken"].as_str().unwrap().len(), 36);

    // A target that cannot receive the test message is refused (ref §2.1).
    let missing = queue.arn.replace("lc-queue", "lc-missing");
    let refused = asg
        .put_lifecycle_hook()
        .auto_scaling_group_name(&name)
        .lifecycle_hook_name("unreachable")
        .lifecycle_transition(TERMINATING)
        .role_arn(ROLE)
        .notification_target_arn(&missing)
        .send()
        .await;
    let message = validation(refused);
    assert!(
        message.starts_with(&format!(
            "Unable to publish test message to notification target {missing}"
        )),
        "{message}"
    );
}

/// ref §3.1: EventBridge gets `EC2 Instance-terminate Lifecycle Action` from
/// `aws.autoscaling`, the full envelope, with the group's ARN as resource.
#[tokio::test]
async fn eventbridge_gets_the_terminate_lifecycle_action_event() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-events", 2, 3600, "ABANDON").await;
    // The documented example's hook has metadata; so has this one.
    asg.put_lifecycle_hook()
        .auto_scaling_group_name(&name)
        .lifecycle_hook_name(HOOK)
        .notification_metadata("additional-info")
        .send()
        .await
        .expect("adding metadata to the hook");
    let queue = Queue::create(&unique("lc-events")).await;
    route_lifecycle_events(&name, &queue.arn).await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    let events = queue.receive().await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_keys(
        event,
        &[
            "version",
            "id",
            "detail-type",
            "source",
            "account",
            "time",
            "region",
            "resources",
            "detail",
        ],
    );
    assert_eq!(
        event["detail-type"],
        "EC2 Instance-terminate Lifecycle Action"
    );
    assert_eq!(event["source"], "aws.autoscaling");
    assert_eq!(event["region"], "us-east-1");
    let arn = event["resources"][0].as_str().unwrap();
    assert!(arn.starts_with("arn:aws:autoscaling:us-east-1:"), "{arn}");
    assert!(
        arn.ends_with(&format!(":autoScalingGroupName/{name}")),
        "{arn}"
    );
    let detail = &event["detail"];
    assert_keys(
        detail,
        &[
            "LifecycleActionToken",
            "AutoScalingGroupName",
            "LifecycleHookName",
            "EC2InstanceId",
            "LifecycleTransition",
            "NotificationMetadata",
            "Origin",
            "Destination",
        ],
    );
    assert_eq!(detail["EC2InstanceId"], waiting[0].as_str());
    assert_eq!(detail["NotificationMetadata"], "additional-info");
    assert_eq!(detail["Origin"], "AutoScalingGroup");
    assert_eq!(detail["Destination"], "EC2");
    let token = detail["LifecycleActionToken"].as_str().unwrap().to_string();
    complete(&asg, &name, HOOK, Target::Token(&token), "CONTINUE")
        .await
        .expect("the event's token completes the action");
}
