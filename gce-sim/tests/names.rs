//! Generated instance names (README, "Instance names"): base name + 4 characters,
//! unique per project and zone. At the zonal cap of 1,000 instances (§1.1)
//! a repeated draw is likely (about one group in four), and it must not
//! cost the group an instance.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{Value, json};

/// Distinct names and distinct ids of a zonal group's managed instances,
/// and its targetSize.
async fn distinct(t: &T, group: &str) -> (usize, usize, i64) {
    let list = t.instances(group).await;
    let names: BTreeSet<&str> = list.iter().map(|i| i["name"].as_str().unwrap()).collect();
    let ids: BTreeSet<&str> = list.iter().filter_map(|i| i["id"].as_str()).collect();
    let target = t.igm(group).await["targetSize"].as_i64().unwrap();
    (names.len(), ids.len(), target)
}

#[tokio::test]
async fn full_zonal_groups_get_a_thousand_distinct_instances() {
    let t = start().await;
    // Several groups from one seeded generator: with repeats this likely,
    // at least one of them draws a name twice.
    for g in ["pool-a", "pool-b", "pool-c", "pool-d", "pool-e", "pool-f"] {
        t.ctl(
            "/sim/groups",
            json!({"project": PROJECT, "zone": ZONE, "name": g, "target_size": 1000,
                   "base_instance_name": "ci"}),
        )
        .await;
        assert_eq!(distinct(&t, g).await, (1000, 1000, 1000), "{g}");
    }
}

#[tokio::test]
async fn a_group_resized_to_a_thousand_gets_a_thousand_distinct_instances() {
    let t = start().await;
    t.zonal("grown", 0).await;
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/grown/resize?size=1000"),
        None,
    )
    .await;
    t.advance(31.0).await;
    assert_eq!(distinct(&t, "grown").await, (1000, 1000, 1000));
    let running = t
        .instances("grown")
        .await
        .iter()
        .filter(|i| i["instanceStatus"] == "RUNNING" && i["currentAction"] == "NONE")
        .count();
    assert_eq!(running, 1000);
}

#[tokio::test]
async fn a_name_taken_in_the_zone_by_another_group_is_not_generated() {
    let t = start().await;
    // Two groups with one base name in one zone: their 2,000 generated
    // names are all distinct (names are unique per project and zone).
    let mut all = BTreeSet::new();
    for g in ["one", "two"] {
        let v: Value = t
            .ctl(
                "/sim/groups",
                json!({"project": PROJECT, "zone": ZONE, "name": g, "target_size": 1000,
                       "base_instance_name": "ci"}),
            )
            .await;
        all.extend(names(&v["managed_instances"]));
    }
    assert_eq!(all.len(), 2000);
}
