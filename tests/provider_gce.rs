//! The GCE managed-instance-group provider against gce-sim, the Compute API
//! fake, started in-process per test with simulated time frozen (instances
//! stay `DELETING`/`RECREATING` until a test moves time on). Each test
//! asserts what the fake's state and request log show, not only what the
//! provider says. Sections (§N) refer to `shared/reference/gce-mig.md`.

use std::time::Duration;

use gce_sim::state::Timing;
use gce_sim::{Config, Sim, serve};
use serde_json::{Value, json};

use nomad_pool_operator::provider::{
    CloudProvider, GceCredentials, GceLocation, GceManagedInstanceGroup, GceMigConfig, GceSettings,
    GroupState, Lifecycle, ProviderError, TerminateOutcome, preflight,
};

const PROJECT: &str = "proj";
const ZONE: &str = "us-central1-a";
const REGION: &str = "us-central1";

struct T {
    sim: Sim,
    http: reqwest::Client,
}

async fn start(timing: Timing) -> T {
    let sim = serve(Config {
        time_scale: 0.0,
        seed: Some(7),
        timing,
        ..Config::default()
    })
    .await
    .expect("gce-sim starts");
    T {
        sim,
        http: reqwest::Client::new(),
    }
}

fn timing() -> Timing {
    Timing {
        operation_polls: 1,
        wait_max_ms: 200,
        ..Timing::default()
    }
}

impl T {
    async fn ctl(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.sim.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{path}", self.sim.url()))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    /// A group with `n` RUNNING instances; extra fields go into the control call.
    async fn group(&self, name: &str, n: usize, extra: Value) {
        let mut body = json!({"project": PROJECT, "name": name, "target_size": n});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        if body.get("region").is_none() {
            body["zone"] = json!(ZONE);
        }
        self.ctl("/sim/groups", body).await;
    }

    /// The fake's view of `name`: (group JSON, managed instances JSON).
    async fn state(&self, name: &str) -> (Value, Vec<Value>) {
        let all = self.get("/sim/groups").await;
        let g = all["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"]["name"] == name)
            .unwrap_or_else(|| panic!("no group {name} in {all}"))
            .clone();
        (
            g["group"].clone(),
            g["managed_instances"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        )
    }

    async fn target_size(&self, name: &str) -> i64 {
        self.state(name).await.0["targetSize"].as_i64().unwrap()
    }

    async fn instance(&self, name: &str, id: &str) -> Option<Value> {
        self.state(name)
            .await
            .1
            .into_iter()
            .find(|i| i["id"].as_str() == Some(id))
    }

    /// Logged API requests whose path contains `part` (and method, if given).
    async fn requests(&self, method: &str, part: &str) -> Vec<Value> {
        self.get("/sim/requests").await["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["method"] == method && r["path"].as_str().unwrap().contains(part))
            .cloned()
            .collect()
    }

    async fn provider(&self, name: &str, location: GceLocation) -> GceManagedInstanceGroup {
        GceManagedInstanceGroup::with_settings(
            GceMigConfig {
                project: PROJECT.into(),
                location,
                name: name.into(),
                endpoint: Some(self.sim.url()),
                credentials: GceCredentials::Anonymous,
            },
            fast(),
        )
        .await
        .expect("provider")
    }

    async fn zonal(&self, name: &str) -> GceManagedInstanceGroup {
        self.provider(name, GceLocation::Zone(ZONE.into())).await
    }
}

fn fast() -> GceSettings {
    GceSettings {
        poll_initial: Duration::from_millis(5),
        poll_max: Duration::from_millis(20),
        operation_timeout: Duration::from_secs(10),
        read_attempts: 4,
        read_backoff: Duration::from_millis(10),
        page_size: 500,
    }
}

fn query(r: &Value, key: &str) -> Option<String> {
    r["query"]
        .as_array()?
        .iter()
        .find(|kv| kv[0] == key)
        .and_then(|kv| kv[1].as_str().map(str::to_owned))
}

async fn describe(p: &GceManagedInstanceGroup) -> GroupState {
    p.describe_group().await.expect("describe group")
}

fn first_in_service(g: &GroupState) -> String {
    g.instances
        .iter()
        .find(|i| i.lifecycle == Lifecycle::InService)
        .expect("an instance in service")
        .id
        .clone()
}

#[tokio::test]
async fn describe_shows_target_size_and_instances_by_vm_id() {
    let t = start(timing()).await;
    t.group("ci", 3, json!({})).await;
    let p = t.zonal("ci").await;
    assert_eq!(p.group(), "mig/ci (us-central1-a)");
    assert_eq!(p.kind(), "gce-mig");
    assert_eq!(p.instance_id_attribute(), "unique.platform.gce.id");

    let g = describe(&p).await;
    assert_eq!(g.name, "ci");
    assert_eq!((g.min_size, g.max_size, g.desired_capacity), (0, 1000, 3));
    assert!(!g.terminate_suspended);
    assert_eq!(g.owner_tag, None);
    let (_, fake) = t.state("ci").await;
    let mut fake_ids: Vec<String> = fake
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    let mut ids: Vec<String> = g.instances.iter().map(|i| i.id.clone()).collect();
    fake_ids.sort();
    ids.sort();
    assert_eq!(
        ids, fake_ids,
        "instances are named by the VM id Nomad fingerprints"
    );
    for i in &g.instances {
        assert!(i.id.bytes().all(|b| b.is_ascii_digit()), "{i:?}");
        assert_eq!(i.lifecycle, Lifecycle::InService, "{i:?}");
        assert!(i.healthy && !i.protected_from_scale_in, "{i:?}");
        assert_eq!(i.zone.as_deref(), Some(ZONE));
        assert_eq!(preflight(&g, &i.id, 0), Ok(()));
        // Drift facts come with the listing: each VM runs the group's template.
        assert_eq!(i.launch_spec.as_ref(), g.launch_specs.first(), "{i:?}");
    }
    assert_eq!(g.launch_specs.len(), 1, "{:?}", g.launch_specs);
    // Creation times only when asked for (tests/provider_gce_launch.rs).
    assert!(g.reads_launch_times && g.instances.iter().all(|i| i.launched_at.is_none()));
}

#[tokio::test]
async fn shrink_deletes_once_waits_for_the_operation_and_lowers_target_size() {
    let t = start(timing()).await;
    t.group("ci", 3, json!({})).await;
    let p = t.zonal("ci").await;
    let id = first_in_service(&describe(&p).await);

    assert_eq!(
        p.terminate_instance(&id, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    assert_eq!(t.target_size("ci").await, 2);
    let i = t
        .instance("ci", &id)
        .await
        .expect("still listed while deleting");
    assert_eq!(i["currentAction"], "DELETING");
    let deletes = t.requests("POST", "/deleteInstances").await;
    assert_eq!(deletes.len(), 1);
    assert!(query(&deletes[0], "requestId").is_some_and(|r| r.len() == 36));
    let body: Value = serde_json::from_str(deletes[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["skipInstancesOnValidationError"], json!(true));
    assert_eq!(body["instances"].as_array().unwrap().len(), 1);
    // The call answered PENDING: the provider polled the operation (§4.4).
    assert!(
        !t.requests("GET", "/zones/us-central1-a/operations/")
            .await
            .is_empty()
    );

    // Again, as after a restart: the re-read sees DELETING, no second call.
    assert_eq!(
        p.terminate_instance(&id, true).await,
        Ok(TerminateOutcome::AlreadyTerminating)
    );
    assert_eq!(t.requests("POST", "/deleteInstances").await.len(), 1);
    assert_eq!(t.target_size("ci").await, 2);
    let g = describe(&p).await;
    assert_eq!(g.desired_capacity, 2);
    assert_eq!(g.instance(&id).unwrap().lifecycle, Lifecycle::Terminating);

    // Once the fake has deleted it, it is not in the group.
    t.ctl("/sim/time", json!({"advance_s": 60})).await;
    assert!(t.instance("ci", &id).await.is_none());
    assert_eq!(
        p.terminate_instance(&id, true).await,
        Ok(TerminateOutcome::NotInGroup)
    );
    assert_eq!(t.requests("POST", "/deleteInstances").await.len(), 1);
}

#[tokio::test]
async fn replace_recreates_without_changing_target_size() {
    let t = start(timing()).await;
    t.group("ci", 3, json!({})).await;
    let p = t.zonal("ci").await;
    let id = first_in_service(&describe(&p).await);

    assert_eq!(
        p.terminate_instance(&id, false).await,
        Ok(TerminateOutcome::Terminated)
    );
    assert_eq!(t.target_size("ci").await, 3);
    assert_eq!(
        t.instance("ci", &id).await.unwrap()["currentAction"],
        "RECREATING"
    );
    assert_eq!(t.requests("POST", "/recreateInstances").await.len(), 1);
    assert!(t.requests("POST", "/deleteInstances").await.is_empty());
    assert_eq!(
        p.terminate_instance(&id, false).await,
        Ok(TerminateOutcome::AlreadyTerminating)
    );
    assert_eq!(t.requests("POST", "/recreateInstances").await.len(), 1);
}

#[tokio::test]
async fn a_lost_answer_never_shrinks_twice() {
    let t = start(timing()).await;
    t.group("ci", 3, json!({})).await;
    let p = t.zonal("ci").await;
    let id = first_in_service(&describe(&p).await);
    // Compute carries the call out; its answer never arrives.
    t.ctl(
        "/sim/faults",
        json!({"path_contains": "/deleteInstances", "after": true, "action": "drop"}),
    )
    .await;

    let first = p.terminate_instance(&id, true).await;
    assert_eq!(first, Ok(TerminateOutcome::AlreadyTerminating));
    assert_eq!(t.target_size("ci").await, 2);
    assert_eq!(
        p.terminate_instance(&id, true).await,
        Ok(TerminateOutcome::AlreadyTerminating)
    );
    assert_eq!(t.target_size("ci").await, 2);
    assert_eq!(t.requests("POST", "/deleteInstances").await.len(), 1);

    // Even a listing that has not caught up (the instance shown RUNNING
    // again) cannot shrink the group twice: the repeated call carries the
    // same requestId, which Compute ignores (§1.4).
    let name = t.instance("ci", &id).await.unwrap()["name"].clone();
    t.ctl(
        "/sim/instances",
        json!({"project": PROJECT, "zone": ZONE, "group": "ci", "name": name,
               "instance_status": "RUNNING", "current_action": "NONE"}),
    )
    .await;
    let _ = p.terminate_instance(&id, true).await;
    assert_eq!(t.target_size("ci").await, 2, "shrunk twice");
    let deletes = t.requests("POST", "/deleteInstances").await;
    assert_eq!(deletes.len(), 2);
    assert_eq!(
        query(&deletes[0], "requestId"),
        query(&deletes[1], "requestId")
    );
}

#[tokio::test]
async fn a_failed_operation_is_an_error_and_changes_nothing() {
    let t = start(timing()).await;
    t.group("ci", 3, json!({})).await;
    let p = t.zonal("ci").await;
    let id = first_in_service(&describe(&p).await);
    t.ctl(
        "/sim/faults",
        json!({"path_contains": "/deleteInstances", "action": {"fail_operation": {
            "code": "CONDITION_NOT_MET", "message": "Instance is not a member",
            "http_status": 412, "http_message": "PRECONDITION FAILED"}}}),
    )
    .await;

    let err = p.terminate_instance(&id, true).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Api { code, message }
            if code == "CONDITION_NOT_MET" && message.contains("Instance is not a member")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(t.target_size("ci").await, 3);
    assert_eq!(
        t.instance("ci", &id).await.unwrap()["currentAction"],
        "NONE"
    );
}

#[tokio::test]
async fn after_a_failed_operation_the_retry_gets_a_new_request_id_even_after_a_restart() {
    let t = start(timing()).await;
    t.group("ci", 3, json!({})).await;
    let p = t.zonal("ci").await;
    let id = first_in_service(&describe(&p).await);
    t.ctl(
        "/sim/faults",
        json!({"path_contains": "/deleteInstances", "action": {"fail_operation": {
            "code": "RESOURCE_NOT_READY", "message": "The resource is not ready",
            "http_status": 400, "http_message": "BAD REQUEST"}}}),
    )
    .await;
    p.terminate_instance(&id, true).await.unwrap_err();
    // A restarted operator (a new provider) starts at the first requestId:
    // Compute answers it with the failed Operation again and does nothing.
    let restarted = t.zonal("ci").await;
    restarted.terminate_instance(&id, true).await.unwrap_err();
    assert_eq!(t.target_size("ci").await, 3);
    // Its next try, like the first provider's, carries the next ID and works.
    let outcome = restarted.terminate_instance(&id, true).await.unwrap();
    assert_eq!(outcome, TerminateOutcome::Terminated);
    assert_eq!(
        p.terminate_instance(&id, true).await.unwrap(),
        TerminateOutcome::AlreadyTerminating
    );
    assert_eq!(t.target_size("ci").await, 2, "exactly one shrink");
    let deletes = t.requests("POST", "/deleteInstances").await;
    let ids: Vec<Option<String>> = deletes.iter().map(|r| query(r, "requestId")).collect();
    assert_eq!(ids.len(), 3, "no call for a VM already leaving: {ids:?}");
    assert_eq!(
        ids[0], ids[1],
        "the restarted provider replays the first ID"
    );
    assert_ne!(ids[1], ids[2], "the retry after the failure has its own");
}

#[tokio::test]
async fn an_operation_that_stays_running_is_waited_for() {
    let t = start(Timing {
        operation_polls: 6,
        ..timing()
    })
    .await;
    t.group("ci", 2, json!({})).await;
    let p = t.zonal("ci").await;
    let id = first_in_service(&describe(&p).await);

    assert_eq!(
        p.terminate_instance(&id, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    let polls = t.requests("GET", "/operations/").await;
    assert!(
        polls.len() >= 6,
        "answered RUNNING 6 times, polled {}",
        polls.len()
    );
    let op = polls.last().unwrap()["path"].as_str().unwrap().to_owned();
    let last = t.get(&op).await;
    assert_eq!(last["status"], "DONE");
    assert_eq!(t.target_size("ci").await, 1);
}

#[tokio::test]
async fn rate_limits_are_retried_for_reads_and_reported_for_deletes() {
    let t = start(timing()).await;
    t.group("ci", 3, json!({})).await;
    let p = t.zonal("ci").await;
    // §4.5: the SDK does not retry a 403 rateLimitExceeded; the provider does.
    t.ctl(
        "/sim/faults",
        json!({"path_contains": "/listManagedInstances", "times": 2,
               "action": {"error_preset": "rateLimitExceeded"}}),
    )
    .await;
    let g = describe(&p).await;
    assert_eq!(g.instances.len(), 3);
    assert_eq!(t.requests("POST", "/listManagedInstances").await.len(), 3);

    let id = first_in_service(&g);
    t.ctl(
        "/sim/faults",
        json!({"path_contains": "/deleteInstances", "action": {"error_preset": "rateLimitExceeded"}}),
    )
    .await;
    let err = p.terminate_instance(&id, true).await.unwrap_err();
    assert!(matches!(err, ProviderError::Throttled { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(
        t.target_size("ci").await,
        3,
        "a rate-limited call does nothing"
    );
    assert_eq!(
        p.terminate_instance(&id, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    assert_eq!(t.target_size("ci").await, 2);
}

#[tokio::test]
async fn an_autoscaler_in_mode_on_is_refused_and_its_bounds_are_respected_otherwise() {
    let t = start(timing()).await;
    t.group("ci", 3, json!({})).await;
    let autoscaler = |mode: &str| {
        json!({"project": PROJECT, "zone": ZONE, "name": "ci-as", "target": "ci",
               "min_num_replicas": 2, "max_num_replicas": 5, "mode": mode})
    };
    t.ctl("/sim/autoscalers", autoscaler("ON")).await;
    let p = t.zonal("ci").await;
    let err = p.describe_group().await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Refused { message } if message.contains("ci-as") && message.contains("mode ON")),
        "{err:?}"
    );
    let err = p.set_desired_capacity(4).await.unwrap_err();
    assert!(matches!(err, ProviderError::Refused { .. }), "{err:?}");
    assert!(t.requests("POST", "/resize").await.is_empty());

    t.ctl("/sim/autoscalers", autoscaler("ONLY_SCALE_OUT"))
        .await;
    let g = describe(&p).await;
    assert_eq!((g.min_size, g.max_size, g.desired_capacity), (2, 5, 3));
    let id = first_in_service(&g);
    assert_eq!(preflight(&g, &id, 0), Ok(()));
    assert!(
        preflight(&g, &id, 1).is_err(),
        "2 shrinks would go below min 2"
    );

    t.ctl("/sim/autoscalers", autoscaler("OFF")).await;
    assert_eq!(describe(&p).await.min_size, 0);
}

#[tokio::test]
async fn paginated_groups_are_read_across_pages() {
    let t = start(timing()).await;
    t.group(
        "ci",
        7,
        json!({"list_managed_instances_results": "PAGINATED"}),
    )
    .await;
    let p = GceManagedInstanceGroup::with_settings(
        GceMigConfig {
            project: PROJECT.into(),
            location: GceLocation::Zone(ZONE.into()),
            name: "ci".into(),
            endpoint: Some(t.sim.url()),
            credentials: GceCredentials::Anonymous,
        },
        GceSettings {
            page_size: 3,
            ..fast()
        },
    )
    .await
    .unwrap();
    let g = describe(&p).await;
    assert_eq!(g.instances.len(), 7);
    let lists = t.requests("POST", "/listManagedInstances").await;
    assert_eq!(lists.len(), 3, "pages of 3, 3 and 1");
    assert_eq!(query(&lists[0], "pageToken").as_deref(), Some(""));
    assert!(query(&lists[1], "pageToken").is_some_and(|t| !t.is_empty()));
    // The last instance on the last page can be found and deleted.
    let (_, fake) = t.state("ci").await;
    let last = fake.last().unwrap()["id"].as_str().unwrap().to_owned();
    assert_eq!(
        p.terminate_instance(&last, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    assert_eq!(t.target_size("ci").await, 6);
}

#[tokio::test]
async fn regional_groups_use_regional_paths_and_operations() {
    let t = start(timing()).await;
    t.group("ci", 4, json!({"region": REGION})).await;
    let p = t.provider("ci", GceLocation::Region(REGION.into())).await;
    let g = describe(&p).await;
    assert_eq!(g.max_size, 2000);
    assert_eq!(g.instances.len(), 4);
    let zones: std::collections::BTreeSet<_> =
        g.instances.iter().filter_map(|i| i.zone.clone()).collect();
    assert!(zones.len() > 1, "spread over zones: {zones:?}");
    let id = first_in_service(&g);
    assert_eq!(
        p.terminate_instance(&id, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    assert_eq!(t.target_size("ci").await, 3);
    assert!(
        !t.requests("GET", "/regions/us-central1/operations/")
            .await
            .is_empty()
    );
    assert!(t.requests("GET", "/zones/").await.is_empty());
}

#[tokio::test]
async fn set_desired_capacity_resizes_and_unknowns_are_reported() {
    let t = start(timing()).await;
    t.group("ci", 2, json!({})).await;
    let p = t.zonal("ci").await;
    p.set_desired_capacity(4).await.expect("resize");
    assert_eq!(t.target_size("ci").await, 4);
    assert_eq!(
        p.terminate_instance("4242424242", true).await,
        Ok(TerminateOutcome::NotInGroup)
    );
    assert!(t.requests("POST", "/deleteInstances").await.is_empty());

    let missing = t.zonal("nope").await;
    assert_eq!(
        missing.describe_group().await,
        Err(ProviderError::GroupNotFound {
            group: "nope".into()
        })
    );
}

#[tokio::test]
async fn the_owner_is_read_from_the_group_description() {
    let t = start(timing()).await;
    t.group(
        "ci",
        1,
        json!({"description": "Nomad CI clients nomadpool.dev/pool=ci/ci-linux"}),
    )
    .await;
    t.group("other", 1, json!({})).await;
    assert_eq!(
        describe(&t.zonal("ci").await).await.owner_tag.as_deref(),
        Some("ci/ci-linux")
    );
    assert_eq!(describe(&t.zonal("other").await).await.owner_tag, None);
}
