//! The Kubernetes side of a test: clients, the CRD, namespaces, Secrets a
//! pool may use, and small readers of a pool's status.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use nomad_pool_operator::api::NomadClientPoolStatus;
use serde_json::{Value, json};

use crate::env::{env_var, repo_root, unique, wait_for};

pub const CRD_NAME: &str = "nomadclientpools.nomadpool.dev";

/// A client for the environment's API server, as its admin.
pub async fn kube_client() -> Client {
    client_from(Path::new(&env_var("KUBECONFIG"))).await
}

/// A client from any kubeconfig file (a private control plane, a
/// ServiceAccount's token).
pub async fn client_from(kubeconfig: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("reading a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("kube client")
}

/// The committed CRDs: what users apply.
pub const CRD_FILES: [(&str, &str); 2] = [
    (CRD_NAME, "crds/nomadclientpools.nomadpool.dev.yaml"),
    (
        "nomadclientretirements.nomadpool.dev",
        "crds/nomadclientretirements.nomadpool.dev.yaml",
    ),
];

/// Install the committed CRDs and wait until they are served.
pub async fn install_crd(client: &Client) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (name, file) in CRD_FILES {
        let yaml = std::fs::read_to_string(repo_root().join(file)).unwrap();
        let crd: CustomResourceDefinition = serde_yaml::from_str(&yaml).unwrap();
        api.patch(
            name,
            &PatchParams::apply("npo-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("applying the CRD");
    }
    wait_crd_established(client, Duration::from_secs(30)).await;
}

/// Wait until the API server serves the CRDs (however they were applied).
pub async fn wait_crd_established(client: &Client, timeout: Duration) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for (name, _) in CRD_FILES {
        wait_for("CRD established", timeout, || async {
            let crd = api.get(name).await.ok()?;
            let established = crd
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        })
        .await;
    }
}

pub async fn create_namespace(client: &Client, prefix: &str) -> String {
    let name = unique(&format!("npo-{prefix}"));
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("creating namespace");
    name
}

pub async fn delete_namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let _ = api.delete(name, &DeleteParams::default()).await;
}

/// A Secret a pool may use: labelled `nomadpool.dev/secret-type: <secret_type>`
/// (`nomad-token`, `tls`, `aws-credentials`), without which the operator
/// refuses it. `string_data` is the Secret's `stringData` object.
pub fn pool_secret(name: &str, secret_type: &str, string_data: Value) -> Value {
    json!({"metadata": {"name": name, "labels": {"nomadpool.dev/secret-type": secret_type}},
           "stringData": string_data})
}

/// Create `pool_secret(name, secret_type, string_data)` in `namespace`.
pub async fn create_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    secret_type: &str,
    string_data: Value,
) {
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), namespace);
    let s = serde_json::from_value(pool_secret(name, secret_type, string_data)).unwrap();
    api.create(&PostParams::default(), &s)
        .await
        .unwrap_or_else(|e| panic!("creating Secret {namespace}/{name}: {e}"));
}

/// The AWS credentials moto accepts, as the `aws` Secret of `namespace`.
pub async fn create_aws_secret(client: &Client, namespace: &str) {
    create_secret(
        client,
        namespace,
        "aws",
        "aws-credentials",
        json!({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}),
    )
    .await;
}

/// Deep-merge `patch` into `base` (objects merge, anything else replaces).
pub fn merge(base: &mut Value, patch: Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p,
    }
}

pub fn condition<'a>(
    st: &'a NomadClientPoolStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    st.conditions.iter().find(|c| c.type_ == type_)
}
