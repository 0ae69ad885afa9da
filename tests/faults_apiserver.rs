//! The API server restarted in the middle of a scale-in (issue 6), on a
//! private control plane so the other tests' API server stays up: nothing the
//! operator wrote is lost, nothing is done or announced twice, and the pool
//! watch resumes. Seeded like `tests/faults.rs` (`NPO_FAULT_SEED`).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::Api;
use nomad_pool_operator::api::RetirePhase;
use npo_testkit::faults::*;
use npo_testkit::proxy::aws_faults::FaultProxy;
use npo_testkit::*;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn api_server_restart_mid_scale_in_loses_and_repeats_nothing() {
    let t0 = Instant::now();
    let seed = fault_seed("apiserver-restart");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6b75_6265);
    let env = PrivateEnv::up("restart");
    let client = env.client().await;
    let up_secs = t0.elapsed().as_secs_f64();
    let w = build_world(client.clone(), "apirestart", 8).await;
    let proxy = FaultProxy::start(&moto_endpoint(), seed).await;
    let mon = GroupMonitor::start(&w).await;
    busy(&w, &mut rng, 1, 4.0..9.0).await;
    // The log goes to the shared environment's logs: the private directory
    // is removed when the test passes.
    let op = operator(
        &env.kubeconfig(),
        &w.namespace,
        &PathBuf::from(env_var("NPO_TESTENV_DIR")).join("logs"),
        "apirestart",
        &[],
    );
    w.apply_pool(&w.pool_manifest("pool", pool_spec(4, 2, Some(&proxy.url))))
        .await;
    // Two retirements in flight (the budget), whatever their phase: a client
    // whose jobs ended before it was drained goes from Cordoned straight to
    // Terminating through the express lane, never shown Draining.
    let at_kill = wait_for(
        "two retirements in flight",
        Duration::from_secs(60),
        || async {
            let st = status_of(&w, "pool").await?;
            let in_flight = (st.retiring.iter())
                .filter(|r| r.phase >= RetirePhase::Cordoned)
                .count();
            (in_flight == 2).then_some(st)
        },
    )
    .await;
    let before_kill = mon.history().gone().len();

    // The API server goes away mid-scale-in and comes back on the same
    // port with the same etcd: nothing the operator wrote is lost.
    let down_at = Instant::now();
    let cmdline = env.kill_apiserver().await;
    // Longer than the leader Lease (15 s): the operator keeps running
    // and picks up again; the scale-in waits, it is not lost.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let during_outage = mon.history().gone().len() - before_kill;
    env.start_apiserver(&cmdline, &client).await;
    let outage = down_at.elapsed().as_secs_f64();

    let settled = wait_settled(&w, &op, "pool", 4, Duration::from_secs(120)).await;
    assert!(
        op.exited().is_none(),
        "the operator exited after the API server restart:\n{}",
        op.log_tail()
    );
    assert_eq!(settled.retired_total, 4);

    // The pool watch resumed: a spec change is seen at once (an idle pool's
    // resync is 5 minutes).
    let patched = Instant::now();
    w.patch_spec("pool", json!({"replicas": 3})).await;
    wait_for(
        "the operator to see replicas 3",
        Duration::from_secs(10),
        || async {
            let st = status_of(&w, "pool").await?;
            (st.desired_nodes == Some(3)).then_some(())
        },
    )
    .await;
    let reaction = patched.elapsed().as_secs_f64();
    let st = wait_settled(&w, &op, "pool", 3, Duration::from_secs(60)).await;

    w.sim.assert_no_violations().await;
    assert_no_stranded_nodes(&w, &st).await;
    assert_cloud_invariants(&mon.history(), &proxy, 8, 3);
    assert_eq!(st.retired_total, 5, "nothing lost or counted twice");
    // Each retirement is announced once.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), &w.namespace);
    let retired: Vec<(String, i32)> = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Retired"))
        .map(|e| {
            (
                e.note.unwrap_or_default(),
                e.series.map(|s| s.count).unwrap_or(1),
            )
        })
        .collect();
    let notes: BTreeSet<&String> = retired.iter().map(|(n, _)| n).collect();
    assert_eq!(
        notes.len(),
        retired.len(),
        "repeated Retired events: {retired:?}"
    );
    assert!(
        retired.iter().all(|(_, c)| *c == 1),
        "repeated Retired events: {retired:?}"
    );
    println!(
        "[apiserver-restart] seed {seed}: private control plane up in {up_secs:.1}s; killed the apiserver with status {}; outage {outage:.1}s, {during_outage} VM(s) terminated during it; settled, then replicas 4→3 seen after {reaction:.2}s; Retired events {}; AWS calls {}; Nomad /v1 requests {}; total {:.1}s",
        phases(&at_kill),
        retired.len(),
        aws_counts(&proxy),
        total(&nomad_requests(&w.sim).await),
        t0.elapsed().as_secs_f64()
    );
    op.kill().await;
    // The namespace lives on the private control plane, which goes with `env`.
    drop(w);
    drop(env);
}
