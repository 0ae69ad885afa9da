//! Contract tests for reading groups: the InstanceGroupManager JSON (§1.1,
//! §5.1.3), managed instances (§1.2, §5.1.4), PAGELESS and PAGINATED
//! listing (§1.3, §5.1.2), regional groups, query handling (§4.3, §5.1.1)
//! and how unknown resources and unserved methods fail (§1.7).

mod common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_zonal_group_has_the_apis_field_names_and_encodings() {
    let t = start().await;
    t.zonal("pool", 3).await;
    let g = t.igm("pool").await;
    assert_eq!(g["kind"], "compute#instanceGroupManager");
    assert_eq!(g["name"], "pool");
    // §1.1: ids are uint64 sent as strings; targetSize is an int32 number.
    let id = g["id"].as_str().expect("id is a string");
    assert!(id.parse::<u64>().is_ok(), "{id}");
    assert_eq!(g["targetSize"], json!(3));
    assert_eq!(
        g["selfLink"],
        format!("{URL_BASE}projects/proj/zones/{ZONE}/instanceGroupManagers/pool")
    );
    assert_eq!(g["zone"], format!("{URL_BASE}projects/proj/zones/{ZONE}"));
    assert!(g.get("region").is_none());
    assert_eq!(g["listManagedInstancesResults"], "PAGELESS");
    assert_eq!(g["baseInstanceName"], "pool");
    let tpl = g["instanceTemplate"].as_str().unwrap();
    assert!(tpl.starts_with(URL_BASE) && tpl.ends_with("/global/instanceTemplates/pool-template"));
    assert_eq!(g["versions"][0]["instanceTemplate"], tpl);
    // §1.1: versions[].targetSize{fixed, percent, calculated}.
    assert_eq!(g["versions"][0]["targetSize"]["calculated"], 3);
    assert_eq!(g["updatePolicy"]["type"], "OPPORTUNISTIC");
    // §1.1: fingerprint is URL-safe base64.
    let fp = g["fingerprint"].as_str().unwrap();
    assert!(!fp.is_empty());
    assert!(
        fp.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=".contains(&b)),
        "{fp}"
    );
    // §1.1: every InstanceGroupManagerActionsSummary counter is present.
    let ca = g["currentActions"].as_object().unwrap();
    let mut keys: Vec<&str> = ca.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "abandoning",
            "creating",
            "creatingWithoutRetries",
            "deleting",
            "none",
            "recreating",
            "refreshing",
            "restarting",
            "resuming",
            "starting",
            "stopping",
            "suspending",
            "verifying"
        ]
    );
    assert_eq!(ca["none"], 3);
    assert_eq!(g["status"]["isStable"], true);
    assert!(g["status"].get("autoscaler").is_none());
}

#[tokio::test]
async fn managed_instances_carry_full_urls_string_ids_and_states() {
    let t = start().await;
    let names = t.zonal("pool", 2).await;
    let list = t.instances("pool").await;
    assert_eq!(list.len(), 2);
    for (mi, name) in list.iter().zip(&names) {
        // §1.2, §5.1.4
        assert_eq!(mi["name"], name.as_str());
        assert_eq!(mi["instance"], full(name));
        assert!(mi["id"].as_str().unwrap().parse::<u64>().is_ok());
        assert_eq!(mi["instanceStatus"], "RUNNING");
        assert_eq!(mi["currentAction"], "NONE");
        assert!(
            mi["version"]["instanceTemplate"]
                .as_str()
                .unwrap()
                .starts_with(URL_BASE)
        );
        // MIG names are the base name plus a suffix.
        assert!(name.starts_with("pool-"), "{name}");
    }
}

#[tokio::test]
async fn an_empty_group_lists_no_managed_instances_field() {
    let t = start().await;
    t.zonal("empty", 0).await;
    let v = t
        .post_ok(
            &format!("{Z}/instanceGroupManagers/empty/listManagedInstances"),
            None,
        )
        .await;
    // Empty repeated fields are omitted in Google's JSON.
    assert_eq!(v, json!({}));
}

#[tokio::test]
async fn pageless_groups_ignore_max_results_and_page_token() {
    let t = start().await;
    t.zonal("pool", 5).await;
    // §1.3: with PAGELESS, maxResults/pageToken are ignored, all in one answer.
    let p = format!("{Z}/instanceGroupManagers/pool/listManagedInstances?maxResults=2&pageToken=");
    let v = t.post_ok(&p, None).await;
    assert_eq!(v["managedInstances"].as_array().unwrap().len(), 5);
    assert!(v.get("nextPageToken").is_none());
}

#[tokio::test]
async fn paginated_groups_page_with_max_results_and_page_token() {
    let t = start().await;
    let v = t
        .ctl(
            "/sim/groups",
            json!({"project": PROJECT, "zone": ZONE, "name": "pg", "target_size": 5,
                   "list_managed_instances_results": "PAGINATED"}),
        )
        .await;
    assert_eq!(v["group"]["listManagedInstancesResults"], "PAGINATED");
    let mut seen = Vec::new();
    // §4.3: the SDK's first request carries `pageToken=` (empty).
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let p = format!(
            "{Z}/instanceGroupManagers/pg/listManagedInstances?maxResults=2&pageToken={token}"
        );
        let v = t.post_ok(&p, None).await;
        pages += 1;
        seen.extend(names(&v["managedInstances"]));
        match v.get("nextPageToken") {
            Some(Value::String(next)) => token = next.clone(),
            // §5.1.2: omitted on the last page.
            None => break,
            Some(other) => panic!("nextPageToken {other}"),
        }
    }
    assert_eq!(pages, 3);
    let mut all = names(&v["managed_instances"]);
    all.sort();
    assert_eq!(seen, all);
    // §1.3: maxResults is 0–500.
    let p = format!("{Z}/instanceGroupManagers/pg/listManagedInstances?maxResults=501");
    let (s, e) = err(t.post(&p, None).await).await;
    assert_eq!(
        (s, e["error"]["errors"][0]["reason"].clone()),
        (400, json!("invalid"))
    );
}

#[tokio::test]
async fn a_regional_group_spreads_instances_over_its_zones() {
    let t = start().await;
    let v = t
        .ctl(
            "/sim/groups",
            json!({"project": PROJECT, "region": REGION, "name": "rg", "target_size": 6}),
        )
        .await;
    let g = t.get_ok(&format!("{R}/instanceGroupManagers/rg")).await;
    assert_eq!(g, v["group"]);
    assert_eq!(
        g["region"],
        format!("{URL_BASE}projects/proj/regions/{REGION}")
    );
    assert!(g.get("zone").is_none());
    let zones = g["distributionPolicy"]["zones"].as_array().unwrap();
    assert_eq!(zones.len(), 3);
    let list = t
        .post_ok(
            &format!("{R}/instanceGroupManagers/rg/listManagedInstances"),
            None,
        )
        .await;
    for z in ["us-central1-a", "us-central1-b", "us-central1-c"] {
        let n = list["managedInstances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| {
                i["instance"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("/zones/{z}/instances/"))
            })
            .count();
        assert_eq!(n, 2, "{z}");
    }
}

#[tokio::test]
async fn encoded_system_parameters_are_accepted_and_unknown_ones_refused() {
    let t = start().await;
    t.zonal("pool", 1).await;
    // §4.3: reqwest sends `$alt` as `%24alt`; §5.1.1: tolerate both.
    let p = format!("{Z}/instanceGroupManagers/pool?%24alt=json&%24apiVersion=2026-09-01");
    t.get_ok(&p).await;
    let p = format!("{Z}/instanceGroupManagers/pool?$alt=json");
    t.get_ok(&p).await;
    // A parameter the method lacks is Google's 400 (never more lenient).
    let (s, e) = err(t
        .get(&format!("{Z}/instanceGroupManagers/pool?size=3"))
        .await)
    .await;
    assert_eq!(s, 400);
    assert_eq!(e["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unknown name \"size\"")
    );
}

#[tokio::test]
async fn an_unknown_group_is_a_404_in_googles_error_shape() {
    let t = start().await;
    let (s, e) = err(t.get(&format!("{Z}/instanceGroupManagers/nope")).await).await;
    // §1.7 (GDA's message), §5.1.8
    let msg = format!(
        "The resource 'projects/proj/zones/{ZONE}/instanceGroupManagers/nope' was not found"
    );
    assert_eq!(
        (s, e),
        (
            404,
            json!({"error": {"code": 404, "message": msg, "status": "NOT_FOUND",
                "errors": [{"message": msg, "domain": "global", "reason": "notFound"}]}})
        )
    );
    // The same group name in another zone is another group.
    t.zonal("pool", 1).await;
    let p = "/compute/v1/projects/proj/zones/us-central1-b/instanceGroupManagers/pool";
    assert_eq!(t.get(p).await.status(), 404);
    // §5.1.8: `status` can be switched off.
    t.ctl("/sim/config", json!({"error_status": false})).await;
    let (_, e) = err(t.get(&format!("{Z}/instanceGroupManagers/nope")).await).await;
    assert!(e["error"].get("status").is_none(), "{e}");
    assert_eq!(e["error"]["code"], 404);
}

#[tokio::test]
async fn methods_the_api_does_not_serve_get_the_front_ends_html_404() {
    let t = start().await;
    t.zonal("pool", 1).await;
    // §1: listManagedInstances is POST, not GET.
    let r = t
        .get(&format!(
            "{Z}/instanceGroupManagers/pool/listManagedInstances"
        ))
        .await;
    assert_eq!(r.status(), 404);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    // deleteInstances is POST only; get is GET only.
    let r = t
        .get(&format!("{Z}/instanceGroupManagers/pool/deleteInstances"))
        .await;
    assert_eq!(r.status(), 404);
    let r = t
        .post(&format!("{Z}/instanceGroupManagers/pool"), None)
        .await;
    assert_eq!(r.status(), 404);
    let r = t
        .get("/compute/v1/projects/proj/zones//instanceGroupManagers/pool")
        .await;
    assert_eq!(r.status(), 404);
}

/// §1.1: `description` is the group's only free text (where the operator
/// reads its owner from); the control surface lets a harness edit it as
/// the group's owner would, and the API shows it as set.
#[tokio::test]
async fn a_groups_description_is_set_through_the_control_surface() {
    let t = start().await;
    t.zonal("pool", 1).await;
    assert!(t.igm("pool").await.get("description").is_none());
    t.ctl(
        "/sim/groups/description",
        json!({"project": PROJECT, "zone": ZONE, "name": "pool",
               "description": "CI nomadpool.dev/pool=ns/ci"}),
    )
    .await;
    assert_eq!(
        t.igm("pool").await["description"],
        "CI nomadpool.dev/pool=ns/ci"
    );
    let r = t
        .post(
            "/sim/groups/description",
            Some(json!({"project": PROJECT, "zone": ZONE, "name": "nope", "description": "x"})),
        )
        .await;
    assert_eq!(r.status(), 404);
}
