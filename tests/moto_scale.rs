//! Contract tests of the moto wrapper's scale patches (`tests/env/moto/
//! ec2_instance_index.py`, `asg_instance_index.py`, `asg_group_render.py`):
//! they make moto's per-call cost independent of the group's size and must
//! change nothing it answers.
//!
//! - `tests/env/moto/check/same_answers.py` starts moto as shipped and moto
//!   through the wrapper, seeded alike, drives both through the same calls
//!   (groups from a launch configuration and a launch template, terminates with
//!   and without decrement, protection, health, standby, detach, scale out and
//!   in, EC2 and tag lookups, unknown IDs, a reset) and fails on any
//!   difference in status or body but the clock.
//! - Through the SDK the operator uses, on a group large enough that a scan
//!   would show, the answers follow the API reference: DescribeAutoScalingGroups
//!   lists every instance with its ID, zone, `InService` lifecycle state and
//!   `Healthy` status; DescribeAutoScalingInstances answers for one ID with
//!   its group; TerminateInstanceInAutoScalingGroup lowers the desired
//!   capacity by one with ShouldDecrementDesiredCapacity and otherwise keeps it
//!   and launches a replacement; SetDesiredCapacity launches or removes
//!   instances to match.
//! - Terminates with decrement sent side by side all take effect, none
//!   launches a replacement (`tests/env/moto/asg_atomic_capacity.py`).

use std::collections::BTreeSet;
use std::process::Command;

use aws_sdk_autoscaling::Client;
use npo_testkit::*;

#[test]
fn the_wrapper_answers_exactly_what_moto_answers() {
    let python = env_var("NPO_MOTO_PYTHON");
    let script = repo_root().join("tests/env/moto/check/same_answers.py");
    let out = Command::new(&python)
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {python} {}: {e}", script.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the wrapper answered differently from moto:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("same answers from moto and the wrapper"),
        "the check did not run to its end:\n{stdout}\n{stderr}"
    );
}

const SIZE: usize = 300;

async fn ids(asg: &Client, group: &str) -> BTreeSet<String> {
    describe_group(asg, group)
        .await
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// The group's one record as DescribeAutoScalingInstances gives it:
/// (group name, lifecycle state).
async fn record(asg: &Client, id: &str) -> Vec<(String, String)> {
    let out = asg
        .describe_auto_scaling_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("describing one instance");
    out.auto_scaling_instances()
        .iter()
        .map(|d| {
            assert_eq!(d.instance_id(), Some(id));
            (
                d.auto_scaling_group_name().unwrap_or_default().to_owned(),
                d.lifecycle_state().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn terminate(asg: &Client, id: &str, decrement: bool) {
    let out = asg
        .terminate_instance_in_auto_scaling_group()
        .instance_id(id)
        .should_decrement_desired_capacity(decrement)
        .send()
        .await
        .expect("terminating an instance");
    let activity = out.activity().expect("an activity");
    assert_eq!(
        activity.description(),
        Some(format!("Terminating EC2 instance: {id}").as_str())
    );
}

#[tokio::test]
async fn a_large_group_answers_as_the_api_reference_says() {
    let asg = asg_client();
    let name = unique("scale");
    let size = SIZE as i32;
    create_group(&asg, &name, 0, size + 10, size).await;

    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&name)
        .send()
        .await
        .expect("describing the group");
    let group = &out.auto_scaling_groups()[0];
    assert_eq!(group.desired_capacity(), Some(size));
    assert_eq!(group.instances().len(), SIZE);
    for i in group.instances() {
        assert!(i.instance_id().is_some_and(|id| id.starts_with("i-")));
        assert_eq!(i.lifecycle_state().map(|s| s.as_str()), Some("InService"));
        assert_eq!(i.health_status(), Some("Healthy"));
        assert_eq!(i.availability_zone(), Some("us-east-1a"));
        assert_eq!(i.protected_from_scale_in(), Some(false));
    }
    let first: Vec<String> = group
        .instances()
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_owned))
        .collect();
    assert_eq!(
        record(&asg, &first[SIZE / 2]).await,
        vec![(name.clone(), "InService".to_owned())]
    );

    // With decrement, ten in a row: one less each time, nothing launched.
    for id in &first[..10] {
        terminate(&asg, id, true).await;
        assert_eq!(record(&asg, id).await, vec![], "{id} left the group");
    }
    let g = describe_group(&asg, &name).await;
    assert_eq!((g.desired, g.instances.len()), (size - 10, SIZE - 10));
    // A later instance is still found by ID after the list changed under it.
    assert_eq!(
        record(&asg, &first[SIZE - 1]).await,
        vec![(name.clone(), "InService".to_owned())]
    );

    // Without decrement: desired kept, a replacement launched in service.
    let before = ids(&asg, &name).await;
    terminate(&asg, &first[10], false).await;
    let g = describe_group(&asg, &name).await;
    assert_eq!((g.desired, g.instances.len()), (size - 10, SIZE - 10));
    let after: BTreeSet<String> = g.instances.iter().map(|i| i.id.clone()).collect();
    let launched: Vec<&String> = after.difference(&before).collect();
    assert_eq!(launched.len(), 1, "one replacement");
    assert!(!after.contains(&first[10]));
    assert_eq!(
        record(&asg, launched[0]).await,
        vec![(name.clone(), "InService".to_owned())]
    );

    for desired in [size + 5, size - 100] {
        asg.set_desired_capacity()
            .auto_scaling_group_name(&name)
            .desired_capacity(desired)
            .send()
            .await
            .expect("setting the desired capacity");
        let g = describe_group(&asg, &name).await;
        assert_eq!(g.desired, desired);
        assert_eq!(g.instances.len(), desired as usize);
        assert!(g.instances.iter().all(|i| i.lifecycle == "InService"));
    }
}

const ATOMIC_SIZE: usize = 2_000;

/// AWS applies concurrent terminates with decrement one by one: every one
/// lowers the desired capacity and none launches a replacement. moto's
/// read-modify-write of the capacity can interleave (the bench once lost 5
/// of 200 at 5,000 instances; not reproduced here since the index patch);
/// the wrapper applies each call atomically (`asg_atomic_capacity`), the
/// precondition for the bench's proxy sending them side by side.
#[tokio::test]
async fn concurrent_terminates_with_decrement_all_take_effect() {
    use futures::StreamExt;
    let asg = asg_client();
    let name = unique("atomic");
    // Many calls, many at once: the more moto's calls overlap, the more a
    // lost decrement would show.
    let (size, gone) = (ATOMIC_SIZE as i32, ATOMIC_SIZE / 2);
    create_group(&asg, &name, 0, size + 10, size).await;
    let before = ids(&asg, &name).await;
    let leaving: Vec<String> = before.iter().take(gone).cloned().collect();
    futures::stream::iter(leaving.iter())
        .for_each_concurrent(32, |id| terminate(&asg, id, true))
        .await;
    let g = describe_group(&asg, &name).await;
    let after: BTreeSet<String> = g.instances.iter().map(|i| i.id.clone()).collect();
    let launched: Vec<&String> = after.difference(&before).collect();
    assert_eq!(g.desired, size - gone as i32, "every decrement applied");
    assert!(launched.is_empty(), "replacements launched: {launched:?}");
    assert_eq!(after.len(), ATOMIC_SIZE - gone);
}
