//! Invalid specs are rejected by the real API server (schema and CEL rules),
//! each with a message that says what to fix.

use kube::Api;
use kube::api::{DynamicObject, PostParams};
use npo_testkit::*;
use serde_json::{Value, json};

fn valid() -> Value {
    json!({
        "nomad": {"address": "https://nomad.example:4646"},
        "selector": {"nodePool": "ci"},
        "provider": {"awsAutoScalingGroup": {"name": "ci-clients", "region": "us-east-1"}},
        "replicas": 3
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_are_rejected_with_a_message_that_says_what_to_fix() {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = create_namespace(&client, "validation").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource {
            group: "nomadpool.dev".into(),
            version: "v1alpha1".into(),
            api_version: "nomadpool.dev/v1alpha1".into(),
            kind: "NomadClientPool".into(),
            plural: "nomadclientpools".into(),
        },
    );
    let create = |name: &str, spec: Value| {
        let api = api.clone();
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        async move { api.create(&PostParams::default(), &obj).await }
    };

    create("valid", valid())
        .await
        .expect("the baseline spec is valid");
    let mut gce = valid();
    merge(
        &mut gce,
        json!({"provider": {"awsAutoScalingGroup": null, "gceManagedInstanceGroup": mig()}}),
    );
    strip_nulls(&mut gce);
    create("valid-gce", gce.clone())
        .await
        .expect("a zonal GCE group is valid");
    merge(
        &mut gce,
        json!({"provider": {"gceManagedInstanceGroup": {"zone": null, "region": "us-central1"}}}),
    );
    strip_nulls(&mut gce);
    create("valid-gce-regional", gce)
        .await
        .expect("a regional GCE group is valid");

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "empty-selector",
            json!({"selector": {"nodePool": null}}),
            "selector must set at least one of",
        ),
        (
            "no-provider",
            json!({"provider": {"awsAutoScalingGroup": null}}),
            "provider must set exactly one of",
        ),
        (
            "bad-address",
            json!({"nomad": {"address": "nomad:4646"}}),
            "nomad.address must be a URL",
        ),
        (
            "tls-on-http",
            json!({"nomad": {"address": "http://n:4646", "tls": {"serverName": "x"}}}),
            "use an https:// address",
        ),
        (
            "skip-and-ca",
            json!({"nomad": {"tls": {"insecureSkipVerify": true, "caSecretRef": {"name": "ca"}}}}),
            "remove one of them",
        ),
        (
            "negative-replicas",
            json!({"replicas": -1}),
            "spec.replicas",
        ),
        (
            "bad-deadline",
            json!({"drain": {"deadline": "1 hour"}}),
            "drain.deadline must be a positive Go duration",
        ),
        (
            "zero-deadline",
            json!({"drain": {"deadline": "0s"}}),
            "drain.deadline must be a positive Go duration",
        ),
        (
            "bad-max-node-age",
            json!({"maxNodeAge": "30 days"}),
            "maxNodeAge must be a positive Go duration",
        ),
        (
            "zero-max-node-age",
            json!({"maxNodeAge": "0h"}),
            "maxNodeAge must be a positive Go duration",
        ),
        (
            "force-without-deadline",
            json!({"drain": {"forceTerminateAfter": "5m"}}),
            "set drain.deadline too",
        ),
        (
            "zero-budget",
            json!({"disruption": {"maxUnavailable": 0}}),
            "disruption.maxUnavailable must be",
        ),
        (
            "bad-percent",
            json!({"disruption": {"maxUnavailable": "150%"}}),
            "disruption.maxUnavailable must be",
        ),
        (
            "bad-policy",
            json!({"disruption": {"selectionPolicy": "Random"}}),
            "LeastBusy",
        ),
        (
            "retire-two-keys",
            json!({"retire": [{"nodeName": "a", "instanceID": "i-1"}]}),
            "exactly one of nodeName, nodeID or instanceID",
        ),
        (
            "retire-no-key",
            json!({"retire": [{"replace": true}]}),
            "exactly one of nodeName, nodeID or instanceID",
        ),
        (
            "retire-short-id",
            json!({"retire": [{"nodeID": "abc"}]}),
            "full Nomad node UUID",
        ),
        (
            "retire-twice",
            json!({"retire": [{"nodeName": "a"}, {"nodeName": "a"}]}),
            "retire lists the same client twice",
        ),
        (
            "shrink-with-replicas",
            json!({"retire": [{"nodeName": "a", "replace": false}]}),
            "lower replicas instead",
        ),
        (
            "bad-region",
            json!({"provider": {"awsAutoScalingGroup": {"region": "Virginia"}}}),
            "must be an AWS region",
        ),
        (
            "empty-group-name",
            json!({"provider": {"awsAutoScalingGroup": {"name": ""}}}),
            "spec.provider.awsAutoScalingGroup.name",
        ),
        (
            "hook-timeout-too-short",
            hook(json!({"name": "drain", "mode": "Managed", "heartbeatTimeoutSeconds": 29})),
            "between 30 and 7200",
        ),
        (
            "hook-timeout-too-long",
            hook(json!({"name": "drain", "mode": "Managed", "heartbeatTimeoutSeconds": 7201})),
            "between 30 and 7200",
        ),
        (
            "hook-timeout-of-an-existing-hook",
            hook(json!({"name": "drain", "heartbeatTimeoutSeconds": 60})),
            "only used with mode: Managed",
        ),
        (
            "hook-without-name",
            hook(json!({"mode": "Managed"})),
            "name",
        ),
        (
            "hook-bad-mode",
            hook(json!({"name": "drain", "mode": "Sometimes"})),
            "Unsupported value",
        ),
        (
            "hook-queue-not-a-url",
            hook(json!({"name": "drain", "queueURL": "my-queue"})),
            "must be an SQS queue URL",
        ),
        (
            "two-providers",
            json!({"provider": {"gceManagedInstanceGroup": mig()}}),
            "provider must set exactly one of: awsAutoScalingGroup, gceManagedInstanceGroup",
        ),
        (
            "gce-zone-and-region",
            gce_patch(json!({"region": "us-central1"})),
            "must set exactly one of zone (a zonal group) or region",
        ),
        (
            "gce-no-location",
            gce_patch(json!({"zone": null})),
            "must set exactly one of zone (a zonal group) or region",
        ),
        (
            "gce-project-number",
            gce_patch(json!({"project": "123456789012"})),
            "must be a project ID",
        ),
        (
            "gce-bad-zone",
            gce_patch(json!({"zone": "us-central1"})),
            "must be a zone such as us-central1-a",
        ),
        (
            "gce-bad-name",
            gce_patch(json!({"name": "CI_Clients"})),
            "must be a lower-case Compute Engine resource name",
        ),
        (
            "gce-bad-endpoint",
            gce_patch(json!({"endpoint": "compute.example"})),
            "must be an http:// or https:// URL",
        ),
    ];
    let managed =
        hook(json!({"name": "drain", "mode": "Managed", "heartbeatTimeoutSeconds": 7200}));
    let mut spec = valid();
    merge(&mut spec, managed);
    create("valid-hook", spec)
        .await
        .expect("a managed hook at AWS's upper limit is valid");
    let mut spec = valid();
    merge(
        &mut spec,
        json!({"maxNodeAge": "720h", "replaceDrifted": true}),
    );
    create("valid-renewal", spec)
        .await
        .expect("a maxNodeAge of 30 days with drift replacement is valid");
    let mut failures = vec![];
    for (name, patch, expected) in cases {
        let mut spec = valid();
        merge(&mut spec, patch);
        strip_nulls(&mut spec);
        match create(name, spec).await {
            Ok(_) => failures.push(format!(
                "{name}: accepted, expected rejection mentioning {expected:?}"
            )),
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(expected) => {}
            Err(e) => failures.push(format!(
                "{name}: wrong rejection (expected {expected:?}): {e}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    delete_namespace(&client, &ns).await;
}

/// A valid zonal GCE group.
fn mig() -> Value {
    json!({"project": "ci-prod-123456", "zone": "us-central1-a", "name": "ci-clients"})
}

/// A patch that swaps the AWS group for [`mig`] with `fields` merged in.
fn gce_patch(fields: Value) -> Value {
    let mut m = mig();
    merge(&mut m, fields);
    json!({"provider": {"awsAutoScalingGroup": null, "gceManagedInstanceGroup": m}})
}

/// `null` in a patch means "remove the field", as in a JSON merge patch.
/// A patch naming the group's lifecycle hook.
fn hook(hook: Value) -> Value {
    json!({"provider": {"awsAutoScalingGroup": {"lifecycleHook": hook}}})
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, v| !v.is_null());
        m.values_mut().for_each(strip_nulls);
    }
}

/// `disruption.budgets`: what the API server can check is refused at
/// apply time; a valid list with a window, a zone and both kinds of rate
/// is accepted. (A cron expression or zone that does not parse is the
/// controller's to report: see tests/disruption_windows.rs and the
/// planner's tests.)
#[tokio::test(flavor = "multi_thread")]
async fn disruption_budgets_are_checked_by_the_api_server() {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = create_namespace(&client, "validation-budgets").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("nomadpool.dev", "v1alpha1", "NomadClientPool"),
            "nomadclientpools",
        ),
    );
    let create = |name: &str, budgets: Value| {
        let api = api.clone();
        let mut spec = valid();
        merge(&mut spec, json!({"disruption": {"budgets": budgets}}));
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        async move { api.create(&PostParams::default(), &obj).await }
    };
    create(
        "valid",
        json!([
            {"maxUnavailable": 0, "schedule": "0 9 * * 1-5", "duration": "8h", "timeZone": "Europe/Berlin"},
            {"maxUnavailable": "25%", "rate": {"retirements": 3, "per": "1h"}},
            {"maxUnavailable": "0%", "schedule": "0 22 * * 6", "duration": "744h", "rate": {"retirements": 1}},
        ]),
    )
    .await
    .expect("a valid list of budgets");
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "negative",
            json!([{"maxUnavailable": -1}]),
            "a count of at least 0",
        ),
        (
            "percent",
            json!([{"maxUnavailable": "101%"}]),
            "a percentage from 0% to 100%",
        ),
        (
            "no-duration",
            json!([{"maxUnavailable": 0, "schedule": "0 9 * * *"}]),
            "schedule and duration go together",
        ),
        (
            "no-schedule",
            json!([{"maxUnavailable": 0, "duration": "1h"}]),
            "schedule and duration go together",
        ),
        (
            "six-fields",
            json!([{"maxUnavailable": 0, "schedule": "0 0 9 * * *", "duration": "1h"}]),
            "five-field cron",
        ),
        (
            "bad-duration",
            json!([{"maxUnavailable": 0, "schedule": "0 9 * * *", "duration": "1 day"}]),
            "positive Go duration",
        ),
        (
            "long-duration",
            json!([{"maxUnavailable": 0, "schedule": "0 9 * * *", "duration": "745h"}]),
            "at most 744h",
        ),
        (
            "zone-alone",
            json!([{"maxUnavailable": 0, "timeZone": "UTC"}]),
            "only used with a schedule",
        ),
        (
            "zone-shape",
            json!([{"maxUnavailable": 0, "schedule": "0 9 * * *", "duration": "1h", "timeZone": "Berlin time"}]),
            "IANA time zone name",
        ),
        (
            "rate-zero",
            json!([{"maxUnavailable": 1, "rate": {"retirements": 0, "per": "1h"}}]),
            "retirements",
        ),
        (
            "rate-no-period",
            json!([{"maxUnavailable": 1, "rate": {"retirements": 1}}]),
            "rate.per is required",
        ),
        (
            "rate-bad-period",
            json!([{"maxUnavailable": 1, "rate": {"retirements": 1, "per": "hourly"}}]),
            "rate.per must be a positive Go duration",
        ),
    ];
    let mut failures = vec![];
    for (name, budgets, expected) in cases {
        match create(name, budgets).await {
            Ok(_) => failures.push(format!("{name}: accepted, expected {expected:?}")),
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(expected) => {}
            Err(e) => failures.push(format!(
                "{name}: wrong rejection (expected {expected:?}): {e}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    delete_namespace(&client, &ns).await;
}

/// `remediation`: its CEL rules refuse at apply time what would do
/// nothing or what the controller could only guess at; a full valid block
/// is accepted.
#[tokio::test(flavor = "multi_thread")]
async fn remediation_is_checked_by_the_api_server() {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = create_namespace(&client, "validation-remediation").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("nomadpool.dev", "v1alpha1", "NomadClientPool"),
            "nomadclientpools",
        ),
    );
    let create = |name: &str, remediation: Value| {
        let api = api.clone();
        let mut spec = valid();
        merge(&mut spec, json!({ "remediation": remediation }));
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        async move { api.create(&PostParams::default(), &obj).await }
    };
    create(
        "valid",
        json!({"unhealthyAfter": "10m", "maxUnhealthy": "40%", "replaceDisconnected": true, "purgeDownAfter": "1h"}),
    )
    .await
    .expect("a valid remediation");
    create("count", json!({"unhealthyAfter": "5m", "maxUnhealthy": 3}))
        .await
        .expect("a count cap");
    create("purge-only", json!({"purgeDownAfter": "30m"}))
        .await
        .expect("purging alone");
    let cases: Vec<(&str, Value, &str)> = vec![
        ("empty", json!({}), "remediation must set unhealthyAfter"),
        (
            "cap-only",
            json!({"maxUnhealthy": 2}),
            "remediation must set unhealthyAfter",
        ),
        (
            "bad-grace",
            json!({"unhealthyAfter": "ten minutes"}),
            "remediation.unhealthyAfter must be a positive Go duration",
        ),
        (
            "zero-grace",
            json!({"unhealthyAfter": "0s"}),
            "remediation.unhealthyAfter must be a positive Go duration",
        ),
        (
            "cap-zero",
            json!({"unhealthyAfter": "5m", "maxUnhealthy": 0}),
            "remediation.maxUnhealthy must be a count of at least 1",
        ),
        (
            "cap-percent",
            json!({"unhealthyAfter": "5m", "maxUnhealthy": "0%"}),
            "remediation.maxUnhealthy must be a count of at least 1",
        ),
        (
            "disconnected-alone",
            json!({"purgeDownAfter": "1h", "replaceDisconnected": true}),
            "replaceDisconnected needs remediation.unhealthyAfter",
        ),
        (
            "bad-purge",
            json!({"purgeDownAfter": "soon"}),
            "remediation.purgeDownAfter must be a positive Go duration",
        ),
    ];
    let mut failures = vec![];
    for (name, remediation, expected) in cases {
        match create(name, remediation).await {
            Ok(_) => failures.push(format!("{name}: accepted, expected {expected:?}")),
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(expected) => {}
            Err(e) => failures.push(format!(
                "{name}: wrong rejection (expected {expected:?}): {e}"
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    delete_namespace(&client, &ns).await;
}
