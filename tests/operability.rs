//! What an on-call engineer relies on: two replicas where only the leader
//! acts and a killed leader is replaced mid-drain, and `kubectl get` /
//! `kubectl describe` showing which nodes drain, for how long, and why.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use nomad_pool_operator::api::RetirePhase;
use npo_testkit::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

async fn lease_holder(w: &World) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(w.client.clone(), &w.namespace);
    leases
        .get_opt("nomad-pool-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_only_the_leader_acts_and_a_killed_leader_is_replaced_mid_drain() {
    let w = World::new(
        "ha",
        WorldOptions {
            size: 3,
            ..Default::default()
        },
    )
    .await;
    w.create_aws_secret().await;
    let lease = ["--lease-duration", "4"];
    let mut a = Operator::start_with(&w.namespace, "ha", "replica-a", &lease).await;
    let mut b = Operator::start_with(&w.namespace, "ha", "replica-b", &lease).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    let st = w
        .wait_status("pool", "one draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    let node = st.retiring[0].node_id.clone();

    let holder = lease_holder(&w).await.expect("a leader holds the lease");
    let (leader, standby, standby_name) = if holder.starts_with("replica-a") {
        (&mut a, &b, "replica-b")
    } else {
        (&mut b, &a, "replica-a")
    };
    let standby_log = std::fs::read_to_string(&standby.log).unwrap();
    assert!(
        !standby_log.contains("became leader"),
        "only one leader:\n{standby_log}"
    );
    assert!(
        !standby_log.contains("reconciling object"),
        "the standby must not reconcile:\n{standby_log}"
    );

    // The leader dies mid-drain without releasing the lease; the job then ends.
    leader.kill().await;
    let killed_at = Instant::now();
    let (_, alloc) = jobs.iter().find(|(n, _)| *n == node).unwrap();
    w.sim.finish(alloc).await;
    let new_holder = wait_for(
        "the standby to take the lease",
        Duration::from_secs(30),
        || async { lease_holder(&w).await.filter(|h| *h != holder) },
    )
    .await;
    let takeover = killed_at.elapsed();
    assert!(
        takeover < Duration::from_secs(4 + 5),
        "took over after {takeover:?}, lease duration 4 s"
    );
    assert!(
        new_holder.starts_with(standby_name),
        "{new_holder} took over, expected {standby_name}"
    );

    w.wait_status("pool", "retired by the new leader", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    let g = w.group().await;
    assert_eq!(g.desired, 2, "exactly one decrement across the failover");
    assert_eq!(g.instances.len(), 2);
    w.sim.assert_no_violations().await;
    drop(a);
    drop(b);
    w.cleanup().await;
}

fn kubectl(args: &[&str]) -> String {
    let out = std::process::Command::new(env_var("NPO_KUBECTL"))
        .args(args)
        .env("KUBECONFIG", env_var("KUBECONFIG"))
        .output()
        .expect("running kubectl");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_get_and_describe_show_what_a_human_needs() {
    let mut w = World::new(
        "kubectl",
        WorldOptions {
            size: 3,
            ..Default::default()
        },
    )
    .await;
    w.create_aws_secret().await;
    w.start_operator().await;
    w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest(
        "ci-linux",
        json!({"replicas": 1, "disruption": {"maxUnavailable": 1}}),
    ))
    .await;
    let st = w
        .wait_status("ci-linux", "draining with its blocking job known", T, |s| {
            // The pool's summary may trail the retirement by a progress write.
            let summary = s
                .oldest_retirements
                .first()
                .and_then(|r| r.message.as_deref());
            s.retiring.len() == 1
                && !s.retiring[0].blocking_jobs.is_empty()
                && summary.is_some_and(|m| m.contains("waiting for 1 allocation"))
        })
        .await;
    let draining = &st.retiring[0];

    let get = kubectl(&["get", "ncp", "-n", &w.namespace]);
    let lines: Vec<&str> = get.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "READY",
            "DRAINING",
            "TERMINATING",
            "STATUS",
            "AGE"
        ],
        "{get}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        &row[..6],
        ["ci-linux", "1", "2", "1", "0", "Retiring"],
        "{get}"
    );

    // The pool says what is in flight in short; the client's retirement
    // says everything about it, Events included.
    let describe = kubectl(&["describe", "ncp", "ci-linux", "-n", &w.namespace]);
    for needle in [
        draining.node_name.as_str(),
        "Oldest Retirements:",
        "Phase:",
        "Draining",
        "Allocations Left:",
        "waiting for 1 allocation(s) to finish",
        "BudgetExhausted",
    ] {
        assert!(
            describe.contains(needle),
            "`kubectl describe ncp` lacks {needle:?}:\n{describe}"
        );
    }
    let retirement = st
        .retirement_of(&draining.node_id)
        .and_then(|r| r.metadata.name.clone())
        .expect("the draining client's retirement");
    let describe = kubectl(&["describe", "ncr", &retirement, "-n", &w.namespace]);
    for needle in [
        draining.node_name.as_str(),
        draining.instance_id.as_deref().unwrap(),
        "Phase:",
        "Draining",
        "Allocations Left:",
        "Blocking Allocations:",
        draining.blocking_jobs[0].as_str(),
        "waiting for 1 allocation(s) to finish",
        "Drain Started At:",
        "Cordoned By Pool:",
    ] {
        assert!(
            describe.contains(needle),
            "`kubectl describe ncr` lacks {needle:?}:\n{describe}"
        );
    }
    // Its Events open with why it was chosen (phases are in its status).
    let events = describe.split("Events:").nth(1).unwrap_or_default();
    assert!(
        events
            .lines()
            .any(|l| l.contains("Normal") && l.contains("Selected")),
        "`kubectl describe ncr` shows no Selected event:\n{describe}"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_event_is_counted_on_the_first_one_and_a_new_note_is_its_own() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::Event as K8sEvent;
    use kube::runtime::events::{Event, EventType, Reporter};
    use nomad_pool_operator::controller::events::EventSink;

    let client = kube_client().await;
    let namespace = create_namespace(&client, "events").await;
    let sink = EventSink::start(
        client.clone(),
        Reporter {
            controller: "nomad-pool-operator".into(),
            instance: Some("test".into()),
        },
    );
    let pool = ObjectReference {
        api_version: Some("nomadpool.dev/v1alpha1".into()),
        kind: Some("NomadClientPool".into()),
        name: Some("pool".into()),
        namespace: Some(namespace.clone()),
        uid: Some("0b9b7a7e-0000-4000-8000-000000000001".into()),
        ..Default::default()
    };
    let event = |note: &str| Event {
        type_: EventType::Warning,
        reason: "ActionFailed".into(),
        note: Some(note.into()),
        action: "ActionFailed".into(),
        secondary: None,
    };
    // The pool's resourceVersion moves between repeats, as it does with
    // every status write; the repeat must still be recognised.
    for rv in ["1", "2", "3"] {
        let regarding = ObjectReference {
            resource_version: Some(rv.into()),
            ..pool.clone()
        };
        sink.publish(event("purge of client-1 failed: 500"), regarding);
    }
    sink.publish(event("purge of client-2 failed: 500"), pool.clone());

    let api: Api<K8sEvent> = Api::namespaced(client.clone(), &namespace);
    let seen = wait_for("the events", T, || async {
        let items = api.list(&Default::default()).await.ok()?.items;
        let counts: Vec<(String, i32)> = items
            .into_iter()
            .map(|e| {
                (
                    e.note.unwrap_or_default(),
                    e.series.map(|s| s.count).unwrap_or(1),
                )
            })
            .collect();
        (counts.len() == 2 && counts.iter().any(|(_, c)| *c == 3)).then_some(counts)
    })
    .await;
    assert!(
        seen.contains(&("purge of client-1 failed: 500".into(), 3)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("purge of client-2 failed: 500".into(), 1)),
        "{seen:?}"
    );
    // The sink runs in this test's process, the only one here that uses it.
    let text = nomad_pool_operator::metrics::metrics().encode();
    for line in [
        "nomadpool_events_total{outcome=\"created\"} 2",
        "nomadpool_events_total{outcome=\"repeated\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
    delete_namespace(&client, &namespace).await;
}
