//! The express lane: a drained client's VM terminated without planning the
//! whole pool.
//!
//! A reconcile plans every node of the pool (tens of milliseconds at 5,000)
//! and runs at most every `--min-reconcile-interval-ms`, so a drain that
//! ended waited for the reconcile running, then the interval, then its own
//! reconcile: most of the retire latency, while those whole-pool reconciles
//! were most of the operator's CPU (BENCHMARKS.md, eighth pass). The lane is
//! woken by every change the pool's watches report (`Trigger`), looks only
//! at the drains the last reconcile recorded (sent or running), of those
//! only at the nodes that changed since its last pass (`Ended`), and for a
//! client whose drain ended:
//! 1. starts what the decision reads, as `prime` does for a reconcile: the
//!    allocation watches of the client and of the other nodes of its VM, and
//!    the cluster-wide read of the VM's nodes; their answers wake it again;
//! 2. takes the planner's own step for that one retirement
//!    (`plan::lane::step`; twice when the first only records a drain no
//!    reconcile saw running) on a view narrowed to the client and the
//!    pool's nodes on its VM, and goes on only when that step is the termination
//!    and nothing else (no warning, no other action, no blocker): anything
//!    else is left to the reconcile;
//! 3. writes the `Terminating` record compare-and-swap, then starts the call
//!    as a reconcile does (`act::spawn_terminate`, with its last check of
//!    the VM's nodes).
//!
//! A per-pool lock serialises it with the reconcile's observe and plan; only
//! a plan arms it, with that reconcile's pool. While the reconcile then
//! writes and acts, the lane goes on with the drains the reconcile neither
//! writes nor acts on, and with each other one as soon as the reconcile is
//! done with it (`Busy`); a reconcile that succeeded arms it again with
//! all of them, one that failed leaves it disarmed. Every reconcile disarms it
//! when it starts, so a spec change, trouble, a deleted pool or a new
//! connection stops it until a reconcile has planned again. It never
//! runs for a dry run or a pool with a lifecycle hook, nor for a
//! remediation (no drain) or a VM without a client, nor while the token's
//! visibility or the cluster's index changed and no reconcile has seen it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use kube::{Api, ResourceExt};
use tokio::sync::{Notify, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug};

use super::super::PoolRuntime;
use super::super::alloc_watch::{self, AllocWatchMode};
use super::super::plan::{self, AllocationVisibility, NodeFacts, PoolView, lane};
use super::super::retirement::sync::StatusWrite;
use super::super::retirement::{Ledgers, records, write};
use super::super::siblings;
use super::super::visibility::VisibilityState;
use super::super::watch::{NodesByVm, NodesSnapshot, NodesState};
use super::busy::Busy;
use crate::api::{NomadClientPool, NomadClientRetirement, RetirePhase};
use crate::metrics::{PoolLabels, metrics};
use crate::nomad::{self, NodeListStub};

/// After a pass, changes are gathered this long before the next: a burst of
/// watch answers costs one pass.
const GATHER: Duration = Duration::from_millis(10);
/// Decisions of one pass in flight at once (each writes one record; the
/// terminate calls they start are bounded apart, `runtime::TERMINATE_CALLS`).
const DECISIONS_AT_ONCE: usize = 8;

/// The lane of one pool: its wake-up, its lock and what arms it.
pub struct ExpressLane {
    /// Fired with the pool's trigger.
    pub wake: Arc<Notify>,
    /// `None` while disarmed; held by a reconcile from start to end.
    armed: Arc<tokio::sync::Mutex<Option<Armed>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Default for ExpressLane {
    fn default() -> Self {
        Self {
            wake: Arc::new(Notify::new()),
            armed: Arc::default(),
            task: Mutex::default(),
        }
    }
}

impl Drop for ExpressLane {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().expect("lane lock").take() {
            task.abort();
        }
    }
}

/// What a successful reconcile left the lane.
pub struct Armed {
    client: kube::Client,
    ledgers: Arc<Ledgers>,
    pool: Arc<NomadClientPool>,
    /// The pool's `namespace/name`, as its metrics and spans name it.
    key: String,
    /// The drains in flight, by node ID.
    candidates: HashMap<String, Candidate>,
    /// The candidates whose drain ended as of the last pass.
    ended: Ended,
    /// What the reconcile running is still busy with.
    busy: Arc<Busy>,
    by_vm: NodesByVm,
}

struct Candidate {
    /// The retirement object's name.
    name: String,
    instance: String,
    /// What the last look at it saw; it is looked at again only once that
    /// changed (node, allocation or VM answers).
    seen: Option<Inputs>,
}

/// The reads a decision rests on, as far as telling them apart goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Inputs {
    node_index: u64,
    live: Option<u32>,
    vm_read: bool,
    /// The other nodes of the VM whose allocations are read.
    others_read: usize,
}

/// The lane held for a reconcile: disarmed until `arm`.
pub struct Held {
    guard: OwnedMutexGuard<Option<Armed>>,
    /// The index of the last arming, kept for the next: built afresh on
    /// every arming, it was read again in full after each reconcile (1.8 %
    /// of the operator's CPU at 5,000 clients, BENCHMARKS.md sixteenth
    /// pass), while it follows the node view's map by itself.
    by_vm: NodesByVm,
}

impl ExpressLane {
    /// Start the lane's task; `rt` owns this lane.
    pub fn start(&self, rt: Weak<PoolRuntime>) {
        let task = tokio::spawn(run(rt, self.wake.clone(), self.armed.clone()));
        if let Some(old) = self.task.lock().expect("lane lock").replace(task) {
            old.abort();
        }
    }

    /// Disarm the lane and hold it (waiting for a pass to end) until the
    /// returned guard drops.
    pub async fn hold(&self) -> Held {
        let mut guard = self.armed.clone().lock_owned().await;
        let by_vm = guard.take().map(|a| a.by_vm).unwrap_or_default();
        Held { guard, by_vm }
    }
}

impl Held {
    /// Arm the lane with what a reconcile planned: each drain of a client
    /// sent or running (`names`: the retirement of each, by node ID), each
    /// taken once the reconcile is no longer `busy` with it; whether it is
    /// armed (never for a dry run or a lifecycle hook).
    pub fn arm(
        &mut self,
        ctx: &super::super::Context,
        pool: Arc<NomadClientPool>,
        plan: &plan::Plan,
        names: &HashMap<String, String>,
        busy: Arc<Busy>,
    ) -> bool {
        let hook = pool
            .spec
            .provider
            .aws_auto_scaling_group
            .as_ref()
            .is_some_and(|a| a.lifecycle_hook.is_some());
        if pool.spec.disruption.dry_run || hook {
            return false;
        }
        // A drain no reconcile saw running is taken in two steps (see
        // `decide`); the whole plan would give it back in between when the
        // pool shrinks less than planned (a raised `replicas`), so it is
        // taken only after a plan that gave nothing back.
        let gives_back = lane::gives_back(plan);
        let candidates: HashMap<String, Candidate> = (plan.retiring.iter())
            .filter(|r| lane::takes(r))
            .filter(|r| r.phase != RetirePhase::Cordoned || !gives_back)
            .filter_map(|r| {
                let name = names.get(&r.node_id)?;
                let candidate = Candidate {
                    name: name.clone(),
                    instance: r.instance_id.clone()?,
                    seen: None,
                };
                Some((r.node_id.clone(), candidate))
            })
            .collect();
        debug!(
            candidates = candidates.len(),
            gives_back, "express lane armed"
        );
        let key = format!(
            "{}/{}",
            pool.namespace().unwrap_or_default(),
            pool.name_any()
        );
        *self.guard = Some(Armed {
            client: ctx.client.clone(),
            ledgers: ctx.ledgers.clone(),
            pool,
            key,
            candidates,
            ended: Ended::default(),
            busy,
            by_vm: std::mem::take(&mut self.by_vm),
        });
        true
    }
}

async fn run(
    rt: Weak<PoolRuntime>,
    wake: Arc<Notify>,
    armed: Arc<tokio::sync::Mutex<Option<Armed>>>,
) {
    loop {
        wake.notified().await;
        let Some(rt) = rt.upgrade() else { return };
        if let Some(a) = armed.lock().await.as_mut() {
            // Its lines, and those of the calls it starts, name the pool as
            // a reconcile's do.
            let span = tracing::info_span!("express", pool = %a.key);
            pass(&rt, a).instrument(span).await;
        }
        drop(rt);
        tokio::time::sleep(GATHER).await;
    }
}

/// One look at every candidate whose drain ended and whose reads changed.
async fn pass(rt: &Arc<PoolRuntime>, armed: &mut Armed) {
    let changed = rt.watch.take_changed_nodes();
    let NodesState::Ready(snapshot) = rt.watch.nodes() else {
        armed.ended = Ended::default();
        return;
    };
    let ended = to_look_at(rt, armed, changed, &snapshot);
    if ended.is_empty() {
        return;
    }
    let ignore_system_jobs = armed.pool.spec.drain.ignore_system_jobs;
    let listed = (rt.siblings).facts_of(
        ended
            .iter()
            .map(|id| armed.candidates[id].instance.as_str()),
    );
    let on_vms = listed.values().flatten().map(|n| n.id.as_str());
    let ids = ended.iter().map(String::as_str).chain(on_vms);
    let allocs = rt
        .watch
        .allocation_facts_of(ids, ignore_system_jobs, &snapshot);
    let mut reads = Reads::default();
    let mut decided = Vec::new();
    for node_id in ended {
        let c = armed.candidates.get_mut(&node_id).expect("listed above");
        let stub = snapshot.node(&node_id).expect("listed above");
        let on_vm = listed.get(&c.instance);
        let others = || {
            (on_vm.into_iter().flatten())
                .map(|n| n.id.as_str())
                .filter(|id| *id != node_id)
        };
        let inputs = Inputs {
            node_index: stub.modify_index,
            live: allocs.get(&node_id).map(|a| a.live),
            vm_read: on_vm.is_some(),
            others_read: others().filter(|id| allocs.contains_key(*id)).count(),
        };
        if c.seen == Some(inputs) {
            continue;
        }
        // What a decision still waits for, read by read.
        debug!(node = %node_id, ?inputs, "express lane: inputs changed");
        c.seen = Some(inputs);
        let mut unread = false;
        for id in std::iter::once(node_id.as_str()).chain(others()) {
            // Started if missing, moved off the status lane if kept there.
            reads.watch(id, snapshot.node(id));
            unread |= !allocs.contains_key(id);
        }
        if on_vm.is_none() {
            reads.vms.insert(c.instance.clone());
        } else if !unread {
            decided.push(node_id);
        }
    }
    reads.start(rt, &snapshot, ignore_system_jobs);
    armed.by_vm.refresh(&snapshot.instance_ids);
    let facts = Facts {
        snapshot: &snapshot,
        allocs: &allocs,
        listed: &listed,
    };
    decide_all(rt, armed, &facts, decided).await;
}

/// Decide the clients whose reads are all in, and keep or drop each as its
/// decision says.
async fn decide_all(
    rt: &Arc<PoolRuntime>,
    armed: &mut Armed,
    facts: &Facts<'_>,
    decided: Vec<String>,
) {
    // Concurrently: a wave of drains that end together (jobs of one length)
    // each waited for the records written before its own, one API server
    // round trip apiece (BENCHMARKS.md, eleventh pass). One decision per VM
    // and pass: another client of the same VM waits for the next pass.
    let mut vms = HashSet::new();
    let (now, later): (Vec<String>, Vec<String>) =
        (decided.into_iter()).partition(|id| vms.insert(armed.candidates[id].instance.clone()));
    let outcomes: Vec<(String, Decided)> = {
        let armed = &*armed;
        futures::stream::iter(now)
            .map(|node_id| async move {
                let decided = decide(rt, armed, facts, &node_id).await;
                (node_id, decided)
            })
            .buffer_unordered(DECISIONS_AT_ONCE)
            .collect()
            .await
    };
    let again = later.into_iter().map(|id| (id, Decided::Again));
    for (node_id, decided) in outcomes.into_iter().chain(again) {
        match decided {
            Decided::Done => {
                armed.candidates.remove(&node_id);
                armed.ended.remove(&node_id);
            }
            Decided::Left => {}
            // Looked at again on the next wake-up, on the newer record.
            Decided::Again => {
                if let Some(c) = armed.candidates.get_mut(&node_id) {
                    c.seen = None;
                }
            }
        }
    }
}

/// The candidates whose drain ended that a pass may look at now: none
/// that the reconcile holds, none on a view that does not show our last
/// write to it yet, and none at all while the token's view or Nomad's
/// index is in question (the reconcile says why).
fn to_look_at(
    rt: &PoolRuntime,
    armed: &mut Armed,
    changed: Option<HashSet<String>>,
    snapshot: &NodesSnapshot,
) -> Vec<String> {
    // Most wake-ups end here: a look at the nodes that changed, nothing read.
    let mut ended = armed.ended.update(&armed.candidates, changed, snapshot);
    // Kept among the ended until the reconcile lets them go, which wakes
    // the lane.
    ended.retain(|id| !armed.busy.holds(id, &armed.candidates[id].name));
    if !ended.is_empty() {
        // Nor on a view that does not show our last Nomad write to the
        // client yet (a drain the reconcile just sent, once `Busy` let it
        // go): its drain state is older than that drain. The event that
        // shows the write wakes the lane again.
        let unobserved = rt.writes.unobserved(snapshot);
        ended.retain(|id| !unobserved.contains(id));
    }
    if ended.is_empty() {
        return ended;
    }
    let visibility = rt.visibility.state();
    if visibility.gap().is_some() || matches!(visibility, VisibilityState::Checking) {
        // No termination the token cannot prove safe: the reconcile says why.
        return Vec::new();
    }
    if rt.visibility.change_unseen() || rt.watch.index_regression_unseen() {
        // Allocation answers from before either may be wrong (filtered by
        // what the token could not see, or from the cluster's past): the
        // reconcile restarts the watches first (`observe`).
        return Vec::new();
    }
    ended
}

/// The candidates whose drain ended, kept from pass to pass: all of them
/// are looked up in the view on the first pass after arming (or after a
/// new list), afterwards only those among the nodes that changed.
#[derive(Default)]
struct Ended(Option<HashSet<String>>);

impl Ended {
    fn update(
        &mut self,
        candidates: &HashMap<String, Candidate>,
        changed: Option<HashSet<String>>,
        snapshot: &NodesSnapshot,
    ) -> Vec<String> {
        let is_ended = |id: &str| snapshot.node(id).is_some_and(drain_ended);
        match (self.0.as_mut(), changed) {
            (Some(ended), Some(changed)) => {
                for id in changed.into_iter().filter(|id| candidates.contains_key(id)) {
                    if is_ended(&id) {
                        ended.insert(id);
                    } else {
                        ended.remove(&id);
                    }
                }
            }
            _ => {
                let all = (candidates.keys()).filter(|id| is_ended(id)).cloned();
                self.0 = Some(all.collect());
            }
        }
        self.0.iter().flatten().cloned().collect()
    }

    fn remove(&mut self, node_id: &str) {
        if let Some(ended) = self.0.as_mut() {
            ended.remove(node_id);
        }
    }
}

/// What one pass read, shared by its decisions.
struct Facts<'a> {
    snapshot: &'a NodesSnapshot,
    allocs: &'a HashMap<String, plan::AllocFacts>,
    listed: &'a plan::InstanceNodes,
}

/// The reads a pass starts for the decisions it cannot make yet.
#[derive(Default)]
struct Reads {
    watches: HashMap<String, AllocWatchMode>,
    vms: BTreeSet<String>,
}

impl Reads {
    fn watch(&mut self, node_id: &str, stub: Option<&NodeListStub>) {
        (self.watches).insert(node_id.to_owned(), alloc_watch::gate_mode(stub));
    }

    fn start(self, rt: &PoolRuntime, snapshot: &NodesSnapshot, ignore_system_jobs: bool) {
        if !self.watches.is_empty() {
            rt.watch.gate_watches(&self.watches, ignore_system_jobs);
        }
        if !self.vms.is_empty() {
            (rt.siblings).also(&self.vms, snapshot.instance_ids.clone());
        }
    }
}

/// Nomad says the drain is over (or the node is down), as the planner reads
/// it (`terminate::Drain`).
fn drain_ended(n: &NodeListStub) -> bool {
    let complete =
        (n.last_drain.as_ref()).is_some_and(|d| d.status == nomad::DrainStatus::Complete);
    !n.drain && (complete || n.status == nomad::NodeStatus::Down)
}

/// What became of one decision.
enum Decided {
    /// The termination started, or the retirement is no longer one to decide.
    Done,
    /// Left to the reconcile, or waiting for the group view: looked at again
    /// once what it read changes.
    Left,
    /// Its record changed under the lane's write (a reconcile's progress
    /// figures landed first): decided again on the newer one.
    Again,
}

/// Decide on one drained client.
async fn decide(rt: &Arc<PoolRuntime>, armed: &Armed, facts: &Facts<'_>, node_id: &str) -> Decided {
    let c = &armed.candidates[node_id];
    let ns = armed.pool.namespace().unwrap_or_default();
    let Some(obj) = armed.ledgers.one(&ns, &c.name) else {
        debug!(node = node_id, "express lane: no retirement object");
        return Decided::Done;
    };
    let now = Timestamp::now();
    let finishing = |r: &NomadClientRetirement| armed.ledgers.is_finishing(r);
    let tracked = records::tracked(std::slice::from_ref(&obj), &[], now, &finishing);
    let Some(entry) = tracked.entries.into_iter().next() else {
        return Decided::Done;
    };
    if entry.node_id != node_id || !lane::phase_of_drain(entry.phase) {
        debug!(node = node_id, phase = %entry.phase, "express lane: not a drain");
        return Decided::Done;
    }
    let Some(group) = rt.group.narrowed(&c.instance) else {
        return Decided::Left;
    };
    let nodes = nodes_on_vm(facts.snapshot, &c.instance, armed);
    let drains = records::drains(std::slice::from_ref(&obj), &armed.pool.spec.drain);
    let (none, no_clock) = (HashMap::new(), HashMap::new());
    let view = PoolView {
        now,
        pool_key: &armed.key,
        spec: &armed.pool.spec,
        tracked: std::slice::from_ref(&entry),
        retired: &[],
        recent_starts: &[],
        nodes: &nodes,
        outside: &[],
        allocs: facts.allocs,
        load: None,
        group: &group,
        visibility: AllocationVisibility::Proven,
        instance_nodes: facts.listed,
        drains: &drains,
        lifecycle_hook: None,
        unhealthy_since: &none,
        clientless_since: &no_clock,
        index: Default::default(),
    };
    let Some(stepped) = lane::step(&view, &entry) else {
        return Decided::Done;
    };
    let Some((instance, decrement)) = lane::lone_terminate(&stepped) else {
        let (next, step) = (&stepped.next, &stepped.step);
        debug!(
            node = node_id,
            phase = %next.phase,
            actions = step.actions.len(),
            events = step.events.len(),
            message = next.message.as_deref().unwrap_or(""),
            "express lane: left to the reconcile"
        );
        return Decided::Left;
    };
    let (next, step) = (stepped.next, stepped.step);
    let blocking = facts.allocs.get(node_id).map(|a| a.blocking.clone());
    let status = records::status_of(
        &next,
        obj.status.as_ref(),
        obj.metadata.generation,
        blocking,
        now,
    );
    let api: Api<NomadClientRetirement> = Api::namespaced(armed.client.clone(), &ns);
    let w = StatusWrite {
        object: obj,
        status,
    };
    if let Err(e) = write::status(&api, &armed.ledgers, &w).await {
        debug!(error = %e, node = node_id, "express lane: record not written");
        // A newer record: decided again on it. None at all (deleted), or a
        // failed write: the reconcile decides.
        return if e.is_conflict() {
            Decided::Again
        } else {
            Decided::Done
        };
    }
    let known = siblings::known_on(&instance, facts.listed, &nodes);
    super::act::spawn_terminate(rt, &instance, decrement, true, known);
    let labels = PoolLabels {
        pool: armed.key.clone(),
    };
    for s in &step.drain_wait_seconds {
        metrics().drain_wait.get_or_create(&labels).observe(*s);
    }
    metrics().express_terminates.get_or_create(&labels).inc();
    debug!(node = node_id, instance = %instance, "express lane: terminate started");
    Decided::Done
}

/// The facts of the pool's nodes that report `instance` (the client among
/// them): all the step reads of the pool's nodes.
fn nodes_on_vm(snapshot: &NodesSnapshot, instance: &str, armed: &Armed) -> Vec<NodeFacts> {
    let uid = armed.pool.uid().unwrap_or_default();
    // In the pool's node order, as the whole plan's view has them.
    (armed.by_vm.on(instance).iter())
        .filter_map(|id| snapshot.node(id))
        .map(|n| {
            let opted_out = snapshot.opted_out.contains(&n.id);
            super::facts::fact(n, Some(instance.to_owned()), opted_out, &armed.key, &uid)
        })
        .collect()
}

#[cfg(test)]
#[path = "express_tests.rs"]
mod tests;
