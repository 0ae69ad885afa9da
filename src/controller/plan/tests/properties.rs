//! Random pools, allocation states and spec changes: the safety
//! invariants hold for every generated case.

use super::*;
use proptest::prelude::*;

mod express;
mod remediation;
use express::{drains_ended, lane_terminates_only_what_the_plan_does};
use remediation::{
    unhealthy_selections_are_safe, unregistered_terminate_is_safe, with_remediation,
};

#[derive(Debug, Clone)]
struct Case {
    nodes: Vec<NodeFacts>,
    tracked: Vec<RetiringNode>,
    allocs: HashMap<String, AllocFacts>,
    load: HashMap<String, u32>,
    group: GroupState,
    spec: NomadClientPoolSpec,
    hidden: bool,
    /// Cluster-wide nodes per VM; empty when that read has not answered.
    instance_nodes: InstanceNodes,
    drains: HashMap<String, DrainPolicy>,
    /// With `remediation` on: every down or disconnected client seen so
    /// an hour ago (past any grace).
    unhealthy_since: HashMap<String, Timestamp>,
    clientless_since: HashMap<String, Timestamp>,
}

fn phase() -> impl Strategy<Value = RetirePhase> {
    prop_oneof![
        Just(RetirePhase::Selected),
        Just(RetirePhase::Cordoned),
        Just(RetirePhase::Draining),
        Just(RetirePhase::Drained),
        Just(RetirePhase::Terminating),
        Just(RetirePhase::Cancelling),
    ]
}

/// One generated node: eligible, draining, status, last drain, this pool's
/// mark (reason, cordoned by the pool, selection: none, the tracked
/// entry's, an earlier one), load, live allocations (if read), and whether
/// it reports the VM of the node before it (0).
type NodeBits = (
    bool,
    bool,
    u8,
    u8,
    Option<(u8, bool, u8)>,
    u32,
    Option<u32>,
    u8,
);
/// One tracked retirement, if any: phase, decrement, cordoned by the pool.
type TrackedBits = Option<(RetirePhase, bool, bool)>;
/// The spec and the view: replicas, budget, the group's MinSize, paused,
/// dry run, forced termination, hidden allocations, VM nodes listed.
type SpecBits = (i32, i32, u32, bool, bool, bool, bool, bool);

fn node_bits() -> impl Strategy<Value = NodeBits> {
    (
        any::<bool>(),
        any::<bool>(),
        0u8..5,
        0u8..4,
        prop::option::of((0u8..3, any::<bool>(), 0u8..3)),
        0u32..4,
        prop::option::of(0u32..3),
        0u8..4,
    )
}

fn case() -> impl Strategy<Value = Case> {
    (1u32..12).prop_flat_map(|n| {
        (
            proptest::collection::vec(node_bits(), n as usize),
            proptest::collection::vec(
                prop::option::of((phase(), any::<bool>(), any::<bool>())),
                n as usize,
            ),
            (
                0i32..14,
                1i32..5,
                0u32..4,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
            proptest::collection::vec(0u8..5, n as usize),
            0u8..4,
        )
            .prop_map(move |(nodes, tracked, spec, lifecycles, remedy)| {
                let mut c = build_case(n, nodes, tracked, spec, lifecycles);
                with_remediation(&mut c, remedy);
                c
            })
    })
}

/// The node `bits` describe, the `i`th of the pool (`before` is the one
/// before it).
fn generated_node(i: usize, bits: NodeBits, before: Option<&NodeFacts>) -> NodeFacts {
    let (eligible, draining, status, drain, ours, _, _, shares) = bits;
    let mut f = node(i as u32);
    f.eligible = eligible && !draining;
    f.draining = draining;
    f.status = [
        NodeStatus::Ready,
        NodeStatus::Ready,
        NodeStatus::Down,
        NodeStatus::Initializing,
        NodeStatus::Disconnected,
    ][status as usize];
    f.last_drain = [
        None,
        Some(LastDrainStatus::Draining),
        Some(LastDrainStatus::Complete),
        Some(LastDrainStatus::Canceled),
    ][drain as usize];
    f.last_drain_mark = ours.map(|(reason, cordoned_by_pool, selected)| DrainMark {
        reason: [
            RetireReason::ScaleIn,
            RetireReason::Requested,
            RetireReason::Replace,
        ][reason as usize],
        cordoned_by_pool,
        selected_at: [
            None,
            entry(&f, RetirePhase::Cordoned).selected_at.map(|t| t.0),
            Some(t("2026-11-20T09:00:00Z")),
        ][selected as usize],
    });
    // One node in four reports the VM of the node before
    // it (a second agent, a re-registered client).
    if shares == 0 && i > 0 {
        f.instance_id = before.and_then(|p: &NodeFacts| p.instance_id.clone());
    }
    f
}

/// The group's instances in the lifecycles generated (4: protected).
fn set_lifecycles(group: &mut GroupState, lifecycles: Vec<u8>) {
    for (i, l) in lifecycles.into_iter().enumerate() {
        group.instances[i].lifecycle = [
            Lifecycle::InService,
            Lifecycle::InService,
            Lifecycle::Terminating,
            Lifecycle::Standby,
            Lifecycle::Pending,
        ][l as usize]
            .clone();
        group.instances[i].protected_from_scale_in = l == 4;
    }
}

/// The retirement of `node` that `bits` describe.
fn tracked_entry(
    node: &NodeFacts,
    (phase, decrement, cordoned): (RetirePhase, bool, bool),
) -> RetiringNode {
    let mut e = entry(node, phase);
    e.decrement = decrement;
    e.reason = if decrement {
        RetireReason::ScaleIn
    } else {
        RetireReason::Replace
    };
    e.cordoned_by_pool = cordoned;
    e.drain_deadline = Some(Time(t("2026-11-26T11:00:00Z")));
    e
}

fn build_case(
    n: u32,
    node_bits: Vec<NodeBits>,
    tracked_bits: Vec<TrackedBits>,
    (replicas, budget, min, paused, dry, force, hidden, listed): SpecBits,
    lifecycles: Vec<u8>,
) -> Case {
    let mut nodes: Vec<NodeFacts> = vec![];
    let mut allocs = HashMap::new();
    let mut load = HashMap::new();
    let mut group = group(n);
    group.min_size = min;
    for (i, bits) in node_bits.into_iter().enumerate() {
        let (_, _, _, _, _, busy, live, _) = bits;
        let f = generated_node(i, bits, nodes.last());
        load.insert(f.id.clone(), busy);
        if let Some(live) = live {
            allocs.insert(
                f.id.clone(),
                AllocFacts {
                    live,
                    ..Default::default()
                },
            );
        }
        nodes.push(f);
    }
    set_lifecycles(&mut group, lifecycles);
    let tracked = tracked_bits
        .into_iter()
        .enumerate()
        .filter_map(|(i, bits)| bits.map(|bits| tracked_entry(&nodes[i], bits)))
        .collect();
    let mut spec = spec(Some(replicas));
    spec.disruption.max_unavailable = IntOrString::Int(budget);
    spec.disruption.paused = paused;
    spec.disruption.dry_run = dry;
    if force {
        spec.drain.deadline = Some("30m".into());
        spec.drain.force_terminate_after = Some("10m".into());
    }
    Case {
        tracked,
        allocs,
        load,
        group,
        spec,
        hidden,
        instance_nodes: if listed {
            instance_nodes_of(&nodes)
        } else {
            InstanceNodes::new()
        },
        drains: HashMap::new(),
        nodes,
        unhealthy_since: HashMap::new(),
        clientless_since: HashMap::new(),
    }
}

fn view_of(c: &Case) -> PoolView<'_> {
    PoolView {
        now: now(),
        pool_key: "ns/pool",
        spec: &c.spec,
        tracked: &c.tracked,
        retired: &[],
        recent_starts: &[],
        nodes: &c.nodes,
        outside: &[],
        allocs: &c.allocs,
        load: Some(&c.load),
        group: &c.group,
        visibility: if c.hidden {
            AllocationVisibility::Unproven("the token cannot read namespace \"b\"")
        } else {
            AllocationVisibility::Proven
        },
        instance_nodes: &c.instance_nodes,
        drains: &c.drains,
        lifecycle_hook: None,
        unhealthy_since: &c.unhealthy_since,
        clientless_since: &c.clientless_since,
        index: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn safety_invariants_hold(c in case()) {
        let p = plan(&view_of(&c));

        // A node appears at most once in status.
        let mut ids: Vec<&str> = p.retiring.iter().map(|r| r.node_id.as_str()).collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        prop_assert_eq!(before, ids.len());
        // A VM without a client is never retired twice, nor beside a
        // retirement of a node on it.
        for u in p.retiring.iter().filter(|r| !r.reason.has_node()) {
            let on_it = (p.retiring.iter())
                .filter(|r| r.instance_id == u.instance_id)
                .count();
            prop_assert_eq!(on_it, 1);
        }

        for a in &p.actions {
            action_is_safe(&c, &p, a)?;
        }
        adoptions_are_as_recorded(&c, &p)?;
        selections_are_safe(&c, &p)?;
        lane_terminates_only_what_the_plan_does(&c)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Most generated cases hold no drain that ended; these all do.
    #[test]
    fn the_lane_terminates_only_what_the_plan_does(c in case().prop_map(drains_ended)) {
        lane_terminates_only_what_the_plan_does(&c)?;
    }
}

/// What one planned action may do, whatever the case.
fn action_is_safe(c: &Case, p: &Plan, a: &Action) -> Result<(), TestCaseError> {
    let node = |id: &str| c.nodes.iter().find(|n| n.id == id);
    match a {
        Action::Terminate {
            node_id, decrement, ..
        } => terminate_is_safe(c, p, node_id, *decrement)?,
        Action::Release { node_id, .. } => {
            // A committed termination is never cancelled.
            let was = c.tracked.iter().find(|r| &r.node_id == node_id);
            prop_assert!(was.is_none_or(|r| r.phase != RetirePhase::Terminating));
        }
        Action::Cordon { node_id } => {
            let e = p.retiring.iter().find(|r| &r.node_id == node_id);
            prop_assert!(e.is_some_and(|e| e.phase == RetirePhase::Selected));
        }
        // A held VM is let go only once its client's record says Terminating.
        Action::CompleteLifecycleAction { node_id, .. } => {
            let e = node_id
                .as_ref()
                .and_then(|id| p.retiring.iter().find(|r| &r.node_id == id));
            prop_assert!(
                node_id.is_none() || e.is_some_and(|e| e.phase == RetirePhase::Terminating)
            );
        }
        Action::Drain { node_id, mark } => {
            let e = p.retiring.iter().find(|r| &r.node_id == node_id);
            prop_assert!(e.is_some_and(|e| e.phase == RetirePhase::Cordoned));
            // The drain's Meta records the retirement as status does.
            let e = e.unwrap();
            prop_assert_eq!(
                (mark.reason, mark.cordoned_by_pool),
                (e.reason, e.cordoned_by_pool)
            );
        }
        Action::Purge { node_id } => {
            prop_assert!(node(node_id).is_some_and(|n| n.status == NodeStatus::Down));
        }
        Action::SetDesiredCapacity { desired } => {
            prop_assert!(*desired > c.group.desired_capacity);
            prop_assert!(!c.spec.disruption.dry_run);
        }
    }
    Ok(())
}

/// A terminate (of `node_id`'s VM) is named in status first, and never
/// takes live work, or work the token may not see, unless forced.
fn terminate_is_safe(
    c: &Case,
    p: &Plan,
    node_id: &str,
    decrement: bool,
) -> Result<(), TestCaseError> {
    let node = |id: &str| c.nodes.iter().find(|n| n.id == id);
    let forced = c.spec.drain.force_terminate_after.is_some();
    let n = node(node_id);
    let entry = p.retiring.iter().find(|r| r.node_id == node_id);
    // Only what status names as Terminating is terminated (write-ahead).
    prop_assert!(
        entry.is_some_and(|e| e.phase == RetirePhase::Terminating && e.decrement == decrement)
    );
    let was_terminating = c
        .tracked
        .iter()
        .any(|r| r.node_id == node_id && r.phase == RetirePhase::Terminating);
    if entry.is_some_and(|e| e.reason == RetireReason::Unregistered) {
        return unregistered_terminate_is_safe(c, node_id, decrement);
    }
    if !was_terminating && entry.is_some_and(|e| e.reason == RetireReason::Unhealthy) {
        // A broken client's VM: the spec's remediation is the permission to
        // terminate under allocations it cannot prove stopped, but only of a
        // client still unhealthy, and only once they were read (the Event
        // says how many).
        let n = n.expect("terminated node exists");
        prop_assert!(c.spec.remediation.is_some());
        prop_assert!(
            matches!(n.status, NodeStatus::Down | NodeStatus::Disconnected),
            "replaced a {:?} client",
            n.status
        );
        prop_assert!(c.allocs.contains_key(node_id), "allocations not read");
        prop_assert!(!decrement, "a replacement never shrinks the group");
    } else if !was_terminating {
        // Entering termination now: never with a live allocation or a running drain.
        let n = n.expect("terminated node exists");
        prop_assert!(!n.draining, "drain still running");
        // An eligible client may be given new work between the allocation
        // read and the terminate, whatever its last drain said.
        prop_assert!(
            !n.eligible || n.status == NodeStatus::Down,
            "terminated eligible {}",
            n.name
        );
        let live = c.allocs.get(node_id).map(|a| a.live);
        prop_assert!(
            live == Some(0) || (forced && live.is_some()),
            "live allocations: {:?}",
            live
        );
        // Allocations the token may not see: only a termination the spec forces.
        prop_assert!(
            !c.hidden || (forced && live.is_some()),
            "terminated with hidden allocations possible"
        );
    }
    // Whether entering now or sent again: no other node of the
    // VM has live work, may get some, or is unread.
    let instance = p
        .retiring
        .iter()
        .find(|r| r.node_id == node_id)
        .and_then(|r| r.instance_id.clone());
    for other in c
        .nodes
        .iter()
        .filter(|o| o.id != node_id && o.instance_id == instance)
    {
        let live = c.allocs.get(&other.id).map(|a| a.live);
        prop_assert!(
            live == Some(0),
            "VM terminated while {} has {:?} live",
            other.name,
            live
        );
        prop_assert!(
            !other.eligible || other.status == NodeStatus::Down,
            "VM terminated under eligible {}",
            other.name
        );
    }
    prop_assert!(
        instance
            .as_ref()
            .is_some_and(|i| c.instance_nodes.contains_key(i)),
        "VM terminated before its nodes were listed"
    );
    prop_assert!(!c.spec.disruption.dry_run || was_terminating);
    Ok(())
}

/// Drains adopted now are tracked as their Meta recorded them.
fn adoptions_are_as_recorded(c: &Case, p: &Plan) -> Result<(), TestCaseError> {
    let node = |id: &str| c.nodes.iter().find(|n| n.id == id);
    let new: Vec<&RetiringNode> = p
        .retiring
        .iter()
        .filter(|r| !c.tracked.iter().any(|t| t.node_id == r.node_id))
        .collect();
    let adopted_now = |r: &RetiringNode| {
        p.events
            .iter()
            .any(|e| e.reason == "AdoptedDrain" && e.node.as_deref() == Some(r.node_name.as_str()))
    };
    for r in new.iter().filter(|r| adopted_now(r)) {
        let n = node(&r.node_id).unwrap();
        let mark = n.last_drain_mark.as_ref().unwrap();
        // Adopted as recorded: a replacement never shrinks the group,
        // and a cancel restores the owner's cordon.
        let in_group = r
            .instance_id
            .as_deref()
            .is_none_or(|i| still_counted(&c.group.instance(i).map(|i| i.lifecycle.clone())));
        prop_assert_eq!(r.decrement, r.reason != RetireReason::Replace && in_group);
        prop_assert_eq!(r.cordoned_by_pool, mark.cordoned_by_pool);
        // A finished drain the pool gave back, of a client someone
        // else had cordoned, is never taken again (no spec names
        // clients here).
        prop_assert!(
            n.draining || mark.reason == RetireReason::ScaleIn || mark.cordoned_by_pool,
            "re-adopted a client given back: {:?}",
            n
        );
    }
    Ok(())
}

/// New selections: never in dry run or pause, only eligible ready
/// non-draining nodes, and never past the budget.
fn selections_are_safe(c: &Case, p: &Plan) -> Result<(), TestCaseError> {
    let node = |id: &str| c.nodes.iter().find(|n| n.id == id);
    let new: Vec<&RetiringNode> = p
        .retiring
        .iter()
        .filter(|r| !c.tracked.iter().any(|t| t.node_id == r.node_id))
        .collect();
    let adopted = |r: &RetiringNode| node(&r.node_id).is_some_and(|n| n.last_drain_mark.is_some());
    let selected: Vec<&&RetiringNode> = new.iter().filter(|r| !adopted(r)).collect();
    if c.spec.disruption.dry_run || c.spec.disruption.paused {
        prop_assert!(selected.is_empty());
    }
    unhealthy_selections_are_safe(c, &selected)?;
    for r in selected.iter().filter(|r| !r.reason.is_remediation()) {
        let n = node(&r.node_id).unwrap();
        prop_assert!(n.eligible && !n.draining && n.status == NodeStatus::Ready);
        // Never a VM another live node reports.
        let shared = c.nodes.iter().any(|o| {
            o.id != n.id && o.status != NodeStatus::Down && o.instance_id == n.instance_id
        });
        prop_assert!(!shared, "selected {} on a shared VM", n.name);
    }
    // A scale-in never leaves fewer live, eligible clients than replicas.
    let scale_ins = selected
        .iter()
        .filter(|r| r.reason == RetireReason::ScaleIn)
        .count();
    if scale_ins > 0 {
        let working = c
            .nodes
            .iter()
            .filter(|n| {
                n.status == NodeStatus::Ready
                    && n.eligible
                    && !n.draining
                    && !p.retiring.iter().any(|r| r.node_id == n.id)
            })
            .count() as i32;
        prop_assert!(
            working >= c.spec.replicas.unwrap_or(0),
            "{} working clients left, replicas {:?}",
            working,
            c.spec.replicas
        );
    }
    // Replacements obey maxUnhealthy, not the budget; voluntary selections
    // count them all the same.
    if selected.iter().any(|r| r.reason.is_voluntary()) {
        // Out of service: every retirement in flight and every live
        // client ineligible or draining, whoever took it out.
        let mut out: Vec<&str> = p
            .retiring
            .iter()
            .filter(|r| r.phase != RetirePhase::Cancelling)
            .map(|r| r.node_id.as_str())
            .collect();
        out.extend(
            c.nodes
                .iter()
                .filter(|n| n.status != NodeStatus::Down && (!n.eligible || n.draining))
                .map(|n| n.id.as_str()),
        );
        out.sort();
        out.dedup();
        let budget = budget(&c.spec.disruption.max_unavailable, 0);
        prop_assert!(
            out.len() as u32 <= budget,
            "{} out of service, budget {}",
            out.len(),
            budget
        );
    }
    Ok(())
}
