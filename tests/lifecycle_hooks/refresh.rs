//! A safe AMI rollout (issue 16): StartInstanceRefresh on the group replaces
//! every client, each replaced VM held by the hook until the operator has
//! drained its client (ref §1.2, "Instance Refresh: Replacement instances").

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_autoscaling::types::{InstanceRefreshStatus, RefreshPreferences};
use npo_testkit::*;
use serde_json::json;

use super::{hook_spec, put_hook};

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_refresh_replaces_every_client_after_its_jobs() {
    let w = setup("hook-refresh", 3).await;
    put_hook(&w.asg, &w.group, "drain", 3600).await;
    let original: HashSet<String> = w
        .group()
        .await
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    // Jobs that outlive the first batch's detection: the first VM replaced
    // waits for its job.
    for n in w.ready_nodes().await {
        let id = n["id"].as_str().unwrap();
        w.sim
            .batch_on(id, &format!("ci-build-{}", &id[..8]), Some(15.0))
            .await;
    }
    w.apply_pool(&w.pool_manifest("pool", hook_spec(json!({"name": "drain"}))))
        .await;
    w.wait_status("pool", "the hook confirmed", Duration::from_secs(60), |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
    })
    .await;

    // 66 % of three must stay healthy: one VM at a time.
    let preferences = RefreshPreferences::builder()
        .min_healthy_percentage(66)
        .instance_warmup(0)
        .build();
    w.asg
        .start_instance_refresh()
        .auto_scaling_group_name(&w.group)
        .preferences(preferences)
        .send()
        .await
        .expect("starting an instance refresh");

    wait_for(
        "the refresh to finish",
        Duration::from_secs(180),
        || async {
            let out = w
                .asg
                .describe_instance_refreshes()
                .auto_scaling_group_name(&w.group)
                .send()
                .await
                .expect("describing the refresh");
            let status = out
                .instance_refreshes()
                .first()
                .and_then(|r| r.status().cloned());
            (status == Some(InstanceRefreshStatus::Successful)).then_some(())
        },
    )
    .await;
    let st = w
        .wait_status(
            "pool",
            "every replaced client retired",
            Duration::from_secs(60),
            |s| s.retiring.is_empty() && s.retired_total == 3,
        )
        .await;
    assert!(
        st.retirements
            .iter()
            .all(|r| r.spec.reason == nomad_pool_operator::api::RetireReason::LifecycleHook),
        "every replacement went through the hook"
    );
    let g = w.group().await;
    assert_eq!(g.instances.len(), 3);
    assert!(
        g.instances
            .iter()
            .all(|i| !original.contains(&i.id) && i.lifecycle == "InService")
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
