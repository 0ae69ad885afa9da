//! The operator installed from `deploy/` runs a whole scale-in as its
//! ServiceAccount, with only the RBAC the manifests grant.
//!
//! No kubelet runs in the test environment, so the Deployment is rendered but
//! not applied; the operator binary runs as a child process with a kubeconfig
//! holding only the ServiceAccount's token, with the Deployment's own
//! arguments. (What the manifests render and grant is `tests/deploy.rs`.)

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use nomad_pool_operator::api::{RetirePhase, RetireReason};
use npo_testkit::deploy::*;
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// The operator binary as the ServiceAccount, with the Deployment's arguments
/// plus what a pod gets from its manifest and the downward API.
struct SaOperator {
    op: Operator,
    pod_name: String,
    lease_name: String,
    metrics: String,
}

impl SaOperator {
    async fn start(kubeconfig: &Path, deploy_args: &[String], namespace: &str) -> SaOperator {
        let log = log_dir().join(format!("operator-deploy-{namespace}.log"));
        let pod_name = unique("nomad-pool-operator-pod");
        let lease_name = unique("npo-deploy-lease");
        // A free port now; the operator binds it a moment later.
        let metrics = format!("127.0.0.1:{}", free_port());
        let cmd = as_service_account(deploy_args, kubeconfig, &pod_name, log).args([
            "--namespace",
            namespace,
            "--lease-namespace",
            SYSTEM_NS,
            "--lease-name",
            &lease_name,
            "--metrics-addr",
            &metrics,
        ]);
        SaOperator {
            op: Operator::spawn(cmd),
            pod_name,
            lease_name,
            metrics,
        }
    }

    fn log_text(&self) -> String {
        self.op.log_text()
    }

    fn log_tail(&self) -> String {
        self.op.log_tail()
    }

    /// Fail at once, with the log, if the process has exited (a replica
    /// denied its Lease, for one, exits instead of waiting).
    fn assert_running(&self) {
        if let Some(status) = self.op.exited() {
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
        self.op.kill_now();
    }
}

async fn wait_status(
    w: &World,
    op: &SaOperator,
    name: &str,
    what: &str,
    pred: impl Fn(&PoolView) -> bool,
) -> PoolView {
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

/// Installed from `deploy/`, the operator runs a whole scale-in as its
/// ServiceAccount: leader Lease, pool watch, finalizer, status, AWS Secret,
/// events, and the cleanup on deletion. No request is denied on the way.
#[tokio::test(flavor = "multi_thread")]
async fn operator_runs_a_scale_in_with_only_the_deploy_rbac() {
    let admin = kube_client().await;
    let objects = render("deploy");
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

    // Events were recorded, by this operator, about the pool or (those
    // about one client) its retirements.
    let events: Api<Event> = Api::namespaced(admin.clone(), &w.namespace);
    let ours: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.reporting_controller.as_deref() == Some("nomad-pool-operator")
                && e.regarding.as_ref().is_some_and(|r| {
                    r.name.as_deref() == Some("pool")
                        || r.kind.as_deref() == Some("NomadClientRetirement")
                })
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
