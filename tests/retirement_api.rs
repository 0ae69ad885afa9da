//! The `NomadClientRetirement` CRD as the real API server serves it, no
//! operator running: its CEL rules (exactly one target; the spec immutable
//! once created, with a message that says what to do instead), the printer
//! columns `kubectl get ncr` shows, and the short name `ncr` in discovery.

use std::process::Stdio;

use kube::api::{DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use nomad_pool_operator::api::NomadClientRetirement;
use npo_testkit::*;
use serde_json::{Value, json};

const GROUP_VERSION: &str = "nomadpool.dev/v1alpha1";
/// The Table form `kubectl get` asks for.
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

fn manifest(name: &str, spec: Value) -> NomadClientRetirement {
    serde_json::from_value(json!({
        "apiVersion": GROUP_VERSION, "kind": "NomadClientRetirement",
        "metadata": {"name": name}, "spec": spec
    }))
    .unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn setup(client: &Client, test: &str) -> (String, Api<NomadClientRetirement>) {
    install_crd(client).await;
    let ns = create_namespace(client, test).await;
    let api = Api::namespaced(client.clone(), &ns);
    (ns, api)
}

/// A target must name exactly one client, by a well-formed key; the pool
/// must be named. Each rejection says what to fix.
#[tokio::test(flavor = "multi_thread")]
async fn a_target_names_exactly_one_client() {
    let client = kube_client().await;
    let (ns, api) = setup(&client, "ncr-target").await;
    // Sent as raw JSON: the typed spec could not even express some of these.
    let create = |name: &str, spec: Value| {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &ns, &retirement_resource());
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": GROUP_VERSION, "kind": "NomadClientRetirement",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        async move { api.create(&PostParams::default(), &obj).await }
    };

    for (name, target) in [
        ("by-name", json!({"nodeName": "ci-client-17"})),
        (
            "by-id",
            json!({"nodeID": "0b7c1d5e-2f3a-4b6c-8d9e-0f1a2b3c4d5e"}),
        ),
        ("by-instance", json!({"instanceID": "i-0123456789abcdef0"})),
    ] {
        create(name, json!({"pool": "ci", "target": target}))
            .await
            .unwrap_or_else(|e| panic!("{name} is valid: {e}"));
    }
    let made = api.get("by-name").await.unwrap();
    assert_eq!(
        serde_json::to_value(made.spec.reason).unwrap(),
        "Replace",
        "a hand-made retirement defaults to Replace"
    );
    assert!(!made.spec.decrement(), "a Replace keeps the group's size");

    let one_of = "target must name exactly one of nodeName, nodeID or instanceID";
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "two-targets",
            json!({"pool": "ci", "target": {"nodeName": "a", "instanceID": "i-1"}}),
            one_of,
        ),
        (
            "three-targets",
            json!({"pool": "ci", "target": {"nodeName": "a", "instanceID": "i-1",
                   "nodeID": "0b7c1d5e-2f3a-4b6c-8d9e-0f1a2b3c4d5e"}}),
            one_of,
        ),
        ("no-target", json!({"pool": "ci", "target": {}}), one_of),
        (
            "short-id",
            json!({"pool": "ci", "target": {"nodeID": "0b7c1d5e"}}),
            "target.nodeID must be a full Nomad node UUID",
        ),
        (
            "no-pool",
            json!({"pool": "", "target": {"nodeName": "a"}}),
            "spec.pool",
        ),
        (
            "unknown-reason",
            json!({"pool": "ci", "target": {"nodeName": "a"}, "reason": "Whim"}),
            "spec.reason",
        ),
        (
            "unknown-capacity",
            json!({"pool": "ci", "target": {"nodeName": "a"}, "capacity": "Grow"}),
            "spec.capacity",
        ),
    ];
    let mut failures = vec![];
    for (name, spec, expected) in cases {
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

/// Once created, a retirement's spec cannot change (a different target
/// would be a different retirement), while its labels, finalizers and
/// status, which the pool writes when it adopts and drives it, can.
#[tokio::test(flavor = "multi_thread")]
async fn the_spec_is_immutable_after_create() {
    let client = kube_client().await;
    let (ns, api) = setup(&client, "ncr-immutable").await;
    let name = "ci-client-17";
    api.create(
        &PostParams::default(),
        &manifest(
            name,
            json!({"pool": "ci", "target": {"nodeName": "ci-client-17"}}),
        ),
    )
    .await
    .unwrap();

    let immutable = "a retirement's spec is immutable: delete it (which gives the client back) and create another";
    let mut failures = vec![];
    for (what, spec) in [
        (
            "another node",
            json!({"target": {"nodeName": "ci-client-18"}}),
        ),
        (
            "another kind of target",
            json!({"target": {"nodeName": null, "instanceID": "i-0123456789abcdef0"}}),
        ),
        ("another reason", json!({"reason": "ScaleIn"})),
        ("another pool", json!({"pool": "batch"})),
        ("a capacity", json!({"capacity": "Shrink"})),
    ] {
        let patch = Patch::Merge(json!({"spec": spec}));
        match api.patch(name, &PatchParams::default(), &patch).await {
            Ok(r) => failures.push(format!("{what}: accepted: {:?}", r.spec)),
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(immutable) => {}
            Err(e) => failures.push(format!("{what}: wrong rejection: {e}")),
        }
    }
    // A full replace with a changed target is refused the same way.
    let mut replaced = api.get(name).await.unwrap();
    replaced.spec.target.node_name = Some("ci-client-18".into());
    match api.replace(name, &PostParams::default(), &replaced).await {
        Ok(r) => failures.push(format!("replace: accepted: {:?}", r.spec)),
        Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(immutable) => {}
        Err(e) => failures.push(format!("replace: wrong rejection: {e}")),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // What adoption writes is allowed: the pool's label, the finalizer, status.
    let meta = json!({"metadata": {"labels": {POOL_LABEL: "ci"},
                                   "finalizers": ["nomadpool.dev/retirement"]}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(meta))
        .await
        .expect("labels and finalizers stay writable");
    let status = json!({"status": {"phase": "Selected", "nodeName": "ci-client-17"}});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .expect("the status subresource stays writable");
    let now = api.get(name).await.unwrap();
    assert_eq!(now.spec.target.node_name.as_deref(), Some("ci-client-17"));
    assert_eq!(now.phase().as_str(), "Selected");
    // A lifecycle action's record: AWS's tokens are UUIDs (36 characters),
    // and nothing else is stored as one.
    let action = |token: &str| {
        Patch::Merge(json!({"status": {"lifecycleAction": {"hook": "drain", "token": token}}}))
    };
    let token = "71514b9d-6a40-4b26-8523-05e7ee35fa40";
    api.patch_status(name, &PatchParams::default(), &action(token))
        .await
        .expect("a token is recorded");
    match api
        .patch_status(name, &PatchParams::default(), &action(&token[1..]))
        .await
    {
        Err(kube::Error::Api(s))
            if s.code == 422 && s.message.contains("lifecycleAction.token") => {}
        other => panic!("a 35-character token: {other:?}"),
    }

    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    delete_namespace(&client, &ns).await;
}

/// `kubectl get ncr` shows Pool, Node, Instance, Reason, Phase, Allocs and
/// Age, filled from the spec and from the status written through the status
/// subresource; the Table the API server sends kubectl says so cell by cell.
#[tokio::test(flavor = "multi_thread")]
async fn kubectl_shows_the_printer_columns() {
    let client = kube_client().await;
    let (ns, api) = setup(&client, "ncr-columns").await;
    let name = "ci-ci-client-17-0b7c1d5e";
    api.create(
        &PostParams::default(),
        &manifest(
            name,
            json!({"pool": "ci", "reason": "ScaleIn",
                   "target": {"nodeID": "0b7c1d5e-2f3a-4b6c-8d9e-0f1a2b3c4d5e"}}),
        ),
    )
    .await
    .unwrap();
    let status = json!({"status": {
        "phase": "Draining", "nodeID": "0b7c1d5e-2f3a-4b6c-8d9e-0f1a2b3c4d5e",
        "nodeName": "ci-client-17", "instanceID": "i-0123456789abcdef0",
        "allocationsLeft": 3,
        "blockingAllocations": [{"jobID": "ci-build", "allocationID": "a1"}],
    }});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .unwrap();

    let path = format!("/apis/{GROUP_VERSION}/namespaces/{ns}/nomadclientretirements");
    let mut req = kube::core::Request::new(path)
        .list(&ListParams::default())
        .unwrap();
    req.headers_mut().insert("accept", TABLE.parse().unwrap());
    let table: Value = client.request(req).await.expect("the Table form");
    assert_eq!(table["kind"], "Table", "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        [
            "Name", "Pool", "Node", "Instance", "Reason", "Phase", "Allocs", "Age"
        ]
    );
    let rows = table["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{table}");
    let cells = rows[0]["cells"].as_array().unwrap();
    assert_eq!(
        cells[..7],
        [
            json!(name),
            json!("ci"),
            json!("ci-client-17"),
            json!("i-0123456789abcdef0"),
            json!("ScaleIn"),
            json!("Draining"),
            json!(3),
        ]
    );
    assert!(is_age(&cells[7]), "Age is a duration: {}", cells[7]);

    // And kubectl, by the short name, prints the same columns.
    let out = kubectl(&["get", "ncr", "-n", &ns]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME", "POOL", "NODE", "INSTANCE", "REASON", "PHASE", "ALLOCS", "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row[..7],
        [
            name,
            "ci",
            "ci-client-17",
            "i-0123456789abcdef0",
            "ScaleIn",
            "Draining",
            "3"
        ]
    );
    delete_namespace(&client, &ns).await;
}

/// Discovery lists the kind with the short name `ncr`, namespaced, with its
/// status subresource.
#[tokio::test(flavor = "multi_thread")]
async fn discovery_serves_the_short_name_ncr() {
    let client = kube_client().await;
    install_crd(&client).await;
    let list = client
        .list_api_group_resources(GROUP_VERSION)
        .await
        .expect("discovery of nomadpool.dev/v1alpha1");
    let find = |name: &str| list.resources.iter().find(|r| r.name == name);
    let r = find("nomadclientretirements").expect("nomadclientretirements is served");
    assert_eq!(r.kind, "NomadClientRetirement");
    assert!(r.namespaced);
    assert_eq!(r.short_names.as_deref(), Some(&["ncr".to_string()][..]));
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(r.verbs.iter().any(|v| v == verb), "{verb}: {:?}", r.verbs);
    }
    assert!(
        find("nomadclientretirements/status").is_some(),
        "the status subresource is served"
    );
}

/// What the API server prints for a `date` column: a short duration such as
/// `4s` or `2m5s`.
fn is_age(cell: &Value) -> bool {
    let s = cell.as_str().unwrap_or_default();
    s.starts_with(|c: char| c.is_ascii_digit())
        && s.ends_with(['s', 'm', 'h', 'd', 'y'])
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

fn kubectl(args: &[&str]) -> String {
    let bin = env_var("NPO_KUBECTL");
    let out = std::process::Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", env_var("KUBECONFIG"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn retirement_resource() -> kube::api::ApiResource {
    kube::api::ApiResource::erase::<NomadClientRetirement>(&())
}
