//! The operator stays under a Nomad agent's per-IP connection limit
//! (`limits.http_max_conns_per_client`, enforced by the simulator as Nomad
//! does: a connection over it is refused with a 429), however many
//! retirements are in flight: end to end, the operator binary against the
//! real API server, moto and the simulator.
//!
//! Scaled down to stay fast: 40 clients retire at once against an agent
//! that accepts 24 connections from the test's IP (the operator's, and the
//! test's own few to the control surface), with the operator's cap at 16.
//! Before the cap, one parked allocation query per client alone went past
//! the limit.

use std::time::Duration;

use nomad_pool_operator::api::RetirePhase;
use npo_testkit::*;
use serde_json::json;

const CLIENTS: i32 = 40;
const AGENT_LIMIT: usize = 24;
const OPERATOR_CAP: &str = "16";

#[tokio::test(flavor = "multi_thread")]
async fn forty_retirements_at_once_never_open_more_connections_than_nomad_allows() {
    let mut w = World::new(
        "conns",
        WorldOptions {
            size: CLIENTS,
            sim: SimOptions {
                http_max_conns_per_client: AGENT_LIMIT,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    w.create_aws_secret().await;
    w.operator = Some(
        Operator::start_with_env(
            &w.namespace,
            &w.test,
            "nomad-pool-operator",
            &[],
            &[("NPO_NOMAD_MAX_CONNECTIONS", OPERATOR_CAP)],
        )
        .await,
    );
    // Every client runs a job, so each retirement parks on its allocations.
    let jobs = w.busy_everywhere().await;
    assert_eq!(jobs.len(), CLIENTS as usize);
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 0, "disruption": {"maxUnavailable": CLIENTS}}),
    ))
    .await;
    w.wait_status(
        "pool",
        "every client draining",
        Duration::from_secs(120),
        |s| {
            s.retiring.len() == CLIENTS as usize
                && s.retiring.iter().all(|r| r.phase == RetirePhase::Draining)
        },
    )
    .await;
    // While all forty wait, no VM goes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(w.group().await.instances.len(), CLIENTS as usize);

    for (_, alloc) in &jobs {
        w.sim.finish(alloc).await;
    }
    let st = w
        .wait_status(
            "pool",
            "every client retired",
            Duration::from_secs(240),
            |s| s.retiring.is_empty() && s.retired_total == i64::from(CLIENTS),
        )
        .await;
    assert_eq!(st.desired_nodes, Some(0));
    assert!(w.group().await.instances.is_empty());
    w.sim.assert_no_violations().await;

    let conns = w.sim.sim.app().conns.stats();
    eprintln!("connections to the agent: {conns:?}");
    assert_eq!(conns.refused, 0, "connections refused: {conns:?}");
    assert!(conns.peak_per_client <= AGENT_LIMIT, "{conns:?}");
    w.cleanup().await;
}
