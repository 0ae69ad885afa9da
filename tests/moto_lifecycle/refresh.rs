//! Contract tests of `tests/env/moto/asg_instance_refresh.py`: an instance
//! refresh replaces instances in batches bounded by MinHealthyPercentage and
//! each replaced instance goes through the terminating hook (ref §1.2,
//! "Instance Refresh: Replacement instances"); the API model's status values
//! and errors (botocore `autoscaling` 2011-01-01, quoted in the module).

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::types::{InstanceRefresh, InstanceRefreshStatus, RefreshPreferences};
use npo_testkit::*;

use super::support::*;

async fn start(asg: &AsgClient, group: &str, min_healthy: i32) -> String {
    let preferences = RefreshPreferences::builder()
        .min_healthy_percentage(min_healthy)
        .instance_warmup(0)
        .build();
    asg.start_instance_refresh()
        .auto_scaling_group_name(group)
        .preferences(preferences)
        .send()
        .await
        .expect("starting an instance refresh")
        .instance_refresh_id()
        .expect("an instance refresh ID")
        .to_string()
}

async fn refresh(asg: &AsgClient, group: &str) -> InstanceRefresh {
    let out = asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .expect("describing instance refreshes");
    out.instance_refreshes()
        .first()
        .expect("one refresh")
        .clone()
}

/// The instances in Terminating:Wait, once there are any.
async fn next_waiting(asg: &AsgClient, group: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let waiting = in_state(&describe_group(asg, group).await, "Terminating:Wait");
        if !waiting.is_empty() {
            return waiting;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no instance waits in the hook"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the next batch in Terminating:Wait, checks its size and that
/// the group kept its desired capacity in service, then completes it.
async fn replace_batch(asg: &AsgClient, group: &str, size: usize, original: &HashSet<String>) {
    let batch = next_waiting(asg, group).await;
    assert_eq!(batch.len(), size, "batch {batch:?}");
    assert!(
        batch.iter().all(|id| original.contains(id)),
        "only original instances are replaced"
    );
    let now = describe_group(asg, group).await;
    assert_eq!(
        in_state(&now, "InService").len() as i32,
        now.desired,
        "replacements launched"
    );
    for id in &batch {
        complete(asg, group, HOOK, Target::Instance(id), "CONTINUE")
            .await
            .expect("completing a replaced instance's action");
    }
    wait_until(
        "the batch leaves the group",
        Duration::from_secs(10),
        || async {
            let ids = ids(&describe_group(asg, group).await);
            batch.iter().all(|id| !ids.contains(id))
        },
    )
    .await;
}

#[tokio::test]
async fn an_instance_refresh_replaces_every_instance_through_the_hook() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-refresh", 4, 3600, "ABANDON").await;
    let original: HashSet<String> = ids(&describe_group(&asg, &name).await)
        .into_iter()
        .collect();
    // 50 % of 4 must stay healthy: two at a time.
    let id = start(&asg, &name, 50).await;
    let second = asg
        .start_instance_refresh()
        .auto_scaling_group_name(&name)
        .send()
        .await;
    let err = second.expect_err("one active refresh per group");
    assert_eq!(err.code(), Some("InstanceRefreshInProgress"));
    assert_eq!(
        err.message(),
        Some(
            "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh."
        )
    );

    replace_batch(&asg, &name, 2, &original).await;
    let midway = refresh(&asg, &name).await;
    assert_eq!(midway.instance_refresh_id(), Some(id.as_str()));
    assert!(matches!(
        midway.status(),
        Some(InstanceRefreshStatus::InProgress | InstanceRefreshStatus::Pending)
    ));
    replace_batch(&asg, &name, 2, &original).await;

    wait_until("the refresh succeeds", Duration::from_secs(10), || async {
        refresh(&asg, &name).await.status() == Some(&InstanceRefreshStatus::Successful)
    })
    .await;
    let done = refresh(&asg, &name).await;
    assert_eq!(done.percentage_complete(), Some(100));
    assert_eq!(done.instances_to_update(), Some(0));
    assert!(done.end_time().is_some());
    let group = describe_group(&asg, &name).await;
    assert_eq!(in_state(&group, "InService").len(), 4);
    assert!(
        ids(&group).iter().all(|id| !original.contains(id)),
        "every instance replaced"
    );
    for id in &original {
        assert_eq!(ec2_state(id).await, "terminated");
    }
}

#[tokio::test]
async fn min_healthy_100_replaces_one_at_a_time_and_cancel_waits_for_the_batch() {
    let asg = asg_client();
    let name = group_with_hook(&asg, "lc-cancel", 3, 3600, "ABANDON").await;
    let original: HashSet<String> = ids(&describe_group(&asg, &name).await)
        .into_iter()
        .collect();
    start(&asg, &name, 100).await;
    replace_batch(&asg, &name, 1, &original).await;

    let waiting = next_waiting(&asg, &name).await;
    assert_eq!(waiting.len(), 1);
    asg.cancel_instance_refresh()
        .auto_scaling_group_name(&name)
        .send()
        .await
        .expect("cancelling the refresh");
    assert_eq!(
        refresh(&asg, &name).await.status(),
        Some(&InstanceRefreshStatus::Cancelling)
    );
    let again = asg
        .cancel_instance_refresh()
        .auto_scaling_group_name(&name)
        .send()
        .await;
    let err = again.expect_err("nothing left to cancel");
    assert_eq!(err.code(), Some("ActiveInstanceRefreshNotFound"));
    assert!(
        err.message()
            .unwrap_or_default()
            .starts_with("No in progress or pending Instance Refresh found"),
        "{err:?}"
    );

    // Cancelling does not skip the hook: the waiting instance still waits.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        autoscaling_instance_state(&asg, &waiting[0]).await,
        "Terminating:Wait"
    );
    complete(&asg, &name, HOOK, Target::Instance(&waiting[0]), "CONTINUE")
        .await
        .expect("completing the last replaced instance");
    wait_until(
        "the refresh is cancelled",
        Duration::from_secs(10),
        || async { refresh(&asg, &name).await.status() == Some(&InstanceRefreshStatus::Cancelled) },
    )
    .await;
    let group = describe_group(&asg, &name).await;
    assert_eq!(in_state(&group, "InService").len(), 3);
    let kept = ids(&group)
        .iter()
        .filter(|id| original.contains(*id))
        .count();
    assert_eq!(kept, 1, "the third original instance was not replaced");
}
