//! Terminations the Auto Scaling group starts itself wait for their jobs
//! (issue 16): the operator binary against the real API server, the moto
//! that enforces terminating lifecycle hooks (`tests/env/moto/asg_lifecycle_*.py`)
//! and the Nomad simulator. Every test ends by asserting the simulator saw
//! no VM killed under a live allocation.

#[path = "lifecycle_hooks/global.rs"]
mod global;
#[path = "lifecycle_hooks/paths.rs"]
mod paths;
#[path = "lifecycle_hooks/provider.rs"]
mod provider;
#[path = "lifecycle_hooks/queue.rs"]
mod queue;
// The contract tests' plain-HTTP SQS and EventBridge helpers; this binary
// uses a few of them.
#[allow(dead_code)]
#[path = "moto_lifecycle/support.rs"]
mod moto_support;
#[path = "lifecycle_hooks/refresh.rs"]
mod refresh;

use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use nomad_pool_operator::api::{RetirePhase, RetireReason};
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);
const TERMINATING: &str = "autoscaling:EC2_INSTANCE_TERMINATING";
const WAIT: &str = "Terminating:Wait";

/// A terminating hook put as its owner (Terraform, a person) would.
async fn put_hook(asg: &AsgClient, group: &str, hook: &str, heartbeat: i32) {
    asg.put_lifecycle_hook()
        .auto_scaling_group_name(group)
        .lifecycle_hook_name(hook)
        .lifecycle_transition(TERMINATING)
        .heartbeat_timeout(heartbeat)
        .default_result("ABANDON")
        .send()
        .await
        .expect("putting a terminating hook");
}

async fn set_desired(asg: &AsgClient, group: &str, desired: i32) {
    asg.set_desired_capacity()
        .auto_scaling_group_name(group)
        .desired_capacity(desired)
        .send()
        .await
        .expect("setting the desired capacity as someone else");
}

fn waiting(g: &Group) -> Vec<String> {
    (g.instances.iter())
        .filter(|i| i.lifecycle == WAIT)
        .map(|i| i.id.clone())
        .collect()
}

fn hook_spec(hook: serde_json::Value) -> serde_json::Value {
    json!({"provider": {"awsAutoScalingGroup": {"lifecycleHook": hook}},
           "disruption": {"maxUnavailable": 1}})
}

/// ref §1.2: a desired capacity lowered by someone else holds the victims;
/// they are drained, and let go only after their jobs end.
#[tokio::test(flavor = "multi_thread")]
async fn capacity_lowered_elsewhere_waits_for_the_jobs_of_the_held_vms() {
    let w = setup("hook-desired", 4).await;
    let jobs = w.busy_everywhere().await;
    // replicas unset: another tool owns the size; the hook protects the jobs.
    w.apply_pool(&w.pool_manifest(
        "pool",
        hook_spec(json!({"name": "drain", "mode": "Managed", "heartbeatTimeoutSeconds": 120})),
    ))
    .await;
    w.wait_status("pool", "the managed hook put and ready", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
    })
    .await;

    // Two held VMs, more than maxUnavailable: the budget refuses neither.
    set_desired(&w.asg, &w.group, 2).await;
    let held = waiting(&w.group().await);
    assert_eq!(held.len(), 2);
    let started = Instant::now();
    let st = w
        .wait_status("pool", "both held VMs' clients draining", T, |s| {
            s.retiring.len() == 2
                && s.retiring.iter().all(|r| {
                    r.reason == RetireReason::LifecycleHook
                        && r.phase == RetirePhase::Draining
                        && r.allocations_left == 1
                })
        })
        .await;
    // Seen within ~10 s of the action starting (issue 16).
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let mut instances: Vec<String> = st
        .retiring
        .iter()
        .filter_map(|r| r.instance_id.clone())
        .collect();
    instances.sort();
    let mut expected = held.clone();
    expected.sort();
    assert_eq!(instances, expected);

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        waiting(&w.group().await),
        held,
        "no VM lets go while its job runs"
    );

    // The jobs end: the actions are completed, the VMs go, nodes purged.
    for r in &st.retiring {
        let (_, alloc) = jobs.iter().find(|(n, _)| *n == r.node_id).unwrap();
        w.sim.finish(alloc).await;
    }
    w.wait_status("pool", "both retired", T, |s| {
        s.retiring.is_empty() && s.retired_total == 2
    })
    .await;
    wait_for("the held VMs to leave the group", T, || async {
        let g = w.group().await;
        (!g.instances.iter().any(|i| held.contains(&i.id))).then_some(())
    })
    .await;
    let g = w.group().await;
    assert_eq!(
        (g.desired, g.instances.len()),
        (2, 2),
        "the operator left the size alone"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// ref §1.2: the operator's own TerminateInstanceInAutoScalingGroup runs the
/// hook too; the operator lets its drained VM go at once instead of making
/// it wait out the hook's hour.
#[tokio::test(flavor = "multi_thread")]
async fn own_scale_in_with_a_hook_does_not_wait_out_the_heartbeat_timeout() {
    let w = setup("hook-own", 3).await;
    put_hook(&w.asg, &w.group, "drain", 3600).await;
    let jobs = w.busy_everywhere().await;
    let mut spec = hook_spec(json!({"name": "drain"}));
    spec["replicas"] = json!(2);
    w.apply_pool(&w.pool_manifest("pool", spec)).await;
    let st = w
        .wait_status("pool", "one client draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    let r = &st.retiring[0];
    assert_eq!(r.reason, RetireReason::ScaleIn);
    let (_, alloc) = jobs.iter().find(|(n, _)| *n == r.node_id).unwrap();
    w.sim.finish(alloc).await;
    let finished = Instant::now();
    w.wait_status("pool", "retired well before the hook's hour", T, |s| {
        s.retiring.is_empty() && s.retired_total == 1
    })
    .await;
    assert!(finished.elapsed() < Duration::from_secs(40));
    let g = w.group().await;
    assert_eq!((g.desired, g.instances.len()), (2, 2));
    assert!(waiting(&g).is_empty());
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// ref §2.4: heartbeats restart the timeout; jobs that run longer than the
/// heartbeat timeout (30 s, AWS's minimum) keep their VM held.
#[tokio::test(flavor = "multi_thread")]
async fn heartbeats_keep_a_held_vm_alive_past_its_heartbeat_timeout() {
    let w = setup("hook-heartbeat", 2).await;
    put_hook(&w.asg, &w.group, "drain", 30).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", hook_spec(json!({"name": "drain"}))))
        .await;
    w.wait_status("pool", "the hook confirmed", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
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
    // Twice the heartbeat timeout: without heartbeats ABANDON would apply
    // after 30 s and kill the job.
    tokio::time::sleep(Duration::from_secs(65)).await;
    assert_eq!(waiting(&w.group().await), held, "still held by heartbeats");
    let (_, alloc) = jobs
        .iter()
        .find(|(n, _)| *n == st.retiring[0].node_id)
        .unwrap();
    w.sim.finish(alloc).await;
    w.wait_status("pool", "retired", T, |s| {
        s.retiring.is_empty() && s.retired_total == 1
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// A hook the spec names that the group does not have: a clear condition
/// and Event, and nothing completed, not even another hook's actions.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_hook_is_reported_and_nothing_is_completed() {
    let w = setup("hook-missing", 3).await;
    put_hook(&w.asg, &w.group, "someone-elses", 3600).await;
    w.apply_pool(&w.pool_manifest("pool", hook_spec(json!({"name": "drain"}))))
        .await;
    let st = w
        .wait_status("pool", "the hook reported missing", T, |s| {
            condition(s, "LifecycleHook")
                .is_some_and(|c| c.status == "False" && c.reason == "HookNotFound")
        })
        .await;
    let message = &condition(&st, "LifecycleHook").unwrap().message;
    assert!(
        message.contains("no lifecycle hook named drain"),
        "{message}"
    );
    w.wait_event(
        "HookNotFound",
        |r, n| r == "HookNotFound" && n.contains("drain"),
        T,
    )
    .await;

    set_desired(&w.asg, &w.group, 2).await;
    let held = waiting(&w.group().await);
    assert_eq!(held.len(), 1);
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(waiting(&w.group().await), held, "nothing completed");
    assert!(
        w.status("pool").await.retiring.is_empty(),
        "nothing retired"
    );
    w.cleanup().await;
}

/// Restart safety: SIGKILLed while a held VM's client drains, the restarted
/// operator heartbeats again at its first look (the last heartbeat is long
/// past the 30 s timeout by the end) and completes the action it owns.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_resumes_heartbeats_and_completes_what_it_owns() {
    let test = "hook-sigkill";
    let mut w = World::new(
        test,
        WorldOptions {
            size: 2,
            ..Default::default()
        },
    )
    .await;
    w.create_aws_secret().await;
    // No leader election: a killed leader's lease would hold the restart
    // back for 15 s, half the heartbeat timeout.
    w.operator = Some(
        Operator::start_with(
            &w.namespace,
            test,
            "nomad-pool-operator",
            &["--leader-elect", "false"],
        )
        .await,
    );
    put_hook(&w.asg, &w.group, "drain", 30).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", hook_spec(json!({"name": "drain"}))))
        .await;
    w.wait_status("pool", "the hook confirmed", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
    })
    .await;
    set_desired(&w.asg, &w.group, 1).await;
    let held = waiting(&w.group().await);
    let st = w
        .wait_status("pool", "the held VM's client draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;

    let op = w.operator.as_mut().unwrap();
    op.kill().await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    op.restart();
    // 12 s down plus 30 s: past the timeout of any heartbeat sent before
    // the kill.
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        waiting(&w.group().await),
        held,
        "held by the restarted operator's heartbeats"
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
    wait_for("the held VM to leave the group", T, || async {
        let g = w.group().await;
        (!g.instances.iter().any(|i| held.contains(&i.id))).then_some(())
    })
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// With `replicas` set the pool owns the size: a capacity lowered elsewhere
/// is raised back, while the VMs the group already chose are drained first.
#[tokio::test(flavor = "multi_thread")]
async fn with_replicas_set_a_capacity_lowered_elsewhere_is_put_back_after_draining() {
    let w = setup("hook-putback", 3).await;
    put_hook(&w.asg, &w.group, "drain", 3600).await;
    let jobs = w.busy_everywhere().await;
    let mut spec = hook_spec(json!({"name": "drain"}));
    spec["replicas"] = json!(3);
    w.apply_pool(&w.pool_manifest("pool", spec)).await;
    w.wait_status("pool", "the hook confirmed", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
    })
    .await;
    set_desired(&w.asg, &w.group, 2).await;
    let held = waiting(&w.group().await);
    let st = w
        .wait_status("pool", "held VM draining, capacity put back", T, |s| {
            s.retiring.len() == 1
                && s.retiring[0].reason == RetireReason::LifecycleHook
                && s.retiring[0].phase == RetirePhase::Draining
                && s.group_desired_capacity == Some(3)
        })
        .await;
    w.wait_event("ScalingUp", |r, _| r == "ScalingUp", T).await;
    assert_eq!(waiting(&w.group().await), held, "its job still runs");
    let (_, alloc) = jobs
        .iter()
        .find(|(n, _)| *n == st.retiring[0].node_id)
        .unwrap();
    w.sim.finish(alloc).await;
    w.wait_status("pool", "retired, three clients again", T, |s| {
        s.retiring.is_empty() && s.retired_total == 1 && s.ready_nodes == 3
    })
    .await;
    let g = w.group().await;
    assert_eq!((g.desired, g.instances.len()), (3, 3));
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
