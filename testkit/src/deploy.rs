//! The install manifests (`deploy/`, `deploy/namespaced/`) as the deploy
//! tests use them: rendered with `kubectl kustomize`, applied (all but what
//! needs a kubelet), and the operator run as their ServiceAccount with the
//! Deployment's own arguments.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::discovery::{Scope, pinned_kind};
use kube::{Api, Client};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cluster::wait_crd_established;
use crate::env::{env_var, repo_root, unique};
use crate::operator::OperatorCmd;

/// Where the manifests install the operator.
pub const SYSTEM_NS: &str = "nomad-pool-system";
/// The operator's ServiceAccount, Deployment and ClusterRole.
pub const SA: &str = "nomad-pool-operator";

/// `kubectl kustomize <dir>` (relative to the repository), one JSON value
/// per document.
pub fn render(dir: &str) -> Vec<Value> {
    let kubectl = env_var("NPO_KUBECTL");
    let out = std::process::Command::new(&kubectl)
        .arg("kustomize")
        .arg(repo_root().join(dir))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {kubectl} kustomize: {e}"));
    assert!(
        out.status.success(),
        "kubectl kustomize {dir} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).expect("kustomize output is YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// The operator container's arguments in the rendered Deployment.
pub fn deployment_args(objects: &[Value]) -> Vec<String> {
    let d = objects
        .iter()
        .find(|o| o["kind"] == "Deployment" && o["metadata"]["name"] == SA)
        .expect("the manifests render the operator's Deployment");
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("the operator container has args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("deploy/ renders no {kind} {name}"))
}

pub fn gvk(obj: &Value) -> GroupVersionKind {
    let api_version = obj["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    GroupVersionKind::gvk(group, version, obj["kind"].as_str().unwrap())
}

/// Server-side apply everything `deploy/` renders except what needs a kubelet
/// (Deployment, Service), in dependency order; wait for the CRDs to be served.
pub async fn install_deploy_base(client: &Client, objects: &[Value]) {
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
                &PatchParams::apply("npo-tests").force(),
                &Patch::Apply(obj),
            )
            .await
            .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
        }
    }
    wait_crd_established(client, Duration::from_secs(60)).await;
}

/// A short-lived token for the operator's ServiceAccount, written into a
/// kubeconfig (readable by the user only) with the admin kubeconfig's server
/// and CA and nothing else.
pub async fn service_account_kubeconfig(admin: &Client, test: &str) -> PathBuf {
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

/// The operator binary as the ServiceAccount, with the Deployment's
/// arguments (`deploy_args`) and only what a pod gets from its manifest and
/// the downward API; the caller adds namespace, lease and metrics flags.
pub fn as_service_account(
    deploy_args: &[String],
    kubeconfig: &Path,
    pod_name: &str,
    log: PathBuf,
) -> OperatorCmd {
    let mut cmd = OperatorCmd::with_args(deploy_args.iter().cloned(), log)
        .env("KUBECONFIG", kubeconfig.display().to_string())
        .env("POD_NAME", pod_name)
        .env("POD_NAMESPACE", SYSTEM_NS)
        .env("NPO_LOG", "info,nomad_pool_operator=debug");
    cmd.clean_env = true;
    cmd
}
