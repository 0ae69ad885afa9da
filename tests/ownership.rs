//! Who may drive a group, tried the way an attacker or an unlucky user would:
//! a pool naming another team's group through the operator's own cloud
//! identity, that identity used outside the namespaces allowed it, two pools
//! on one group, an untagged group, and a tag that changes under a drain.
//! The operator binary against the real API server, moto and the simulator.

use std::time::{Duration, Instant};

use nomad_pool_operator::api::RetirePhase;
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// The operator's own AWS identity, as IRSA or instance metadata would give
/// it: from its environment, not from any Secret a pool names.
const AMBIENT_IDENTITY: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Start the world's operator with the ambient identity and, if given, the
/// namespaces allowed to use it.
async fn start_operator_with_identity(w: &mut World, allowed: Option<&str>) {
    let mut env = AMBIENT_IDENTITY.to_vec();
    if let Some(allowed) = allowed {
        env.push(("NPO_AMBIENT_CREDENTIALS_NAMESPACES", allowed));
    }
    w.operator = Some(
        Operator::start_with_env(&w.namespace, &w.test, "nomad-pool-operator", &[], &env).await,
    );
}

async fn world(test: &str, size: i32) -> World {
    World::new(
        test,
        WorldOptions {
            size,
            ..Default::default()
        },
    )
    .await
}

/// A pool manifest that names no credentials Secret: the operator's own
/// identity is what it would use.
fn without_credentials(mut manifest: Value) -> Value {
    manifest["spec"]["provider"]["awsAutoScalingGroup"]
        .as_object_mut()
        .unwrap()
        .remove("credentialsSecretRef");
    manifest
}

fn degraded_reason(st: &PoolView) -> Option<String> {
    condition(st, "Degraded")
        .filter(|c| c.status == "True")
        .map(|c| c.reason.clone())
}

/// Wait until the pool reports `reason`, or the group changes (what a pool
/// that was not refused does first); then a little longer, so that a pool
/// that was about to act would have.
async fn refused_or_acted(w: &World, group: &str, pool: &str, reason: &str) {
    let before = describe_group(&w.asg, group).await;
    let start = Instant::now();
    while start.elapsed() < T {
        if degraded_reason(&w.status(pool).await).as_deref() == Some(reason) {
            break;
        }
        if describe_group(&w.asg, group).await.desired != before.desired {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
}

/// Every instance of `group` still in service and its desired capacity as it was.
async fn assert_untouched(w: &World, group: &str, desired: i32, what: &str) {
    let g = describe_group(&w.asg, group).await;
    assert_eq!(
        g.desired, desired,
        "{what}: desired capacity changed: {g:?}"
    );
    assert!(
        g.instances.len() == desired as usize
            && g.instances.iter().all(|i| i.lifecycle == "InService"),
        "{what}: a VM was terminated: {g:?}"
    );
}

async fn assert_nothing_cordoned(sim: &Sim, what: &str) {
    for n in sim.nodes().await {
        assert!(
            n["eligibility"] == "eligible" && n["draining"] == false,
            "{what}: node touched: {n}"
        );
    }
}

async fn wait_event(w: &World, reason: &str, needle: &str) -> String {
    wait_for(&format!("an Event {reason}"), T, || async {
        w.events()
            .await
            .into_iter()
            .find(|(r, note)| r == reason && note.contains(needle))
            .map(|(_, note)| note)
    })
    .await
}

/// Item 3 of issue 13, as the attacker did it: a pool in namespace A with no
/// credentials Secret (so the operator's own identity, allowed for A), a
/// Nomad A controls whose nodes claim B's instance IDs, and B's group, which
/// B tagged for its own pool. Nothing of B's may be touched.
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_cannot_drive_a_group_tagged_for_another_namespaces_pool() {
    let victim = world("own-victim", 3).await;
    let owner = format!("{}/ci", victim.namespace);
    tag_group(&victim.asg, &victim.group, &owner).await;
    victim.busy_everywhere().await;

    // The attacker's world: its own namespace and Nomad, no group of its own.
    let mut attacker = world("own-attacker", 0).await;
    let instance_ids: Vec<String> = victim
        .group()
        .await
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    attacker
        .sim
        .post(
            "/sim/nodes",
            json!({"count": 3, "node_pool": "ci", "node_class": "linux", "instance_ids": instance_ids}),
        )
        .await;
    let ns = attacker.namespace.clone();
    start_operator_with_identity(&mut attacker, Some(&ns)).await;
    let mut pool = without_credentials(attacker.pool_manifest(
        "steal",
        json!({"replicas": 0, "disruption": {"maxUnavailable": 3}}),
    ));
    pool["spec"]["provider"]["awsAutoScalingGroup"]["name"] = json!(victim.group);
    attacker.apply_pool_untagged(&pool).await;

    refused_or_acted(&attacker, &victim.group, "steal", "GroupOwnedByAnotherPool").await;
    assert_untouched(&attacker, &victim.group, 3, "the victim's group").await;
    assert_nothing_cordoned(&victim.sim, "the victim's Nomad").await;
    assert_nothing_cordoned(&attacker.sim, "the attacker's Nomad").await;
    let st = attacker.status("steal").await;
    assert!(st.retiring.is_empty(), "{st:?}");
    let degraded = condition(&st, "Degraded").expect("Degraded condition");
    assert_eq!(degraded.reason, "GroupOwnedByAnotherPool", "{degraded:?}");
    assert!(
        degraded.message.contains(&owner),
        "names the owner: {degraded:?}"
    );
    wait_event(&attacker, "GroupOwnedByAnotherPool", &owner).await;
    victim.sim.assert_no_violations().await;
    attacker.cleanup().await;
    victim.cleanup().await;
}

/// The operator's own identity is lent to no namespace unless configured: a
/// pool without a credentials Secret is refused and told what to configure,
/// even on a group tagged for it; listing its namespace lets it work.
#[tokio::test(flavor = "multi_thread")]
async fn the_operators_identity_is_refused_outside_the_allowed_namespaces() {
    let mut w = world("own-ambient", 2).await;
    start_operator_with_identity(&mut w, None).await;
    w.apply_pool(&without_credentials(
        w.pool_manifest("pool", json!({"replicas": 1})),
    ))
    .await;

    refused_or_acted(&w, &w.group, "pool", "AmbientCredentialsNotAllowed").await;
    assert_untouched(&w, &w.group, 2, "a pool refused the operator's identity").await;
    assert_nothing_cordoned(&w.sim, "a pool refused the operator's identity").await;
    let st = w.status("pool").await;
    let degraded = condition(&st, "Degraded").expect("Degraded condition");
    assert_eq!(
        degraded.reason, "AmbientCredentialsNotAllowed",
        "{degraded:?}"
    );
    for needle in [
        "credentialsSecretRef",
        "--ambient-credentials-namespaces",
        "NPO_AMBIENT_CREDENTIALS_NAMESPACES",
        w.namespace.as_str(),
    ] {
        assert!(degraded.message.contains(needle), "{needle}: {degraded:?}");
    }
    wait_event(&w, "AmbientCredentialsNotAllowed", &w.namespace).await;

    // Another namespace listed is still not this one.
    w.operator.take().unwrap().kill().await;
    start_operator_with_identity(&mut w, Some("kube-system, other")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_untouched(&w, &w.group, 2, "a namespace not in the list").await;

    // Listed, the same identity works: the refusal was the setting, not it.
    w.operator.take().unwrap().kill().await;
    let allowed = format!("other,{}", w.namespace);
    start_operator_with_identity(&mut w, Some(&allowed)).await;
    w.wait_status("pool", "one client retired", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    assert_eq!(w.group().await.desired, 1);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Item 9: two pools name one group (replicas 3 and 5). Only the pool the
/// tag names drives it; the other says who does, and never touches it.
#[tokio::test(flavor = "multi_thread")]
async fn two_pools_on_one_group_do_not_fight_over_its_size() {
    let mut w = world("own-two", 4).await;
    w.create_aws_secret().await;
    w.start_operator().await;
    w.apply_pool(&w.pool_manifest("first", json!({"replicas": 3})))
        .await;
    w.apply_pool_untagged(&w.pool_manifest("second", json!({"replicas": 5})))
        .await;

    w.wait_status("first", "the first pool settled at 3", T, |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "Settled") && s.retired_total == 1
    })
    .await;
    // Several active resyncs (10 s each): the size never moves off 3.
    let start = Instant::now();
    let mut seen = std::collections::BTreeSet::new();
    while start.elapsed() < Duration::from_secs(35) {
        seen.insert(w.group().await.desired);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [3],
        "desired capacity must stay at the owner's 3 (values seen)"
    );
    let owner = format!("{}/first", w.namespace);
    let st = w.status("second").await;
    let degraded = condition(&st, "Degraded").expect("Degraded condition");
    assert_eq!(degraded.reason, "GroupOwnedByAnotherPool", "{degraded:?}");
    assert!(
        degraded.message.contains(&owner),
        "names the owner: {degraded:?}"
    );
    assert!(st.retiring.is_empty(), "{st:?}");
    wait_event(&w, "GroupOwnedByAnotherPool", &owner).await;
    let first = w.status("first").await;
    assert_eq!(first.retired_total, 1, "{first:?}");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// A group nobody tagged is nobody's: the pool waits, says so, and goes on
/// as soon as the group's owner tags it for the pool.
#[tokio::test(flavor = "multi_thread")]
async fn an_untagged_group_is_not_driven_until_tagged() {
    let mut w = world("own-untagged", 2).await;
    w.create_aws_secret().await;
    w.start_operator().await;
    w.apply_pool_untagged(&w.pool_manifest("pool", json!({"replicas": 1})))
        .await;

    refused_or_acted(&w, &w.group, "pool", "GroupNotTagged").await;
    assert_untouched(&w, &w.group, 2, "an untagged group").await;
    assert_nothing_cordoned(&w.sim, "an untagged group").await;
    let st = w.status("pool").await;
    let degraded = condition(&st, "Degraded").expect("Degraded condition");
    assert_eq!(degraded.reason, "GroupNotTagged", "{degraded:?}");
    let wanted = format!("nomadpool.dev/pool={}/pool", w.namespace);
    assert!(
        degraded.message.contains(&wanted),
        "says what to tag: {degraded:?}"
    );
    wait_event(&w, "GroupNotTagged", &wanted).await;

    tag_group(&w.asg, &w.group, &format!("{}/pool", w.namespace)).await;
    w.wait_status("pool", "retired once tagged", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    assert_eq!(w.group().await.desired, 1);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// The tag moves to another pool while a client drains: nothing further is
/// done to the group (the drained VM is not terminated), the entry stays in
/// status, and the pool says why; given back, the pool finishes the work.
#[tokio::test(flavor = "multi_thread")]
async fn a_tag_taken_away_mid_drain_stops_the_pool_where_it_is() {
    let mut w = world("own-midway", 3).await;
    w.create_aws_secret().await;
    w.start_operator().await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest("pool", json!({"replicas": 2})))
        .await;
    let st = w
        .wait_status("pool", "one client draining", T, |s| {
            s.retiring.len() == 1 && s.retiring[0].phase == RetirePhase::Draining
        })
        .await;
    let draining = st.retiring[0].clone();

    tag_group(&w.asg, &w.group, "elsewhere/pool").await;
    w.wait_status("pool", "the refusal", T, |s| {
        degraded_reason(s).as_deref() == Some("GroupOwnedByAnotherPool")
    })
    .await;
    // The job ends: with the group its own, the pool would terminate the VM.
    let (_, alloc) = jobs
        .iter()
        .find(|(node, _)| *node == draining.node_id)
        .expect("the draining node's job");
    w.sim.finish(alloc).await;
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_untouched(&w, &w.group, 3, "a group tagged for another pool").await;
    let st = w.status("pool").await;
    assert_eq!(st.retiring.len(), 1, "the entry is kept: {st:?}");
    assert_eq!(st.retiring[0].node_id, draining.node_id);
    let degraded = condition(&st, "Degraded").unwrap();
    assert!(degraded.message.contains("elsewhere/pool"), "{degraded:?}");

    tag_group(&w.asg, &w.group, &format!("{}/pool", w.namespace)).await;
    w.wait_status("pool", "the retirement finished", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    assert_eq!(w.group().await.desired, 2);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
