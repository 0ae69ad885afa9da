use std::collections::HashMap;

use super::*;
use crate::api::{NomadClientPoolSpec, RetirePhase, RetireReason};
use crate::controller::retirement::records::tests::object;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

fn pool(history: Option<i32>) -> NomadClientPool {
    let spec: NomadClientPoolSpec = serde_json::from_value(serde_json::json!({
        "nomad": {"address": "http://127.0.0.1:4646"},
        "selector": {"nodePool": "ci"},
        "provider": {"awsAutoScalingGroup": {"name": "g", "region": "us-east-1"}},
        "retirementHistoryLimit": history,
    }))
    .unwrap();
    let mut p = NomadClientPool::new("ci", spec);
    p.metadata.namespace = Some("default".into());
    p.metadata.uid = Some("uid-1".into());
    p
}

fn entry(n: u32, phase: RetirePhase) -> RetiringNode {
    RetiringNode {
        node_id: format!("0b1c2d3e-0000-4000-8000-00000000000{n}"),
        node_name: format!("client-{n}"),
        instance_id: Some(format!("i-{n}")),
        phase,
        since: Time("2026-12-01T10:00:00Z".parse().unwrap()),
        selected_at: None,
        reason: RetireReason::ScaleIn,
        decrement: true,
        cordoned_by_pool: true,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: 0,
        blocking_jobs: vec![],
        message: None,
    }
}

fn plan_of(entries: Vec<RetiringNode>) -> Plan {
    Plan {
        retiring: entries,
        ..Default::default()
    }
}

/// The planner's Event about `node`, as its last word on it.
fn said(plan: &mut Plan, node: &str, reason: &'static str, message: &str) {
    plan.events.push(crate::controller::plan::PlanEvent {
        warning: false,
        node: Some(node.into()),
        reason,
        message: message.into(),
    });
}

fn run(
    pool: &NomadClientPool,
    rs: &[Arc<NomadClientRetirement>],
    plan: &Plan,
    recent: bool,
) -> Writes {
    let none = HashMap::new();
    let blocking = HashMap::new();
    let recently = move |_: &NomadClientRetirement| recent;
    writes(
        &Inputs {
            pool,
            retirements: rs,
            meta_names: &none,
            blocking: &blocking,
            written_recently: &recently,
            hold: &Default::default(),
            now: Timestamp::now(),
        },
        plan,
    )
}

fn finished(name: &str, at: &str, outcome: RetirementPhase) -> Arc<NomadClientRetirement> {
    let mut r = object(name, Some(&entry(1, RetirePhase::Terminating)));
    let st = r.status.as_mut().unwrap();
    st.phase = Some(outcome);
    st.finished_at = Some(Time(at.parse().unwrap()));
    Arc::new(r)
}

#[test]
fn a_new_client_in_flight_gets_an_object_owned_and_labelled_by_the_pool() {
    let p = pool(None);
    let w = run(
        &p,
        &[],
        &plan_of(vec![entry(1, RetirePhase::Selected)]),
        false,
    );
    assert_eq!(w.creates.len(), 1);
    let (obj, status) = &w.creates[0];
    assert_eq!(obj.name_any(), "ci-client-1-0b1c2d3e");
    assert_eq!(obj.labels()[POOL_LABEL], "ci");
    assert_eq!(obj.finalizers(), [FINALIZER.to_string()]);
    let owner = &obj.owner_references()[0];
    assert_eq!(
        (owner.uid.as_str(), owner.controller),
        ("uid-1", Some(true))
    );
    assert_eq!(status.phase, Some(RetirementPhase::Selected));
    assert!(obj.spec.decrement());
    assert_eq!(
        w.names["0b1c2d3e-0000-4000-8000-000000000001"],
        obj.name_any()
    );
}

#[test]
fn a_hand_made_retirement_naming_the_client_is_taken_over_not_duplicated() {
    let p = pool(None);
    let mut by_hand = object("by-hand", None);
    by_hand.spec.target.node_name = Some("client-1".into());
    let w = run(
        &p,
        &[Arc::new(by_hand)],
        &plan_of(vec![entry(1, RetirePhase::Selected)]),
        false,
    );
    assert!(w.creates.is_empty());
    assert_eq!(w.adopts.len(), 1);
    let owned = adopted_object(&p, &w.adopts[0].object);
    assert_eq!(owned.labels()[POOL_LABEL], "ci");
    assert!(owned.finalizers().contains(&FINALIZER.to_string()));
}

#[test]
fn progress_alone_waits_after_a_recent_write_a_phase_never_does() {
    let p = pool(None);
    let e = entry(1, RetirePhase::Draining);
    let r = Arc::new(object("r", Some(&e)));
    let mut progressed = e.clone();
    progressed.allocations_left = 3;
    let w = run(
        &p,
        std::slice::from_ref(&r),
        &plan_of(vec![progressed.clone()]),
        true,
    );
    assert!(w.statuses.is_empty(), "progress waits");
    let w = run(
        &p,
        std::slice::from_ref(&r),
        &plan_of(vec![progressed]),
        false,
    );
    assert_eq!(w.statuses.len(), 1, "progress is written when due");
    let mut moved = e.clone();
    moved.phase = RetirePhase::Drained;
    let w = run(&p, std::slice::from_ref(&r), &plan_of(vec![moved]), true);
    assert_eq!(w.statuses.len(), 1, "a phase is written at once");
    let w = run(&p, &[r], &plan_of(vec![e]), false);
    assert!(w.is_empty(), "nothing new, nothing written");
}

#[test]
fn a_retirement_the_plan_lets_go_of_is_finished_and_lets_go_of_its_finalizer() {
    let p = pool(None);
    let mut terminating = object("t", Some(&entry(1, RetirePhase::Terminating)));
    terminating.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let mut draining = object("d", Some(&entry(2, RetirePhase::Cancelling)));
    draining.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let mut plan = plan_of(vec![]);
    said(
        &mut plan,
        "client-1",
        "Retired",
        "node client-1 retired: VM i-1 terminated and node purged",
    );
    let w = run(
        &p,
        &[Arc::new(terminating), Arc::new(draining)],
        &plan,
        false,
    );
    let mut outcomes: Vec<(String, RetirementPhase)> = (w.finishes.iter())
        .map(|f| (f.object.name_any(), f.status.phase.unwrap()))
        .collect();
    outcomes.sort();
    assert_eq!(
        outcomes,
        [
            ("d".into(), RetirementPhase::Cancelled),
            ("t".into(), RetirementPhase::Retired)
        ]
    );
    let t = w
        .finishes
        .iter()
        .find(|f| f.object.name_any() == "t")
        .unwrap();
    assert!(t.status.message.as_deref().unwrap().contains("purged"));
    assert!(t.status.finished_at.is_some());
    assert_eq!(w.releases.len(), 2);
}

#[test]
fn history_beyond_the_limit_goes_oldest_first() {
    let p = pool(Some(2));
    let rs = [
        finished("a", "2026-12-01T10:00:00Z", RetirementPhase::Retired),
        finished("b", "2026-12-01T11:00:00Z", RetirementPhase::Cancelled),
        finished("c", "2026-12-01T12:00:00Z", RetirementPhase::Retired),
        finished("d", "2026-12-01T09:00:00Z", RetirementPhase::Retired),
    ];
    let w = run(&p, &rs, &plan_of(vec![]), false);
    let mut pruned: Vec<String> = w.prunes.iter().map(|r| r.name_any()).collect();
    pruned.sort();
    assert_eq!(pruned, ["a", "d"]);
}

#[test]
fn a_retirement_deleted_before_it_started_just_lets_go() {
    let p = pool(None);
    let mut by_hand = object("by-hand", None);
    by_hand.metadata.finalizers = Some(vec![FINALIZER.into()]);
    by_hand.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let w = run(&p, &[Arc::new(by_hand)], &plan_of(vec![]), false);
    assert_eq!(w.releases.len(), 1);
    assert!(w.finishes.is_empty() && w.creates.is_empty());
}

/// A VM no client registered on: its object names the instance only, and
/// the planner gets back the entry it wrote, keyed by the instance ID.
#[test]
fn a_retirement_without_a_node_is_keyed_by_its_instance_all_the_way() {
    let p = pool(None);
    let vm = RetiringNode {
        node_id: "i-0boot".into(),
        node_name: "i-0boot".into(),
        instance_id: Some("i-0boot".into()),
        reason: RetireReason::Unregistered,
        decrement: false,
        cordoned_by_pool: false,
        ..entry(1, RetirePhase::Selected)
    };
    let w = run(&p, &[], &plan_of(vec![vm.clone()]), false);
    let (obj, status) = &w.creates[0];
    assert_eq!(obj.name_any(), "ci-i-0boot");
    assert_eq!(
        (
            obj.spec.target.node_id.as_deref(),
            obj.spec.target.instance_id.as_deref()
        ),
        (None, Some("i-0boot"))
    );
    assert_eq!(
        (status.node_id.as_deref(), status.node_name.as_deref()),
        (None, None),
        "no node is named"
    );
    assert_eq!(w.names["i-0boot"], "ci-i-0boot");

    // Read back, it is the same entry; the next plan's status finds it.
    let mut stored = obj.clone();
    stored.status = Some(status.clone());
    assert_eq!(records::entry_of(&stored), Some(vm.clone()));
    let stored = Arc::new(stored);
    let terminating = RetiringNode {
        phase: RetirePhase::Terminating,
        ..vm
    };
    let w = run(
        &p,
        std::slice::from_ref(&stored),
        &plan_of(vec![terminating]),
        false,
    );
    assert!(w.creates.is_empty());
    assert_eq!(w.statuses.len(), 1);

    // Let go of after Terminating: Retired, with the planner's last word.
    let mut done = (*stored).clone();
    done.status.as_mut().unwrap().phase = Some(RetirementPhase::Terminating);
    let mut plan = plan_of(vec![]);
    said(
        &mut plan,
        "i-0boot",
        "Retired",
        "VM i-0boot, on which no Nomad client registered, terminated",
    );
    let w = run(&p, &[Arc::new(done)], &plan, false);
    let f = &w.finishes[0];
    assert_eq!(f.status.phase, Some(RetirementPhase::Retired));
    assert!(
        f.status
            .message
            .as_deref()
            .unwrap()
            .contains("no Nomad client")
    );
}

/// Deleting a retirement gives its client back; a pool that still wants
/// that many fewer may choose the same client again. The new choice gets
/// an object of its own: written onto the deleted one, it would flip
/// between the new phase and the cancel the deletion asks for.
#[test]
fn a_client_chosen_again_after_its_retirement_was_deleted_gets_a_new_object() {
    let p = pool(None);
    let mut deleted = object("ci-client-1", Some(&entry(1, RetirePhase::Cancelling)));
    deleted.metadata.finalizers = Some(vec![FINALIZER.into()]);
    deleted.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let mut plan = plan_of(vec![entry(1, RetirePhase::Selected)]);
    said(
        &mut plan,
        "client-1",
        "Selected",
        "selected client-1 for scale-in",
    );
    let w = run(&p, &[Arc::new(deleted)], &plan, false);
    assert!(
        w.statuses.is_empty(),
        "nothing written onto the deleted object"
    );
    assert_eq!(
        w.finishes[0].status.message.as_deref(),
        Some("node client-1 given back to service"),
        "the new choice's words are not the deleted one's last"
    );
    let finished: Vec<(String, RetirementPhase)> = (w.finishes.iter())
        .map(|f| (f.object.name_any(), f.status.phase.unwrap()))
        .collect();
    assert_eq!(
        finished,
        [("ci-client-1".into(), RetirementPhase::Cancelled)]
    );
    assert_eq!(w.releases.len(), 1, "the deleted object lets go");
    assert_eq!(w.creates.len(), 1);
    let (created, status) = &w.creates[0];
    assert_ne!(created.name_any(), "ci-client-1");
    assert_eq!(status.phase, Some(RetirementPhase::Selected));
    let id = &entry(1, RetirePhase::Selected).node_id;
    assert_eq!(w.names[id], created.name_any(), "the new object names it");

    // A deleted retirement the plan keeps cancelling stays its own.
    let mut cancelling = object("ci-client-2", Some(&entry(2, RetirePhase::Draining)));
    cancelling.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let w = run(
        &p,
        &[Arc::new(cancelling)],
        &plan_of(vec![entry(2, RetirePhase::Cancelling)]),
        false,
    );
    assert!(w.creates.is_empty() && w.finishes.is_empty());
    assert_eq!(w.statuses.len(), 1);
    assert_eq!(w.statuses[0].object.name_any(), "ci-client-2");
    assert_eq!(
        w.statuses[0].status.phase,
        Some(RetirementPhase::Cancelling)
    );
}

#[test]
fn a_status_that_differs_from_its_stored_copy_only_below_the_second_is_not_written() {
    // Nomad's times have nanoseconds; the API server keeps whole seconds.
    let p = pool(None);
    let mut e = entry(1, RetirePhase::Draining);
    e.blocking_jobs = vec!["build".into()];
    e.allocations_left = 1;
    let nomad = BlockingAllocation {
        job_id: "build".into(),
        task_group: "main".into(),
        allocation_id: "a1".into(),
        since: Some(Time("2026-12-01T10:05:00.123456789Z".parse().unwrap())),
    };
    let mut r = object("r", Some(&e));
    r.status = Some(status_of(
        &e,
        None,
        Some(1),
        Some(vec![nomad.clone()]),
        Timestamp::now(),
    ));
    let stored: NomadClientRetirement =
        serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
    let blocking = HashMap::from([(e.node_id.clone(), vec![nomad])]);
    let none = HashMap::new();
    let never = |_: &NomadClientRetirement| false;
    let w = writes(
        &Inputs {
            pool: &p,
            retirements: &[Arc::new(stored)],
            meta_names: &none,
            blocking: &blocking,
            written_recently: &never,
            hold: &Default::default(),
            now: Timestamp::now(),
        },
        &plan_of(vec![e]),
    );
    assert!(w.statuses.is_empty(), "{:?}", w.statuses);
}
