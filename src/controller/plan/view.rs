//! What the planner sees: the facts `reconcile` gathers about one pool
//! from Nomad, the cloud group and the pool's own status, as plain values.

use std::collections::HashMap;
use std::sync::OnceLock;

use jiff::Timestamp;

use super::{DrainMark, InstanceNodes};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::{DrainPolicy, NomadClientPoolSpec, RetiredNode, RetiringNode};
use crate::provider::{GroupState, InstanceState, Lifecycle};

/// Nomad node status, as far as retiring cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeStatus {
    Initializing,
    Ready,
    Down,
    Disconnected,
}

/// `LastDrain.Status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LastDrainStatus {
    Draining,
    Complete,
    Canceled,
}

/// What the planner needs to know about one Nomad node of the pool.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeFacts {
    pub id: String,
    pub name: String,
    pub status: NodeStatus,
    pub eligible: bool,
    /// `DrainStrategy != null`.
    pub draining: bool,
    pub last_drain: Option<LastDrainStatus>,
    pub last_drain_started: Option<Timestamp>,
    /// The retirement recorded in `LastDrain.Meta`, when the last drain was
    /// this pool's.
    pub last_drain_mark: Option<DrainMark>,
    pub create_index: u64,
    /// Cloud instance ID from the node's attributes, once read.
    pub instance_id: Option<String>,
    /// The client's Meta sets `nomadpool.dev/do-not-retire` to `true`: no
    /// voluntary retirement takes it (see `select::may_choose`).
    pub do_not_retire: bool,
}

/// Allocations of a node being retired, from a fresh blocking query.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllocFacts {
    /// Pending, running or unknown allocations that block retirement
    /// (system ones are left out when the drain ignores system jobs).
    pub live: u32,
    /// Of those, `unknown` ones: their node is disconnected and they may
    /// still run behind the partition.
    pub unknown: u32,
    pub blocking_jobs: Vec<String>,
    /// The oldest of those allocations (at most ten), for the retirement's
    /// status: which job, task group and allocation, since when.
    pub blocking: Vec<crate::api::BlockingAllocation>,
}

/// Everything observed for one pool, gathered by `reconcile`.
#[derive(Clone, Debug)]
pub struct PoolView<'a> {
    pub now: Timestamp,
    pub pool_key: &'a str,
    pub spec: &'a NomadClientPoolSpec,
    pub tracked: &'a [RetiringNode],
    /// Clients `spec.retire` named that this pool retired (`status.retired`).
    pub retired: &'a [RetiredNode],
    /// When recent voluntary retirements started, as the status recorded
    /// them (`status.disruption.recentStarts`), for the budgets' rates.
    pub recent_starts: &'a [Time],
    /// Every Nomad node the selector matches (down ones included).
    pub nodes: &'a [NodeFacts],
    /// Tracked nodes the selector no longer matches, read by ID: released or
    /// carried to the end (see `departed`), never selected or adopted.
    pub outside: &'a [NodeFacts],
    /// Allocation facts of tracked nodes; absent until a fresh read arrived.
    pub allocs: &'a HashMap<String, AllocFacts>,
    /// Pending/running allocation counts of every pool node, when the caller
    /// fetched them (only needed to select; see `Plan::needs_load`).
    pub load: Option<&'a HashMap<String, u32>>,
    pub group: &'a GroupState,
    /// Whether the pool's Nomad token provably sees every allocation (see
    /// `nomad::acl`). Until it does, drained clients wait instead of being
    /// terminated: an allocation the token cannot see still runs. Only a
    /// termination the spec forces past its deadline goes ahead.
    pub visibility: AllocationVisibility<'a>,
    /// Every Nomad node (cluster-wide) reporting the VMs at the termination
    /// gate; see `identity`.
    pub instance_nodes: &'a InstanceNodes,
    /// Clients whose retirement drains them otherwise than the pool's
    /// `drain` says, by node ID.
    pub drains: &'a HashMap<String, DrainPolicy>,
    /// The group's terminating lifecycle hook the spec names, once the
    /// cloud confirmed it exists: VMs it holds are drained, then let go.
    pub lifecycle_hook: Option<&'a str>,
    /// When this controller first saw each client of the pool `down` or
    /// `disconnected` without a ready spell since, by node ID (its own
    /// clock, kept in memory: a restart starts the count again, so a grace
    /// is only ever counted too long, never too short).
    pub unhealthy_since: &'a HashMap<String, Timestamp>,
    /// When this controller first saw each in-service VM of the group that
    /// no node of the pool reports, by instance ID (the same kind of clock:
    /// `remediation.unregisteredAfter` is only ever counted too long).
    pub clientless_since: &'a HashMap<String, Timestamp>,
    /// Lookups by instance, built from `nodes` and `group` on first use
    /// (`Default::default()`); a view is not changed once built.
    pub index: OnceLock<ViewIndex<'a>>,
}

/// The pool's nodes and the group's VMs by instance ID, built once per
/// view. Asked per retirement, a scan of the pool's 5,000 nodes (for the
/// other nodes on a VM) and of the group's 5,000 VMs (for a VM's lifecycle)
/// made a plan quadratic: with 500 retirements in flight, 59 % of a plan's
/// instructions went to the first scan alone (callgrind, BENCHMARKS.md).
#[derive(Clone, Debug, Default)]
pub struct ViewIndex<'a> {
    nodes_on: HashMap<&'a str, Vec<&'a NodeFacts>>,
    instances: HashMap<&'a str, &'a InstanceState>,
}

impl<'a> PoolView<'a> {
    /// How the client `node_id` is drained: its retirement's own settings,
    /// or the pool's.
    pub fn drain_of(&self, node_id: &str) -> &DrainPolicy {
        self.drains.get(node_id).unwrap_or(&self.spec.drain)
    }

    fn index(&self) -> &ViewIndex<'a> {
        self.index.get_or_init(|| {
            let mut nodes_on: HashMap<&'a str, Vec<&'a NodeFacts>> = HashMap::new();
            for n in self.nodes {
                if let Some(instance) = n.instance_id.as_deref() {
                    nodes_on.entry(instance).or_default().push(n);
                }
            }
            let instances = (self.group.instances.iter())
                .map(|i| (i.id.as_str(), i))
                .collect();
            ViewIndex {
                nodes_on,
                instances,
            }
        })
    }

    /// The pool's nodes (any status) that report `instance`, in the pool's
    /// node order.
    pub fn nodes_on(&self, instance: &str) -> &[&'a NodeFacts] {
        self.index()
            .nodes_on
            .get(instance)
            .map_or(&[], Vec::as_slice)
    }

    /// Every instance some node of the pool reports, with those nodes.
    pub fn reported_vms(&self) -> impl Iterator<Item = (&'a str, &[&'a NodeFacts])> {
        (self.index().nodes_on.iter()).map(|(i, nodes)| (*i, nodes.as_slice()))
    }

    /// The instance's lifecycle state in the group; `None` once it left.
    pub fn lifecycle_of(&self, instance_id: &str) -> Option<Lifecycle> {
        let found = self.index().instances.get(instance_id);
        found.map(|i| i.lifecycle.clone())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocationVisibility<'a> {
    Proven,
    /// The first check has not answered: wait quietly, it wakes the pool.
    Checking,
    /// Not proven; the text says what is missing and how to fix it.
    Unproven(&'a str),
}
