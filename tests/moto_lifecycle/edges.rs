//! Contract tests of the lifecycle-hook corrections at their edges: limits
//! of PutLifecycleHook, instances leaving by other ways than the hook, and
//! what a deleted group takes with it.

use std::time::Duration;

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use npo_testkit::*;

use super::support::*;

/// ref §2.1: HeartbeatTimeout lies in 30..7200; LifecycleTransition is
/// required for a new hook, and RoleARN for a new hook with a notification
/// target. The error texts are not known (ref §6), so only the code is pinned.
#[tokio::test]
async fn put_lifecycle_hook_enforces_the_apis_constraints() {
    let asg = asg_client();
    let name = unique("lc-limits");
    create_group(&asg, &name, 0, 10, 0).await;
    for timeout in [29, 7201] {
        let refused = asg
            .put_lifecycle_hook()
            .auto_scaling_group_name(&name)
            .lifecycle_hook_name(HOOK)
            .lifecycle_transition(TERMINATING)
            .heartbeat_timeout(timeout)
            .send()
            .await;
        let err = refused.expect_err("out of range");
        assert_eq!(err.code(), Some("ValidationError"), "{timeout}");
    }
    let no_transition = asg
        .put_lifecycle_hook()
        .auto_scaling_group_name(&name)
        .lifecycle_hook_name("new")
        .send()
        .await;
    assert_eq!(
        no_transition.expect_err("new hook").code(),
        Some("ValidationError")
    );
    let queue = Queue::create(&unique("lc-limits")).await;
    let no_role = asg
        .put_lifecycle_hook()
        .auto_scaling_group_name(&name)
        .lifecycle_hook_name("new")
        .lifecycle_transition(TERMINATING)
        .notification_target_arn(&queue.arn)
        .send()
        .await;
    assert_eq!(
        no_role.expect_err("target, no role").code(),
        Some("ValidationError")
    );
    let no_group = asg
        .put_lifecycle_hook()
        .auto_scaling_group_name(unique("lc-nogroup"))
        .lifecycle_hook_name("new")
        .lifecycle_transition(TERMINATING)
        .send()
        .await;
    assert_eq!(
        no_group.expect_err("no such group").code(),
        Some("ValidationError")
    );
    for timeout in [30, 7200] {
        put_hook(&asg, &name, HOOK, timeout, "CONTINUE").await;
    }
    let out = asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&name)
        .send()
        .await
        .expect("describing the hook");
    let hook = &out.lifecycle_hooks()[0];
    assert_eq!(hook.heartbeat_timeout(), Some(7200));
    assert_eq!(hook.default_result(), Some("CONTINUE"));
    // Without a target the hook has none (moto answered a made-up queue).
    assert_eq!(hook.notification_target_arn(), None);
}

/// ref §1.2: EC2 TerminateInstances does not wait for the hook; the waiting
/// instance's action ends with it.
#[tokio::test]
async fn an_ec2_termination_ends_the_pending_action() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-ec2", 2, 3600, "ABANDON").await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    assert_eq!(waiting.len(), 1);
    ec2_terminate(&waiting[0]).await;
    let group = describe_group(&asg, &name).await;
    assert!(!ids(&group).contains(&waiting[0]));
    assert_eq!(
        in_state(&group, "InService").len(),
        1,
        "no replacement for it"
    );
    let late = complete(&asg, &name, HOOK, Target::Instance(&waiting[0]), "CONTINUE").await;
    assert_eq!(
        validation(late),
        format!(
            "No active Lifecycle Action found with instance ID {}",
            waiting[0]
        )
    );
}

/// ref §1.1 step 1: an instance chosen for termination "can't be put back
/// into service"; terminating or detaching it again is refused (the text is
/// assumed, so only the code and the instance ID are pinned).
#[tokio::test]
async fn a_waiting_instance_cannot_be_terminated_or_detached_again() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-again", 2, 3600, "ABANDON").await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    let again = asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&waiting[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await;
    let err = again.expect_err("already terminating");
    assert_eq!(err.code(), Some("ValidationError"));
    assert!(err.message().unwrap_or_default().contains(&waiting[0]));
    let detach = asg
        .detach_instances()
        .auto_scaling_group_name(&name)
        .instance_ids(&waiting[0])
        .should_decrement_desired_capacity(false)
        .send()
        .await;
    let err = detach.expect_err("already terminating");
    assert_eq!(err.code(), Some("ValidationError"));
    let group = describe_group(&asg, &name).await;
    assert_eq!(group.desired, 1, "nothing changed");
    assert_eq!(in_state(&group, "Terminating:Wait"), waiting);
}

/// ref §1.2 (DeleteAutoScalingGroup with ForceDelete "also deletes any
/// outstanding lifecycle actions"): the group's hooks and actions go with
/// it, and a new group of the same name starts without hooks.
#[tokio::test]
async fn a_deleted_group_takes_its_hooks_and_actions_with_it() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-delete", 2, 3600, "ABANDON").await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    asg.delete_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .force_delete(true)
        .send()
        .await
        .expect("force-deleting the group");
    assert_eq!(ec2_state(&waiting[0]).await, "terminated");
    let late = complete(&asg, &name, HOOK, Target::Instance(&waiting[0]), "CONTINUE").await;
    validation(late);

    asg.delete_launch_configuration()
        .launch_configuration_name(&name)
        .send()
        .await
        .expect("deleting the launch configuration");
    create_group(&asg, &name, 0, 10, 2).await;
    let hooks = asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&name)
        .send()
        .await
        .expect("describing hooks");
    assert!(hooks.lifecycle_hooks().is_empty(), "{hooks:?}");
    set_desired(&asg, &name, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(describe_group(&asg, &name).await.instances.len(), 1);
}
