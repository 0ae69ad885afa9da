//! Contract tests for the autoscaler (§2, §5.1.10): the resource, the
//! group's `status.autoscaler`, and the fake's acting autoscaler (an `ON`
//! autoscaler scales a group back to its minimum after the cool-down).

mod common;

use common::*;
use serde_json::json;

#[tokio::test]
async fn an_attached_autoscaler_is_reported_on_the_group_and_readable() {
    let t = start().await;
    t.zonal("pool", 4).await;
    t.ctl(
        "/sim/autoscalers",
        json!({"project": PROJECT, "zone": ZONE, "name": "pool-as", "target": "pool",
               "min_num_replicas": 3, "max_num_replicas": 10, "mode": "ON"}),
    )
    .await;
    let g = t.igm("pool").await;
    let url = format!("{URL_BASE}projects/proj/zones/{ZONE}/autoscalers/pool-as");
    // §1.1: status.autoscaler is the URL of the Autoscaler.
    assert_eq!(g["status"]["autoscaler"], url);
    let a = t.get_ok(&format!("{Z}/autoscalers/pool-as")).await;
    // §2, §5.1.10
    assert_eq!(a["kind"], "compute#autoscaler");
    assert_eq!(a["selfLink"], url);
    assert_eq!(a["target"], g["selfLink"]);
    assert_eq!(a["autoscalingPolicy"]["minNumReplicas"], 3);
    assert_eq!(a["autoscalingPolicy"]["maxNumReplicas"], 10);
    assert_eq!(a["autoscalingPolicy"]["mode"], "ON");
    assert_eq!(a["status"], "ACTIVE");
    assert_eq!(a["recommendedSize"], 4);
    assert!(a["id"].as_str().unwrap().parse::<u64>().is_ok());
    let (s, _) = err(t.get(&format!("{Z}/autoscalers/none")).await).await;
    assert_eq!(s, 404);
    // Regional autoscalers live under regions/ (§4.3).
    t.ctl(
        "/sim/groups",
        json!({"project": PROJECT, "region": REGION, "name": "rg"}),
    )
    .await;
    t.ctl(
        "/sim/autoscalers",
        json!({"project": PROJECT, "region": REGION, "name": "rg-as", "target": "rg",
               "min_num_replicas": 0, "max_num_replicas": 5, "mode": "ONLY_SCALE_OUT"}),
    )
    .await;
    let a = t.get_ok(&format!("{R}/autoscalers/rg-as")).await;
    assert_eq!(
        a["region"],
        format!("{URL_BASE}projects/proj/regions/{REGION}")
    );
    assert_eq!(a["autoscalingPolicy"]["mode"], "ONLY_SCALE_OUT");
}

#[tokio::test]
async fn an_on_autoscaler_scales_a_group_back_to_its_minimum_after_the_cool_down() {
    let t = start().await;
    let n = t.zonal("pool", 4).await;
    t.ctl(
        "/sim/autoscalers",
        json!({"project": PROJECT, "zone": ZONE, "name": "as", "target": "pool",
               "min_num_replicas": 3, "max_num_replicas": 10, "mode": "ON",
               "cool_down_period_sec": 60}),
    )
    .await;
    let p = format!("{Z}/instanceGroupManagers/pool/deleteInstances");
    t.post_ok(
        &p,
        Some(json!({"instances": [partial(&n[0]), partial(&n[1])]})),
    )
    .await;
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    // §2: minNumReplicas is the least the autoscaler scales in to.
    assert_eq!(
        t.get_ok(&format!("{Z}/autoscalers/as")).await["recommendedSize"],
        3
    );
    t.advance(59.0).await;
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    t.advance(1.0).await;
    let g = t.igm("pool").await;
    assert_eq!(
        (
            g["targetSize"].clone(),
            g["currentActions"]["creating"].clone()
        ),
        (json!(3), json!(1))
    );
}

#[tokio::test]
async fn off_and_scale_out_only_autoscalers_do_not_scale_a_group_in() {
    let t = start().await;
    let a = t.zonal("a", 4).await;
    t.zonal("b", 2).await;
    t.ctl(
        "/sim/autoscalers",
        json!({"project": PROJECT, "zone": ZONE, "name": "as-a", "target": "a",
               "min_num_replicas": 3, "max_num_replicas": 10, "mode": "OFF"}),
    )
    .await;
    t.ctl(
        "/sim/autoscalers",
        json!({"project": PROJECT, "zone": ZONE, "name": "as-b", "target": "b",
               "min_num_replicas": 0, "max_num_replicas": 10, "mode": "ONLY_SCALE_OUT",
               "recommended_size": 1, "cool_down_period_sec": 0}),
    )
    .await;
    let p = format!("{Z}/instanceGroupManagers/a/deleteInstances");
    t.post_ok(
        &p,
        Some(json!({"instances": [partial(&a[0]), partial(&a[1])]})),
    )
    .await;
    t.advance(600.0).await;
    // OFF only reports.
    assert_eq!(t.igm("a").await["targetSize"], 2);
    // ONLY_SCALE_OUT does not shrink to its lower recommendation.
    assert_eq!(t.igm("b").await["targetSize"], 2);
}
