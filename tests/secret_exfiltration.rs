//! A pool author who may create pools but not read Secrets tries to make the
//! operator send them a Secret: by naming it as the Nomad token (or as AWS
//! credentials) of a pool whose Nomad address and AWS endpoint are a listener
//! the author controls. The operator reads Secrets with its own rights, so
//! only the Secret's label (`nomadpool.dev/secret-type`) can stop it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use nomad_pool_operator::api::NomadClientPool;
use npo_testkit::*;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// The attacker's endpoint: accepts every connection and keeps what it was sent.
struct Listener {
    url: String,
    received: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start() -> Listener {
        let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", socket.local_addr().unwrap());
        let received: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let store = received.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut conn, _)) = socket.accept().await {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = Vec::new();
                    // A request's head arrives at once; then hang up unanswered.
                    let _ = tokio::time::timeout(Duration::from_secs(1), async {
                        while let Ok(n) = conn.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            got.extend_from_slice(&buf[..n]);
                        }
                    })
                    .await;
                    store.lock().unwrap().push(got);
                });
            }
        });
        Listener {
            url,
            received,
            task,
        }
    }

    fn connections(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// Fail, showing what arrived, if any of `values` did.
    fn assert_received_none_of(&self, values: &[&String]) {
        if let Some(v) = values.iter().find(|v| self.saw(v)) {
            let got: Vec<String> = self
                .received
                .lock()
                .unwrap()
                .iter()
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .collect();
            panic!("the attacker's listener received the Secret value {v:?}:\n{got:#?}");
        }
    }

    fn saw(&self, value: &str) -> bool {
        self.received
            .lock()
            .unwrap()
            .iter()
            .any(|r| String::from_utf8_lossy(r).contains(value))
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The admin kubeconfig, impersonating `user`: requests are authorised as
/// that user by the real API server's RBAC.
async fn client_as(user: &str) -> Client {
    let kubeconfig = Kubeconfig::read_from(env_var("KUBECONFIG")).unwrap();
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
    config.auth_info.impersonate = Some(user.to_string());
    Client::try_from(config).unwrap()
}

/// A Role that may do everything with pools and nothing with Secrets, bound
/// to `user` in `namespace`.
async fn grant_pool_author(admin: &Client, namespace: &str, user: &str) {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "pool-author"},
        "rules": [{"apiGroups": ["nomadpool.dev"], "resources": ["nomadclientpools"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
                  {"apiGroups": ["nomadpool.dev"], "resources": ["nomadclientpools/status"],
                   "verbs": ["get"]},
                  {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["list"]}]
    }))
    .unwrap();
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "pool-author"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pool-author"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]
    }))
    .unwrap();
    Api::<Role>::namespaced(admin.clone(), namespace)
        .create(&Default::default(), &role)
        .await
        .unwrap();
    Api::<RoleBinding>::namespaced(admin.clone(), namespace)
        .create(&Default::default(), &binding)
        .await
        .unwrap();
}

/// A client acting as `user`, who may create pools in `namespace` but not
/// read its Secrets (checked, not assumed).
async fn pool_author(admin: &Client, namespace: &str, user: &str) -> Client {
    grant_pool_author(admin, namespace, user).await;
    let client = client_as(user).await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), namespace);
    match secrets.get("db").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{s:?}"),
        other => panic!("{user} must not read Secrets: {other:?}"),
    }
    client
}

/// Wait until pool `name` is Degraded with reason SecretNotLabelled and a
/// message starting with `expected`, failing at once if the listener gets
/// any of `values`.
async fn wait_refused(
    w: &World,
    listener: &Listener,
    values: &[&String],
    name: &str,
    expected: &str,
) {
    let start = Instant::now();
    loop {
        listener.assert_received_none_of(values);
        let st = w.status(name).await;
        let degraded = condition(&st, "Degraded");
        if degraded.is_some_and(|c| {
            c.status == "True" && c.reason == "SecretNotLabelled" && c.message.starts_with(expected)
        }) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pool {name} was not refused with {expected:?}\nstatus: {}\noperator log:\n{}",
            serde_json::to_string_pretty(&st).unwrap(),
            w.operator.as_ref().unwrap().log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Secret the attacker may not read: unlabelled, or labelled for `label`.
async fn victim_secret(admin: &Client, ns: &str, name: &str, label: Option<&str>, data: Value) {
    let mut s = pool_secret(name, label.unwrap_or(""), data);
    if label.is_none() {
        s["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("labels")
            .unwrap();
    }
    let api: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(admin.clone(), ns);
    api.create(&Default::default(), &serde_json::from_value(s).unwrap())
        .await
        .unwrap();
}

/// The victims, in `ns`: a database password (unlabelled), the team's AWS
/// keys (labelled for AWS, as the pools' own) and older AWS keys nobody
/// labelled. Returns the distinctive values that must never leave.
async fn create_victims(admin: &Client, ns: &str) -> Vec<String> {
    let tag: u32 = rand::random();
    let db_password = format!("db-password-{tag:08x}");
    let ci_secret_key = format!("ci-secret-key-{tag:08x}");
    let legacy_key_id = format!("AKIALEGACY{tag:08X}");
    let legacy_secret = format!("legacy-secret-{tag:08x}");
    let legacy_session = format!("legacy-session-{tag:08x}");

    victim_secret(admin, ns, "db", None, json!({"password": db_password})).await;
    victim_secret(
        admin,
        ns,
        "aws",
        Some("aws-credentials"),
        json!({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": ci_secret_key}),
    )
    .await;
    victim_secret(
        admin,
        ns,
        "legacy-aws",
        None,
        json!({"AWS_ACCESS_KEY_ID": legacy_key_id, "AWS_SECRET_ACCESS_KEY": legacy_secret,
               "AWS_SESSION_TOKEN": legacy_session}),
    )
    .await;

    vec![
        db_password,
        ci_secret_key,
        legacy_key_id,
        legacy_secret,
        legacy_session,
    ]
}

fn attacker_pool(ns: &str, name: &str, listener: &str, extra_spec: Value) -> Value {
    let mut spec = json!({
        "nomad": {"address": listener},
        "selector": {"nodePool": "ci"},
        "replicas": 0,
        "provider": {"awsAutoScalingGroup": {
            "name": "someone-elses-group", "region": "us-east-1", "endpoint": listener,
            "credentialsSecretRef": {"name": "aws"}
        }},
    });
    merge(&mut spec, extra_spec);
    json!({"apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientPool",
           "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

/// The unlabelled database password as a Nomad token, AWS keys as a Nomad
/// token, and unlabelled AWS keys for an AWS endpoint the attacker runs: the
/// operator refuses each with a condition and an Event naming the Secret and
/// the label it lacks, and sends nothing to the attacker's listener.
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_author_cannot_make_the_operator_send_a_secret_not_labelled_for_it() {
    let mut w = World::new(
        "exfil",
        WorldOptions {
            size: 1,
            ..Default::default()
        },
    )
    .await;
    let ns = w.namespace.clone();
    let values = create_victims(&w.client, &ns).await;
    let values: Vec<&String> = values.iter().collect();
    let mallory = pool_author(&w.client, &ns, "mallory").await;
    let listener = Listener::start().await;
    w.start_operator().await;
    let pools: Api<NomadClientPool> = Api::namespaced(mallory.clone(), &ns);
    let attempts = [
        (
            "steal-db-password",
            json!({"nomad": {"tokenSecretRef": {"name": "db", "key": "password"}}}),
            "Secret {ns}/db (named by nomad.tokenSecretRef) is not labelled nomadpool.dev/secret-type=nomad-token",
        ),
        (
            "steal-aws-key-as-token",
            json!({"nomad": {"tokenSecretRef": {"name": "aws", "key": "AWS_SECRET_ACCESS_KEY"}}}),
            "Secret {ns}/aws (named by nomad.tokenSecretRef) is not labelled nomadpool.dev/secret-type=nomad-token (it is labelled nomadpool.dev/secret-type=aws-credentials)",
        ),
        (
            "steal-legacy-aws-keys",
            json!({"provider": {"awsAutoScalingGroup": {"credentialsSecretRef": {"name": "legacy-aws"}}}}),
            "Secret {ns}/legacy-aws (named by provider.awsAutoScalingGroup.credentialsSecretRef) is not labelled nomadpool.dev/secret-type=aws-credentials",
        ),
    ];
    for (name, extra, _) in &attempts {
        let pool = attacker_pool(&ns, name, &listener.url, extra.clone());
        // The API server's RBAC authorizer learns the new binding from its
        // own watch: refused for a moment on a busy machine (seen in CI).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let params = PatchParams::apply("mallory").force();
            match pools.patch(name, &params, &Patch::Apply(&pool)).await {
                Ok(_) => break,
                Err(kube::Error::Api(e)) if e.code == 403 && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("mallory may create pool {name}: {e}"),
            }
        }
    }

    // Each pool is refused, and says why; the attacker's listener gets nothing.
    for (name, _, expected) in &attempts {
        wait_refused(&w, &listener, &values, name, &expected.replace("{ns}", &ns)).await;
    }
    let refusals = wait_for(
        "an Event per refused pool",
        Duration::from_secs(15),
        || async {
            let events: Vec<(String, String)> = w
                .events()
                .await
                .into_iter()
                .filter(|(reason, _)| reason == "SecretNotLabelled")
                .collect();
            (events.len() >= attempts.len()).then_some(events)
        },
    )
    .await;
    for (_, _, expected) in &attempts {
        let expected = expected.replace("{ns}", &ns);
        assert!(
            refusals.iter().any(|(_, note)| note.starts_with(&expected)),
            "no Event says {expected:?}: {refusals:?}"
        );
    }
    // Give the operator time to misbehave (resyncs, retries) before concluding.
    tokio::time::sleep(Duration::from_secs(5)).await;
    listener.assert_received_none_of(&values);
    assert_eq!(
        listener.connections(),
        0,
        "a refused pool must send nothing anywhere"
    );
    // Nothing secret in what the attacker can read either.
    for (name, _, _) in &attempts {
        let text = serde_json::to_string(&pools.get(name).await.unwrap()).unwrap();
        for v in &values {
            assert!(!text.contains(v.as_str()), "{name} shows {v}");
        }
    }
    let _ = w.operator.take();
    w.cleanup().await;
}

/// A Secret's owner withdraws the label from a Secret a pool already uses:
/// the pool is refused at its next reconcile and its watches, which carried
/// the token to the Nomad address, stop.
#[tokio::test(flavor = "multi_thread")]
async fn removing_the_label_stops_the_use_of_a_secret_already_in_use() {
    let mut w = World::new(
        "unlabel",
        WorldOptions {
            size: 1,
            ..Default::default()
        },
    )
    .await;
    let ns = w.namespace.clone();
    let token = format!("pool-token-{:08x}", rand::random::<u32>());
    create_secret(
        &w.client,
        &ns,
        "nomad-token",
        "nomad-token",
        json!({"token": token}),
    )
    .await;
    w.create_aws_secret().await;
    // A Nomad address that never answers: the watches keep asking, with the
    // token, for as long as the pool uses it.
    let listener = Listener::start().await;
    w.start_operator().await;
    let pool = attacker_pool(
        &ns,
        "pool",
        &listener.url,
        json!({"nomad": {"tokenSecretRef": {"name": "nomad-token"}},
               "provider": {"awsAutoScalingGroup": {"name": w.group, "endpoint": moto_endpoint()}}}),
    );
    w.apply_pool(&pool).await;
    wait_for(
        "the labelled token in use",
        Duration::from_secs(30),
        || async { listener.saw(&token).then_some(()) },
    )
    .await;

    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(w.client.clone(), &ns);
    secrets
        .patch(
            "nomad-token",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"nomadpool.dev/secret-type": null}}})),
        )
        .await
        .unwrap();
    // Secrets are not watched: the refusal comes with the pool's next
    // reconcile (here a retry of the unreachable Nomad, within 15 s).
    w.wait_status("pool", "the pool refused", Duration::from_secs(40), |st| {
        condition(st, "Degraded").is_some_and(|c| c.reason == "SecretNotLabelled")
    })
    .await;
    // Requests already in flight may land; then nothing more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = listener.connections();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        listener.connections(),
        before,
        "the pool kept sending its token after the label was removed"
    );
    let _ = w.operator.take();
    w.cleanup().await;
}
