//! Smoke tests proving each part of the test environment is real: the API
//! server enforces the CRD schema and RBAC, moto speaks the Auto Scaling API,
//! and the simulator answers the operator's own Nomad client.

use std::time::Duration;

use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use nomad_pool_operator::nomad::{NomadClient, NomadConfig, QueryOptions};
use npo_testkit::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn api_server_rejects_a_pool_that_violates_the_schema() {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = create_namespace(&client, "schema").await;
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
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
    let bad: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
        "metadata": {"name": "bad"},
        "spec": {"nomad": {"address": "http://n:4646"}, "selector": {"nodePool": "ci"},
                 "provider": {"awsAutoScalingGroup": {"name": "g", "region": "us-east-1"}},
                 "replicas": "three"}
    }))
    .unwrap();
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("a string replicas must be rejected");
    assert!(err.to_string().contains("spec.replicas"), "{err}");
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn token_request_works_and_rbac_denies_an_unprivileged_account() {
    let client = kube_client().await;
    let ns = create_namespace(&client, "rbac").await;
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "nobody"}})).unwrap();
    sas.create(&PostParams::default(), &sa).await.unwrap();
    let req: TokenRequest =
        serde_json::from_value(json!({"spec": {"audiences": [], "expirationSeconds": 600}}))
            .unwrap();
    let token = sas
        .create_token_request("nobody", &PostParams::default(), &req)
        .await
        .expect("TokenRequest");
    let token = token.status.expect("token status").token;
    assert!(!token.is_empty());

    // Same server and CA as the admin kubeconfig, but only the account's token.
    let kubeconfig = kube::config::Kubeconfig::read_from(env_var("KUBECONFIG")).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.auth_info = kube::config::AuthInfo {
        token: Some(token.into()),
        ..Default::default()
    };
    let as_sa = Client::try_from(config).unwrap();
    let pods: Api<Pod> = Api::namespaced(as_sa, &ns);
    let err = pods
        .list(&ListParams::default())
        .await
        .expect_err("RBAC must deny listing pods");
    match err {
        kube::Error::Api(s) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("expected 403, got {other}"),
    }
    delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn moto_serves_auto_scaling_groups_to_the_rust_sdk() {
    let asg = asg_client();
    let name = unique("smoke");
    create_group(&asg, &name, 1, 5, 3).await;
    let g = describe_group(&asg, &name).await;
    assert_eq!(g.desired, 3);
    assert_eq!(g.instances.len(), 3);
    assert!(
        g.instances.iter().all(|i| i.lifecycle == "InService"),
        "{g:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn simulator_answers_the_operators_nomad_client() {
    let sim = Sim::start(SimOptions::default()).await;
    sim.post("/sim/nodes", json!({"count": 3, "node_pool": "ci"}))
        .await;
    let nomad = NomadClient::new(NomadConfig {
        address: sim.url.clone(),
        ..Default::default()
    })
    .unwrap();
    let nodes = nomad
        .list_nodes(Some(r#"NodePool == "ci""#), &QueryOptions::default())
        .await
        .unwrap();
    assert_eq!(nodes.value.len(), 3);
    assert!(nodes.index > 0);
    // A blocking query returns as soon as a node changes.
    let index = nodes.index;
    let id = nodes.value[0].id.clone();
    let waiter = tokio::spawn({
        let nomad = nomad.clone();
        async move {
            nomad
                .list_nodes(
                    None,
                    &QueryOptions {
                        index,
                        wait: Some(Duration::from_secs(30)),
                        stale: false,
                        background: false,
                    },
                )
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    nomad.set_eligibility(&id, false).await.unwrap();
    let woke = tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .expect("blocking query woke")
        .unwrap()
        .unwrap();
    assert!(woke.index > index);
}
