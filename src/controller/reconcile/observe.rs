//! Observe and plan: the Nomad and cloud views turned into the planner's
//! facts, the pure plan made on them (again on the nodes' load, or on a
//! fresh group read, when the first plan asks for it), and the plan held
//! to what this process remembers (writes not yet seen, VMs still joining,
//! drains Nomad does not apply).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;

use super::super::conditions::{Problem, Trouble};
use super::super::group::Observed as GroupObserved;
use super::super::plan::{
    self, Action, AllocFacts, AllocationVisibility, InstanceNodes, NodeFacts, PoolView,
};
use super::super::retirement::{Ledgers, hold, records};
use super::super::visibility::VisibilityState;
use super::super::watch::{NodesSnapshot, NodesState};
use super::super::{PoolRuntime, alloc_watch, authority, drain_meta, outside, siblings};
use crate::api::{
    DrainPolicy, NomadClientPool, NomadClientPoolSpec, NomadClientPoolStatus,
    NomadClientRetirement, RetiringNode,
};
use crate::provider::ProviderError;
use crate::provider::{GroupState, LaunchFacts};

/// Everything one reconcile saw of the pool, before planning.
pub struct Observed {
    pub now: Timestamp,
    /// `namespace/name`.
    pub key: String,
    pub status: NomadClientPoolStatus,
    /// The pool's retirement objects, finished ones included.
    pub retirements: Vec<Arc<NomadClientRetirement>>,
    /// The retirements in flight as the planner tracks them.
    pub tracked: Vec<RetiringNode>,
    /// The spec the planner reads: the pool's, with the clients that
    /// hand-made retirements name added to `retire`.
    pub spec: NomadClientPoolSpec,
    /// Hand-made retirements waiting to start.
    pub pending: usize,
    /// The retirement each drain of ours names in its Meta, by node ID.
    pub meta_names: HashMap<String, String>,
    /// Clients whose retirement sets its own drain, by node ID.
    pub drains: HashMap<String, DrainPolicy>,
    pub snapshot: Arc<NodesSnapshot>,
    /// The cloud group; after a fresh read (see [`plan`]) that read's.
    pub group: Arc<GroupState>,
    group_age: Duration,
    /// Shared with the pool's facts cache (`facts`).
    pub nodes: Arc<Vec<NodeFacts>>,
    pub outside: Vec<NodeFacts>,
    pub allocs: HashMap<String, AllocFacts>,
    pub instance_nodes: InstanceNodes,
    visibility: VisibilityState,
    visibility_gap: Option<String>,
    /// The pool's lifecycle hook once confirmed (see `controller::hooks`).
    pub lifecycle_hook: Option<String>,
    /// The lifecycle action tokens the retirements record, by instance ID.
    pub tokens: HashMap<String, String>,
    /// When this process first saw each unhealthy client of the pool.
    pub unhealthy_since: HashMap<String, Timestamp>,
    /// When this process first saw each in-service VM without a node.
    pub clientless_since: HashMap<String, Timestamp>,
}

/// Why there is nothing to plan on yet.
pub enum NotObserved {
    /// The node watch has not answered; its first answer wakes the pool.
    Pending,
    Trouble(Trouble),
}

impl From<Trouble> for NotObserved {
    fn from(t: Trouble) -> Self {
        NotObserved::Trouble(t)
    }
}

/// Read the pool's views: nodes, cloud group (and whose it is), allocation
/// visibility and facts, and the tracked nodes the view does not show.
pub async fn observe(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    ledger: &Ledgers,
) -> Result<Observed, NotObserved> {
    let snapshot = match rt.watch.nodes() {
        NodesState::Pending => return Err(NotObserved::Pending),
        NodesState::Failed { error, .. } => {
            return Err(Trouble::from_nomad(&error, &rt.address).into());
        }
        NodesState::Ready(s) => s,
    };
    let observed = owned_group(pool, rt).await?;
    let status = pool.status.clone().unwrap_or_default();
    let retirements = ledger
        .of_pool(pool)
        .await
        .map_err(|_| NotObserved::Pending)?;
    let now = Timestamp::now();
    let tracked = records::tracked(&retirements, &status.retiring, now, &|r| {
        ledger.is_finishing(r)
    });
    let mut spec = pool.spec.clone();
    spec.retire.extend(tracked.hand_made.iter().cloned());
    restart_stale_watches(rt);
    if !tracked.entries.is_empty() {
        rt.watch.probe_index(snapshot.index);
    }
    let visibility = rt.visibility.state();
    let uid = pool.uid().unwrap_or_default();
    let key = format!(
        "{}/{}",
        pool.namespace().unwrap_or_default(),
        pool.name_any()
    );
    let facts = |s: &_| super::facts::node_facts(s, &key, &uid);
    let nodes = rt.facts.of(&snapshot, &key, &uid);
    let (nodes, outside) = outside::view(rt, &spec, &tracked.entries, &snapshot, nodes, facts)
        .await
        .map_err(|e| Trouble::from_nomad(&e, &rt.address))?;
    let ignore_system_jobs = pool.spec.drain.ignore_system_jobs;
    super::prime::prime(
        (&rt.watch, &rt.siblings),
        &tracked.entries,
        &nodes,
        &snapshot,
        now,
        ignore_system_jobs,
    )
    .await;
    let allocs = rt.watch.allocation_facts(ignore_system_jobs, &snapshot);
    let instance_nodes = rt.siblings.facts();
    let meta_names = drain_meta::retirement_names(&snapshot, &key, &uid);
    let drains = records::drains(&retirements, &pool.spec.drain);
    let tokens = hold::tokens(&retirements);
    let unhealthy_since = rt.unhealthy.observe(&nodes, now);
    let clientless_since = rt.clientless.observe(&observed.group, &nodes, now);
    Ok(Observed {
        now,
        key,
        status,
        retirements,
        tracked: tracked.entries,
        spec,
        pending: tracked.pending,
        meta_names,
        drains,
        snapshot,
        group: observed.group,
        group_age: observed.age,
        nodes,
        outside,
        allocs,
        instance_nodes,
        visibility_gap: visibility.gap(),
        visibility,
        lifecycle_hook: None,
        tokens,
        unhealthy_since,
        clientless_since,
    })
}

/// The pool's cloud group as last read, if its tag gives it to this pool.
async fn owned_group(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
) -> Result<GroupObserved, NotObserved> {
    // Only what a feature the spec turned on needs: each costs cloud calls.
    // A view read before a feature was turned on lacks its facts until the
    // next read; the planner takes a missing fact as "not due".
    rt.provider.read_launch_facts(LaunchFacts {
        launch_time: pool.spec.max_node_age.is_some(),
        launch_spec: pool.spec.replace_drifted,
    });
    Ok(owned(pool, rt, rt.group.get().await)?)
}

/// A read of the pool's cloud group, if it worked and the group's tag gives
/// it to this pool. Nothing is done to a group its tag does not give to
/// this pool: not even to clients already in flight, which stay as they
/// are until the tag names the pool again (see provider::ownership).
fn owned(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    read: Result<GroupObserved, ProviderError>,
) -> Result<GroupObserved, Trouble> {
    let observed = read.map_err(|e| Trouble::from_provider(&e, &rt.provider.group()))?;
    authority::group_owned(pool, &rt.provider.group(), &observed.group)
        .map_err(Trouble::refused)?;
    Ok(observed)
}

/// Restart the allocation watches when the token's view changed or
/// Nomad's index went back since the last look. Run before the allocation
/// facts are read: facts gathered under an earlier answer may have been
/// filtered by what the token could not see, or come from the cluster's
/// past. Both checks run (no short circuit): each marks its news as seen.
fn restart_stale_watches(rt: &PoolRuntime) {
    let visibility_changed = rt.visibility.changed_since_seen();
    let index_went_backwards = rt.watch.index_went_backwards_since_seen();
    if visibility_changed || index_went_backwards {
        rt.watch.restart_allocation_watches();
    }
    if index_went_backwards {
        // Their indexes belong to the cluster's past.
        rt.writes.clear();
    }
}

impl Observed {
    /// The planner's input, on `load` if fetched.
    fn view<'a>(&'a self, load: Option<&'a HashMap<String, u32>>) -> PoolView<'a> {
        let visibility = match (&self.visibility, &self.visibility_gap) {
            (_, None) => AllocationVisibility::Proven,
            (VisibilityState::Checking, _) => AllocationVisibility::Checking,
            (_, Some(gap)) => AllocationVisibility::Unproven(gap),
        };
        PoolView {
            now: self.now,
            pool_key: &self.key,
            spec: &self.spec,
            tracked: &self.tracked,
            retired: &self.status.retired,
            recent_starts: (self.status.disruption.as_ref())
                .map_or(&[][..], |d| d.recent_starts.as_slice()),
            nodes: &self.nodes,
            outside: &self.outside,
            allocs: &self.allocs,
            load,
            group: &self.group,
            visibility,
            instance_nodes: &self.instance_nodes,
            drains: &self.drains,
            lifecycle_hook: self.lifecycle_hook.as_deref(),
            unhealthy_since: &self.unhealthy_since,
            clientless_since: &self.clientless_since,
            index: Default::default(),
        }
    }
}

/// The plan, and the problems the reconciler found on its own.
pub struct Planned {
    pub plan: plan::Plan,
    /// Drains Nomad answered and did not apply (see `resends`).
    pub unapplied: Vec<Problem>,
}

/// Plan on what was observed; re-plan with the nodes' load when selecting,
/// and on a fresh group read before changing the desired capacity.
pub async fn plan(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    seen: &mut Observed,
) -> Result<plan::Plan, Trouble> {
    let mut planned = plan::plan(&seen.view(None));
    let mut load = None;
    if planned.needs_load {
        load = Some(
            rt.watch
                .load()
                .await
                .map_err(|e| Trouble::from_nomad(&e, &rt.address))?,
        );
        planned = plan::plan(&seen.view(load.as_deref()));
    }
    // Setting the desired capacity is the one action the cloud does not
    // re-check for us: it is planned on a fresh read.
    let sets_capacity = planned
        .actions
        .iter()
        .any(|a| matches!(a, Action::SetDesiredCapacity { .. }));
    if seen.group_age > Duration::ZERO && sets_capacity {
        let fresh = owned(pool, rt, rt.group.read_now().await)?;
        seen.group = fresh.group;
        seen.group_age = fresh.age;
        planned = plan::plan(&seen.view(load.as_deref()));
    }
    Ok(planned)
}

/// Hold the plan to what this process remembers, and point the watches at
/// what it now waits on.
pub fn settle(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    seen: &Observed,
    plan: plan::Plan,
) -> Planned {
    let mut plan = plan;
    // A write the node view does not show yet is not sent again; the event
    // that shows it wakes the next reconcile.
    let unobserved = rt.writes.unobserved(&seen.snapshot);
    if !unobserved.is_empty() {
        plan.actions.retain(|a| match a {
            Action::Cordon { node_id }
            | Action::Drain { node_id, .. }
            | Action::Release { node_id, .. }
            | Action::Purge { node_id } => !unobserved.contains(node_id),
            Action::Terminate { .. }
            | Action::SetDesiredCapacity { .. }
            | Action::CompleteLifecycleAction { .. } => true,
        });
    }

    let (mut watched, status_only) =
        alloc_watch::alloc_watch_set(&plan.retiring, &seen.nodes, seen.now);
    let mut gate = siblings::gate_instances(&plan.retiring, &watched, &seen.group);
    gate.extend(plan.unregistered_checks.iter().cloned());
    watched.extend(siblings::sibling_nodes(
        &gate,
        &seen.instance_nodes,
        &seen.nodes,
    ));
    rt.siblings.track(&gate, seen.snapshot.instance_ids.clone());
    let modes = alloc_watch::watch_modes(&watched, &status_only, &seen.snapshot.nodes);
    rt.watch
        .track_allocations(&modes, pool.spec.drain.ignore_system_jobs);

    super::super::readiness::settle(&mut plan, &seen.nodes, &seen.clientless_since, seen.now);
    let unapplied = rt.drain_resends.review(&mut plan, &seen.nodes);
    Planned { plan, unapplied }
}
