//! Contract tests of the hook timeouts (`tests/env/moto/asg_lifecycle_actions.py`):
//! they fire with no request arriving, heartbeats move them, the global
//! timeout does not move. The group's `npo-moto:time-scale` tag makes them
//! take seconds.

use std::time::{Duration, Instant};

use npo_testkit::*;

use super::support::*;

/// ref §2.1 (DefaultResult applied when the heartbeat timeout elapses), §2.4
/// (a heartbeat restarts the timer), without any request arriving.
#[tokio::test]
async fn the_heartbeat_timeout_applies_the_default_result_and_heartbeats_extend_it() {
    let asg = asg_client();
    // 30 s heartbeat timeout at 1/20 speed: 1.5 s.
    let name = group_with_hook(&asg, "lc-timeout", 3, 30, "CONTINUE").await;
    set_time_scale(&asg, &name, 0.05).await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    assert_eq!(waiting.len(), 2);
    let started = Instant::now();
    // Keep the second alive past three timeouts.
    while started.elapsed() < Duration::from_millis(4500) {
        heartbeat(&asg, &name, Target::Instance(&waiting[1]))
            .await
            .expect("heartbeat while waiting");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        ec2_state(&waiting[0]).await,
        "terminated",
        "timed out: CONTINUE"
    );
    assert_eq!(
        autoscaling_instance_state(&asg, &waiting[1]).await,
        "Terminating:Wait"
    );
    wait_until(
        "the unattended one times out",
        Duration::from_secs(10),
        || async { ec2_state(&waiting[1]).await == "terminated" },
    )
    .await;
    // DefaultResult ABANDON also ends in termination (ref §2.4).
    let name = group_with_hook(&asg, "lc-abandon", 2, 30, "ABANDON").await;
    set_time_scale(&asg, &name, 0.05).await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    wait_until(
        "ABANDON at timeout terminates",
        Duration::from_secs(10),
        || async { ec2_state(&waiting[0]).await == "terminated" },
    )
    .await;
}

/// ref §2.2, §2.4: heartbeats cannot extend the wait past the global timeout,
/// min(48 h, 100 x HeartbeatTimeout); here 48 h, since 100 x 7200 s is more.
#[tokio::test]
async fn heartbeats_cannot_outlast_the_global_timeout() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-global", 2, 7200, "ABANDON").await;
    let hooks = asg
        .describe_lifecycle_hooks()
        .auto_scaling_group_name(&name)
        .send()
        .await
        .expect("describing the hook");
    assert_eq!(hooks.lifecycle_hooks()[0].global_timeout(), Some(172_800));
    // 1/7200 speed: a 1 s heartbeat timeout, a 24 s global timeout.
    set_time_scale(&asg, &name, 1.0 / 7200.0).await;
    set_desired(&asg, &name, 1).await;
    let waiting = in_state(&describe_group(&asg, &name).await, "Terminating:Wait");
    let started = Instant::now();
    let mut refused_after = None;
    while started.elapsed() < Duration::from_secs(40) {
        if heartbeat(&asg, &name, Target::Instance(&waiting[0]))
            .await
            .is_err()
        {
            refused_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = refused_after.expect("the global timeout ends the wait");
    assert!(
        after >= Duration::from_secs(20),
        "heartbeats kept it alive until near the global timeout: {after:?}"
    );
    wait_until(
        "terminated at the global timeout",
        Duration::from_secs(10),
        || async { ec2_state(&waiting[0]).await == "terminated" },
    )
    .await;
}
