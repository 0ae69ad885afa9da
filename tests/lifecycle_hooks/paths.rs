//! The other ways the group removes instances (ref §1.2): a scaling policy
//! executed, and TerminateInstanceInAutoScalingGroup without decrement by
//! someone else. Both hold their VM until the operator drained it.

use std::time::Duration;

use nomad_pool_operator::api::{RetirePhase, RetireReason};
use npo_testkit::*;
use serde_json::json;

use super::{hook_spec, put_hook, waiting};

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_scaling_policy_and_a_terminate_by_someone_else_wait_for_the_jobs() {
    let w = setup("hook-paths", 4).await;
    put_hook(&w.asg, &w.group, "drain", 3600).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", hook_spec(json!({"name": "drain"}))))
        .await;
    w.wait_status("pool", "the hook confirmed", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
    })
    .await;

    w.asg
        .put_scaling_policy()
        .auto_scaling_group_name(&w.group)
        .policy_name("shrink")
        .adjustment_type("ChangeInCapacity")
        .scaling_adjustment(-1)
        .send()
        .await
        .expect("putting a scaling policy");
    w.asg
        .execute_policy()
        .auto_scaling_group_name(&w.group)
        .policy_name("shrink")
        .honor_cooldown(false)
        .send()
        .await
        .expect("executing the scaling policy");
    let in_service = w.group().await.instances;
    let victim = in_service
        .iter()
        .find(|i| i.lifecycle == "InService")
        .unwrap()
        .id
        .clone();
    w.asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&victim)
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .expect("terminating without decrement as someone else");
    let held = waiting(&w.group().await);
    assert_eq!(held.len(), 2, "{held:?}");

    let st = w
        .wait_status("pool", "both held VMs' clients draining", T, |s| {
            s.retiring.len() == 2
                && s.retiring.iter().all(|r| {
                    r.reason == RetireReason::LifecycleHook && r.phase == RetirePhase::Draining
                })
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut still = waiting(&w.group().await);
    still.sort();
    let mut expected = held.clone();
    expected.sort();
    assert_eq!(still, expected, "jobs run: nothing let go");
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
    // The policy lowered the capacity by one; the terminate kept it and
    // launched a replacement.
    let g = w.group().await;
    assert_eq!((g.desired, g.instances.len()), (3, 3));
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
