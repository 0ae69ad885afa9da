//! The hook's global timeout on the retirement itself (issue 16): AWS lets a
//! held VM go after min(48 h, 100 x heartbeat timeout) whatever runs (ref
//! §2.2, §2.4), so a held client whose drain would outlast it is told so on
//! its retirement (condition `LifecycleGlobalTimeout` and an Event) as well
//! as on the pool, and its drain ends before it.
//!
//! No time scale here: the operator counts the global timeout in real
//! seconds from the hook's heartbeat timeout (30 s, AWS's least: 3000 s),
//! and a scaled moto would end the wait long before the operator expects,
//! so what is checked is what the operator decides and says, at once.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use nomad_pool_operator::api::{NomadClientRetirement, RetirePhase, RetireReason};
use npo_testkit::*;
use serde_json::json;

use super::{hook_spec, put_hook, set_desired, waiting};

const T: Duration = Duration::from_secs(60);
const CONDITION: &str = "LifecycleGlobalTimeout";

fn global_condition(
    r: &NomadClientRetirement,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    (r.status.as_ref()?.conditions.iter()).find(|c| c.type_ == CONDITION)
}

/// The retirement of the held VM `instance`, once its client drains.
async fn draining_retirement(w: &World, instance: &str) -> NomadClientRetirement {
    let st = w
        .wait_status("pool", "the held VM's client draining", T, |s| {
            s.retiring.iter().any(|r| {
                r.instance_id.as_deref() == Some(instance) && r.phase == RetirePhase::Draining
            })
        })
        .await;
    let r = (st.retirements.iter())
        .find(|r| (r.status.as_ref()).and_then(|s| s.instance_id.as_deref()) == Some(instance))
        .expect("the held VM's retirement")
        .clone();
    assert_eq!(r.spec.reason, RetireReason::LifecycleHook);
    r
}

/// Events about the retirement `name`, as (reason, note).
async fn retirement_events(w: &World, name: &str) -> Vec<(String, String)> {
    let api: Api<Event> = Api::namespaced(w.client.clone(), &w.namespace);
    (api.list(&ListParams::default())
        .await
        .expect("events")
        .items)
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("NomadClientRetirement")
                    && r.name.as_deref() == Some(name)
            })
        })
        .map(|e| (e.reason.unwrap_or_default(), e.note.unwrap_or_default()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_global_timeout_is_said_on_the_retirement_and_caps_its_drain() {
    let w = setup("hook-global", 3).await;
    // Heartbeat timeout 30 s: a 3000 s global timeout, 2700 s usable.
    put_hook(&w.asg, &w.group, "drain", 30).await;
    let jobs = w.busy_everywhere().await;
    let mut spec = hook_spec(json!({"name": "drain"}));
    spec["drain"] = json!({"deadline": "1h"});
    w.apply_pool(&w.pool_manifest("pool", spec)).await;
    w.wait_status("pool", "the hook confirmed", T, |s| {
        condition(s, "LifecycleHook").is_some_and(|c| c.status == "True")
    })
    .await;

    // A one-hour drain would outlast the global timeout: capped.
    set_desired(&w.asg, &w.group, 2).await;
    let first = waiting(&w.group().await);
    assert_eq!(first.len(), 1);
    let r = draining_retirement(&w, &first[0]).await;
    let name = r.metadata.name.clone().unwrap();
    let c = global_condition(&r).expect("the retirement's condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "DrainDeadlineCapped")
    );
    assert!(
        c.message.contains("global timeout (3000s") && c.message.contains("its own: 1h"),
        "{}",
        c.message
    );
    let st = r.status.as_ref().unwrap();
    let started = st.drain_started_at.as_ref().expect("drain started").0;
    let deadline = st.drain_deadline.as_ref().expect("a drain deadline").0;
    let secs = deadline.duration_since(started).as_secs();
    assert!((2600..=2700).contains(&secs), "capped drain: {secs}s");
    let pool = w.status("pool").await;
    let on_pool = condition(&pool, CONDITION).expect("the pool's condition");
    assert_eq!(
        (on_pool.status.as_str(), on_pool.reason.as_str()),
        ("False", "DrainDeadlineCapped")
    );
    wait_for("the Event on the retirement", T, || async {
        (retirement_events(&w, &name).await.iter())
            .find(|(reason, _)| reason == "DrainDeadlineCapped")
            .cloned()
    })
    .await;
    w.wait_event(
        "DrainDeadlineCapped on the pool",
        |r, _| r == "DrainDeadlineCapped",
        T,
    )
    .await;

    // A shorter drain ends before the global timeout: said, not capped
    // (the first client's drain, sent already, stays as it was).
    w.patch_spec("pool", json!({"drain": {"deadline": "30m"}}))
        .await;
    set_desired(&w.asg, &w.group, 1).await;
    let second: Vec<String> = (waiting(&w.group().await).into_iter())
        .filter(|id| *id != first[0])
        .collect();
    assert_eq!(second.len(), 1);
    let r2 = draining_retirement(&w, &second[0]).await;
    let c = global_condition(&r2).expect("the second retirement's condition");
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "WithinGlobalTimeout"),
        "{}",
        c.message
    );
    let st = r2.status.as_ref().unwrap();
    let secs = (st.drain_deadline.as_ref().unwrap().0)
        .duration_since(st.drain_started_at.as_ref().unwrap().0)
        .as_secs();
    assert!((1799..=1800).contains(&secs), "its own deadline: {secs}s");
    let name2 = r2.metadata.name.clone().unwrap();
    assert!(
        !(retirement_events(&w, &name2).await.iter()).any(|(r, _)| r == "DrainDeadlineCapped"),
        "not capped"
    );

    // The jobs end: both retired; the first one's final status still says
    // how its drain was bounded.
    for (_, alloc) in &jobs {
        w.sim.finish(alloc).await;
    }
    w.wait_status("pool", "both retired", T, |s| {
        s.retiring.is_empty() && s.retired_total == 2
    })
    .await;
    let done = w.retirements_api().get(&name).await.unwrap();
    let c = global_condition(&done).expect("kept in the final status");
    assert_eq!(
        c.reason, "DrainDeadlineCapped",
        "decided when its drain was sent"
    );
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
