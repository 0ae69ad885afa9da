//! Contract tests for the VMs themselves: instances.list and instances.get
//! (`GET …/zones/{z}/instances[/{name}]`), which carry each VM's
//! `creationTimestamp` (the managed-instance listing has none, §1.2), the
//! one `filter` shape the fake evaluates, paging, the 404, and the
//! `age_s` test hook of `POST /sim/instances`. Shapes pinned to the
//! Compute API's `Instance`/`InstanceList` resources: `id` a string
//! (§1.1 "Encodings"), `kind`, full-URL `zone` and `selfLink`, RFC 3339
//! timestamps with milliseconds and a Pacific offset, never `Z`.

mod common;

use common::*;
use serde_json::{Value, json};

fn list_path(query: &str) -> String {
    format!("{Z}/instances{query}")
}

fn items(v: &Value) -> Vec<Value> {
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The `filter` query value for `names`, as the operator sends it.
fn name_filter(names: &[&str]) -> String {
    let f = format!("name eq \"({})\"", names.join("|"));
    f.replace(' ', "%20")
        .replace('"', "%22")
        .replace('|', "%7C")
}

#[tokio::test]
async fn list_answers_every_vm_of_the_zone_with_its_creation_time() {
    let t = start().await;
    let a = t.zonal("pool", 2).await;
    let b = t.zonal("other", 1).await;
    let v = t.get_ok(&list_path("")).await;
    assert_eq!(v["kind"], "compute#instanceList");
    assert_eq!(
        v["selfLink"],
        format!("{URL_BASE}projects/{PROJECT}/zones/{ZONE}/instances")
    );
    assert!(v.get("nextPageToken").is_none());
    let got = items(&v);
    // Every group's VMs: the zone's, not one group's.
    let mut want: Vec<String> = a.iter().chain(&b).cloned().collect();
    want.sort();
    assert_eq!(names(&v["items"]), want);
    let mi = t.instances("pool").await;
    for i in &got {
        assert_eq!(i["kind"], "compute#instance");
        assert_eq!(i["status"], "RUNNING");
        assert_eq!(
            i["zone"],
            format!("{URL_BASE}projects/{PROJECT}/zones/{ZONE}")
        );
        assert_eq!(
            i["selfLink"],
            format!(
                "{}/instances/{}",
                i["zone"].as_str().unwrap(),
                i["name"].as_str().unwrap()
            )
        );
        assert!(i["id"].is_string(), "uint64 ids are strings: {i}");
        // Made at the fake's start, 2026-01-01T00:00:00Z, in Pacific time.
        assert_eq!(i["creationTimestamp"], "2025-12-31T16:00:00.000-08:00");
        assert!(i.get("creationTimestamp").is_some());
        if let Some(m) = mi.iter().find(|m| m["name"] == i["name"]) {
            assert_eq!(m["id"], i["id"], "the managed instance's id is the VM's");
        }
    }
}

#[tokio::test]
async fn a_name_filter_answers_only_those_vms() {
    let t = start().await;
    let n = t.zonal("pool", 4).await;
    let v = t
        .get_ok(&list_path(&format!(
            "?filter={}",
            name_filter(&[&n[1], &n[3]])
        )))
        .await;
    assert_eq!(names(&v["items"]), vec![n[1].clone(), n[3].clone()]);
    // Unquoted single name.
    let v = t
        .get_ok(&list_path(&format!("?filter=name%20eq%20{}", n[2])))
        .await;
    assert_eq!(names(&v["items"]), vec![n[2].clone()]);
    // No match: no `items` at all (empty lists are omitted).
    let v = t
        .get_ok(&list_path(&format!("?filter={}", name_filter(&["nope-1"]))))
        .await;
    assert!(v.get("items").is_none(), "{v}");
    // A filter the fake does not evaluate is refused, never ignored.
    let (code, body) = err(t.get(&list_path("?filter=status%20eq%20RUNNING")).await).await;
    assert_eq!(code, 400);
    assert_eq!(body["error"]["errors"][0]["reason"], "invalid");
    let (code, _) = err(t.get(&list_path("?orderBy=name")).await).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn list_pages_by_max_results() {
    let t = start().await;
    let n = t.zonal("pool", 5).await;
    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let v = t
            .get_ok(&list_path(&format!("?maxResults=2&pageToken={token}")))
            .await;
        seen.extend(names(&v["items"]));
        match v["nextPageToken"].as_str() {
            Some(next) => token = next.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, n);
    let (code, _) = err(t.get(&list_path("?maxResults=501")).await).await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn get_answers_one_vm_and_404s_an_unknown_one() {
    let t = start().await;
    let n = t.zonal("pool", 1).await;
    let v = t.get_ok(&format!("{Z}/instances/{}", n[0])).await;
    assert_eq!(v["name"], n[0].as_str());
    assert_eq!(v["creationTimestamp"], "2025-12-31T16:00:00.000-08:00");
    let (code, body) = err(t.get(&format!("{Z}/instances/nope-1")).await).await;
    assert_eq!(code, 404);
    assert_eq!(body["error"]["code"], 404);
    assert_eq!(body["error"]["errors"][0]["reason"], "notFound");
    assert_eq!(body["error"]["errors"][0]["domain"], "global");
    assert_eq!(
        body["error"]["message"],
        format!("The resource 'projects/{PROJECT}/zones/{ZONE}/instances/nope-1' was not found")
    );
    // A zone no group is in: the fake's `404` for a zone that does not exist.
    let (code, body) = err(t
        .get(&format!(
            "/compute/v1/projects/{PROJECT}/zones/mars-north1-a/instances"
        ))
        .await)
    .await;
    assert_eq!(code, 404);
    assert_eq!(
        body["error"]["message"],
        format!("The resource 'projects/{PROJECT}/zones/mars-north1-a' was not found")
    );
    // Instances are zonal: the API has no regional instances path.
    let r = t.get(&format!("{R}/instances")).await;
    assert_eq!(r.status().as_u16(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn new_and_recreated_vms_get_the_time_they_were_made_and_old_ones_can_be_faked() {
    let t = start().await;
    let n = t.zonal("pool", 2).await;
    t.advance(90.0).await;
    // A VM made by a resize is made now (90 s after the start).
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/pool/resize?size=3"),
        None,
    )
    .await;
    let v = t.get_ok(&list_path("")).await;
    let new = items(&v)
        .into_iter()
        .find(|i| !n.contains(&i["name"].as_str().unwrap().to_string()))
        .unwrap();
    assert_eq!(new["creationTimestamp"], "2025-12-31T16:01:30.000-08:00");
    // The test hook: this VM looks a day and a half-second old.
    let set = t
        .ctl(
            "/sim/instances",
            json!({"project": PROJECT, "zone": ZONE, "group": "pool", "name": n[0],
                   "age_s": 86_400.5}),
        )
        .await;
    assert_eq!(set["creation_timestamp"], "2025-12-30T16:01:29.500-08:00");
    let v = t.get_ok(&format!("{Z}/instances/{}", n[0])).await;
    assert_eq!(v["creationTimestamp"], "2025-12-30T16:01:29.500-08:00");
    // recreateInstances makes a new VM: new id, new creation time.
    let before = v["id"].clone();
    t.post_ok(
        &format!("{Z}/instanceGroupManagers/pool/recreateInstances"),
        Some(json!({"instances": [partial(&n[0])]})),
    )
    .await;
    t.advance(60.0).await;
    let v = t.get_ok(&format!("{Z}/instances/{}", n[0])).await;
    assert_ne!(v["id"], before);
    assert_eq!(v["creationTimestamp"], "2025-12-31T16:02:30.000-08:00");
}
