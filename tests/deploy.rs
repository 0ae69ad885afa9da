//! The install manifests in `deploy/` against the real API server: they render
//! with `kubectl kustomize`, the Deployment is locked down, and the RBAC they
//! grant is enough to run a whole scale-in as the operator's ServiceAccount,
//! and nothing more.
//!
//! No kubelet runs in the test environment, so the Deployment and Service are
//! rendered and inspected but not applied; the operator binary runs as a child
//! process with a kubeconfig holding only the ServiceAccount's token, with the
//! Deployment's own arguments.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::authorization::v1::{SelfSubjectAccessReview, SelfSubjectRulesReview};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, Client};
use nomad_pool_operator::api::{NomadClientPoolStatus, RetirePhase, RetireReason};
use serde::Deserialize;
use serde_json::{Value, json};
use support::*;
use tokio::process::{Child, Command};

const T: Duration = Duration::from_secs(60);
const SYSTEM_NS: &str = "nomad-pool-system";
const SA: &str = "nomad-pool-operator";
const FIELD_MANAGER: &str = "npo-tests";

// ---------------------------------------------------------------------------
// Rendering and installing deploy/

/// `kubectl kustomize deploy/`, one JSON value per document.
fn render() -> Vec<Value> {
    let kubectl = env_var("NPO_KUBECTL");
    let out = std::process::Command::new(&kubectl)
        .arg("kustomize")
        .arg(repo_root().join("deploy"))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {kubectl} kustomize: {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize deploy/ failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("kustomize output is YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/ renders no {kind} {name}"))
}

fn gvk(obj: &Value) -> GroupVersionKind {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap())
}

/// Server-side apply everything `deploy/` renders except what needs a kubelet
/// (Deployment, Service), in dependency order; wait for the CRD to be served.
async fn install_deploy_base(client: &Client, objects: &[Value]) {
    const ORDER: [&str; 7] = [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
    ];
    let skipped = ["Deployment", "Service"];
    for o in objects {
        let kind = o["kind"].as_str().unwrap();
        assert!(
            ORDER.contains(&kind) || skipped.contains(&kind),
            "deploy/ renders a {kind} this test neither applies nor inspects"
        );
    }
    for kind in ORDER {
        for obj in objects.iter().filter(|o| o["kind"] == kind) {
            let (ar, caps) = pinned_kind(client, &gvk(obj))
                .await
                .unwrap_or_else(|e| panic!("discovering {kind}: {e}"));
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Cluster => Api::all_with(client.clone(), &ar),
                Scope::Namespaced => Api::namespaced_with(
                    client.clone(),
                    obj["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or_else(|| panic!("namespaced {kind} without a namespace")),
                    &ar,
                ),
            };
            let name = obj["metadata"]["name"].as_str().unwrap();
            api.patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    wait_for("CRD established", T, || async {
        let crd = crds.get(CRD_NAME).await.ok()?;
        crd.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
}

// ---------------------------------------------------------------------------
// Acting as the ServiceAccount

/// A short-lived token for the operator's ServiceAccount, written into a
/// kubeconfig with the admin kubeconfig's server and CA and nothing else.
async fn service_account_kubeconfig(admin: &Client, test: &str) -> PathBuf {
    let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), SYSTEM_NS);
    let req: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 3600}}))
            .unwrap();
    let token = sas
        .create_token_request(SA, &PostParams::default(), &req)
        .await
        .expect("TokenRequest for the operator's ServiceAccount")
        .status
        .expect("token status")
        .token;

    let admin_config: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(env_var("KUBECONFIG")).unwrap()).unwrap();
    let cluster = admin_config["clusters"][0]["cluster"].clone();
    assert!(
        cluster["server"].is_string(),
        "admin kubeconfig has no server"
    );
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "npo-testenv", "cluster": cluster}],
        "users": [{"name": SA, "user": {"token": token}}],
        "contexts": [{"name": SA, "context": {"cluster": "npo-testenv", "user": SA, "namespace": SYSTEM_NS}}],
        "current-context": SA,
    });
    let dir = PathBuf::from(env_var("NPO_TESTENV_DIR")).join("deploy-test");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.kubeconfig", unique(test)));
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

async fn client_from(kubeconfig: &Path) -> Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    Client::try_from(config).unwrap()
}

/// The operator binary as the ServiceAccount, with the Deployment's arguments
/// plus what a pod gets from its manifest and the downward API.
struct SaOperator {
    child: Mutex<Child>,
    log: PathBuf,
    pod_name: String,
    lease_name: String,
    metrics: String,
}

impl SaOperator {
    async fn start(kubeconfig: &Path, deploy_args: &[String], namespace: &str) -> SaOperator {
        let dir = PathBuf::from(env_var("NPO_TESTENV_DIR")).join("logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("operator-deploy-{namespace}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let pod_name = unique("nomad-pool-operator-pod");
        let lease_name = unique("npo-deploy-lease");
        // A free port now; the operator binds it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let metrics = format!("127.0.0.1:{port}");
        let mut args: Vec<String> = deploy_args.to_vec();
        args.extend(
            [
                "--namespace",
                namespace,
                "--lease-namespace",
                SYSTEM_NS,
                "--lease-name",
                &lease_name,
                "--metrics-addr",
                &metrics,
            ]
            .map(String::from),
        );
        let child = Command::new(env!("CARGO_BIN_EXE_nomad-pool-operator"))
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAME", &pod_name)
            .env("POD_NAMESPACE", SYSTEM_NS)
            .env("NPO_LOG", "info,nomad_pool_operator=debug")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting the operator binary");
        SaOperator {
            child: Mutex::new(child),
            log,
            pod_name,
            lease_name,
            metrics,
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Fail at once, with the log, if the process has exited (a replica
    /// denied its Lease, for one, exits instead of waiting).
    fn assert_running(&self) {
        if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
            panic!("the operator exited ({status}):\n{}", self.log_tail());
        }
    }

    /// Poll `check` while the operator runs; on timeout, fail with its log.
    async fn wait<V, F, Fut>(&self, what: &str, mut check: F) -> V
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<V>>,
    {
        let start = Instant::now();
        loop {
            if let Some(v) = check().await {
                return v;
            }
            self.assert_running();
            assert!(
                start.elapsed() < T,
                "timed out after {T:?} waiting for {what}\noperator log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stop(&self) {
        let _ = self.child.lock().unwrap().start_kill();
    }
}

async fn wait_status(
    w: &World,
    op: &SaOperator,
    name: &str,
    what: &str,
    pred: impl Fn(&NomadClientPoolStatus) -> bool,
) -> NomadClientPoolStatus {
    let start = Instant::now();
    loop {
        let st = w.status(name).await;
        if pred(&st) {
            return st;
        }
        op.assert_running();
        assert!(
            start.elapsed() < T,
            "timed out after {T:?} waiting for {what}\nstatus: {}\noperator log:\n{}",
            serde_json::to_string_pretty(&st).unwrap(),
            op.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn http_get(url: &str) -> Option<(u16, String)> {
    let resp = reqwest::get(url).await.ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

fn deployment_args(objects: &[Value]) -> Vec<String> {
    let container = &find(objects, "Deployment", SA)["spec"]["template"]["spec"]["containers"][0];
    container["args"]
        .as_array()
        .expect("the operator container has args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

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
    let objects = render();
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
    // The CRD is the committed file, not a copy (compared as typed objects:
    // kustomize writes the file's `minimum: 0.0` as `0`).
    let committed: CustomResourceDefinition = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("crds/nomadclientpools.nomadpool.dev.yaml"))
            .unwrap(),
    )
    .unwrap();
    let rendered: CustomResourceDefinition =
        serde_json::from_value(find(&objects, "CustomResourceDefinition", CRD_NAME).clone())
            .unwrap();
    assert!(
        rendered.spec == committed.spec,
        "deploy/ must render crds/nomadclientpools.nomadpool.dev.yaml unchanged"
    );

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

/// Installed from `deploy/`, the operator runs a whole scale-in as its
/// ServiceAccount: leader Lease, pool watch, finalizer, status, AWS Secret,
/// events, and the cleanup on deletion. No request is denied on the way.
#[tokio::test(flavor = "multi_thread")]
async fn operator_runs_a_scale_in_with_only_the_deploy_rbac() {
    let admin = kube_client().await;
    let objects = render();
    install_deploy_base(&admin, &objects).await;
    let kubeconfig = service_account_kubeconfig(&admin, "scale-in").await;

    let w = World::new(
        "deploy",
        WorldOptions {
            size: 3,
            ..Default::default()
        },
    )
    .await;
    // The pool's namespace needs nothing from the install: the binding is
    // cluster-wide, and the Secret is only read by name.
    w.create_aws_secret().await;
    let op = SaOperator::start(&kubeconfig, &deployment_args(&objects), &w.namespace).await;

    // Health endpoints answer; this replica takes the Lease it may create.
    let healthz = format!("http://{}/healthz", op.metrics);
    let readyz = format!("http://{}/readyz", op.metrics);
    op.wait("/healthz and /readyz", || async {
        let h = http_get(&healthz).await?;
        let r = http_get(&readyz).await?;
        (h.0 == 200 && r.0 == 200).then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(admin.clone(), SYSTEM_NS);
    let holder = op
        .wait("the operator to hold its Lease", || async {
            leases
                .get(&op.lease_name)
                .await
                .ok()?
                .spec?
                .holder_identity
                .filter(|h| h.starts_with(&op.pod_name))
        })
        .await;

    // Every client runs a job; one retirement waits for its job.
    let mut jobs = vec![];
    for n in w.ready_nodes().await {
        let id = n["id"].as_str().unwrap().to_string();
        let alloc = w
            .sim
            .batch_on(&id, &format!("ci-build-{}", &id[..8]), None)
            .await;
        jobs.push((id, alloc));
    }
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 1}}),
    ))
    .await;
    let st = wait_status(&w, &op, "pool", "one client draining", |s| {
        s.retiring.len() == 1
            && s.retiring[0].phase == RetirePhase::Draining
            && s.retiring[0].allocations_left == 1
    })
    .await;
    assert_eq!(st.retiring[0].reason, RetireReason::ScaleIn);
    let pool = w.pools().get("pool").await.unwrap();
    assert!(
        pool.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty()),
        "the operator added its finalizer"
    );
    assert_eq!(w.group().await.desired, 3, "no VM goes while its job runs");

    let draining = st.retiring[0].node_id.clone();
    let (_, alloc) = jobs.iter().find(|(n, _)| *n == draining).unwrap();
    w.sim.finish(alloc).await;
    let st = wait_status(&w, &op, "pool", "pool settled at 2", |s| {
        s.retiring.is_empty()
            && s.retired_total == 1
            && condition(s, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_eq!(st.desired_nodes, Some(2));
    let g = w.group().await;
    assert_eq!(g.desired, 2);
    assert_eq!(g.instances.len(), 2);
    op.wait("the retired node to leave Nomad", || async {
        (w.sim.nodes().await.len() == 2).then_some(())
    })
    .await;
    w.sim.assert_no_violations().await;

    // Events were recorded, by this operator, about the pool.
    let events: Api<Event> = Api::namespaced(admin.clone(), &w.namespace);
    let ours: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reporting_controller.as_deref() == Some("nomad-pool-operator")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("pool")
        })
        .collect();
    assert!(
        !ours.is_empty(),
        "no events from the operator\n{}",
        op.log_tail()
    );
    assert!(
        ours.iter()
            .all(|e| e.reporting_instance.as_deref() == Some(op.pod_name.as_str())),
        "events name the pod (POD_NAME) as reporting instance"
    );

    // Metrics are served, and say this replica leads.
    let (code, body) = http_get(&format!("http://{}/metrics", op.metrics))
        .await
        .expect("/metrics answers");
    assert_eq!(code, 200);
    assert!(
        body.lines().any(|l| l.starts_with("nomadpool_leader 1")),
        "{body}"
    );

    // Deleting the pool runs the cleanup and removes the finalizer (patch).
    w.pools()
        .delete("pool", &DeleteParams::default())
        .await
        .unwrap();
    op.wait("the pool to be deleted", || async {
        w.pools()
            .get_opt("pool")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert_eq!(w.group().await.desired, 2, "deleting a pool keeps its VMs");

    let log = op.log_text();
    for line in log.lines() {
        let l = line.to_ascii_lowercase();
        assert!(
            !(l.contains("forbidden")
                || l.contains("\"code\":403")
                || l.contains("\"status\":403")),
            "the operator was denied something:\n{line}"
        );
    }
    // --log-json from the Deployment's args: every line is a JSON object.
    assert!(log.lines().count() > 0);
    for line in log.lines() {
        assert!(
            serde_json::from_str::<Value>(line).is_ok_and(|v| v.is_object()),
            "not a JSON log line: {line}"
        );
    }

    op.stop();
    // Nothing else may hold this test's Lease; leave no stale one behind.
    let _ = leases
        .delete(&op.lease_name, &DeleteParams::default())
        .await;
    let _ = std::fs::remove_file(&kubeconfig);
    eprintln!("lease holder was {holder}");
    w.cleanup().await;
}

/// The ServiceAccount may do exactly what the operator needs: each request in
/// MUST is allowed, each in MUST_NOT denied, and the full rule set in the
/// pool's namespace and in nomad-pool-system is exactly the documented one.
#[tokio::test(flavor = "multi_thread")]
async fn service_account_has_exactly_the_documented_rights() {
    let admin = kube_client().await;
    install_deploy_base(&admin, &render()).await;
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
    install_deploy_base(&admin, &render()).await;
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
