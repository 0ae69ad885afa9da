//! The VM, not the Nomad node, is what a termination removes. Several Nomad
//! nodes can report one instance: a second agent on the VM, a wrong
//! attribute, or a client that re-registered under a new node ID after its
//! data directory was wiped while its old identity drains. And a VM can
//! have no working client at all (agent crashed, never joined). These rules
//! keep the decisions that are taken per node from acting on the wrong VM:
//!
//! - a VM reported by more than one live node is never selected;
//! - a VM is terminated only when every node that reports it (any status,
//!   wherever the cluster has it, including nodes that registered after the
//!   selection) is known, none of the others is eligible for work and none
//!   has a live allocation, by a fresh read;
//! - scale-in and readiness count live, eligible clients, not VMs.

use std::collections::HashSet;

use super::*;

/// A Nomad node that reports an instance, from the cluster-wide list of the
/// nodes whose instance attribute names it (not only the pool's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceNode {
    pub id: String,
    pub name: String,
    pub status: NodeStatus,
    pub eligible: bool,
}

/// Every node reporting each instance at the termination gate, by instance
/// ID. An instance is absent until its first read answered.
pub type InstanceNodes = HashMap<String, Vec<InstanceNode>>;

/// Instances reported by more than one live (not `down`) node of the pool,
/// with those nodes' names, in name order.
pub fn shared_instances<'a>(view: &PoolView<'a>) -> BTreeMap<&'a str, Vec<&'a str>> {
    let mut by_instance = BTreeMap::new();
    for (instance, nodes) in view.reported_vms() {
        let mut names: Vec<&str> = (nodes.iter())
            .filter(|n| n.status != NodeStatus::Down)
            .map(|n| n.name.as_str())
            .collect();
        if names.len() > 1 {
            names.sort_unstable();
            by_instance.insert(instance, names);
        }
    }
    by_instance
}

/// The VMs more than one live node of the pool reports: selecting any of
/// their nodes would pick a VM another node also runs on. Built once per
/// selection; asking `on_shared_vm` of every node was quadratic in the
/// pool's size, and at 5,000 clients the most expensive part of a reconcile.
pub(super) fn shared_vms<'a>(view: &PoolView<'a>) -> HashSet<&'a str> {
    (view.reported_vms())
        .filter(|(_, nodes)| {
            nodes
                .iter()
                .filter(|n| n.status != NodeStatus::Down)
                .count()
                > 1
        })
        .map(|(instance, _)| instance)
        .collect()
}

/// Whether selecting `node` would pick a VM another live node also reports.
pub(super) fn on_shared_vm(view: &PoolView<'_>, node: &NodeFacts) -> bool {
    node.instance_id.as_deref().is_some_and(|instance| {
        (view.nodes_on(instance).iter()).any(|n| n.id != node.id && n.status != NodeStatus::Down)
    })
}

/// `i-1 (client-1, client-1b); i-2 (...)`, for a condition.
pub fn describe_shared(shared: &BTreeMap<&str, Vec<&str>>) -> String {
    shared
        .iter()
        .map(|(instance, names)| format!("{instance} ({})", names.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Record the pool's shared VMs as a blocker (once per plan).
pub(super) fn report_shared(view: &PoolView<'_>, plan: &mut Plan) {
    let shared = shared_instances(view);
    if !shared.is_empty() {
        plan.blockers
            .push(Blocker::SharedInstance(describe_shared(&shared)));
    }
}

/// What the other nodes of a VM say about terminating it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Gate {
    /// No other node reports the VM, or none of them can lose work.
    Clear,
    /// A read the decision needs has not answered yet.
    Waiting(String),
    /// Another node of the VM has (or may get) work: the VM stays.
    Held(String),
}

/// The nodes other than `node_id` that report `instance`: those of the
/// cluster-wide read, and the pool's own (which the event stream keeps
/// current), the pool's view winning for a node in both.
fn siblings(view: &PoolView<'_>, node_id: &str, instance: &str) -> Option<Vec<InstanceNode>> {
    let listed = view.instance_nodes.get(instance)?;
    let mut out: BTreeMap<&str, InstanceNode> = listed
        .iter()
        .filter(|n| n.id != node_id)
        .map(|n| (n.id.as_str(), n.clone()))
        .collect();
    for n in view.nodes_on(instance).iter().filter(|n| n.id != node_id) {
        out.insert(
            &n.id,
            InstanceNode {
                id: n.id.clone(),
                name: n.name.clone(),
                status: n.status,
                eligible: n.eligible,
            },
        );
    }
    Some(out.into_values().collect())
}

/// May the VM `instance` of the retiring node `node_id` be terminated, as
/// far as the other nodes reporting it go? Their own drain deadline and
/// `forceTerminateAfter` do not apply to them: this pool never drained them.
pub(super) fn sibling_gate(view: &PoolView<'_>, node_id: &str, instance: &str) -> Gate {
    let Some(others) = siblings(view, node_id, instance) else {
        return Gate::Waiting(format!(
            "checking which Nomad nodes report VM {instance} before terminating it"
        ));
    };
    let mut held = Vec::new();
    let mut unread = Vec::new();
    for n in &others {
        match view.allocs.get(&n.id) {
            None => unread.push(n.name.as_str()),
            Some(a) if a.live > 0 => held.push(format!(
                "node {} on the same VM has {} live allocation(s) ({})",
                label(n),
                a.live,
                a.blocking_jobs
                    .iter()
                    .take(MAX_BLOCKING_JOBS)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            // Work could land on it between this read and the terminate
            // call: only an ineligible or down sibling is safe to take down.
            Some(_) if n.eligible && n.status != NodeStatus::Down => held.push(format!(
                "node {} on the same VM is eligible for new work; cordon or stop it",
                label(n)
            )),
            Some(_) => {}
        }
    }
    if !held.is_empty() {
        return Gate::Held(format!("VM {instance} not terminated: {}", held.join("; ")));
    }
    if !unread.is_empty() {
        return Gate::Waiting(format!(
            "reading the allocations of {} (same VM {instance}) before terminating it",
            unread.join(", ")
        ));
    }
    Gate::Clear
}

/// `client-1 (0b9e2f4a, ready)`: a re-registered client keeps its name, so
/// the ID tells the two apart.
fn label(n: &InstanceNode) -> String {
    let short: String = n.id.chars().take(8).collect();
    format!("{} ({short}, {})", n.name, status_word(n.status))
}

fn status_word(s: NodeStatus) -> &'static str {
    match s {
        NodeStatus::Initializing => "initializing",
        NodeStatus::Ready => "ready",
        NodeStatus::Down => "down",
        NodeStatus::Disconnected => "disconnected",
    }
}

/// A live client this pool could count on: ready, eligible, not draining,
/// and not on its way out.
fn working(n: &NodeFacts, tracked: &BTreeSet<&str>) -> bool {
    n.status == NodeStatus::Ready && n.eligible && !n.draining && !tracked.contains(n.id.as_str())
}

/// How many clients a scale-in toward `replicas` may retire, given
/// `vm_excess` VMs too many: never so many that fewer than `replicas` live,
/// eligible clients remain. A VM without a working client (agent crashed,
/// never joined) or a client cordoned by someone else is no capacity, so
/// retiring a healthy client in its place would leave the pool short.
pub(super) fn scale_in_excess(
    view: &PoolView<'_>,
    next: &[RetiringNode],
    vm_excess: u32,
    replicas: u32,
) -> u32 {
    let tracked: BTreeSet<&str> = next.iter().map(|r| r.node_id.as_str()).collect();
    let clients = view.nodes.iter().filter(|n| working(n, &tracked)).count() as u32;
    vm_excess.min(clients.saturating_sub(replicas))
}

/// In-service VMs of the group that no ready node of the pool reports and
/// that no retirement tracks, in ID order. Empty while a live node's
/// instance is not known yet: the VM it runs on cannot be told apart.
pub fn vms_without_client(view: &PoolView<'_>, tracked: &[RetiringNode]) -> Vec<String> {
    let unknown = |n: &NodeFacts| n.status != NodeStatus::Down && n.instance_id.is_none();
    if view.nodes.iter().any(unknown) {
        return vec![];
    }
    let served = |i: &str| (view.nodes_on(i).iter()).any(|n| n.status == NodeStatus::Ready);
    let leaving: HashSet<&str> = tracked
        .iter()
        .filter_map(|r| r.instance_id.as_deref())
        .collect();
    let mut out: Vec<String> = (view.group.instances.iter())
        .filter(|i| i.lifecycle == Lifecycle::InService)
        .filter(|i| !served(&i.id) && !leaving.contains(i.id.as_str()))
        .map(|i| i.id.clone())
        .collect();
    out.sort();
    out
}

/// Record the VMs without a working client as a blocker.
pub(super) fn report_clientless(view: &PoolView<'_>, next: &[RetiringNode], plan: &mut Plan) {
    let missing = vms_without_client(view, next);
    if !missing.is_empty() {
        plan.blockers.push(Blocker::VmsWithoutClient(missing));
    }
}
