//! Clients in flight when the pool itself changes under them: the pool is
//! deleted and created again (GitOps re-sync, `kubectl replace --force`), or
//! its selector is edited. The operator binary runs against the real API
//! server, the Nomad simulator and a cloud group: every body runs on both
//! clouds (`aws::<name>` in moto, `gce::<name>` in gce-sim), since none of
//! them depends on what only one provider has. Nothing in flight may be
//! forgotten, and the disruption budget holds throughout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use nomad_pool_operator::api::RetirePhase;
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

on_both_clouds!(
    pool_deleted_in_the_background_and_created_again_adopts_its_drains,
    pool_deleted_in_the_foreground_and_created_again_adopts_its_drains,
    pool_created_again_while_a_vm_terminates_carries_it_to_the_end,
    clients_cordoned_by_someone_else_count_against_the_budget,
    clients_in_flight_that_leave_the_selector_are_released_or_carried_to_the_end,
);

/// Live clients out of service (ineligible or draining, whoever did it).
fn out_of_service(nodes: &[Value]) -> Vec<String> {
    nodes
        .iter()
        .filter(|n| n["vm_alive"] == true && n["status"] != "down")
        .filter(|n| n["eligibility"] == "ineligible" || n["draining"] == true)
        .map(|n| n["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Samples the simulator every 50 ms and keeps the most clients ever seen
/// out of service at once.
struct BudgetWatch {
    most: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BudgetWatch {
    fn start(sim_url: String) -> Self {
        let most = Arc::new(AtomicUsize::new(0));
        let seen = most.clone();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            loop {
                if let Ok(resp) = http.get(format!("{sim_url}/sim/nodes")).send().await
                    && let Ok(v) = resp.json::<Value>().await
                {
                    let nodes = v["nodes"].as_array().cloned().unwrap_or_default();
                    seen.fetch_max(out_of_service(&nodes).len(), Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Self { most, task }
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::Relaxed)
    }
}

impl Drop for BudgetWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Delete the pool with `params` and wait until the API server no longer has
/// it, as `kubectl replace --force` does before it creates the pool again.
/// No garbage collector runs in the test environment; with foreground
/// deletion the real one removes `foregroundDeletion` from an object with no
/// dependents (a pool has none), so the test does that in its place.
async fn delete_and_wait_gone(w: &World, name: &str, params: &DeleteParams) {
    w.pools()
        .delete(name, params)
        .await
        .unwrap_or_else(|e| panic!("deleting pool {name}: {e}"));
    wait_for("the pool to be gone", T, || async {
        let Some(pool) = w.pools().get_opt(name).await.unwrap() else {
            return Some(());
        };
        let finalizers = pool.metadata.finalizers.clone().unwrap_or_default();
        if finalizers.iter().any(|f| f == "foregroundDeletion") {
            let rest: Vec<&String> = finalizers
                .iter()
                .filter(|f| *f != "foregroundDeletion")
                .collect();
            // The resourceVersion makes this a compare-and-swap: a race with
            // the operator removing its own finalizer fails and is retried
            // on the next poll, never restoring what it removed.
            let _ = w
                .pools()
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {
                        "resourceVersion": pool.metadata.resource_version,
                        "finalizers": rest,
                    }})),
                )
                .await;
        }
        None
    })
    .await;
}

/// A pool scaling 4 → 2 with two drains running is deleted and created again
/// from the same manifest. The new pool must take the old drains over (same
/// namespace/name, so the old pool is gone), keep at most two clients out of
/// service, and end with two clients able to take work, as its status says.
async fn recreated_pool_adopts_the_drains_of_the_deleted_one(
    cloud: Cloud,
    test: &str,
    params: DeleteParams,
) {
    let w = setup_on(cloud, test, 4).await;
    let jobs = w.busy_everywhere().await;
    let manifest = w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2}}),
    );
    w.apply_pool(&manifest).await;
    let st = w
        .wait_status("pool", "two clients draining", T, |s| {
            s.retiring.len() == 2 && s.retiring.iter().all(|r| r.phase == RetirePhase::Draining)
        })
        .await;
    let mut draining: Vec<String> = st.retiring.iter().map(|r| r.node_id.clone()).collect();
    draining.sort();
    let old_uid = w.pools().get("pool").await.unwrap().metadata.uid;
    let budget = BudgetWatch::start(w.sim.url.clone());

    delete_and_wait_gone(&w, "pool", &params).await;
    w.apply_pool(&manifest).await;
    let new_uid = w.pools().get("pool").await.unwrap().metadata.uid;
    assert_ne!(old_uid, new_uid, "a new object, not the old one");

    // The new pool tracks the running drains instead of starting others.
    let st = w
        .wait_status("pool", "the new pool tracking both drains", T, |s| {
            s.retiring.len() == 2
        })
        .await;
    let mut tracked: Vec<String> = st.retiring.iter().map(|r| r.node_id.clone()).collect();
    tracked.sort();
    assert_eq!(
        tracked,
        draining,
        "the new pool started other retirements ({} clients out of service at most, \
         maxUnavailable 2): {st:#?}",
        budget.most()
    );
    // Room for a wrong selection to happen (the new pool plans every few
    // seconds at most while busy).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let nodes = w.sim.nodes().await;
    assert!(
        budget.most() <= 2,
        "maxUnavailable 2, but {} clients were out of service at once (now: {:?})",
        budget.most(),
        out_of_service(&nodes)
    );

    // The jobs end: the adopted clients are retired, the other two stay.
    for (_, alloc) in &jobs {
        w.sim.finish(alloc).await;
    }
    let st = w
        .wait_status("pool", "settled at 2", T, |s| {
            s.retiring.is_empty()
                && s.retired_total == 2
                && condition(s, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    let g = w.group().await;
    assert_eq!(g.desired, 2);
    let nodes = w.sim.nodes().await;
    let able: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["vm_alive"] == true && n["status"] == "ready")
        .filter(|n| n["eligibility"] == "eligible" && n["draining"] == false)
        .collect();
    assert_eq!(
        able.len(),
        2,
        "Ready=True must mean two clients take work: {nodes:#?}"
    );
    assert_eq!(st.ready_nodes, 2, "{st:#?}");
    for n in &able {
        assert!(
            !draining.iter().any(|d| n["id"] == d.as_str()),
            "the old drains were retired, not others: {n}"
        );
    }
    assert!(
        budget.most() <= 2,
        "maxUnavailable 2, but {} clients were out of service at once",
        budget.most()
    );
    let adopted = w
        .events()
        .await
        .into_iter()
        .filter(|(r, _)| r == "AdoptedDrain")
        .count();
    assert!(adopted >= 2, "an event names each adopted drain");
    drop(budget);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

async fn pool_deleted_in_the_background_and_created_again_adopts_its_drains(cloud: Cloud) {
    let params = DeleteParams::background();
    recreated_pool_adopts_the_drains_of_the_deleted_one(cloud, "recreate-bg", params).await;
}

async fn pool_deleted_in_the_foreground_and_created_again_adopts_its_drains(cloud: Cloud) {
    let params = DeleteParams::foreground();
    recreated_pool_adopts_the_drains_of_the_deleted_one(cloud, "recreate-fg", params).await;
}

/// Deleted and created again while one retirement is past the point of no
/// return (its VM terminated, its client not down yet) and one drains: the
/// new pool carries the first to its purge without counting its decrement
/// twice (which would raise the group again or cancel a drain) and finishes
/// the second.
async fn pool_created_again_while_a_vm_terminates_carries_it_to_the_end(cloud: Cloud) {
    let mut w = setup_on(cloud, "recreate-terminating", 4).await;
    let jobs = w.busy_everywhere().await;
    let manifest = w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2}}),
    );
    w.apply_pool(&manifest).await;
    let st = w
        .wait_status("pool", "two clients draining", T, |s| {
            s.retiring.len() == 2 && s.retiring.iter().all(|r| r.phase == RetirePhase::Draining)
        })
        .await;
    let (a, b) = (st.retiring[0].clone(), st.retiring[1].clone());
    // Clients stay up after their VM is terminated (the bridge would stop
    // them at once), so A can be caught in Terminating.
    drop(std::mem::replace(&mut w.bridge, Bridge::idle()));
    let job = |id: &str| jobs.iter().find(|(n, _)| n == id).unwrap().1.clone();
    w.sim.finish(&job(&a.node_id)).await;
    w.wait_status("pool", "A terminating", T, |s| {
        s.retiring
            .iter()
            .any(|r| r.node_id == a.node_id && r.phase == RetirePhase::Terminating)
    })
    .await;
    wait_for("A's VM to leave the group", T, || async {
        let g = w.group().await;
        (g.desired == 3).then_some(())
    })
    .await;
    let budget = BudgetWatch::start(w.sim.url.clone());

    delete_and_wait_gone(&w, "pool", &DeleteParams::background()).await;
    w.apply_pool(&manifest).await;
    let st = w
        .wait_status("pool", "A carried, B draining", T, |s| {
            s.retiring
                .iter()
                .any(|r| r.node_id == a.node_id && r.phase == RetirePhase::Terminating)
                && s.retiring
                    .iter()
                    .any(|r| r.node_id == b.node_id && r.phase == RetirePhase::Draining)
        })
        .await;
    assert_eq!(st.retiring.len(), 2, "{st:#?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        w.group().await.desired,
        3,
        "the terminated VM's decrement is counted once: nothing bought back"
    );
    let st = w.status("pool").await;
    let events = w.events().await;
    assert!(
        st.retiring
            .iter()
            .all(|r| r.phase != RetirePhase::Cancelling)
            && !events.iter().any(|(r, _)| r == "RetirementCancelled"),
        "nothing cancelled: {st:#?}\n{events:#?}"
    );

    // A's client stops, as the bridge would have made it; B's job ends.
    w.sim
        .post(&format!("/sim/nodes/{}/kill", a.node_id), json!({}))
        .await;
    w.sim.finish(&job(&b.node_id)).await;
    w.wait_status("pool", "B terminating", T, |s| {
        s.retiring
            .iter()
            .any(|r| r.node_id == b.node_id && r.phase == RetirePhase::Terminating)
    })
    .await;
    w.sim
        .post(&format!("/sim/nodes/{}/kill", b.node_id), json!({}))
        .await;
    let st = w
        .wait_status("pool", "settled at 2", T, |s| {
            s.retiring.is_empty() && condition(s, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
    assert_eq!(st.retired_total, 2, "the new pool finished both: {st:#?}");
    assert_eq!(w.group().await.desired, 2);
    assert!(budget.most() <= 2, "{} out of service", budget.most());
    let nodes = w.sim.nodes().await;
    assert!(out_of_service(&nodes).is_empty(), "{nodes:#?}");
    drop(budget);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Clients someone else cordoned are out of service too: a pool with
/// `maxUnavailable: 2` next to two clients cordoned by hand starts nothing.
async fn clients_cordoned_by_someone_else_count_against_the_budget(cloud: Cloud) {
    let w = setup_on(cloud, "cordoned-budget", 4).await;
    let nodes = w.ready_nodes().await;
    for n in &nodes[..2] {
        let id = n["id"].as_str().unwrap();
        // As an operator would, with the Nomad CLI: `node eligibility -disable`.
        reqwest::Client::new()
            .post(format!("{}/v1/node/{id}/eligibility", w.sim.url))
            .json(&json!({"NodeID": id, "Eligibility": "ineligible"}))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap();
    }
    let budget = BudgetWatch::start(w.sim.url.clone());
    // Two clients wanted and two take work: the two cordoned ones are not
    // replaced by retiring a healthy one, and Ready says why the group
    // stays above replicas.
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2}}),
    ))
    .await;
    let st = w
        .wait_status("pool", "the scale-in reported held", T, |s| {
            condition(s, "Ready").is_some_and(|c| c.reason == "ScaleInHeld")
        })
        .await;
    assert!(st.retiring.is_empty(), "{st:#?}");
    let held = condition(&st, "Ready").unwrap().message.clone();
    for n in &nodes[..2] {
        let name = n["name"].as_str().unwrap();
        assert!(held.contains(&format!("{name} (ineligible)")), "{held}");
    }
    // One client wanted: one of the two working clients is due, but the
    // two cordoned by hand already use up maxUnavailable.
    w.patch_spec("pool", json!({"replicas": 1})).await;
    let st = w
        .wait_status("pool", "the budget reported exhausted", T, |s| {
            condition(s, "Progressing").is_some_and(|c| c.reason == "BudgetExhausted")
        })
        .await;
    assert!(st.retiring.is_empty(), "{st:#?}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(w.status("pool").await.retiring.is_empty());
    assert!(budget.most() <= 2, "{} out of service", budget.most());
    assert_eq!(w.group().await.desired, 4);
    drop(budget);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// The selector is edited while two clients are in flight: one draining, one
/// whose VM is already terminating. The draining one is released (drain
/// cancelled, eligible again, as the pool had cordoned it); the terminating
/// one is carried to the end. Nothing is left ineligible untracked.
async fn clients_in_flight_that_leave_the_selector_are_released_or_carried_to_the_end(
    cloud: Cloud,
) {
    let mut w = setup_on(cloud, "selector-edit", 4).await;
    let jobs = w.busy_everywhere().await;
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2}}),
    ))
    .await;
    let st = w
        .wait_status("pool", "two clients draining", T, |s| {
            s.retiring.len() == 2 && s.retiring.iter().all(|r| r.phase == RetirePhase::Draining)
        })
        .await;
    let (a, b) = (st.retiring[0].clone(), st.retiring[1].clone());

    // Hold VMs' clients up after their instance is terminated (the bridge
    // would stop them at once), so A can be caught in Terminating.
    drop(std::mem::replace(&mut w.bridge, Bridge::idle()));
    let alloc_a = &jobs.iter().find(|(n, _)| *n == a.node_id).unwrap().1;
    w.sim.finish(alloc_a).await;
    w.wait_status("pool", "A terminating", T, |s| {
        s.retiring
            .iter()
            .any(|r| r.node_id == a.node_id && r.phase == RetirePhase::Terminating)
    })
    .await;

    // Both leave the pool's selector.
    w.patch_spec("pool", json!({"selector": {"nodePool": "ci-next"}}))
        .await;
    wait_for("B released: eligible and not draining", T, || async {
        let nodes = w.sim.nodes().await;
        let n = nodes.iter().find(|n| n["id"] == b.node_id.as_str())?;
        (n["eligibility"] == "eligible" && n["draining"] == false).then_some(())
    })
    .await;
    let st = w
        .wait_status("pool", "B no longer tracked, A still carried", T, |s| {
            !s.retiring.iter().any(|r| r.node_id == b.node_id)
        })
        .await;
    assert!(
        st.retiring
            .iter()
            .any(|r| r.node_id == a.node_id && r.phase == RetirePhase::Terminating),
        "A is past the point of no return and stays tracked: {st:#?}"
    );

    // A's VM is gone; its client stops, as the bridge would have made it.
    w.sim
        .post(&format!("/sim/nodes/{}/kill", a.node_id), json!({}))
        .await;
    let st = w
        .wait_status("pool", "A retired", T, |s| {
            s.retiring.is_empty() && s.retired_total == 1
        })
        .await;
    assert_eq!(st.retired_total, 1);
    wait_for("A purged", T, || async {
        let nodes = w.sim.nodes().await;
        (!nodes.iter().any(|n| n["id"] == a.node_id.as_str())).then_some(())
    })
    .await;
    let nodes = w.sim.nodes().await;
    assert!(
        out_of_service(&nodes).is_empty(),
        "no client left out of service: {nodes:#?}"
    );
    assert_eq!(w.group().await.desired, 3, "only A's VM went");
    // Published after the writes the waits above saw.
    let b_left =
        |_: &str, note: &str| note.contains(&b.node_name) && note.contains("left the selector");
    w.wait_event(
        "saying B left the selector",
        b_left,
        Duration::from_secs(10),
    )
    .await;
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}
