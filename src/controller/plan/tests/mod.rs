//! Every transition of the retire lifecycle, the budget arithmetic and the
//! selection policies, on hand-built observations: the shared builders here,
//! the tests in one file per concern.

use super::*;
use crate::api::*;
use crate::provider::InstanceState;

mod adoption;
mod clocks;
mod departed;
mod hooks;
mod identity;
mod lifecycle;
mod properties;
mod recovery;
mod remediation;
mod renew;
mod scale;
mod scale_up;
mod selection;
mod truth;
mod unregistered;
mod windows;

const UID: &str = "pool-uid-1";

fn t(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn now() -> Timestamp {
    t("2026-11-26T12:00:00Z")
}

fn node(i: u32) -> NodeFacts {
    NodeFacts {
        do_not_retire: false,
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
        selected_at: None,
    }
}

/// The drain a scale-in of node `i` tracked as [`entry`] makes it (which
/// records the entry's selection) sends.
fn drain_of(w: &World, i: usize) -> Action {
    let selected = entry(&w.nodes[i], RetirePhase::Cordoned).selected_at;
    Action::Drain {
        node_id: w.id(i),
        mark: DrainMark {
            selected_at: selected.map(|t| t.0),
            ..scale_in_mark()
        },
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
                launched_at: None,
                launch_spec: None,
            })
            .collect(),
        owner_tag: None,
        launch_specs: vec![],
        reads_launch_times: true,
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
        provider: crate::provider::config::sample_spec(None),
        replicas,
        retire: vec![],
        drain: DrainPolicy::default(),
        disruption: DisruptionPolicy {
            max_unavailable: IntOrString::Int(2),
            ..Default::default()
        },
        max_node_age: None,
        replace_drifted: false,
        remediation: None,
        retirement_history_limit: None,
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
    /// The planner's "now"; `now()` unless a test moves it.
    at: Timestamp,
    spec: NomadClientPoolSpec,
    tracked: Vec<RetiringNode>,
    retired: Vec<RetiredNode>,
    /// `status.disruption.recentStarts`.
    recent_starts: Vec<Time>,
    nodes: Vec<NodeFacts>,
    allocs: HashMap<String, AllocFacts>,
    load: Option<HashMap<String, u32>>,
    group: GroupState,
    visibility: AllocationVisibility<'static>,
    /// The cluster-wide read of the nodes reporting each VM; by default every
    /// pool node's VM, listing the pool nodes that report it.
    instance_nodes: Option<InstanceNodes>,
    /// Retirements with their own drain settings, by node ID.
    drains: HashMap<String, DrainPolicy>,
    /// The group's lifecycle hook, once confirmed.
    lifecycle_hook: Option<&'static str>,
    /// When the controller first saw each client down or disconnected.
    unhealthy_since: HashMap<String, Timestamp>,
    /// When the controller first saw each VM without a node of the pool.
    clientless_since: HashMap<String, Timestamp>,
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
            at: now(),
            spec: spec(replicas),
            tracked: vec![],
            retired: vec![],
            recent_starts: vec![],
            nodes: (0..n).map(node).collect(),
            allocs: HashMap::new(),
            load: Some(HashMap::new()),
            group: group(n),
            visibility: AllocationVisibility::Proven,
            instance_nodes: None,
            drains: HashMap::new(),
            lifecycle_hook: None,
            unhealthy_since: HashMap::new(),
            clientless_since: HashMap::new(),
        }
    }
    fn plan(&self) -> Plan {
        let derived = instance_nodes_of(&self.nodes);
        plan(&PoolView {
            now: self.at,
            pool_key: "ns/pool",
            spec: &self.spec,
            tracked: &self.tracked,
            retired: &self.retired,
            recent_starts: &self.recent_starts,
            nodes: &self.nodes,
            outside: &[],
            allocs: &self.allocs,
            load: self.load.as_ref(),
            group: &self.group,
            visibility: self.visibility,
            instance_nodes: self.instance_nodes.as_ref().unwrap_or(&derived),
            drains: &self.drains,
            lifecycle_hook: self.lifecycle_hook,
            unhealthy_since: &self.unhealthy_since,
            clientless_since: &self.clientless_since,
            index: Default::default(),
        })
    }
    fn id(&self, i: usize) -> String {
        self.nodes[i].id.clone()
    }
}

/// Whether `p` drains the node `node_id`.
fn drains(p: &Plan, node_id: &str) -> bool {
    (p.actions.iter()).any(|a| matches!(a, Action::Drain { node_id: n, .. } if n == node_id))
}

fn phases(p: &Plan) -> Vec<(String, RetirePhase)> {
    p.retiring
        .iter()
        .map(|r| (r.node_name.clone(), r.phase))
        .collect()
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
