//! Contract tests for instanceGroupManagers.setInstanceTemplate
//! (`POST …/instanceGroupManagers/{n}/setInstanceTemplate`, body
//! `{instanceTemplate}`, query `requestId`): it answers an Operation
//! (§1.6), the group's `instanceTemplate` and `versions` name the new
//! template, its VMs keep theirs (`version.instanceTemplate`) under the
//! opportunistic update policy until they are recreated, and VMs made
//! after it run the new one; `status.versionTarget.isReached` says
//! whether every VM runs it. A malformed reference is a `400`, a template
//! that does not exist a `404 notFound` naming it (§1.7).

mod common;

use common::*;
use serde_json::{Value, json};

const RID: &str = "0e8f3a52-6c1d-4b7a-9e20-aabbccddeeff";

fn set(group: &str) -> String {
    format!("{Z}/instanceGroupManagers/{group}/setInstanceTemplate")
}

fn template(name: &str) -> String {
    format!("{URL_BASE}projects/{PROJECT}/global/instanceTemplates/{name}")
}

fn templates_of(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|i| {
            i["version"]["instanceTemplate"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn set_instance_template_changes_what_the_group_makes_not_its_vms() {
    let t = start().await;
    let n = t.zonal("pool", 2).await;
    let old = template("pool-template");
    assert_eq!(t.igm("pool").await["instanceTemplate"], old.as_str());
    t.ctl(
        "/sim/instance_templates",
        json!({"project": PROJECT, "name": "pool-v2"}),
    )
    .await;
    let op = t
        .post_ok(
            &format!("{}?requestId={RID}", set("pool")),
            Some(json!({"instanceTemplate": format!("projects/{PROJECT}/global/instanceTemplates/pool-v2")})),
        )
        .await;
    assert_eq!(op["kind"], "compute#operation");
    assert_eq!(
        op["operationType"],
        "compute.instanceGroupManagers.setInstanceTemplate"
    );
    assert_eq!(op["clientOperationId"], RID);
    let (done, _) = poll_done(&t, &op).await;
    assert!(done.get("error").is_none(), "{done}");

    let g = t.igm("pool").await;
    let new = template("pool-v2");
    assert_eq!(g["instanceTemplate"], new.as_str());
    assert_eq!(g["versions"].as_array().unwrap().len(), 1);
    assert_eq!(g["versions"][0]["instanceTemplate"], new.as_str());
    assert_eq!(g["targetSize"], 2, "the group's size does not change");
    assert_eq!(g["status"]["versionTarget"]["isReached"], false);
    // The VMs keep their template.
    assert_eq!(
        templates_of(&t.instances("pool").await),
        vec![old.clone(); 2]
    );

    // A new VM runs the new one; a recreated VM too.
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/pool/resize?size=3"),
        None,
    )
    .await;
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/pool/recreateInstances"),
        Some(json!({"instances": [partial(&n[0])]})),
    )
    .await;
    t.advance(60.0).await;
    let list = t.instances("pool").await;
    let by_name = |name: &str| {
        list.iter()
            .find(|i| i["name"] == name)
            .map(|i| {
                i["version"]["instanceTemplate"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .unwrap()
    };
    assert_eq!(by_name(&n[0]), new, "recreated from the current template");
    assert_eq!(by_name(&n[1]), old, "untouched");
    assert_eq!(templates_of(&list).iter().filter(|t| **t == new).count(), 2);
    assert_eq!(
        t.igm("pool").await["status"]["versionTarget"]["isReached"],
        false
    );
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/pool/recreateInstances"),
        Some(json!({"instances": [partial(&n[1])]})),
    )
    .await;
    t.advance(60.0).await;
    assert_eq!(
        t.igm("pool").await["status"]["versionTarget"]["isReached"],
        true
    );
}

#[tokio::test]
async fn set_instance_template_refuses_bad_and_unknown_templates() {
    let t = start().await;
    t.zonal("pool", 1).await;
    let (code, body) = err(t
        .post(&set("pool"), Some(json!({"instanceTemplate": "nope v2"})))
        .await)
    .await;
    assert_eq!(code, 400);
    assert_eq!(body["error"]["errors"][0]["reason"], "invalid");
    let (code, _) = err(t.post(&set("pool"), None).await).await;
    assert_eq!(code, 400, "instanceTemplate is required");
    let (code, body) = err(t
        .post(
            &set("pool"),
            Some(json!({"instanceTemplate": "global/instanceTemplates/missing"})),
        )
        .await)
    .await;
    assert_eq!(code, 404);
    assert_eq!(body["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(
        body["error"]["message"],
        format!("The resource 'projects/{PROJECT}/global/instanceTemplates/missing' was not found")
    );
    // Unknown body fields are Google's transcoding 400.
    let (code, _) = err(t
        .post(
            &set("pool"),
            Some(json!({"instanceTemplate": template("pool-template"), "x": 1})),
        )
        .await)
    .await;
    assert_eq!(code, 400);
    // Nothing changed.
    assert_eq!(
        t.igm("pool").await["instanceTemplate"],
        template("pool-template").as_str()
    );
    let (code, _) = err(t
        .post(
            &format!("{Z}/instanceGroupManagers/nope/setInstanceTemplate"),
            Some(json!({"instanceTemplate": template("pool-template")})),
        )
        .await)
    .await;
    assert_eq!(code, 404);
}
