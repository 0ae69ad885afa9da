//! The install manifests in `deploy/` against the real API server: they render
//! with `kubectl kustomize`, the Deployment is locked down, the RBAC they
//! grant is exactly what the operator needs and nothing more, and the example
//! pools pass validation. (That the grant is enough to run a whole scale-in as
//! the operator's ServiceAccount is `tests/deploy_scale_in.rs`.)
//!
//! No kubelet runs in the test environment, so the Deployment and Service are
//! rendered and inspected but not applied.

use std::collections::BTreeSet;
use std::path::PathBuf;

use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use npo_testkit::cluster::CRD_FILES;
use npo_testkit::deploy::*;
use npo_testkit::*;
use serde_json::{Value, json};

const FIELD_MANAGER: &str = "npo-tests";

// ---------------------------------------------------------------------------
// Access checks

/// One request the ServiceAccount makes (or must not be able to make).
#[derive(Clone, Copy, Debug)]
struct Req {
    verb: &'static str,
    group: &'static str,
    resource: &'static str,
    subresource: &'static str,
    /// `None`: the test's pool namespace; `Some("")`: all namespaces / cluster scope.
    namespace: Option<&'static str>,
}

const fn req(verb: &'static str, group: &'static str, resource: &'static str) -> Req {
    Req {
        verb,
        group,
        resource,
        subresource: "",
        namespace: None,
    }
}

impl Req {
    const fn sub(mut self, s: &'static str) -> Req {
        self.subresource = s;
        self
    }
    const fn ns(mut self, ns: &'static str) -> Req {
        self.namespace = Some(ns);
        self
    }
}

const POOLS: &str = "nomadclientpools";
const RETIREMENTS: &str = "nomadclientretirements";
const NPD: &str = "nomadpool.dev";

/// What the operator does, so what the manifests must allow.
const MUST: &[Req] = &[
    // Controller: list/watch pools in its namespace, or cluster-wide.
    req("list", NPD, POOLS),
    req("watch", NPD, POOLS),
    req("list", NPD, POOLS).ns(""),
    req("watch", NPD, POOLS).ns(""),
    req("get", NPD, POOLS),
    // Finalizer: JSON patch on the main resource.
    req("patch", NPD, POOLS),
    // Status: replace on the status subresource.
    req("update", NPD, POOLS).sub("status"),
    // Retirements: the pool creates, adopts, prunes and releases them (the
    // finalizer), each with its own status.
    req("list", NPD, RETIREMENTS),
    req("watch", NPD, RETIREMENTS),
    req("list", NPD, RETIREMENTS).ns(""),
    req("watch", NPD, RETIREMENTS).ns(""),
    req("get", NPD, RETIREMENTS),
    req("create", NPD, RETIREMENTS),
    req("update", NPD, RETIREMENTS),
    req("patch", NPD, RETIREMENTS),
    req("delete", NPD, RETIREMENTS),
    req("get", NPD, RETIREMENTS).sub("status"),
    req("update", NPD, RETIREMENTS).sub("status"),
    req("patch", NPD, RETIREMENTS).sub("status"),
    req("update", NPD, RETIREMENTS).sub("finalizers"),
    // Secrets referenced by a pool, by name.
    req("get", "", "secrets"),
    // Events: create, patch to bump a series.
    req("create", "events.k8s.io", "events"),
    req("patch", "events.k8s.io", "events"),
    // Leader election in the operator's own namespace.
    req("get", "coordination.k8s.io", "leases").ns(SYSTEM_NS),
    req("create", "coordination.k8s.io", "leases").ns(SYSTEM_NS),
    req("patch", "coordination.k8s.io", "leases").ns(SYSTEM_NS),
];

/// A sample of what it must not be able to do.
const MUST_NOT: &[Req] = &[
    // Secrets: read by name only; never enumerate or write.
    req("list", "", "secrets"),
    req("watch", "", "secrets"),
    req("list", "", "secrets").ns(""),
    req("watch", "", "secrets").ns(""),
    req("list", "", "secrets").ns(SYSTEM_NS),
    req("create", "", "secrets"),
    req("update", "", "secrets"),
    req("patch", "", "secrets"),
    req("delete", "", "secrets"),
    // Pools belong to users.
    req("create", NPD, POOLS),
    req("update", NPD, POOLS),
    req("delete", NPD, POOLS),
    req("deletecollection", NPD, POOLS),
    req("patch", NPD, POOLS).sub("status"),
    req("update", NPD, POOLS).sub("finalizers"),
    // Retirements one at a time: never all of a namespace at once.
    req("deletecollection", NPD, RETIREMENTS),
    // The CRD is installed by the admin, not the operator.
    req(
        "create",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
    )
    .ns(""),
    req("patch", "apiextensions.k8s.io", "customresourcedefinitions").ns(""),
    req(
        "delete",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
    )
    .ns(""),
    // Workloads, nodes and other objects it never touches.
    req("create", "", "pods"),
    req("list", "", "pods"),
    req("create", "", "pods").sub("exec"),
    req("delete", "", "pods"),
    req("patch", "", "nodes").ns(""),
    req("delete", "", "nodes").ns(""),
    req("get", "", "configmaps"),
    req("list", "", "configmaps"),
    req("create", "apps", "deployments"),
    req("list", "", "namespaces").ns(""),
    req("create", "", "serviceaccounts")
        .sub("token")
        .ns(SYSTEM_NS),
    // Events: only events.k8s.io, and never read or delete.
    req("create", "", "events"),
    req("list", "events.k8s.io", "events"),
    req("delete", "events.k8s.io", "events"),
    // Leases: only its own namespace, and never delete.
    req("create", "coordination.k8s.io", "leases"),
    req("patch", "coordination.k8s.io", "leases").ns("kube-system"),
    req("get", "coordination.k8s.io", "leases").ns("kube-node-lease"),
    req("delete", "coordination.k8s.io", "leases").ns(SYSTEM_NS),
    req("update", "coordination.k8s.io", "leases").ns(SYSTEM_NS),
    req("list", "coordination.k8s.io", "leases").ns(SYSTEM_NS),
    // No way to widen its own rights.
    req("create", "rbac.authorization.k8s.io", "clusterrolebindings").ns(""),
    req("patch", "rbac.authorization.k8s.io", "clusterroles").ns(""),
    req("escalate", "rbac.authorization.k8s.io", "clusterroles").ns(""),
    req("bind", "rbac.authorization.k8s.io", "clusterroles").ns(""),
    req("create", "rbac.authorization.k8s.io", "rolebindings").ns(SYSTEM_NS),
    req("impersonate", "", "users").ns(""),
    req("impersonate", "", "serviceaccounts"),
];

async fn allowed(as_sa: &Client, r: Req, pool_ns: &str) -> bool {
    let namespace = r.namespace.unwrap_or(pool_ns);
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {
            "verb": r.verb, "group": r.group, "resource": r.resource,
            "subresource": r.subresource, "namespace": namespace,
        }}
    }))
    .unwrap();
    let api: Api<SelfSubjectAccessReview> = Api::all(as_sa.clone());
    let out = api
        .create(&PostParams::default(), &review)
        .await
        .unwrap_or_else(|e| panic!("SelfSubjectAccessReview for {r:?}: {e}"));
    out.status.expect("review status").allowed
}

/// Every (group, resource, verb) the account may use in `namespace`, from a
/// SelfSubjectRulesReview, minus the self-review rules every authenticated
/// user has (system:basic-user).
async fn granted_rules(as_sa: &Client, namespace: &str) -> BTreeSet<(String, String, String)> {
    let review: SelfSubjectRulesReview =
        serde_json::from_value(json!({"spec": {"namespace": namespace}})).unwrap();
    let api: Api<SelfSubjectRulesReview> = Api::all(as_sa.clone());
    let status = api
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectRulesReview")
        .status
        .expect("rules review status");
    assert!(
        !status.incomplete,
        "rules review incomplete: {:?}",
        status.evaluation_error
    );
    let mut out = BTreeSet::new();
    for rule in status.resource_rules {
        let groups = rule.api_groups.unwrap_or_default();
        if groups
            .iter()
            .all(|g| g == "authorization.k8s.io" || g == "authentication.k8s.io")
        {
            continue;
        }
        assert!(
            rule.resource_names.unwrap_or_default().is_empty(),
            "unexpected resourceNames rule"
        );
        for g in &groups {
            for r in rule.resources.iter().flatten() {
                for v in &rule.verbs {
                    out.insert((g.clone(), r.clone(), v.clone()));
                }
            }
        }
    }
    out
}

fn triples(list: &[(&str, &str, &[&str])]) -> BTreeSet<(String, String, String)> {
    list.iter()
        .flat_map(|(g, r, verbs)| {
            verbs
                .iter()
                .map(move |v| (g.to_string(), r.to_string(), v.to_string()))
        })
        .collect()
}

/// The ClusterRole, rule for rule: the exact grant in every namespace.
const CLUSTER_GRANT: &[(&str, &str, &[&str])] = &[
    (NPD, POOLS, &["get", "list", "watch", "patch"]),
    (NPD, "nomadclientpools/status", &["update"]),
    (
        NPD,
        RETIREMENTS,
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    ),
    (
        NPD,
        "nomadclientretirements/status",
        &["get", "update", "patch"],
    ),
    (NPD, "nomadclientretirements/finalizers", &["update"]),
    ("", "secrets", &["get"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];
/// The leader-election Role, in nomad-pool-system only.
const LEASE_GRANT: &[(&str, &str, &[&str])] =
    &[("coordination.k8s.io", "leases", &["get", "create", "patch"])];

// ---------------------------------------------------------------------------
// Tests

/// The Deployment and Service render as documented: hardened pod, probes on
/// the metrics port, downward-API env, the placeholder image.
#[tokio::test(flavor = "multi_thread")]
async fn deploy_renders_a_locked_down_deployment_and_metrics_service() {
    let objects = render("deploy");
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from([
            "ClusterRole",
            "ClusterRoleBinding",
            "CustomResourceDefinition",
            "Deployment",
            "Namespace",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ])
    );
    // Each CRD is the committed file, not a copy (compared as typed objects:
    // kustomize writes the file's `minimum: 0.0` as `0`), and there is no other.
    let rendered_crds: BTreeSet<&str> = objects
        .iter()
        .filter(|o| o["kind"] == "CustomResourceDefinition")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        rendered_crds,
        CRD_FILES.iter().map(|(name, _)| *name).collect(),
        "deploy/ renders every committed CRD"
    );
    for (name, file) in CRD_FILES {
        let committed: CustomResourceDefinition =
            serde_yaml::from_str(&std::fs::read_to_string(repo_root().join(file)).unwrap())
                .unwrap();
        let rendered: CustomResourceDefinition =
            serde_json::from_value(find(&objects, "CustomResourceDefinition", name).clone())
                .unwrap();
        assert!(
            rendered.spec == committed.spec,
            "deploy/ must render {file} unchanged"
        );
    }

    for o in &objects {
        if o["kind"] != "Namespace"
            && o["kind"] != "CustomResourceDefinition"
            && !o["kind"].as_str().unwrap().starts_with("Cluster")
        {
            assert_eq!(o["metadata"]["namespace"], SYSTEM_NS, "{o}");
        }
    }

    let d = find(&objects, "Deployment", SA);
    assert_eq!(d["spec"]["replicas"], 2);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], SA);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], "ghcr.io/nomadpool/nomad-pool-operator:0.1.0");
    assert_eq!(c["args"], json!(["run", "--log-json"]));
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(sc["capabilities"]["add"].is_null());
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);

    let r = &c["resources"];
    assert_eq!(r["requests"], json!({"cpu": "50m", "memory": "64Mi"}));
    assert_eq!(r["limits"], json!({"cpu": "500m", "memory": "256Mi"}));

    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");

    let env: Vec<(&str, &str)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap(),
                e["valueFrom"]["fieldRef"]["fieldPath"]
                    .as_str()
                    .or(e["value"].as_str())
                    .unwrap(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [
            ("POD_NAME", "metadata.name"),
            ("POD_NAMESPACE", "metadata.namespace"),
            // The operator's own AWS identity is lent to no namespace.
            ("NPO_AMBIENT_CREDENTIALS_NAMESPACES", ""),
        ]
    );

    let selector = &d["spec"]["selector"]["matchLabels"];
    let labels = &d["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector.as_object().unwrap() {
        assert_eq!(&labels[k], v, "pod template lacks selector label {k}");
    }

    let svc = find(&objects, "Service", "nomad-pool-operator-metrics");
    assert_eq!(svc["spec"]["selector"], *selector);
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );

    // The bindings name the account the Deployment runs as.
    for (kind, name) in [
        ("ClusterRoleBinding", SA),
        ("RoleBinding", "nomad-pool-operator-leader-election"),
    ] {
        assert_eq!(
            find(&objects, kind, name)["subjects"],
            json!([{"kind": "ServiceAccount", "name": SA, "namespace": SYSTEM_NS}])
        );
    }
}

/// The ServiceAccount may do exactly what the operator needs: each request in
/// MUST is allowed, each in MUST_NOT denied, and the full rule set in the
/// pool's namespace and in nomad-pool-system is exactly the documented one.
#[tokio::test(flavor = "multi_thread")]
async fn service_account_has_exactly_the_documented_rights() {
    let admin = kube_client().await;
    install_deploy_base(&admin, &render("deploy")).await;
    let pool_ns = create_namespace(&admin, "deploy-rbac").await;
    let kubeconfig = service_account_kubeconfig(&admin, "rbac").await;
    let as_sa = client_from(&kubeconfig).await;

    let mut wrong = vec![];
    for r in MUST {
        if !allowed(&as_sa, *r, &pool_ns).await {
            wrong.push(format!("denied but needed: {r:?}"));
        }
    }
    for r in MUST_NOT {
        if allowed(&as_sa, *r, &pool_ns).await {
            wrong.push(format!("allowed but must not be: {r:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    let cluster = triples(CLUSTER_GRANT);
    assert_eq!(granted_rules(&as_sa, &pool_ns).await, cluster);
    let mut system = cluster.clone();
    system.extend(triples(LEASE_GRANT));
    assert_eq!(granted_rules(&as_sa, SYSTEM_NS).await, system);

    // And the API server agrees in practice, not only in reviews.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(as_sa.clone(), &pool_ns);
    match secrets.list(&ListParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("listing Secrets must be forbidden, got {other:?}"),
    }
    match secrets.get("absent").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404, "a get is allowed: {s:?}"),
        other => panic!("expected 404 for a missing Secret, got {other:?}"),
    }

    let _ = std::fs::remove_file(&kubeconfig);
    delete_namespace(&admin, &pool_ns).await;
}

/// The example pools are valid against the installed CRD (schema and CEL
/// rules), checked with a server-side dry run.
#[tokio::test(flavor = "multi_thread")]
async fn example_pools_pass_the_api_servers_validation() {
    let admin = kube_client().await;
    install_deploy_base(&admin, &render("deploy")).await;
    let ns = create_namespace(&admin, "deploy-examples").await;
    let ar = ApiResource {
        group: NPD.into(),
        version: "v1alpha1".into(),
        api_version: "nomadpool.dev/v1alpha1".into(),
        kind: "NomadClientPool".into(),
        plural: POOLS.into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &ns, &ar);
    let dir = repo_root().join("examples/pools");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "examples/pools/ has the example pools");
    let mut dry_run_seen = false;
    for file in &files {
        let pool: Value = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(pool["kind"], "NomadClientPool", "{}", file.display());
        dry_run_seen |= pool["spec"]["disruption"]["dryRun"] == true;
        let name = pool["metadata"]["name"].as_str().unwrap();
        let mut pp = PatchParams::apply(FIELD_MANAGER);
        pp.dry_run = true;
        api.patch(name, &pp, &Patch::Apply(&pool))
            .await
            .unwrap_or_else(|e| panic!("{} is rejected: {e}", file.display()));
    }
    assert!(dry_run_seen, "one example is a dry-run pool");
    delete_namespace(&admin, &ns).await;
}
