//! Every transition of the retire lifecycle, the budget arithmetic and the
//! selection policies, on hand-built observations.

use super::*;
use crate::api::*;
use crate::provider::InstanceState;

const UID: &str = "pool-uid-1";

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    t("2026-11-26T12:00:00Z")
}

fn node(i: u32) -> NodeFacts {
    NodeFacts {
        id: format!("00000000-0000-0000-0000-{i:012}"),
        name: format!("client-{i}"),
        status: NodeStatus::Ready,
        eligible: true,
        draining: false,
        last_drain: None,
        last_drain_started: None,
        last_drain_mark: None,
        create_index: 100 + i as u64,
        instance_id: Some(format!("i-{i:04}")),
    }
}

/// The mark of a scale-in drain by this pool.
fn scale_in_mark() -> DrainMark {
    DrainMark {
        reason: RetireReason::ScaleIn,
        cordoned_by_pool: true,
    }
}

/// The drain a scale-in of node `i` sends.
fn drain_of(w: &World, i: usize) -> Action {
    Action::Drain {
        node_id: w.id(i),
        mark: scale_in_mark(),
    }
}

fn group(n: u32) -> GroupState {
    GroupState {
        name: "ci".into(),
        min_size: 0,
        max_size: 100,
        desired_capacity: n,
        terminate_suspended: false,
        suspended_processes: vec![],
        instances: (0..n)
            .map(|i| InstanceState {
                id: format!("i-{i:04}"),
                lifecycle: Lifecycle::InService,
                protected_from_scale_in: false,
                zone: Some("us-east-1a".into()),
                healthy: true,
            })
            .collect(),
        owner_tag: None,
    }
}

fn spec(replicas: Option<i32>) -> NomadClientPoolSpec {
    NomadClientPoolSpec {
        nomad: NomadConnection {
            address: "http://127.0.0.1:4646".into(),
            ..Default::default()
        },
        selector: PoolSelector {
            node_pool: Some("ci".into()),
            ..Default::default()
        },
        provider: ProviderSpec {
            aws_auto_scaling_group: Some(AwsAutoScalingGroup {
                name: "ci".into(),
                region: "us-east-1".into(),
                ..Default::default()
            }),
        },
        replicas,
        retire: vec![],
        drain: DrainPolicy::default(),
        disruption: DisruptionPolicy {
            max_unavailable: IntOrString::Int(2),
            ..Default::default()
        },
    }
}

fn entry(n: &NodeFacts, phase: RetirePhase) -> RetiringNode {
    RetiringNode {
        node_id: n.id.clone(),
        node_name: n.name.clone(),
        instance_id: n.instance_id.clone(),
        phase,
        since: Time(t("2026-11-26T11:00:00Z")),
        selected_at: Some(Time(t("2026-11-26T10:00:00Z"))),
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

struct World {
    spec: NomadClientPoolSpec,
    tracked: Vec<RetiringNode>,
    retired: Vec<RetiredNode>,
    nodes: Vec<NodeFacts>,
    allocs: HashMap<String, AllocFacts>,
    load: Option<HashMap<String, u32>>,
    group: GroupState,
    visibility: AllocationVisibility<'static>,
    /// The cluster-wide read of the nodes reporting each VM; by default every
    /// pool node's VM, listing the pool nodes that report it.
    instance_nodes: Option<InstanceNodes>,
}

/// What the cluster-wide read finds when the pool's nodes are all there is.
fn instance_nodes_of(nodes: &[NodeFacts]) -> InstanceNodes {
    let mut out = InstanceNodes::new();
    for n in nodes {
        if let Some(i) = &n.instance_id {
            out.entry(i.clone()).or_default().push(InstanceNode {
                id: n.id.clone(),
                name: n.name.clone(),
                status: n.status,
                eligible: n.eligible,
            });
        }
    }
    out
}

impl World {
    fn new(n: u32, replicas: Option<i32>) -> Self {
        World {
            spec: spec(replicas),
            tracked: vec![],
            retired: vec![],
            nodes: (0..n).map(node).collect(),
            allocs: HashMap::new(),
            load: Some(HashMap::new()),
            group: group(n),
            visibility: AllocationVisibility::Proven,
            instance_nodes: None,
        }
    }
    fn plan(&self) -> Plan {
        let derived = instance_nodes_of(&self.nodes);
        plan(&PoolView {
            now: now(),
            pool_key: "ns/pool",
            spec: &self.spec,
            tracked: &self.tracked,
            retired: &self.retired,
            nodes: &self.nodes,
            outside: &[],
            allocs: &self.allocs,
            load: self.load.as_ref(),
            group: &self.group,
            visibility: self.visibility,
            instance_nodes: self.instance_nodes.as_ref().unwrap_or(&derived),
        })
    }
    fn id(&self, i: usize) -> String {
        self.nodes[i].id.clone()
    }
}

fn phases(p: &Plan) -> Vec<(String, RetirePhase)> {
    p.retiring
        .iter()
        .map(|r| (r.node_name.clone(), r.phase))
        .collect()
}

#[test]
fn budget_counts_and_percentages() {
    assert_eq!(budget(&IntOrString::Int(3), 100), 3);
    assert_eq!(budget(&IntOrString::String("10%".into()), 100), 10);
    assert_eq!(
        budget(&IntOrString::String("10%".into()), 15),
        1,
        "rounded down"
    );
    assert_eq!(
        budget(&IntOrString::String("10%".into()), 5),
        1,
        "never zero"
    );
    assert_eq!(budget(&IntOrString::String("100%".into()), 7), 7);
}

#[test]
fn go_durations_parse_like_go() {
    assert_eq!(
        parse_go_duration("90s"),
        Some(SignedDuration::from_secs(90))
    );
    assert_eq!(
        parse_go_duration("1h30m"),
        Some(SignedDuration::from_secs(5400))
    );
    assert_eq!(
        parse_go_duration("1.5h"),
        Some(SignedDuration::from_secs(5400))
    );
    assert_eq!(
        parse_go_duration("250ms"),
        Some(SignedDuration::from_millis(250))
    );
    assert_eq!(parse_go_duration("10"), None, "a unit is required");
    assert_eq!(parse_go_duration(""), None);
    assert_eq!(parse_go_duration("5d"), None);
}

#[test]
fn scale_in_selects_least_busy_within_budget_and_cordons_first() {
    let mut w = World::new(6, Some(2));
    w.load = Some(
        [
            (w.id(0), 3),
            (w.id(1), 0),
            (w.id(2), 1),
            (w.id(3), 0),
            (w.id(4), 5),
            (w.id(5), 2),
        ]
        .into(),
    );
    let p = w.plan();
    // 4 to remove, budget 2: the two idle clients, oldest first.
    assert_eq!(
        phases(&p),
        [
            ("client-1".into(), RetirePhase::Selected),
            ("client-3".into(), RetirePhase::Selected)
        ]
    );
    assert_eq!(
        p.actions,
        [
            Action::Cordon { node_id: w.id(1) },
            Action::Cordon { node_id: w.id(3) }
        ]
    );
    assert!(p.blockers.is_empty());
    assert!(p.retiring.iter().all(|r| r.decrement && r.cordoned_by_pool));
    assert_eq!(p.desired_nodes, 2);
}

#[test]
fn selection_asks_for_load_only_when_it_must_select() {
    let mut w = World::new(4, Some(3));
    w.load = None;
    assert!(w.plan().needs_load);
    let mut settled = World::new(4, Some(4));
    settled.load = None;
    let p = settled.plan();
    assert!(!p.needs_load && p.actions.is_empty() && p.retiring.is_empty());
}

#[test]
fn selection_policies_order_candidates() {
    let mut w = World::new(4, Some(3));
    w.load = Some([(w.id(0), 2), (w.id(1), 1), (w.id(2), 0), (w.id(3), 4)].into());
    w.spec.disruption.selection_policy = SelectionPolicy::Oldest;
    assert_eq!(w.plan().retiring[0].node_name, "client-0");
    w.spec.disruption.selection_policy = SelectionPolicy::Newest;
    assert_eq!(w.plan().retiring[0].node_name, "client-3");
    w.spec.disruption.selection_policy = SelectionPolicy::LeastBusy;
    assert_eq!(w.plan().retiring[0].node_name, "client-2");
    w.spec.disruption.selection_policy = SelectionPolicy::Empty;
    assert_eq!(w.plan().retiring[0].node_name, "client-2");
    w.load = Some([(w.id(0), 2), (w.id(1), 1), (w.id(2), 1), (w.id(3), 4)].into());
    let p = w.plan();
    assert!(p.retiring.is_empty(), "Empty never takes a busy client");
    assert!(p.blockers.contains(&Blocker::NoEmptyNodes));
}

#[test]
fn selection_skips_ineligible_draining_down_and_unmapped_clients() {
    let mut w = World::new(5, Some(0));
    w.spec.disruption.max_unavailable = IntOrString::Int(10);
    w.nodes[0].eligible = false; // cordoned by someone else
    w.nodes[1].draining = true; // drained by someone else
    w.nodes[2].status = NodeStatus::Down;
    w.nodes[3].instance_id = None;
    let p = w.plan();
    assert_eq!(phases(&p), [("client-4".into(), RetirePhase::Selected)]);
    assert!(matches!(&p.blockers[..], [Blocker::Preflight(m)] if m.contains("client-3")));
}

#[test]
fn preflight_refusals_skip_candidates_and_say_why() {
    let mut w = World::new(3, Some(1));
    w.group.instances[0].protected_from_scale_in = true;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2);
    assert!(p.retiring.iter().all(|r| r.node_name != "client-0"));

    let mut w = World::new(3, Some(1));
    w.group.terminate_suspended = true;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(matches!(&p.blockers[..], [Blocker::Preflight(m)] if m.contains("Terminate")));

    let mut w = World::new(3, Some(1));
    w.group.min_size = 2;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1, "only one decrement fits above MinSize");
    assert!(matches!(&p.blockers[..], [Blocker::Preflight(_)]));
}

#[test]
fn budget_exhausted_waits_and_says_so() {
    let mut w = World::new(6, Some(2));
    w.tracked = vec![
        entry(&w.nodes[0], RetirePhase::Draining),
        entry(&w.nodes[1], RetirePhase::Draining),
    ];
    w.nodes[0].draining = true;
    w.nodes[1].draining = true;
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2);
    assert!(p.blockers.contains(&Blocker::BudgetExhausted {
        in_flight: 2,
        budget: 2
    }));
    assert!(!p.actions.iter().any(|a| matches!(a, Action::Cordon { .. })));
}

#[test]
fn selected_becomes_cordoned_once_ineligible_then_drains() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Selected)];
    let p = w.plan();
    assert_eq!(
        p.retiring[0].phase,
        RetirePhase::Selected,
        "still eligible: cordon again"
    );
    assert_eq!(p.actions, [Action::Cordon { node_id: w.id(0) }]);

    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Cordoned);
    assert_eq!(p.actions, [drain_of(&w, 0)]);
}

#[test]
fn cordoned_becomes_draining_only_for_our_own_drain() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Cordoned)];
    w.nodes[0].eligible = false;
    w.nodes[0].draining = true;
    w.nodes[0].last_drain = Some(LastDrainStatus::Draining);
    w.nodes[0].last_drain_mark = None; // someone else's drain
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Cordoned);
    assert_eq!(p.actions, [drain_of(&w, 0)], "our drain replaces theirs");

    w.nodes[0].last_drain_mark = Some(scale_in_mark());
    w.nodes[0].last_drain_started = Some(t("2026-11-26T11:59:00Z"));
    w.spec.drain.deadline = Some("1h".into());
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert_eq!(
        p.retiring[0].drain_deadline,
        Some(Time(t("2026-11-26T12:59:00Z")))
    );
    assert!(p.actions.is_empty());
}

fn draining_world() -> World {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Draining)];
    let n = &mut w.nodes[0];
    n.eligible = false;
    n.draining = true;
    n.last_drain = Some(LastDrainStatus::Draining);
    n.last_drain_mark = Some(scale_in_mark());
    w
}

fn drain_completes(w: &mut World) {
    w.nodes[0].draining = false;
    w.nodes[0].last_drain = Some(LastDrainStatus::Complete);
}

#[test]
fn draining_waits_for_allocation_facts_and_for_every_allocation() {
    let mut w = draining_world();
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(p.actions.is_empty());

    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 2,
            blocking_jobs: vec!["build-1".into(), "build-2".into()],
            ..Default::default()
        },
    );
    let p = w.plan();
    assert_eq!(p.retiring[0].allocations_left, 2);
    assert_eq!(p.retiring[0].blocking_jobs, ["build-1", "build-2"]);

    // Nomad marks the drain complete (deadline path) before allocations stop.
    drain_completes(&mut w);
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::Terminate { .. }))
    );
}

#[test]
fn drained_node_is_terminated_with_decrement_in_the_same_step() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert_eq!(
        p.actions,
        [Action::Terminate {
            node_id: w.id(0),
            instance_id: "i-0000".into(),
            decrement: true,
            first_attempt: true
        }]
    );
}

#[test]
fn allocations_empty_but_drain_still_running_waits_for_nomad() {
    let mut w = draining_world();
    w.allocs.insert(w.id(0), AllocFacts::default());
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(p.actions.is_empty());
}

#[test]
fn force_terminate_only_past_deadline_plus_grace() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 1,
            blocking_jobs: vec!["stuck".into()],
            ..Default::default()
        },
    );
    w.spec.drain.deadline = Some("30m".into());
    w.spec.drain.force_terminate_after = Some("10m".into());
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:55:00Z")));
    assert!(
        w.plan().actions.is_empty(),
        "5 minutes past the deadline: wait"
    );
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:45:00Z")));
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "ForceTerminate" && e.warning)
    );
}

#[test]
fn drained_client_waits_while_the_token_may_not_see_every_allocation() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    w.visibility = AllocationVisibility::Checking;
    let p = w.plan();
    assert_eq!(
        p.retiring[0].phase,
        RetirePhase::Draining,
        "checking: wait quietly"
    );
    assert!(p.actions.is_empty() && p.events.is_empty() && p.blockers.is_empty());

    w.visibility = AllocationVisibility::Unproven(
        "no policy of the Nomad token grants read-job in namespace \"*\"",
    );
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Drained);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert!(matches!(&p.blockers[..], [Blocker::AllocationsHidden(m)] if m.contains("read-job")));
    assert_eq!(
        p.events
            .iter()
            .filter(|e| e.reason == "TerminateWithheld")
            .count(),
        1
    );
    // The next step says nothing new: no second warning, no status churn.
    w.tracked = p.retiring.clone();
    let again = w.plan();
    assert_eq!(again.retiring, p.retiring);
    assert!(again.events.is_empty(), "{:?}", again.events);

    // Proven (the policy was fixed): the same client is terminated.
    w.visibility = AllocationVisibility::Proven;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(matches!(&p.actions[..], [Action::Terminate { .. }]));
}

#[test]
fn a_forced_termination_goes_ahead_without_proof_of_visibility() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    w.visibility = AllocationVisibility::Unproven("hidden");
    w.spec.drain.deadline = Some("30m".into());
    w.spec.drain.force_terminate_after = Some("10m".into());
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:45:00Z")));
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
}

#[test]
fn a_disconnected_client_with_unknown_allocations_is_not_terminated_when_its_drain_ends() {
    // Nomad marks the drain complete at its deadline (the allocations are
    // told to stop) while the partitioned client cannot report them stopped.
    let mut w = draining_world();
    drain_completes(&mut w);
    w.nodes[0].status = NodeStatus::Disconnected;
    w.allocs.insert(
        w.id(0),
        AllocFacts {
            live: 2,
            unknown: 2,
            blocking_jobs: vec!["build".into()],
        },
    );
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Draining);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let message = p.retiring[0].message.as_deref().unwrap_or_default();
    assert!(
        message.contains("disconnected") && message.contains("2 unknown"),
        "{message}"
    );

    // Nomad then marks the node down (nothing on it wants to run any more)
    // but the allocations stay unknown: still not terminated.
    w.nodes[0].status = NodeStatus::Down;
    let p = w.plan();
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let message = p.retiring[0].message.as_deref().unwrap_or_default();
    assert!(message.contains("node is down"), "{message}");

    // Past drain.forceTerminateAfter the spec allows it, and the event says
    // the work may still be running.
    w.spec.drain.deadline = Some("30m".into());
    w.spec.drain.force_terminate_after = Some("10m".into());
    w.tracked[0].drain_deadline = Some(Time(t("2026-11-26T11:45:00Z")));
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "ForceTerminate" && e.message.contains("partition"))
    );
}

#[test]
fn drained_but_protected_instance_waits_in_drained() {
    let mut w = draining_world();
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    w.group.instances[0].protected_from_scale_in = true;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Drained);
    assert!(
        p.retiring[0]
            .message
            .as_deref()
            .unwrap()
            .contains("protected")
    );
    assert!(p.actions.is_empty());
}

#[test]
fn terminating_reissues_only_while_the_instance_still_counts() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Terminating)];
    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(
        p.actions,
        [Action::Terminate {
            node_id: w.id(0),
            instance_id: "i-0000".into(),
            decrement: true,
            first_attempt: false
        }]
    );

    // The call landed: the instance is terminating and desired already dropped.
    w.group.instances[0].lifecycle = Lifecycle::Terminating;
    w.group.desired_capacity = 2;
    let p = w.plan();
    assert!(
        p.actions.is_empty(),
        "never a second terminate: {:?}",
        p.actions
    );
    assert_eq!(p.desired_nodes, 2);

    w.nodes[0].status = NodeStatus::Down;
    assert_eq!(w.plan().actions, [Action::Purge { node_id: w.id(0) }]);

    w.nodes.remove(0);
    w.group.instances.remove(0);
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert_eq!(p.retired, 1);
    assert_eq!(p.retire_seconds, [7200.0], "selected two hours before");
    assert!(p.events.iter().any(|e| e.reason == "Retired"));
}

#[test]
fn pending_decrements_count_against_replicas() {
    // 5 in the group, 2 already committed to scale-in: only 1 more for replicas=2.
    let mut w = World::new(5, Some(2));
    w.spec.disruption.max_unavailable = IntOrString::Int(5);
    w.tracked = vec![
        entry(&w.nodes[0], RetirePhase::Draining),
        entry(&w.nodes[1], RetirePhase::Selected),
    ];
    w.nodes[0].draining = true;
    w.nodes[0].eligible = false;
    w.nodes[0].last_drain_mark = Some(scale_in_mark());
    let p = w.plan();
    assert_eq!(p.retiring.len(), 3);
}

#[test]
fn scale_up_cancels_newest_retirements_before_buying_vms() {
    let mut w = World::new(5, Some(1));
    w.spec.disruption.max_unavailable = IntOrString::Int(5);
    let mut old = entry(&w.nodes[0], RetirePhase::Draining);
    old.since = Time(t("2026-11-26T10:00:00Z"));
    old.drain_started_at = Some(Time(t("2026-11-26T10:00:00Z")));
    let mut new = entry(&w.nodes[1], RetirePhase::Cordoned);
    new.since = Time(t("2026-11-26T11:30:00Z"));
    let mut ext = entry(&w.nodes[2], RetirePhase::Cordoned);
    ext.cordoned_by_pool = false;
    ext.since = Time(t("2026-11-26T11:00:00Z"));
    w.tracked = vec![old, new, ext];
    w.nodes[0].draining = true;
    w.nodes[0].eligible = false;
    w.nodes[0].last_drain_mark = Some(scale_in_mark());
    w.nodes[1].eligible = false;
    w.nodes[2].eligible = false;
    // effective = 5 - 3 = 2; replicas raised to 3: one cancellation, the newest.
    w.spec.replicas = Some(3);
    let p = w.plan();
    let cancelled: Vec<_> = p
        .retiring
        .iter()
        .filter(|r| r.phase == RetirePhase::Cancelling)
        .collect();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(
        cancelled[0].node_name, "client-1",
        "not yet draining, and newer than client-2"
    );
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(1),
        mark_eligible: true
    }));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::SetDesiredCapacity { .. }))
    );

    // replicas 6: all three cancelled (the one someone else cordoned stays
    // cordoned), then the group grows by the remaining one.
    w.spec.replicas = Some(6);
    let p = w.plan();
    assert_eq!(
        p.retiring
            .iter()
            .filter(|r| r.phase == RetirePhase::Cancelling)
            .count(),
        3
    );
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(0),
        mark_eligible: true
    }));
    assert!(p.actions.contains(&Action::Release {
        node_id: w.id(2),
        mark_eligible: false
    }));
    assert!(
        p.actions
            .contains(&Action::SetDesiredCapacity { desired: 6 })
    );
}

#[test]
fn terminating_retirements_are_not_cancelled() {
    let mut w = World::new(3, Some(3));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Terminating)];
    w.group.instances[0].lifecycle = Lifecycle::Terminating;
    w.group.desired_capacity = 2;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(
        p.actions
            .contains(&Action::SetDesiredCapacity { desired: 3 })
    );
}

#[test]
fn cancelling_finishes_when_the_node_is_back() {
    let mut w = World::new(3, Some(3));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Cancelling)];
    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(
        p.actions,
        [Action::Release {
            node_id: w.id(0),
            mark_eligible: true
        }]
    );
    w.nodes[0].eligible = true;
    let p = w.plan();
    assert!(p.retiring.is_empty());
    assert!(p.events.iter().any(|e| e.reason == "ReturnedToService"));
}

#[test]
fn paused_starts_nothing_but_lets_flights_land() {
    let mut w = draining_world();
    w.spec.replicas = Some(1);
    w.spec.disruption.paused = true;
    drain_completes(&mut w);
    w.allocs.insert(w.id(0), AllocFacts::default());
    let p = w.plan();
    assert_eq!(p.retiring.len(), 1);
    assert_eq!(p.retiring[0].phase, RetirePhase::Terminating);
    assert!(p.blockers.contains(&Blocker::Paused));
}

#[test]
fn dry_run_previews_and_touches_nothing() {
    let mut w = World::new(4, Some(2));
    w.spec.disruption.dry_run = true;
    w.load = Some([(w.id(2), 1)].into());
    let p = w.plan();
    assert!(p.actions.is_empty() && p.retiring.is_empty());
    assert_eq!(p.preview.len(), 2);
    assert_eq!(p.preview[0].node_name, "client-0");
}

#[test]
fn explicit_retire_by_name_id_or_instance() {
    let mut w = World::new(4, None);
    w.spec.retire = vec![
        RetireTarget {
            node_name: Some("client-1".into()),
            replace: true,
            ..Default::default()
        },
        RetireTarget {
            instance_id: Some("i-0002".into()),
            replace: false,
            ..Default::default()
        },
        RetireTarget {
            node_id: Some("ffffffff-0000-0000-0000-000000000000".into()),
            replace: true,
            ..Default::default()
        },
    ];
    let p = w.plan();
    assert_eq!(p.retiring.len(), 2);
    assert_eq!(
        (p.retiring[0].reason, p.retiring[0].decrement),
        (RetireReason::Replace, false)
    );
    assert_eq!(
        (p.retiring[1].reason, p.retiring[1].decrement),
        (RetireReason::Requested, true)
    );
    assert!(
        p.blockers
            .iter()
            .any(|b| matches!(b, Blocker::UnknownRetireTarget(t) if t.contains("ffffffff")))
    );
    assert!(!p.needs_load, "explicit retirements need no load");
}

#[test]
fn explicit_retire_removed_from_spec_is_cancelled_before_termination() {
    let mut w = World::new(3, None);
    let mut e = entry(&w.nodes[0], RetirePhase::Cordoned);
    e.reason = RetireReason::Replace;
    e.decrement = false;
    w.tracked = vec![e];
    w.nodes[0].eligible = false;
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Cancelling);
}

#[test]
fn node_vanishing_mid_retirement_is_forgotten_with_a_warning() {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Draining)];
    w.nodes.remove(0);
    let p = w.plan();
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == "NodeLeftPool" && e.warning)
    );
    assert_eq!(p.retired, 0);
}

#[test]
fn drain_cancelled_by_someone_else_is_sent_again() {
    let mut w = draining_world();
    w.nodes[0].draining = false;
    w.nodes[0].last_drain = Some(LastDrainStatus::Canceled);
    let p = w.plan();
    assert_eq!(p.retiring[0].phase, RetirePhase::Cordoned);
    assert_eq!(p.actions, [drain_of(&w, 0)]);
}

mod adoption;
mod departed;
mod identity;
mod properties;
mod recovery;
mod truth;
