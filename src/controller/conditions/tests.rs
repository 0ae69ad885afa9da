use super::*;

#[test]
fn every_problem_is_listed_under_the_first_ones_reason() {
    assert_eq!(degraded_signal(&[]), None);
    let one = [Problem::new("PreflightFailed", "x")];
    assert_eq!(degraded_signal(&one), Some(("PreflightFailed", "x".into())));
    let two = [
        Problem::new("UnknownRetireTarget", "a"),
        Problem::new("ReplicasAboveMaxSize", "b"),
    ];
    assert_eq!(
        degraded_signal(&two),
        Some((
            "UnknownRetireTarget",
            "2 problems: UnknownRetireTarget: a; ReplicasAboveMaxSize: b".into()
        ))
    );
    let many: Vec<Problem> = (0..MAX_LISTED_PROBLEMS + 3)
        .map(|i| Problem::new("PreflightFailed", format!("n{i}")))
        .collect();
    let (_, message) = degraded_signal(&many).unwrap();
    assert!(message.ends_with("and 3 more"), "{message}");
}

#[test]
fn each_blocker_that_is_a_fault_has_its_own_reason() {
    let reason = |b: Blocker| degraded_by(&b).map(|p| p.reason);
    assert_eq!(
        reason(Blocker::NoClientsMatch { desired: 2 }),
        Some("NoMatchingClients")
    );
    assert_eq!(
        reason(Blocker::ReplicasAboveMaxSize {
            replicas: 8,
            max_size: 5,
            group: "g".into()
        }),
        Some("ReplicasAboveMaxSize")
    );
    assert_eq!(reason(Blocker::Paused), None, "progress, not a fault");
    let stalls = |b: Blocker| degraded_by(&b).is_some_and(|p| p.stalls);
    assert!(stalls(Blocker::UnknownRetireTarget("x".into())));
    assert!(stalls(Blocker::InvalidBudget("x".into())));
    assert!(
        !stalls(Blocker::NoClientsMatch { desired: 2 }),
        "a pool grown from zero reads so until its clients join"
    );
    assert!(
        !stalls(Blocker::Preflight("x".into())),
        "see kstatus::stalled"
    );
}

fn group(desired_capacity: u32) -> GroupState {
    GroupState {
        name: "g".into(),
        min_size: 0,
        max_size: 10,
        desired_capacity,
        terminate_suspended: false,
        suspended_processes: vec![],
        instances: vec![],
        owner_tag: None,
        launch_specs: vec![],
        reads_launch_times: false,
    }
}

#[test]
fn a_pool_held_only_by_its_spec_is_ready_for_pipelines() {
    let group = group(3);
    let planned = plan::Plan {
        desired_nodes: 2,
        blockers: vec![Blocker::Paused],
        ..Default::default()
    };
    let paused = Signal::new(false, "Paused", "disruption.paused is set");
    let ready = |degraded: &Option<(&'static str, String)>, scaling_up| {
        ready_condition(&planned, &[], &group, 3, degraded, &paused, scaling_up)
    };
    let r = ready(&None, false);
    assert_eq!((r.status, r.reason.as_str()), (true, "Paused"));
    // Anything else wrong or moving: not ready.
    assert!(!ready(&Some(("Unauthorized", "denied".into())), false).status);
    assert!(!ready(&None, true).status);
    let mut retiring = plan::Plan {
        desired_nodes: 2,
        blockers: vec![Blocker::Paused],
        ..Default::default()
    };
    retiring.retiring.push(crate::api::RetiringNode {
        node_id: "n".into(),
        node_name: "n".into(),
        instance_id: None,
        phase: RetirePhase::Draining,
        since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        selected_at: None,
        reason: crate::api::RetireReason::ScaleIn,
        decrement: true,
        cordoned_by_pool: true,
        drain_started_at: None,
        drain_deadline: None,
        allocations_left: 0,
        blocking_jobs: vec![],
        message: None,
    });
    let r = ready_condition(&retiring, &[], &group, 3, &None, &paused, false);
    assert!(!r.status, "a retirement still in flight");
}

#[test]
fn an_undecodable_answer_is_not_called_unreachable() {
    let source = serde_json::from_slice::<serde_json::Value>(b"[{\"ID\":").unwrap_err();
    let e = NomadError::Decode {
        endpoint: "/v1/nodes".into(),
        source,
    };
    let t = Trouble::from_nomad(&e, "http://nomad:4646");
    assert_eq!(t.reason, "NomadResponseInvalid");
    assert!(!t.stalls, "an error page may pass");
    assert!(t.message.contains("/v1/nodes"), "{}", t.message);
}

#[test]
fn a_group_above_the_wanted_size_with_nothing_to_do_says_so() {
    let group = group(4);
    let planned = plan::Plan {
        desired_nodes: 3,
        ..Default::default()
    };
    let idle = Signal::new(false, "Idle", "nothing to do");
    let r = ready_condition(&planned, &[], &group, 3, &None, &idle, false);
    assert_eq!((r.status, r.reason.as_str()), (false, "GroupResizing"));
    assert!(r.message.contains("(4) to reach 3"), "{}", r.message);
}
