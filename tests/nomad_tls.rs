//! The operator reaches a Nomad that requires TLS with client certificates
//! and an ACL token, all taken from Secrets named in the pool's spec; a pool
//! trusting the wrong CA is reported, not retried in a tight loop.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use npo_testkit::pki::{PkiNames, make_pki, read};
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

/// A CA, a server certificate named like Nomad's (`server.global.nomad`) for
/// 127.0.0.1, and a client certificate.
fn pki(tag: &str, ca: &str) -> PathBuf {
    make_pki(
        &format!("npo-tls-{tag}"),
        &PkiNames {
            ca,
            server_san: "DNS:server.global.nomad,IP:127.0.0.1",
            leaf: "nomad",
        },
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_drives_a_nomad_that_requires_mtls_and_a_token() {
    let client = kube_client().await;
    install_crd(&client).await;
    let ns = create_namespace(&client, "tls").await;
    let good = pki("good", "nomad test CA");
    let wrong = pki("wrong", "some other CA");

    let sim = nomad_sim::serve(nomad_sim::Config {
        tls: Some(nomad_sim::TlsConfig {
            cert: good.join("server.pem"),
            key: good.join("server.key"),
            client_ca: Some(good.join("ca.pem")),
        }),
        acl_tokens: vec![("s3cret-token".into(), nomad_sim::acl::Policy::NodeWrite)],
        ..Default::default()
    })
    .await
    .expect("TLS simulator");
    let address = sim.url();
    assert!(address.starts_with("https://"));

    // The control surface needs the client certificate too.
    let identity = format!("{}{}", read(&good, "client.pem"), read(&good, "client.key"));
    let control = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(read(&good, "ca.pem").as_bytes()).unwrap(),
        )
        .identity(reqwest::Identity::from_pem(identity.as_bytes()).unwrap())
        .build()
        .unwrap();
    let asg = asg_client();
    let group = unique("tls");
    create_group(&asg, &group, 0, 5, 2).await;
    // The pool "good" drives it; "wrong" never gets past Nomad.
    tag_group(&asg, &group, &format!("{ns}/good")).await;
    let instances: Vec<String> = describe_group(&asg, &group)
        .await
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    let resp = control
        .post(format!("{address}/sim/nodes"))
        .json(&json!({"count": 2, "node_pool": "ci", "instance_ids": instances}))
        .send()
        .await
        .expect("control surface over mTLS");
    assert!(resp.status().is_success());

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    for s in [
        pool_secret(
            "nomad-token",
            "nomad-token",
            json!({"token": "s3cret-token"}),
        ),
        pool_secret("nomad-ca", "tls", json!({"ca.crt": read(&good, "ca.pem")})),
        pool_secret("wrong-ca", "tls", json!({"ca.crt": read(&wrong, "ca.pem")})),
        json!({"metadata": {"name": "nomad-client", "labels": {"nomadpool.dev/secret-type": "tls"}},
               "type": "kubernetes.io/tls",
               "stringData": {"tls.crt": read(&good, "client.pem"), "tls.key": read(&good, "client.key")}}),
        pool_secret(
            "aws",
            "aws-credentials",
            json!({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}),
        ),
    ] {
        secrets
            .create(&PostParams::default(), &serde_json::from_value(s).unwrap())
            .await
            .unwrap();
    }
    let operator = Operator::start(&ns, "tls").await;
    let pools: Api<nomad_pool_operator::api::NomadClientPool> =
        Api::namespaced(client.clone(), &ns);
    let pool = |name: &str, ca: &str| {
        json!({"apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool", "metadata": {"name": name},
               "spec": {
                   "nomad": {"address": address, "tokenSecretRef": {"name": "nomad-token"},
                             "tls": {"caSecretRef": {"name": ca}, "clientCertSecretRef": {"name": "nomad-client"},
                                     "serverName": "server.global.nomad"}},
                   "selector": {"nodePool": "ci"},
                   "provider": {"awsAutoScalingGroup": {"name": group, "region": "us-east-1",
                                "endpoint": moto_endpoint(), "credentialsSecretRef": {"name": "aws"}}},
                   "replicas": 1}})
    };
    let apply = |name: &str, ca: &str| {
        let pools = pools.clone();
        let manifest = pool(name, ca);
        let name = name.to_string();
        async move {
            pools
                .patch(
                    &name,
                    &kube::api::PatchParams::apply("npo-tests").force(),
                    &kube::api::Patch::Apply(&manifest),
                )
                .await
                .unwrap()
        }
    };
    let status = |name: &str| {
        let pools = pools.clone();
        let name = name.to_string();
        async move { pools.get(&name).await.unwrap().status.unwrap_or_default() }
    };

    // Every Nomad call (list, read, eligibility, drain, allocations) goes over
    // mTLS with the token: the empty client retires and its VM is terminated.
    apply("good", "nomad-ca").await;
    wait_for("a retirement to reach termination over mTLS", T, || async {
        let st = status("good").await;
        (st.terminating_nodes > 0 || st.retired_total > 0).then_some(())
    })
    .await;
    // Status names the termination before it runs (write-ahead): wait for it.
    wait_for("the group to shrink to 1", T, || async {
        (describe_group(&asg, &group).await.desired == 1).then_some(())
    })
    .await;

    // A pool trusting another CA cannot connect, and says so.
    apply("wrong", "wrong-ca").await;
    let st = wait_for("the wrong CA to be reported", T, || async {
        let st = status("wrong").await;
        condition(&st, "Degraded")
            .is_some_and(|c| c.status == "True")
            .then_some(st)
    })
    .await;
    let degraded = condition(&st, "Degraded").unwrap();
    assert_eq!(degraded.reason, "NomadUnreachable", "{degraded:?}");
    assert!(
        degraded.message.contains("certificate"),
        "the cause must be named: {}",
        degraded.message
    );
    assert!(!degraded.message.contains("s3cret-token"));
    operator.kill().await;
    let log = std::fs::read_to_string(&operator.log).unwrap();
    assert!(
        !log.contains("s3cret-token"),
        "the token leaked into the log"
    );
    sim.shutdown().await;
    delete_namespace(&client, &ns).await;
}
