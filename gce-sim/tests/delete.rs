//! Contract tests for deleteInstances (§1.4, §5.1.5, §5.3), abandonInstances
//! and resize (§1.5) and recreateInstances, and requestId de-duplication
//! (§1.4, §5.1.9).

mod common;

use common::*;
use serde_json::{Value, json};

const RID: &str = "6f1c2a9e-0b3d-4c5e-8f70-112233445566";

fn del(group: &str) -> String {
    format!("{Z}/instanceGroupManagers/{group}/deleteInstances")
}

fn state(list: &[Value], name: &str) -> Option<(String, String)> {
    list.iter().find(|i| i["name"] == name).map(|i| {
        (
            i["currentAction"].as_str().unwrap().to_string(),
            i["instanceStatus"].as_str().unwrap_or("").to_string(),
        )
    })
}

#[tokio::test]
async fn delete_lowers_target_size_marks_deleting_then_the_instance_goes() {
    let t = start().await;
    let n = t.zonal("pool", 3).await;
    let op = t
        .post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    assert_eq!(op["kind"], "compute#operation");
    assert_eq!(
        op["operationType"],
        "compute.instanceGroupManagers.deleteInstances"
    );
    // §1.4: targetSize drops by the number deleted. The fake's choice where
    // §6 found nothing: it drops when the request is accepted, before DONE.
    assert_ne!(op["status"], "DONE");
    let g = t.igm("pool").await;
    assert_eq!(g["targetSize"], 2);
    assert_eq!(g["currentActions"]["deleting"], 1);
    assert_eq!(g["currentActions"]["none"], 2);
    assert_eq!(g["status"]["isStable"], false);
    // §1.4: DONE when scheduled, while the instance is still being deleted.
    let (done, _) = poll_done(&t, &op).await;
    assert!(done.get("error").is_none());
    let list = t.instances("pool").await;
    assert_eq!(state(&list, &n[0]).unwrap().0, "DELETING");
    assert_eq!(t.igm("pool").await["status"]["isStable"], false);
    // Gone after the configured 30 simulated seconds.
    t.advance(29.0).await;
    assert!(state(&t.instances("pool").await, &n[0]).is_some());
    t.advance(1.0).await;
    let list = t.instances("pool").await;
    assert!(state(&list, &n[0]).is_none());
    assert_eq!(list.len(), 2);
    let g = t.igm("pool").await;
    assert_eq!(
        (g["targetSize"].clone(), g["status"]["isStable"].clone()),
        (json!(2), json!(true))
    );
}

#[tokio::test]
async fn full_and_partial_urls_are_accepted_and_malformed_or_foreign_ones_fail_the_request() {
    let t = start().await;
    let n = t.zonal("pool", 4).await;
    let body = json!({"instances": [full(&n[0]), partial(&n[1]),
        format!("projects/{PROJECT}/zones/{ZONE}/instances/{}", n[2])]});
    t.post_ok(&del("pool"), Some(body)).await;
    assert_eq!(t.igm("pool").await["targetSize"], 1);
    // §1.4: a malformed URL or another zone always fails, skip or not.
    for bad in [
        "instances/x".to_string(),
        format!("zones/us-central1-b/instances/{}", n[3]),
        format!("{URL_BASE}projects/other/zones/{ZONE}/instances/{}", n[3]),
    ] {
        for skip in [false, true] {
            let body =
                json!({"instances": [partial(&n[3]), bad], "skipInstancesOnValidationError": skip});
            let (s, e) = err(t.post(&del("pool"), Some(body)).await).await;
            assert_eq!(
                (s, e["error"]["errors"][0]["reason"].clone()),
                (400, json!("invalid"))
            );
        }
    }
    assert_eq!(t.igm("pool").await["targetSize"], 1);
    assert_eq!(state(&t.instances("pool").await, &n[3]).unwrap().0, "NONE");
    // §1.4: at most 1000 instances per request.
    let many: Vec<String> = (0..1001).map(|i| partial(&format!("x-{i}"))).collect();
    let (s, _) = err(t.post(&del("pool"), Some(json!({"instances": many}))).await).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn without_skip_a_non_member_fails_the_operation_and_deletes_nothing() {
    let t = start().await;
    let n = t.zonal("pool", 2).await;
    let body = json!({"instances": [partial(&n[0]), partial("not-in-group")]});
    let op = t.post_ok(&del("pool"), Some(body)).await;
    // §1.4 "the operation fails"; §5.1.7 failed-operation shape.
    let (done, _) = poll_done(&t, &op).await;
    assert_eq!(done["error"]["errors"][0]["code"], "CONDITION_NOT_MET");
    assert_eq!(done["httpErrorStatusCode"], 412);
    assert_eq!(done["httpErrorMessage"], "PRECONDITION FAILED");
    let g = t.igm("pool").await;
    assert_eq!(g["targetSize"], 2);
    assert_eq!(state(&t.instances("pool").await, &n[0]).unwrap().0, "NONE");
}

#[tokio::test]
async fn with_skip_non_members_and_deleting_ones_are_skipped_and_not_counted() {
    let t = start().await;
    let n = t.zonal("pool", 3).await;
    t.post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    // §5.3: deleting the same instance again with skip=true leaves
    // targetSize unchanged; the other member is deleted.
    let body = json!({"instances": [partial(&n[0]), partial("ghost"), partial(&n[1])],
                      "skipInstancesOnValidationError": true});
    let op = t.post_ok(&del("pool"), Some(body)).await;
    let (done, _) = poll_done(&t, &op).await;
    assert!(done.get("error").is_none(), "{done}");
    assert_eq!(t.igm("pool").await["targetSize"], 1);
    // Without skip the already-DELETING instance fails the operation.
    let op = t
        .post_ok(&del("pool"), Some(json!({"instances": [partial(&n[0])]})))
        .await;
    assert!(poll_done(&t, &op).await.0.get("error").is_some());
    assert_eq!(t.igm("pool").await["targetSize"], 1);
    // §5.3: once the instance is gone, a repeated delete with skip=true
    // still leaves targetSize alone.
    t.advance(30.0).await;
    assert!(state(&t.instances("pool").await, &n[0]).is_none());
    let body = json!({"instances": [partial(&n[0])], "skipInstancesOnValidationError": true});
    let op = t.post_ok(&del("pool"), Some(body)).await;
    assert!(poll_done(&t, &op).await.0.get("error").is_none());
    assert_eq!(t.igm("pool").await["targetSize"], 1);
}

#[tokio::test]
async fn the_same_request_id_returns_the_same_operation_and_has_no_second_effect() {
    let t = start().await;
    let n = t.zonal("pool", 3).await;
    let p = format!("{}?requestId={RID}", del("pool"));
    let first = t
        .post_ok(&p, Some(json!({"instances": [partial(&n[0])]})))
        .await;
    // §1.4: the Operation echoes requestId as clientOperationId.
    assert_eq!(first["clientOperationId"], RID);
    // §5.1.9: a replay (even naming another instance) is the same operation.
    let again = t
        .post_ok(&p, Some(json!({"instances": [partial(&n[1])]})))
        .await;
    assert_eq!(again["name"], first["name"]);
    assert_eq!(again["id"], first["id"]);
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    assert_eq!(state(&t.instances("pool").await, &n[1]).unwrap().0, "NONE");
    // After DONE and after the instance is gone, still no second effect.
    poll_done(&t, &first).await;
    t.advance(60.0).await;
    let late = t
        .post_ok(&p, Some(json!({"instances": [partial(&n[1])]})))
        .await;
    assert_eq!(
        (late["name"].clone(), late["status"].clone()),
        (first["name"].clone(), json!("DONE"))
    );
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    // §1.4: requestId must be a UUID, not all zeros.
    for bad in ["abc", "00000000-0000-0000-0000-000000000000"] {
        let p = format!("{}?requestId={bad}", del("pool"));
        let (s, _) = err(t
            .post(&p, Some(json!({"instances": [partial(&n[2])]})))
            .await)
        .await;
        assert_eq!(s, 400, "{bad}");
    }
}

#[tokio::test]
async fn bodies_with_unknown_fields_or_wrong_types_get_googles_400() {
    let t = start().await;
    let n = t.zonal("pool", 1).await;
    let (s, e) = err(t
        .post(
            &del("pool"),
            Some(json!({"instances": [partial(&n[0])], "skipInstances": true})),
        )
        .await)
    .await;
    assert_eq!(s, 400);
    assert_eq!(
        e["error"]["message"],
        "Invalid JSON payload received. Unknown name \"skipInstances\": Cannot find field."
    );
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT");
    let (s, _) = err(t.post(&del("pool"), Some(json!({"instances": "x"}))).await).await;
    assert_eq!(s, 400);
    let r = t
        .http
        .post(t.u(&del("pool")))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // listManagedInstances and resize take the empty message only (§4.3).
    let p = format!("{Z}/instanceGroupManagers/pool/listManagedInstances");
    let (s, _) = err(t.post(&p, Some(json!({"maxResults": 2}))).await).await;
    assert_eq!(s, 400);
    assert_eq!(t.igm("pool").await["targetSize"], 1);
}

#[tokio::test]
async fn abandon_lowers_target_size_and_recreate_keeps_it_with_a_new_vm() {
    let t = start().await;
    let n = t.zonal("pool", 3).await;
    let before = t.instances("pool").await;
    let p = format!("{Z}/instanceGroupManagers/pool/abandonInstances");
    let op = t
        .post_ok(&p, Some(json!({"instances": [partial(&n[0])]})))
        .await;
    assert_eq!(
        op["operationType"],
        "compute.instanceGroupManagers.abandonInstances"
    );
    // §1.5: abandon reduces targetSize by the number abandoned.
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    assert_eq!(
        state(&t.instances("pool").await, &n[0]).unwrap().0,
        "ABANDONING"
    );
    // abandonInstances has no skip flag.
    let (s, _) = err(t
        .post(
            &p,
            Some(json!({"instances": [partial(&n[1])], "skipInstancesOnValidationError": true})),
        )
        .await)
    .await;
    assert_eq!(s, 400);
    let p = format!("{Z}/instanceGroupManagers/pool/recreateInstances");
    t.post_ok(&p, Some(json!({"instances": [partial(&n[1])]})))
        .await;
    assert_eq!(t.igm("pool").await["targetSize"], 2);
    assert_eq!(
        state(&t.instances("pool").await, &n[1]).unwrap().0,
        "RECREATING"
    );
    t.advance(60.0).await;
    let after = t.instances("pool").await;
    assert!(state(&after, &n[0]).is_none());
    let id = |l: &[Value]| l.iter().find(|i| i["name"] == n[1].as_str()).unwrap()["id"].clone();
    assert_ne!(id(&after), id(&before));
    assert_eq!(
        state(&after, &n[1]).unwrap(),
        ("NONE".into(), "RUNNING".into())
    );
}

#[tokio::test]
async fn resize_needs_a_size_grows_with_creating_instances_and_shrinks() {
    let t = start().await;
    t.zonal("pool", 2).await;
    let p = format!("{Z}/instanceGroupManagers/pool/resize");
    // §1.5: `size` is a required int32 query parameter.
    let (s, _) = err(t.post(&p, None).await).await;
    assert_eq!(s, 400);
    let (s, _) = err(t.post(&format!("{p}?size=-1"), None).await).await;
    assert_eq!(s, 400);
    let (s, _) = err(t.post(&format!("{p}?size=1001"), None).await).await;
    assert_eq!(s, 400, "a zonal group holds at most 1000 VMs (§1.1)");
    let op = t.post_ok(&format!("{p}?size=4"), None).await;
    assert_eq!(op["operationType"], "compute.instanceGroupManagers.resize");
    let g = t.igm("pool").await;
    assert_eq!(
        (
            g["targetSize"].clone(),
            g["currentActions"]["creating"].clone()
        ),
        (json!(4), json!(2))
    );
    t.advance(30.0).await;
    assert_eq!(t.igm("pool").await["currentActions"]["none"], 4);
    // Shrinking picks instances still being created first (§1.5: the
    // group chooses; the fake's order is creating ones, then by name).
    t.post_ok(&format!("{p}?size=5"), None).await;
    t.post_ok(&format!("{p}?size=4"), None).await;
    let g = t.igm("pool").await;
    let actions = |g: &Value| {
        (
            g["currentActions"]["creating"].clone(),
            g["currentActions"]["deleting"].clone(),
        )
    };
    assert_eq!(actions(&g), (json!(0), json!(1)));
    t.post_ok(&format!("{p}?size=1"), None).await;
    let g = t.igm("pool").await;
    assert_eq!(
        (g["targetSize"].clone(), actions(&g).1),
        (json!(1), json!(4))
    );
}

#[tokio::test]
async fn regional_groups_delete_across_their_zones_and_refuse_other_regions() {
    let t = start().await;
    let v = t
        .ctl(
            "/sim/groups",
            json!({"project": PROJECT, "region": REGION, "name": "rg", "target_size": 3}),
        )
        .await;
    let urls: Vec<String> = v["managed_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["instance"].as_str().unwrap().to_string())
        .collect();
    let p = format!("{R}/instanceGroupManagers/rg/deleteInstances");
    let op = t
        .post_ok(&p, Some(json!({"instances": [urls[0], urls[1]]})))
        .await;
    assert_eq!(
        op["operationType"],
        "compute.regionInstanceGroupManagers.deleteInstances"
    );
    assert_eq!(
        op["region"],
        format!("{URL_BASE}projects/proj/regions/{REGION}")
    );
    assert!(op.get("zone").is_none());
    assert_eq!(
        t.get_ok(&format!("{R}/instanceGroupManagers/rg")).await["targetSize"],
        1
    );
    let other = partial("x").replace(ZONE, "europe-west1-b");
    let (s, _) = err(t.post(&p, Some(json!({"instances": [other]}))).await).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn a_thousand_instances_go_in_one_request_and_groups_are_capped() {
    let t = start().await;
    // §1.1 (R-INS): a zonal MIG holds up to 1000 VMs, a regional one 2000.
    let r = t
        .post(
            "/sim/groups",
            Some(json!({"project": PROJECT, "zone": ZONE, "name": "big", "target_size": 1001})),
        )
        .await;
    assert_eq!(r.status(), 400);
    let n = t.zonal("big", 1000).await;
    // §1.4: up to 1000 instances per request.
    let all: Vec<String> = n.iter().map(|n| partial(n)).collect();
    let op = t
        .post_ok(&del("big"), Some(json!({"instances": all})))
        .await;
    poll_done(&t, &op).await;
    let g = t.igm("big").await;
    assert_eq!(
        (
            g["targetSize"].clone(),
            g["currentActions"]["deleting"].clone()
        ),
        (json!(0), json!(1000))
    );
    let r = t
        .post(
            "/sim/groups",
            Some(
                json!({"project": PROJECT, "region": REGION, "name": "rbig", "target_size": 2001}),
            ),
        )
        .await;
    assert_eq!(r.status(), 400);
}
