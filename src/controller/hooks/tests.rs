//! The hook check and the heartbeats against the shared fake provider.

use std::sync::Arc;

use super::*;
use crate::api::{LifecycleHookMode, RetirePhase, RetireReason};
use crate::provider::fake::{Call, FakeProvider};

fn spec(mode: LifecycleHookMode, timeout: Option<i32>) -> LifecycleHookSpec {
    LifecycleHookSpec {
        name: "drain".into(),
        mode: Some(mode),
        heartbeat_timeout_seconds: timeout,
        queue_url: None,
    }
}

#[tokio::test]
async fn an_existing_hook_that_is_missing_is_reported_and_never_put() {
    let fake = FakeProvider::new("g", &["i-1"]);
    let rt = HookRuntime::default();
    let check = check(&spec(LifecycleHookMode::Existing, None), fake.as_ref(), &rt).await;
    assert_eq!(
        check,
        HookCheck::Missing {
            name: "drain".into()
        }
    );
    assert_eq!(check.ready(), None, "the planner completes nothing");
    assert!(
        !fake
            .calls()
            .iter()
            .any(|c| matches!(c, Call::PutLifecycleHook { .. }))
    );
    let mut status = NomadClientPoolStatus::default();
    let news = condition(
        &mut status,
        &NomadClientPoolStatus::default(),
        Some(&check),
        Some(1),
        Timestamp::now(),
    );
    assert_eq!(news.map(|n| n.0), Some("HookNotFound".to_string()));
    let c = status.conditions.iter().find(|c| c.type_ == CONDITION);
    assert_eq!(c.map(|c| c.status.as_str()), Some("False"));
    // Said once: the same condition again is no news.
    let previous = status.clone();
    let news = condition(
        &mut status,
        &previous,
        Some(&check),
        Some(1),
        Timestamp::now(),
    );
    assert_eq!(news, None);
}

#[tokio::test]
async fn a_managed_hook_is_put_and_kept_to_the_spec() {
    let fake = FakeProvider::new("g", &["i-1"]);
    let rt = HookRuntime::default();
    let wanted = spec(LifecycleHookMode::Managed, Some(60));
    let check = check(&wanted, fake.as_ref(), &rt).await;
    assert_eq!(
        check,
        HookCheck::Ready {
            name: "drain".into(),
            heartbeat_timeout: 60
        }
    );
    assert_eq!(rt.ready().as_deref(), Some("drain"));
    let hook = fake.hooks(|h, _| h.hook("drain").cloned()).unwrap();
    assert_eq!(hook.heartbeat_timeout, 60);
    // Changed behind our back: put back on the next read.
    fake.hooks(|h, _| h.put("drain", 900)).unwrap();
    *rt.checked.lock().unwrap() = None;
    super::check(&wanted, fake.as_ref(), &rt).await;
    let hook = fake.hooks(|h, _| h.hook("drain").cloned()).unwrap();
    assert_eq!(hook.heartbeat_timeout, 60);
}

fn draining(instance: &str, phase: RetirePhase) -> RetiringNode {
    RetiringNode {
        node_id: format!("node-{instance}"),
        node_name: format!("client-{instance}"),
        instance_id: Some(instance.into()),
        phase,
        since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::now()),
        selected_at: None,
        reason: RetireReason::LifecycleHook,
        decrement: false,
        cordoned_by_pool: true,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: 1,
        blocking_jobs: vec![],
        message: None,
    }
}

#[tokio::test]
async fn held_draining_clients_get_heartbeats_at_a_third_of_the_timeout() {
    let fake: Arc<FakeProvider> = FakeProvider::new("g", &["i-1", "i-2", "i-3"]);
    fake.put_lifecycle_hook("drain", 30).await.unwrap();
    fake.scale_in_outside(2);
    let rt = HookRuntime::default();
    // The token i-1's retirement recorded: the heartbeat carries it.
    let token = fake.hooks(|h, _| h.token("drain", "i-1")).unwrap();
    let recorded = HashMap::from([("i-1".to_owned(), token.clone())]);
    let retiring = [
        draining("i-1", RetirePhase::Draining),
        // Already drained and being let go: no heartbeat needed.
        draining("i-2", RetirePhase::Terminating),
        // Not held.
        draining("i-3", RetirePhase::Draining),
    ];
    let beat = || async {
        let group = fake.group_state();
        heartbeat(
            fake.as_ref(),
            &rt,
            ("drain", 30),
            &group,
            &retiring,
            &recorded,
        )
        .await
    };
    assert!(beat().await.is_empty());
    assert_eq!(fake.hooks(|h, _| h.heartbeats("i-1")), 1, "at first sight");
    assert!(
        fake.calls()
            .contains(&Call::RecordLifecycleActionHeartbeat {
                hook: "drain".into(),
                instance_id: "i-1".into(),
                token: Some(token),
            })
    );
    assert_eq!(fake.hooks(|h, _| h.heartbeats("i-2")), 0);
    assert!(beat().await.is_empty());
    assert_eq!(fake.hooks(|h, _| h.heartbeats("i-1")), 1, "not due yet");
    // Ten seconds later (a third of 30 s) it is due again.
    let earlier = Instant::now() - Duration::from_secs(10);
    rt.heartbeats.lock().unwrap().insert("i-1".into(), earlier);
    assert!(beat().await.is_empty());
    assert_eq!(fake.hooks(|h, _| h.heartbeats("i-1")), 2);

    // The action timed out meanwhile: not an error, the VM goes.
    fake.hooks(|h, g| h.time_out(g, "i-1"));
    rt.heartbeats.lock().unwrap().insert("i-1".into(), earlier);
    let group = {
        let mut g = fake.group_state();
        g.instances[0].lifecycle = Lifecycle::TerminatingWait;
        g
    };
    let failed = heartbeat(
        fake.as_ref(),
        &rt,
        ("drain", 30),
        &group,
        &retiring,
        &recorded,
    )
    .await;
    assert!(failed.is_empty());
}

#[test]
fn a_capped_drain_is_announced_once_and_reported_while_it_drains() {
    let now: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
    let mut e = RetiringNode {
        node_id: "id-1".into(),
        node_name: "client-1".into(),
        instance_id: Some("i-1".into()),
        phase: RetirePhase::Selected,
        since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now),
        selected_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now)),
        reason: RetireReason::LifecycleHook,
        decrement: false,
        cordoned_by_pool: true,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: 1,
        blocking_jobs: vec![],
        message: None,
    };
    let rt = HookRuntime::default();
    let ready = HookCheck::Ready {
        name: "drain".into(),
        heartbeat_timeout: 300,
    };
    let pool_drain = crate::api::DrainPolicy::default();
    let mut drains = HashMap::new();
    rt.cap_drains(300, std::slice::from_ref(&e), &mut drains, &pool_drain, now);
    // 300 s heartbeats: 30,000 s global, 600 s margin (the cap).
    assert_eq!(drains["id-1"].deadline.as_deref(), Some("29400s"));
    let news = rt.capped_news();
    assert_eq!(news.len(), 1);
    assert!(
        news[0].1.contains("global timeout (30000s)"),
        "{}",
        news[0].1
    );
    let mut status = NomadClientPoolStatus::default();
    global_condition(&mut status, &rt, Some(&ready), None, now);
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == GLOBAL_CONDITION);
    let c = c.expect("condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "DrainDeadlineCapped")
    );
    assert!(c.message.contains("client-1"), "{}", c.message);

    // Cordoned next: the drain is capped again, but not announced again.
    e.phase = RetirePhase::Cordoned;
    let mut drains = HashMap::new();
    rt.cap_drains(300, std::slice::from_ref(&e), &mut drains, &pool_drain, now);
    assert!(drains.contains_key("id-1"));
    assert!(rt.capped_news().is_empty(), "once");
    // Drained and let go: the condition turns true.
    e.phase = RetirePhase::Terminating;
    rt.cap_drains(
        300,
        std::slice::from_ref(&e),
        &mut HashMap::new(),
        &pool_drain,
        now,
    );
    global_condition(&mut status, &rt, Some(&ready), None, now);
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == GLOBAL_CONDITION);
    assert_eq!(c.map(|c| c.status.as_str()), Some("True"));
    // No hook: no condition.
    global_condition(&mut status, &rt, None, None, now);
    assert!(
        !status
            .conditions
            .iter()
            .any(|c| c.type_ == GLOBAL_CONDITION)
    );
}
