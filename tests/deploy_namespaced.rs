//! `deploy/namespaced/` against the real API server: the operator watches a
//! list of namespaces (`ci`, `batch`) and holds rights there only. Its
//! ServiceAccount cannot read Secrets in `kube-system` or in a namespace it
//! does not watch, yet runs a whole scale-in in a watched one.
//!
//! Shares the API server and the ServiceAccount with `tests/deploy.rs`,
//! whose cluster-wide install would widen the account: installing the
//! namespaced variant removes that install's ClusterRoleBinding, as
//! switching an installation from one variant to the other must.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{
    DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, Client, ResourceExt};
use nomad_pool_operator::api::NomadClientRetirement;
use npo_testkit::deploy::*;
use npo_testkit::*;
use serde_json::{Value, json};

/// The namespaces deploy/namespaced/ watches.
const WATCHED: [&str; 2] = ["ci", "batch"];
const T: Duration = Duration::from_secs(60);

fn id(o: &Value) -> (String, String, String) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["namespace"]),
        s(&o["metadata"]["name"]),
    )
}

/// What the namespaced variant renders: the base's objects, a Role and
/// RoleBinding per watched namespace, no cluster-wide grant, and the
/// Deployment watching exactly the namespaces it has a Role in.
#[tokio::test(flavor = "multi_thread")]
async fn namespaced_variant_grants_rights_per_watched_namespace_only() {
    let cluster_wide = render("deploy");
    let namespaced = render("deploy/namespaced");
    let ids: BTreeSet<_> = namespaced.iter().map(id).collect();
    for o in &cluster_wide {
        let (kind, _, _) = id(o);
        if kind == "ClusterRole" || kind == "ClusterRoleBinding" {
            assert!(!ids.contains(&id(o)), "namespaced variant renders {o}");
        } else {
            assert!(ids.contains(&id(o)), "namespaced variant lacks {:?}", id(o));
        }
    }
    assert!(
        !namespaced
            .iter()
            .any(|o| o["kind"].as_str().unwrap().starts_with("Cluster")),
        "no ClusterRole or ClusterRoleBinding in namespaced mode"
    );
    let cluster_role = cluster_wide
        .iter()
        .find(|o| o["kind"] == "ClusterRole")
        .unwrap();
    let mut role_namespaces = BTreeSet::new();
    for o in &namespaced {
        let (kind, ns, name) = id(o);
        if name != SA || !(kind == "Role" || kind == "RoleBinding") {
            continue;
        }
        role_namespaces.insert(ns.clone());
        if kind == "Role" {
            assert_eq!(
                o["rules"], cluster_role["rules"],
                "the Role in {ns} grants what the ClusterRole grants everywhere"
            );
        } else {
            assert_eq!(o["roleRef"]["kind"], "Role");
            assert_eq!(
                o["subjects"],
                json!([{"kind": "ServiceAccount", "name": SA, "namespace": SYSTEM_NS}])
            );
        }
    }
    assert_eq!(
        role_namespaces,
        WATCHED.iter().map(|s| s.to_string()).collect()
    );
    let mut args = deployment_args(&cluster_wide);
    args.push(format!("--namespace={}", WATCHED.join(",")));
    assert_eq!(deployment_args(&namespaced), args);
}

/// Apply what deploy/namespaced/ renders except what needs a kubelet; the
/// watched namespaces are created first (an install expects them to exist).
async fn install(admin: &Client, objects: &[Value]) {
    for ns in WATCHED {
        let api: Api<Namespace> = Api::all(admin.clone());
        if api.get_opt(ns).await.unwrap().is_none() {
            let n = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
            api.create(&PostParams::default(), &n).await.unwrap();
        }
    }
    // Switching from the cluster-wide variant (tests/deploy.rs installs it
    // on this API server) removes its grant; kubectl apply --prune would.
    let crbs: Api<ClusterRoleBinding> = Api::all(admin.clone());
    let _ = crbs.delete(SA, &DeleteParams::default()).await;
    let crs: Api<ClusterRole> = Api::all(admin.clone());
    let _ = crs.delete(SA, &DeleteParams::default()).await;

    let order = [
        "CustomResourceDefinition",
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
    ];
    for kind in order {
        for obj in objects.iter().filter(|o| o["kind"] == kind) {
            let api_version = obj["apiVersion"].as_str().unwrap();
            let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
            let (ar, caps) = pinned_kind(admin, &GroupVersionKind::gvk(group, version, kind))
                .await
                .unwrap();
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Cluster => Api::all_with(admin.clone(), &ar),
                Scope::Namespaced => Api::namespaced_with(
                    admin.clone(),
                    obj["metadata"]["namespace"].as_str().unwrap(),
                    &ar,
                ),
            };
            let name = obj["metadata"]["name"].as_str().unwrap();
            api.patch(
                name,
                &PatchParams::apply("npo-tests").force(),
                &Patch::Apply(obj),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
        }
    }
    install_crd(admin).await;
}

async fn allowed(as_sa: &Client, verb: &str, resource: &str, namespace: &str) -> bool {
    let (group, resource) = resource.split_once('/').unwrap_or(("", resource));
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource,
                                        "namespace": namespace}}
    }))
    .unwrap();
    Api::<SelfSubjectAccessReview>::all(as_sa.clone())
        .create(&PostParams::default(), &review)
        .await
        .unwrap()
        .status
        .unwrap()
        .allowed
}

/// Installed from deploy/namespaced/, the ServiceAccount cannot read Secrets
/// in kube-system or in a namespace it does not watch (reviews and real
/// requests agree), and the operator, run as that account with the
/// Deployment's arguments, retires a client of a pool in `ci` and leaves a
/// pool in an unwatched namespace alone, without being denied anything.
#[tokio::test(flavor = "multi_thread")]
async fn namespaced_operator_reads_no_secret_outside_its_namespaces_and_drives_a_watched_pool() {
    let admin = kube_client().await;
    let objects = render("deploy/namespaced");
    install(&admin, &objects).await;
    let kubeconfig = service_account_kubeconfig(&admin, "namespaced").await;
    let as_sa = client_from(&kubeconfig).await;
    let unwatched = create_namespace(&admin, "unwatched").await;

    assert_rights_in_watched_namespaces_only(&as_sa, &unwatched).await;

    // A pool in ci, driven by the operator as the ServiceAccount.
    let mut w = World::new(
        "nsmode",
        WorldOptions {
            size: 3,
            ..Default::default()
        },
    )
    .await;
    let own_namespace = std::mem::replace(&mut w.namespace, "ci".into());
    let pool = unique("pool");
    let secret = unique("aws");
    let keys = json!({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"});
    for ns in ["ci", unwatched.as_str()] {
        create_secret(&admin, ns, &secret, "aws-credentials", keys.clone()).await;
    }
    let refs = json!({"replicas": 2, "provider": {"awsAutoScalingGroup": {"credentialsSecretRef": {"name": secret}}}});
    // The same pool in the unwatched namespace: nobody may touch it.
    let mut stray = w.pool_manifest(&pool, refs.clone());
    stray["metadata"]["namespace"] = json!(unwatched);
    Api::<DynamicObject>::namespaced_with(admin.clone(), &unwatched, &pool_resource())
        .patch(
            &pool,
            &PatchParams::apply("npo-tests"),
            &Patch::Apply(&stray),
        )
        .await
        .unwrap();

    let lease = unique("npo-namespaced-lease");
    let (operator, log) = start_operator_as_sa(&objects, &kubeconfig, &lease, &pool);
    let log_tail = || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };

    w.apply_pool(&w.pool_manifest(&pool, refs)).await;
    let start = Instant::now();
    loop {
        let st = w.status(&pool).await;
        if st.retired_total == 1
            && st.retiring.is_empty()
            && condition(&st, "Ready").is_some_and(|c| c.status == "True")
        {
            break;
        }
        if let Some(exit) = operator.exited() {
            panic!("the operator exited ({exit}):\n{}", log_tail());
        }
        assert!(
            start.elapsed() < T,
            "the pool in ci did not settle at 2\nstatus: {}\nlog:\n{}",
            serde_json::to_string_pretty(&st).unwrap(),
            log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(w.group().await.desired, 2);
    w.sim.assert_no_violations().await;

    let stray = Api::<DynamicObject>::namespaced_with(admin.clone(), &unwatched, &pool_resource())
        .get(&pool)
        .await
        .unwrap();
    assert!(
        stray.metadata.finalizers.is_none() && stray.data.get("status").is_none(),
        "the pool in the unwatched namespace was touched: {stray:?}"
    );
    assert_never_denied(&log);

    operator.kill().await;
    remove_test_objects(&admin, &pool, &secret, &unwatched, &lease).await;
    let _ = std::fs::remove_file(&kubeconfig);
    w.namespace = own_namespace;
    w.cleanup().await;
}

/// What the test left in shared namespaces (ci, nomad-pool-system).
async fn remove_test_objects(
    admin: &Client,
    pool: &str,
    secret: &str,
    unwatched: &str,
    lease: &str,
) {
    let pools: Api<DynamicObject> = Api::namespaced_with(admin.clone(), "ci", &pool_resource());
    let _ = pools.delete(pool, &DeleteParams::default()).await;
    // The operator is gone: drop its finalizer so the pool goes.
    let _ = pools
        .patch(
            pool,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    // Its retirements too: GC of ownerReferences does not run here, and a
    // retirement left unfinished still holds the operator's finalizer.
    let retirements: Api<NomadClientRetirement> = Api::namespaced(admin.clone(), "ci");
    let labelled = ListParams::default().labels(&format!("{POOL_LABEL}={pool}"));
    for r in retirements
        .list(&labelled)
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let name = r.name_any();
        let _ = retirements
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await;
        let _ = retirements.delete(&name, &DeleteParams::default()).await;
    }
    let _ = Api::<Secret>::namespaced(admin.clone(), "ci")
        .delete(secret, &DeleteParams::default())
        .await;
    delete_namespace(admin, unwatched).await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(admin.clone(), SYSTEM_NS);
    let _ = leases.delete(lease, &DeleteParams::default()).await;
}

fn assert_never_denied(log: &std::path::Path) {
    let text = std::fs::read_to_string(log).unwrap();
    for line in text.lines() {
        let l = line.to_ascii_lowercase();
        assert!(
            !(l.contains("forbidden") || l.contains("\"code\":403")),
            "the operator was denied something:\n{line}"
        );
    }
}

/// Reviews: Secrets and pools in the watched namespaces only; real
/// requests agree (403 outside, 404 for an absent Secret inside).
async fn assert_rights_in_watched_namespaces_only(as_sa: &Client, unwatched: &str) {
    let mut wrong = vec![];
    for ns in WATCHED {
        for (verb, resource) in [
            ("get", "secrets"),
            ("watch", "nomadpool.dev/nomadclientpools"),
            ("update", "nomadpool.dev/nomadclientpools/status"),
            ("create", "nomadpool.dev/nomadclientretirements"),
            ("watch", "nomadpool.dev/nomadclientretirements"),
            ("update", "nomadpool.dev/nomadclientretirements/status"),
        ] {
            if !allowed(as_sa, verb, resource, ns).await {
                wrong.push(format!("denied {verb} {resource} in {ns}"));
            }
        }
    }
    for ns in ["kube-system", unwatched, SYSTEM_NS, "default", ""] {
        for (verb, resource) in [
            ("get", "secrets"),
            ("list", "nomadpool.dev/nomadclientpools"),
            ("list", "nomadpool.dev/nomadclientretirements"),
            ("delete", "nomadpool.dev/nomadclientretirements"),
            ("create", "events.k8s.io/events"),
        ] {
            if allowed(as_sa, verb, resource, ns).await {
                wrong.push(format!("allowed {verb} {resource} in {ns:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // Real requests agree: 403 outside, 404 (allowed, absent) inside.
    for (ns, code) in [("kube-system", 403), (unwatched, 403), ("ci", 404)] {
        let secrets: Api<Secret> = Api::namespaced(as_sa.clone(), ns);
        match secrets.get("npo-absent").await {
            Err(kube::Error::Api(s)) => assert_eq!(s.code, code, "get Secret in {ns}: {s:?}"),
            other => panic!("get Secret in {ns}: {other:?}"),
        }
    }
}

/// The operator binary as the ServiceAccount, with the Deployment's
/// arguments and what a pod would get; its log file.
fn start_operator_as_sa(
    objects: &[Value],
    kubeconfig: &std::path::Path,
    lease: &str,
    test: &str,
) -> (Operator, PathBuf) {
    let log = log_dir().join(format!("operator-deploy-namespaced-{test}.log"));
    let mut cmd = as_service_account(
        &deployment_args(objects),
        kubeconfig,
        "nomad-pool-operator-0",
        log.clone(),
    )
    .args(["--lease-namespace", SYSTEM_NS, "--lease-name", lease])
    .args(["--metrics-addr", "127.0.0.1:0"]);
    cmd.truncate_log = true;
    (Operator::spawn(cmd), log)
}

fn pool_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "nomadpool.dev".into(),
        version: "v1alpha1".into(),
        api_version: "nomadpool.dev/v1alpha1".into(),
        kind: "NomadClientPool".into(),
        plural: "nomadclientpools".into(),
    }
}
