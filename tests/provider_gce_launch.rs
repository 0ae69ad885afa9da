//! The GCE provider's VM creation times (for `spec.maxNodeAge`) against
//! gce-sim, in-process with simulated time frozen: read with a filtered
//! `instances.list` per zone only while wanted, each VM once (the request
//! log counts the calls), backdated VMs show their age, a recreated VM (a
//! new VM id) is read again, and a regional group is read zone by zone.

use std::time::Duration;

use gce_sim::state::Timing;
use gce_sim::{Config, Sim, serve};
use serde_json::{Value, json};

use nomad_pool_operator::provider::{
    CloudProvider, GceCredentials, GceLocation, GceManagedInstanceGroup, GceMigConfig, GceSettings,
    GroupState, LaunchFacts, ProviderError,
};

const PROJECT: &str = "proj";
const ZONE: &str = "us-central1-a";
/// 2026-01-01T00:00:00Z
const START_NS: i64 = 1_767_225_600_000_000_000;

const TIMES: LaunchFacts = LaunchFacts {
    launch_time: true,
    launch_spec: false,
};

async fn sim() -> Sim {
    serve(Config {
        time_scale: 0.0,
        seed: Some(11),
        start_time_ns: Some(START_NS),
        timing: Timing {
            operation_polls: 1,
            recreate_duration_s: 10.0,
            wait_max_ms: 200,
            ..Timing::default()
        },
        ..Config::default()
    })
    .await
    .expect("gce-sim starts")
}

async fn ctl(sim: &Sim, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", sim.url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}");
    r.json().await.unwrap()
}

/// The logged instances.list calls.
async fn lists(sim: &Sim) -> Vec<Value> {
    let v: Value = reqwest::get(format!("{}/sim/requests", sim.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    (v["requests"].as_array().unwrap().iter())
        .filter(|r| r["method"] == "GET" && r["path"].as_str().unwrap().ends_with("/instances"))
        .cloned()
        .collect()
}

async fn provider(sim: &Sim, location: GceLocation) -> GceManagedInstanceGroup {
    GceManagedInstanceGroup::with_settings(
        GceMigConfig {
            project: PROJECT.into(),
            location,
            name: "ci".into(),
            endpoint: Some(sim.url()),
            credentials: GceCredentials::Anonymous,
        },
        GceSettings {
            poll_initial: Duration::from_millis(5),
            poll_max: Duration::from_millis(20),
            operation_timeout: Duration::from_secs(10),
            read_attempts: 2,
            read_backoff: Duration::from_millis(10),
            page_size: 500,
        },
    )
    .await
    .expect("provider")
}

fn at(g: &GroupState, id: &str) -> jiff::Timestamp {
    g.instance(id)
        .and_then(|i| i.launched_at)
        .expect("launch time read")
}

#[tokio::test]
async fn creation_times_are_read_once_per_vm_with_one_filtered_list() {
    let sim = sim().await;
    let made = ctl(
        &sim,
        "/sim/groups",
        json!({"project": PROJECT, "zone": ZONE, "name": "ci", "target_size": 3}),
    )
    .await;
    // Another group's VMs in the same zone are not asked for.
    ctl(
        &sim,
        "/sim/groups",
        json!({"project": PROJECT, "zone": ZONE, "name": "other", "target_size": 2}),
    )
    .await;
    let names: Vec<String> = (made["managed_instances"].as_array().unwrap().iter())
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    ctl(
        &sim,
        "/sim/instances",
        json!({"project": PROJECT, "zone": ZONE, "group": "ci", "name": names[0],
               "age_s": 7200}),
    )
    .await;
    let p = provider(&sim, GceLocation::Zone(ZONE.into())).await;
    p.read_launch_facts(TIMES);
    let g = p.describe_group().await.unwrap();
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let old = g.instances.iter().find(|i| i.launched_at != Some(start));
    let old = old.expect("the backdated VM");
    assert_eq!(at(&g, &old.id), "2025-12-31T22:00:00Z".parse().unwrap());
    assert_eq!(
        (g.instances.iter())
            .filter(|i| i.launched_at == Some(start))
            .count(),
        2
    );
    let calls = lists(&sim).await;
    assert_eq!(calls.len(), 1, "one list for the zone: {calls:?}");
    let filter = (calls[0]["query"].as_array().unwrap().iter())
        .find(|kv| kv[0] == "filter")
        .map(|kv| kv[1].as_str().unwrap().to_owned())
        .expect("a filter");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(filter, format!("name eq \"({})\"", sorted.join("|")));

    // Known now: the next describes make no such call.
    p.describe_group().await.unwrap();
    p.describe_group().await.unwrap();
    assert_eq!(lists(&sim).await.len(), 1);

    // A recreated VM is a new VM: only it is read again.
    let op = reqwest::Client::new()
        .post(format!(
            "{}/compute/v1/projects/{PROJECT}/zones/{ZONE}/instanceGroupManagers/ci/recreateInstances",
            sim.url()
        ))
        .json(&json!({"instances": [format!("zones/{ZONE}/instances/{}", names[1])]}))
        .send()
        .await
        .unwrap();
    assert!(op.status().is_success());
    ctl(&sim, "/sim/time", json!({"advance_s": 10})).await;
    let g = p.describe_group().await.unwrap();
    let calls = lists(&sim).await;
    assert_eq!(calls.len(), 2);
    assert!(
        calls[1]["query"]
            .to_string()
            .contains(&format!("({})", names[1]))
    );
    assert_eq!(
        (g.instances.iter())
            .filter(|i| i.launched_at
                == Some(
                    start
                        .checked_add(jiff::SignedDuration::from_secs(10))
                        .unwrap()
                ))
            .count(),
        1,
        "{:?}",
        g.instances
    );

    // Not wanted: not filled in, no call.
    p.read_launch_facts(LaunchFacts::default());
    let g = p.describe_group().await.unwrap();
    assert!(g.instances.iter().all(|i| i.launched_at.is_none()));
    assert_eq!(lists(&sim).await.len(), 2);
}

#[tokio::test]
async fn a_regional_group_is_read_zone_by_zone() {
    let sim = sim().await;
    ctl(
        &sim,
        "/sim/groups",
        json!({"project": PROJECT, "region": "us-central1", "name": "ci", "target_size": 3}),
    )
    .await;
    let p = provider(&sim, GceLocation::Region("us-central1".into())).await;
    p.read_launch_facts(TIMES);
    let g = p.describe_group().await.unwrap();
    assert_eq!(g.instances.len(), 3);
    assert!(g.instances.iter().all(|i| i.launched_at.is_some()), "{g:?}");
    let mut zones: Vec<String> = (lists(&sim).await.iter())
        .map(|r| r["path"].as_str().unwrap().to_owned())
        .collect();
    zones.sort();
    assert_eq!(
        zones,
        ["a", "b", "c"]
            .map(|z| format!("/compute/v1/projects/{PROJECT}/zones/us-central1-{z}/instances"))
    );
}

#[tokio::test]
async fn a_failed_read_fails_the_describe_and_is_retried_next_time() {
    let sim = sim().await;
    ctl(
        &sim,
        "/sim/groups",
        json!({"project": PROJECT, "zone": ZONE, "name": "ci", "target_size": 2}),
    )
    .await;
    ctl(
        &sim,
        "/sim/faults",
        json!({"method": "GET", "path_contains": "/instances", "times": 2,
               "action": {"error_preset": "rateLimitExceeded"}}),
    )
    .await;
    let p = provider(&sim, GceLocation::Zone(ZONE.into())).await;
    p.read_launch_facts(TIMES);
    // Two attempts, both throttled: a describe that cannot say how old the
    // VMs are says nothing rather than calling them new.
    let e = p.describe_group().await.unwrap_err();
    assert!(e.is_retryable(), "{e:?}");
    let g = p.describe_group().await.unwrap();
    assert!(g.instances.iter().all(|i| i.launched_at.is_some()));
}

#[tokio::test]
async fn without_the_list_permission_the_describe_says_so() {
    let sim = sim().await;
    ctl(
        &sim,
        "/sim/groups",
        json!({"project": PROJECT, "zone": ZONE, "name": "ci", "target_size": 1}),
    )
    .await;
    ctl(
        &sim,
        "/sim/faults",
        json!({"method": "GET", "path_contains": "/instances", "times": 0,
               "action": {"error": {"code": 403, "reason": "forbidden", "domain": "global",
                   "message": "Required 'compute.instances.list' permission for 'projects/proj'"}}}),
    )
    .await;
    let p = provider(&sim, GceLocation::Zone(ZONE.into())).await;
    // Without maxNodeAge the call is never made.
    p.describe_group().await.unwrap();
    p.read_launch_facts(TIMES);
    match p.describe_group().await {
        Err(e @ ProviderError::Unauthorized { .. }) => {
            assert!(e.to_string().contains("compute.instances.list"), "{e}");
            assert!(!e.is_retryable());
        }
        other => panic!("{other:?}"),
    }
}
