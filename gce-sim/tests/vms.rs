//! Contract tests for the simulator-only compact read of a group's VMs,
//! `GET /sim/groups/vms` (README, "Control API"): the same instances, ids
//! and states as listManagedInstances (§1.2), an `ETag` that changes when
//! and only when they do, `If-None-Match` answered with 304 and no body.

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

const VMS: &str = "/sim/groups/vms?project=proj&zone=us-central1-a&name=pool";

/// Status, ETag and (when there is one) the JSON body.
async fn vms(t: &T, query: &str, if_none_match: Option<&str>) -> (StatusCode, String, Value) {
    let mut req = t.http.get(t.u(query));
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let etag = r
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, etag, body)
}

#[tokio::test]
async fn the_compact_read_shows_what_list_managed_instances_shows() {
    let t = start().await;
    t.zonal("pool", 4).await;
    let (status, etag, v) = vms(&t, VMS, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "{etag}"
    );
    assert_eq!(v["name"], "pool");
    assert_eq!(v["target_size"], 4);
    let compact: Vec<(Value, Value, Value, Value)> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["zone"], ZONE);
            (
                i["name"].clone(),
                i["id"].clone(),
                i["instance_status"].clone(),
                i["current_action"].clone(),
            )
        })
        .collect();
    let api: Vec<(Value, Value, Value, Value)> = t
        .instances("pool")
        .await
        .iter()
        .map(|i| {
            (
                i["name"].clone(),
                i["id"].clone(),
                i["instanceStatus"].clone(),
                i["currentAction"].clone(),
            )
        })
        .collect();
    assert_eq!(compact.len(), 4);
    assert_eq!(compact, api);
    // Ids are strings, as the API sends uint64 (§1.1).
    assert!(
        compact
            .iter()
            .all(|c| c.1.as_str().is_some_and(|s| s.parse::<u64>().is_ok()))
    );
}

#[tokio::test]
async fn an_unchanged_group_answers_304_and_a_change_gives_a_new_tag() {
    let t = start().await;
    let names = t.zonal("pool", 3).await;
    t.zonal("other", 2).await;
    let (_, tag, _) = vms(&t, VMS, None).await;
    let (status, again, body) = vms(&t, VMS, Some(&tag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    assert_eq!(again, tag, "a 304 carries the tag");
    assert_eq!(body, Value::Null, "a 304 has no body");
    // Weak comparison, and a list of tags (RFC 9110 §13.1.2).
    let (status, _, _) = vms(&t, VMS, Some(&format!("\"x\", W/{tag}"))).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);
    let (status, _, _) = vms(&t, VMS, Some("\"not-the-tag\"")).await;
    assert_eq!(status, StatusCode::OK);

    // Another group changing leaves this one's tag alone.
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/other/resize?size=1"),
        None,
    )
    .await;
    let (status, _, _) = vms(&t, VMS, Some(&tag)).await;
    assert_eq!(status, StatusCode::NOT_MODIFIED);

    // deleteInstances: the instance turns DELETING, the tag changes.
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/pool/deleteInstances"),
        Some(json!({"instances": [partial(&names[0])]})),
    )
    .await;
    let (status, deleting_tag, v) = vms(&t, VMS, Some(&tag)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(deleting_tag, tag);
    assert_eq!(v["target_size"], 2);
    let first = &v["instances"].as_array().unwrap()[0];
    assert_eq!(first["name"], names[0].as_str());
    assert_eq!(first["current_action"], "DELETING");

    // Simulated time ends the delete: the instance is gone, a new tag.
    t.advance(31.0).await;
    let (status, gone_tag, v) = vms(&t, VMS, Some(&deleting_tag)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(gone_tag, deleting_tag);
    assert_eq!(vm_names(&v), names[1..].to_vec());
}

fn vm_names(v: &Value) -> Vec<String> {
    names(&v["instances"])
}

#[tokio::test]
async fn a_regional_group_names_each_vms_zone() {
    let t = start().await;
    t.ctl(
        "/sim/groups",
        json!({"project": PROJECT, "region": REGION, "name": "rg", "target_size": 3}),
    )
    .await;
    let (status, _, v) = vms(
        &t,
        "/sim/groups/vms?project=proj&region=us-central1&name=rg",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut zones: Vec<&str> = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["zone"].as_str().unwrap())
        .collect();
    zones.sort();
    assert_eq!(zones, ["us-central1-a", "us-central1-b", "us-central1-c"]);
}

#[tokio::test]
async fn bad_queries_and_unknown_groups_are_refused() {
    let t = start().await;
    t.zonal("pool", 1).await;
    let cases: Vec<(String, u16)> = vec![
        ("/sim/groups/vms?project=proj&name=pool".into(), 400),
        (
            "/sim/groups/vms?project=proj&zone=us-central1-a&region=us-central1&name=pool".into(),
            400,
        ),
        ("/sim/groups/vms?zone=us-central1-a&name=pool".into(), 400),
        (
            "/sim/groups/vms?project=proj&zone=us-central1-a".into(),
            400,
        ),
        (format!("{VMS}&name=pool"), 400),
        (format!("{VMS}&maxResults=2"), 400),
        (
            "/sim/groups/vms?project=proj&zone=us-central1-a&name=nope".into(),
            404,
        ),
        (
            "/sim/groups/vms?project=proj&zone=us-central1-b&name=pool".into(),
            404,
        ),
    ];
    for (query, want) in &cases {
        let (status, _, v) = vms(&t, query, None).await;
        assert_eq!(status.as_u16(), *want, "{query}: {v}");
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{query}: {v}"
        );
    }
}
