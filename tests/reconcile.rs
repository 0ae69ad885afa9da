//! The middle layer: one reconcile at a time, in this process, against the
//! real API server, the in-process Nomad simulator and the fake cloud
//! provider. Between the pure planner's unit tests and the end-to-end runs of
//! the operator binary: fast and deterministic (the test decides when each
//! reconcile runs), and able to reach `apply`, status, trouble reporting and
//! cleanup directly.

use std::time::Duration;

use k8s_openapi::api::events::v1::Event as SeriesEvent;
use kube::Api;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use nomad_pool_operator::api::{
    NomadClientPool, NomadClientRetirement, RetirePhase, RetireReason, RetirementPhase,
};
use nomad_pool_operator::metrics::{PoolLabels, metrics};
use nomad_pool_operator::provider::fake::{Call, FakeProvider, Operation};
use nomad_pool_operator::provider::{Lifecycle, ProviderError};
use npo_testkit::{condition, wait_for};
use serde_json::json;

#[path = "reconcile/rig.rs"]
mod rig;
use rig::{POOL, Rig, T, reason_of, settled};

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_in_by_one_retires_one_client_and_settles() {
    let mut rig = Rig::new("mid-scale-in", 3).await;
    rig.create_pool(json!({"replicas": 2})).await;
    let pool = rig
        .reconcile_until("one client retired, settled", |p| settled(p, 1))
        .await
        .unwrap();
    let terminated = rig.terminations();
    assert_eq!(terminated.len(), 1, "one VM, once: {terminated:?}");
    assert!(terminated[0].1, "with decrement");
    assert!(rig.instances.contains(&terminated[0].0));
    assert_eq!(rig.group.group_state().desired_capacity, 2);
    let st = pool.status.unwrap();
    assert_eq!((st.nodes, st.ready_nodes), (2, 2));
    assert_eq!(reason_of(Some(&pool_now(&rig).await), "Degraded"), None);
    rig.sim.assert_no_violations().await;
}

/// VMs that clear the gate together are terminated a few at a time: sent
/// all at once (4,000 in the 20,000-client bench) they queued in the cloud
/// API, timed out and were sent again, and almost none landed.
#[tokio::test(flavor = "multi_thread")]
async fn terminate_calls_in_flight_are_bounded_and_every_vm_still_goes() {
    let vms = 3 * nomad_pool_operator::controller::runtime::TERMINATE_CALLS;
    let mut rig = Rig::new("bounded-terminates", vms).await;
    rig.group.terminates_take(Duration::from_millis(500));
    rig.create_pool(json!({"replicas": 0, "disruption": {"maxUnavailable": "100%"}}))
        .await;
    rig.reconcile_until("every client retired", |p| settled(p, vms as i64))
        .await
        .unwrap();
    assert_eq!(rig.terminations().len(), vms, "every VM, once");
    let most = rig.group.most_terminates_in_flight();
    assert!(
        (2..=nomad_pool_operator::controller::runtime::TERMINATE_CALLS).contains(&most),
        "terminate calls in flight at once: {most}"
    );
    rig.sim.assert_no_violations().await;
}

async fn pool_now(rig: &Rig) -> NomadClientPool {
    rig.api.get(POOL).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_error_is_reported_as_degraded_and_clears_when_the_cloud_answers() {
    let mut rig = Rig::new("mid-cloud-error", 2).await;
    rig.group.fail_next(
        Operation::Describe,
        ProviderError::Unauthorized {
            message: "AccessDenied: not allowed".into(),
        },
    );
    rig.create_pool(json!({"replicas": 2})).await;
    let pool = rig
        .reconcile_until("Degraded ProviderError", |p| {
            reason_of(p, "Degraded").as_deref() == Some("ProviderError")
        })
        .await
        .unwrap();
    let degraded = condition(pool.status.as_ref().unwrap(), "Degraded").unwrap();
    assert!(
        degraded.message.contains("rejected the credentials")
            && degraded.message.contains("AccessDenied"),
        "{}",
        degraded.message
    );
    rig.reconcile_until("settled again", |p| settled(p, 0))
        .await;
    assert_eq!(reason_of(Some(&pool_now(&rig).await), "Degraded"), None);
    assert!(rig.terminations().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_terminate_is_named_in_action_failed_and_retried() {
    let mut rig = Rig::new("mid-terminate-fails", 3).await;
    rig.group.fail_next(
        Operation::Terminate,
        ProviderError::Throttled {
            message: "Rate exceeded".into(),
        },
    );
    rig.create_pool(json!({"replicas": 2})).await;
    let pool = rig
        .reconcile_until("ActionFailed", |p| {
            reason_of(p, "Degraded").as_deref() == Some("ActionFailed")
        })
        .await
        .unwrap();
    let message = &condition(pool.status.as_ref().unwrap(), "Degraded")
        .unwrap()
        .message;
    let first = &rig.terminations()[0].0;
    assert!(
        message.contains(&format!(
            "terminating {first}: cloud API throttled the request: Rate exceeded"
        )),
        "{message}"
    );
    rig.reconcile_until("retired after the retry", |p| settled(p, 1))
        .await;
    let terminated = rig.terminations();
    assert_eq!(
        terminated.len(),
        2,
        "failed once, then once more: {terminated:?}"
    );
    assert_eq!(terminated[0], terminated[1], "the same VM");
    rig.event_where("ActionFailed", |m| m.contains("Rate exceeded"))
        .await;
    rig.sim.assert_no_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_tagged_for_no_pool_is_refused_and_nothing_is_done() {
    let mut rig = Rig::new("mid-untagged", 3).await;
    rig.group.update(|g| g.owner_tag = None);
    rig.create_pool(json!({"replicas": 1})).await;
    rig.reconcile_until("GroupNotTagged", |p| {
        reason_of(p, "Degraded").as_deref() == Some("GroupNotTagged")
    })
    .await;
    for _ in 0..3 {
        let _ = rig.reconcile_once().await;
    }
    assert!(rig.terminations().is_empty());
    let eligible = rig
        .sim
        .nodes()
        .await
        .iter()
        .filter(|n| n["eligibility"] == "eligible" && n["draining"] == false)
        .count();
    assert_eq!(
        eligible,
        3,
        "no client cordoned: {:#?}",
        rig.sim.nodes().await
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_the_pool_mid_drain_terminates_nothing_and_says_what_it_left() {
    let mut rig = Rig::new("mid-delete", 3).await;
    rig.busy_everywhere().await;
    rig.create_pool(json!({"replicas": 2})).await;
    let pool = rig
        .reconcile_until("one client draining", |p| {
            p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
                (s.oldest_retirements.iter()).any(|r| r.phase == RetirePhase::Draining)
            })
        })
        .await
        .unwrap();
    let draining = pool.status.unwrap().oldest_retirements[0].node_name.clone();
    rig.api
        .delete(POOL, &DeleteParams::default())
        .await
        .unwrap();
    rig.reconcile_until("the pool gone", |p| p.is_none()).await;
    assert!(
        rig.terminations().is_empty(),
        "a deletion terminates nothing"
    );
    rig.event_where("PoolDeleted", |m| {
        m.contains("no VM was terminated") && m.contains(&draining)
    })
    .await;
    rig.sim.assert_no_violations().await;
}

/// Restart safety (issue 16): the token of a held VM's action, recorded in
/// its retirement (by an operator that read it from the hook's queue), is
/// what a restarted operator completes the action with; and the action is
/// completed once, with one `LifecycleActionCompleted` Event, however often
/// the pool is looked at and the operator restarts while another hook still
/// holds the VM.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_operator_completes_a_held_action_once_with_the_recorded_token() {
    let mut rig = Rig::new("mid-hook-once", 2).await;
    rig.group.hooks(|h, _| {
        h.put("drain", 30).unwrap();
        h.put("someone-elses", 30).unwrap();
    });
    let jobs = rig.busy_everywhere().await;
    rig.create_pool(
        json!({"provider": {"awsAutoScalingGroup": {"lifecycleHook": {"name": "drain"}}}}),
    )
    .await;
    rig.reconcile_until("the hook confirmed", |p| {
        reason_of(p, "LifecycleHook").as_deref() == Some("HookReady")
    })
    .await;
    let vm = rig.group.scale_in_outside(1).remove(0);
    let token = rig.group.hooks(|h, _| h.token("drain", &vm)).unwrap();
    let retirements: Api<NomadClientRetirement> =
        Api::namespaced(rig.client.clone(), &rig.namespace);
    let held = |list: &[NomadClientRetirement]| {
        list.iter()
            .find(|r| r.spec.reason == RetireReason::LifecycleHook)
            .cloned()
    };
    rig.reconcile_until("the held client draining", |p| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            (s.oldest_retirements.iter()).any(|r| r.phase == RetirePhase::Draining)
        })
    })
    .await;
    let r = held(
        &retirements
            .list(&ListParams::default())
            .await
            .unwrap()
            .items,
    )
    .unwrap();
    let name = r.metadata.name.clone().unwrap();
    let record = r.status.as_ref().and_then(|s| s.lifecycle_action.clone());
    assert_eq!(
        record
            .as_ref()
            .map(|a| (a.hook.as_str(), a.token.as_deref())),
        Some(("drain", None)),
        "found from the group: no token yet"
    );
    // What an operator that read the hook's queue recorded before it died.
    retirements
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lifecycleAction": {"token": token}}})),
        )
        .await
        .unwrap();
    rig.restart();
    for alloc in &jobs {
        rig.sim.finish(alloc).await;
    }
    let group = rig.group.clone();
    rig.reconcile_until("the action completed", |_| !completions(&group).is_empty())
        .await;
    // Another hook holds the VM: it stays in Terminating:Wait while the
    // pool is looked at again, by this operator and by a restarted one.
    for round in 0..2 {
        for _ in 0..5 {
            let _ = rig.reconcile_once().await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if round == 0 {
            rig.restart();
        }
    }
    assert_eq!(
        rig.group.group_state().instances[0].lifecycle,
        Lifecycle::TerminatingWait
    );
    assert_eq!(
        completions(&rig.group),
        [(vm.clone(), Some(token.clone()))],
        "once, with the recorded token"
    );
    let r = retirements.get(&name).await.unwrap();
    let record = r.status.and_then(|s| s.lifecycle_action).unwrap();
    assert_eq!(record.token.as_deref(), Some(token.as_str()));
    assert!(record.completed_at.is_some(), "{record:?}");
    one_completion_event(&rig, &name, &vm, &token).await;

    // The other hook lets go: the VM goes and the client is retired.
    rig.group.hooks(|h, g| h.time_out(g, &vm));
    rig.reconcile_until("retired", |p| settled(p, 1)).await;
    assert_eq!(completions(&rig.group).len(), 1);
    rig.sim.assert_no_violations().await;
}

/// The completions of hook `drain` the group received, with their tokens.
fn completions(group: &FakeProvider) -> Vec<(String, Option<String>)> {
    (group.calls().into_iter())
        .filter_map(|c| match c {
            Call::CompleteLifecycleAction {
                hook,
                instance_id,
                token,
            } if hook == "drain" => Some((instance_id, token)),
            _ => None,
        })
        .collect()
}

/// One `LifecycleActionCompleted` Event, published once, on the
/// retirement `name`; no Event names the token.
async fn one_completion_event(rig: &Rig, name: &str, vm: &str, token: &str) {
    let events = rig
        .event_where("LifecycleActionCompleted", |m| m.contains(vm))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let api: Api<SeriesEvent> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let all = api.list(&ListParams::default()).await.unwrap().items;
    let completed: Vec<&SeriesEvent> = (all.iter())
        .filter(|e| e.reason.as_deref() == Some("LifecycleActionCompleted"))
        .collect();
    assert_eq!(completed.len(), 1, "{events:?}");
    let repeats = completed[0].series.as_ref().map_or(1, |s| s.count);
    assert_eq!(repeats, 1, "published once, not a series");
    let regarding = completed[0].regarding.as_ref().unwrap();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("NomadClientRetirement"), Some(name)),
        "on the retirement"
    );
    assert!(
        !all.iter()
            .any(|e| e.note.as_deref().is_some_and(|m| m.contains(token))),
        "no Event names the token"
    );
}

/// The express lane: once a reconcile has recorded two drains, no other
/// reconcile runs; their jobs end, and the lane alone records `Terminating`
/// and terminates the client whose retirement stands, never the one whose
/// retirement was deleted meanwhile (that one the next reconcile cancels).
#[tokio::test(flavor = "multi_thread")]
async fn the_express_lane_terminates_a_drained_client_without_a_reconcile() {
    let mut rig = Rig::new("mid-express", 3).await;
    let allocs = rig.busy_everywhere().await;
    rig.create_pool(json!({"replicas": 1, "disruption": {"maxUnavailable": 2}}))
        .await;
    let ncrs: Api<NomadClientRetirement> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let draining = |p: Option<&NomadClientPool>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            (s.oldest_retirements.iter())
                .filter(|r| r.phase == RetirePhase::Draining)
                .count()
                == 2
        })
    };
    rig.reconcile_until("two clients draining", draining).await;
    let items = ncrs.list(&ListParams::default()).await.unwrap().items;
    let (stopped, kept) = (&items[0], &items[1]);
    ncrs.delete(&stopped.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    for a in &allocs {
        rig.sim.finish(a).await;
    }
    let kept_vm = kept.status.as_ref().unwrap().instance_id.clone().unwrap();
    let terminated = wait_for("the lane's terminate", T, || async {
        let t = rig.terminations();
        (!t.is_empty()).then_some(t)
    })
    .await;
    assert_eq!(terminated, vec![(kept_vm, true)]);
    let record = ncrs.get(&kept.name_any()).await.unwrap();
    assert_eq!(record.phase(), RetirementPhase::Terminating);
    let pool = format!("{}/{POOL}", rig.namespace);
    let lane = metrics()
        .express_terminates
        .get_or_create(&PoolLabels { pool });
    assert_eq!(lane.get(), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.terminations().len(), 1, "the deleted one waits");
    // The reconcile cancels it, once the pool no longer needs it.
    rig.api
        .patch(
            POOL,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .unwrap();
    let stopped_vm = stopped.status.as_ref().unwrap().instance_id.clone();
    wait_for("the deleted retirement cancelled", T, || async {
        let _ = rig.reconcile_once().await;
        let now = ncrs.get_opt(&stopped.name_any()).await.unwrap();
        // Kept for history (finished), or already pruned.
        now.is_none_or(|r| r.phase() == RetirementPhase::Cancelled)
            .then_some(())
    })
    .await;
    let vms: Vec<String> = rig.terminations().into_iter().map(|t| t.0).collect();
    assert!(!vms.contains(&stopped_vm.unwrap()), "{vms:?}");
    rig.sim.assert_no_violations().await;
}

/// `kubectl delete ncr` while the pool still wants one client fewer: the
/// client is given back, the deleted object finishes (Cancelled, then gone
/// or kept as history) and never shows a phase of the pool's new choice,
/// which gets an object of its own, even when it is the same client.
#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_retirement_ends_and_the_pools_next_choice_gets_a_new_object() {
    let mut rig = Rig::new("mid-delete", 3).await;
    rig.busy_everywhere().await;
    rig.create_pool(json!({"replicas": 2, "disruption": {"maxUnavailable": 1}}))
        .await;
    let ncrs: Api<NomadClientRetirement> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let draining = |p: Option<&NomadClientPool>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            (s.oldest_retirements.iter()).any(|r| r.phase == RetirePhase::Draining)
        })
    };
    rig.reconcile_until("one client draining", draining).await;
    let first = ncrs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(first.len(), 1);
    let deleted = first[0].name_any();
    ncrs.delete(&deleted, &DeleteParams::default())
        .await
        .unwrap();
    let phases = std::cell::RefCell::new(Vec::new());
    let next = wait_for(
        "the deleted retirement gone and a new one draining",
        T,
        || async {
            let _ = rig.reconcile_once().await;
            rig.bridge().await;
            let items = ncrs.list(&ListParams::default()).await.unwrap().items;
            let old = items.iter().find(|r| r.name_any() == deleted);
            phases.borrow_mut().extend(old.map(|r| r.phase()));
            let old_done = old.is_none_or(|r| r.phase() == RetirementPhase::Cancelled);
            let new = (items.iter())
                .find(|r| r.name_any() != deleted && r.phase() == RetirementPhase::Draining);
            (old_done && new.is_some()).then(|| new.cloned().unwrap())
        },
    )
    .await;
    let phases = phases.into_inner();
    assert!(
        phases.iter().all(|p| matches!(
            p,
            RetirementPhase::Draining | RetirementPhase::Cancelling | RetirementPhase::Cancelled
        )),
        "the deleted object only went toward Cancelled: {phases:?}"
    );
    assert!(next.metadata.deletion_timestamp.is_none());
    assert!(rig.terminations().is_empty(), "nothing terminated");
    rig.sim.assert_no_violations().await;
}

/// Progress figures a reconcile writes after its actions give way to a
/// newer record (the express lane's `Terminating`, written meanwhile):
/// neither written over it nor failing the reconcile.
#[tokio::test(flavor = "multi_thread")]
async fn progress_figures_never_overwrite_a_newer_record() {
    use kube::api::PostParams;
    use nomad_pool_operator::api::NomadClientRetirementStatus;
    use nomad_pool_operator::controller::retirement::{sync, write};
    let rig = Rig::new("progress-cas", 1).await;
    let api: Api<NomadClientRetirement> = Api::namespaced(rig.client.clone(), &rig.namespace);
    let obj: NomadClientRetirement = serde_json::from_value(json!({
        "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
        "metadata": {"name": "r1", "namespace": rig.namespace},
        "spec": {"pool": POOL, "target": {"nodeName": "client-1"}, "reason": "ScaleIn"},
    }))
    .unwrap();
    let read = api.create(&PostParams::default(), &obj).await.unwrap();
    let phase = |p| NomadClientRetirementStatus {
        phase: Some(p),
        ..Default::default()
    };
    // The lane's record lands first, on the copy both read.
    let mut lanes = read.clone();
    lanes.status = Some(phase(RetirementPhase::Terminating));
    api.replace_status("r1", &PostParams::default(), &lanes)
        .await
        .unwrap();
    let figures = sync::StatusWrite {
        object: std::sync::Arc::new(read),
        status: NomadClientRetirementStatus {
            allocations_left: 2,
            ..phase(RetirementPhase::Draining)
        },
    };
    let writes = sync::Writes {
        statuses: vec![figures],
        ..Default::default()
    };
    write::progress(&api, &rig.ctx.ledgers, &writes)
        .await
        .expect("a newer record is not an error");
    let stored = api.get("r1").await.unwrap().status.unwrap();
    assert_eq!(stored.phase, Some(RetirementPhase::Terminating));
    assert_eq!(stored.allocations_left, 0);
}
