//! One reconcile of one pool: observe, plan (pure), persist the write-ahead
//! status, then run the planned side effects.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::PostParams;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use tracing::{Instrument, debug, info, instrument, warn};

use super::conditions::{Problem, Trouble, build_status};
use super::connect;
use super::plan::{self, Action, LastDrainStatus, NodeFacts, NodeStatus, PoolView};
use super::status::{self, Signal};
use super::watch::{NodesState, PoolWatch, Trigger};
use super::{Context, Error, PoolRuntime};
use crate::api::{NomadClientPool, NomadClientPoolStatus, RetirePhase, RetiringNode};
use crate::metrics::{PhaseLabels, PoolLabels, ReconcileLabels, metrics};
use crate::nomad::{
    self, DrainRequest, DrainSpec, DrainStatus, NomadClient, NomadError, PoolSelector,
};
use crate::provider::{CloudProvider, TerminateOutcome, aws::AwsAutoScalingGroup};

mod actions;
mod cleanup;
mod runtime;

use actions::{run_logged, spawn_terminate};
use cleanup::cleanup;
use runtime::runtime;

pub const FINALIZER: &str = "nomadpool.dev/release-nodes";

/// Safety-net resync: the watches wake us on every change, this only covers
/// what no watch can see (for example the cloud group changed by hand).
const RESYNC: Duration = Duration::from_secs(300);
/// How often a pool with retirements in flight re-reads its cloud group,
/// which no Nomad watch reports on.
const ACTIVE_RESYNC: Duration = Duration::from_secs(10);
/// How long a status whose only news is progress figures (counts,
/// messages; see `status::only_progress_differs`) may wait for the next write.
const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(5);
/// Nomad and cloud calls of one reconcile in flight at once.
const ACTION_CONCURRENCY: usize = 16;

#[instrument(skip_all, fields(pool = %format!("{}/{}", pool.namespace().unwrap_or_default(), pool.name_any())))]
pub async fn reconcile(pool: Arc<NomadClientPool>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = std::time::Instant::now();
    let pool = ctx.own_writes.newest(pool);
    let ns = pool.namespace().unwrap_or_default();
    let api: Api<NomadClientPool> = Api::namespaced(ctx.client.clone(), &ns);
    let key = format!("{ns}/{}", pool.name_any());
    let result = finalizer(&api, FINALIZER, pool, |event| async {
        match event {
            Finalizer::Apply(pool) => apply(pool, ctx.clone()).await,
            Finalizer::Cleanup(pool) => cleanup(pool, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) if e.is_conflict() => "conflict",
        Err(_) => "error",
    };
    metrics()
        .reconcile_duration
        .get_or_create(&PoolLabels { pool: key.clone() })
        .observe(started.elapsed().as_secs_f64());
    metrics()
        .reconciles
        .get_or_create(&ReconcileLabels {
            pool: key,
            result: outcome.into(),
        })
        .inc();
    result
}

const PHASES: [RetirePhase; 6] = [
    RetirePhase::Selected,
    RetirePhase::Cordoned,
    RetirePhase::Draining,
    RetirePhase::Drained,
    RetirePhase::Terminating,
    RetirePhase::Cancelling,
];

/// A deleted pool's gauges would otherwise report its last counts forever.
fn forget_metrics(pool_key: &str) {
    let m = metrics();
    let phases = PHASES
        .iter()
        .map(|p| format!("{p:?}"))
        .chain(["Ready".to_string()]);
    for phase in phases {
        m.nodes.remove(&PhaseLabels {
            pool: pool_key.into(),
            phase,
        });
    }
}

fn record_metrics(pool_key: &str, planned: &plan::Plan, ready: i32) {
    let m = metrics();
    let mut by_phase: std::collections::BTreeMap<String, i64> =
        PHASES.iter().map(|p| (format!("{p:?}"), 0)).collect();
    for r in &planned.retiring {
        *by_phase.entry(format!("{:?}", r.phase)).or_default() += 1;
    }
    by_phase.insert("Ready".into(), ready as i64);
    for (phase, n) in by_phase {
        m.nodes
            .get_or_create(&PhaseLabels {
                pool: pool_key.into(),
                phase,
            })
            .set(n);
    }
    let labels = PoolLabels {
        pool: pool_key.into(),
    };
    for s in &planned.retire_seconds {
        m.retire_duration.get_or_create(&labels).observe(*s);
    }
    for s in &planned.drain_wait_seconds {
        m.drain_wait.get_or_create(&labels).observe(*s);
    }
}

fn node_facts(snapshot: &super::watch::NodesSnapshot, key: &str, uid: &str) -> Vec<NodeFacts> {
    snapshot
        .nodes
        .iter()
        .map(|n| NodeFacts {
            id: n.id.clone(),
            name: n.name.clone(),
            status: match n.status {
                nomad::NodeStatus::Ready => NodeStatus::Ready,
                nomad::NodeStatus::Down => NodeStatus::Down,
                nomad::NodeStatus::Disconnected => NodeStatus::Disconnected,
                _ => NodeStatus::Initializing,
            },
            eligible: n.scheduling_eligibility == nomad::SchedulingEligibility::Eligible,
            draining: n.drain,
            last_drain: n.last_drain.as_ref().and_then(|d| match d.status {
                DrainStatus::Draining => Some(LastDrainStatus::Draining),
                DrainStatus::Complete => Some(LastDrainStatus::Complete),
                DrainStatus::Canceled => Some(LastDrainStatus::Canceled),
                _ => None,
            }),
            last_drain_started: n.last_drain.as_ref().and_then(|d| d.started_at),
            last_drain_mark: n
                .last_drain
                .as_ref()
                .and_then(|d| plan::read_drain_meta_of(&d.meta, key, uid)),
            create_index: n.create_index,
            instance_id: snapshot.instance_ids.get(&n.id).cloned(),
        })
        .collect()
}

async fn apply(pool: Arc<NomadClientPool>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = std::time::Instant::now();
    let rt = match runtime(&pool, &ctx).await {
        Ok(rt) => rt,
        Err(trouble) => return report_trouble(&pool, &ctx, trouble).await,
    };
    let connected = started.elapsed();
    let snapshot = match rt.watch.nodes() {
        // The watch fires the trigger as soon as its first answer lands.
        NodesState::Pending => return Ok(Requeue::requeue(Duration::from_secs(5))),
        NodesState::Failed { error, .. } => {
            return report_trouble(&pool, &ctx, Trouble::from_nomad(&error, &rt.address)).await;
        }
        NodesState::Ready(s) => s,
    };
    let observed = match rt.group.get().await {
        Ok(g) => g,
        Err(e) => {
            return report_trouble(
                &pool,
                &ctx,
                Trouble::from_provider(&e, &rt.provider.group()),
            )
            .await;
        }
    };
    // Nothing is done to a group its tag does not give to this pool: not
    // even to clients already in flight, which stay as they are until the
    // tag names the pool again (see provider::ownership).
    if let Err(r) = super::authority::group_owned(&pool, &rt.provider.group(), &observed.group) {
        return report_trouble(&pool, &ctx, Trouble::refused(r)).await;
    }

    let status = pool.status.clone().unwrap_or_default();
    // Read before the allocation facts: facts gathered under an earlier
    // answer may have been filtered by what the token could not see.
    // Both checks run (no short circuit): each marks its news as seen.
    let visibility_changed = rt.visibility.changed_since_seen();
    let index_went_backwards = rt.watch.index_went_backwards_since_seen();
    if visibility_changed || index_went_backwards {
        rt.watch.restart_allocation_watches();
    }
    if index_went_backwards {
        // Their indexes belong to the cluster's past.
        rt.writes.clear();
    }
    if !status.retiring.is_empty() {
        rt.watch.probe_index(snapshot.index);
    }
    let visibility = rt.visibility.state();
    let allocs = rt
        .watch
        .allocation_facts(pool.spec.drain.ignore_system_jobs);

    let uid = pool.uid().unwrap_or_default();
    let instance_nodes = rt.siblings.facts();
    let key = format!(
        "{}/{}",
        pool.namespace().unwrap_or_default(),
        pool.name_any()
    );
    let facts = |s: &_| node_facts(s, &key, &uid);
    let (nodes, outside) = match super::outside::view(&rt, &pool.spec, &status, &snapshot, facts)
        .await
    {
        Ok(v) => v,
        Err(e) => return report_trouble(&pool, &ctx, Trouble::from_nomad(&e, &rt.address)).await,
    };
    let now = Timestamp::now();
    let visibility_gap = visibility.gap();
    let visibility = match (&visibility, &visibility_gap) {
        (_, None) => plan::AllocationVisibility::Proven,
        (super::visibility::VisibilityState::Checking, _) => plan::AllocationVisibility::Checking,
        (_, Some(gap)) => plan::AllocationVisibility::Unproven(gap),
    };
    let view = |group, load| PoolView {
        now,
        pool_key: &key,
        spec: &pool.spec,
        tracked: &status.retiring,
        retired: &status.retired,
        nodes: &nodes,
        outside: &outside,
        allocs: &allocs,
        load,
        group,
        visibility,
        instance_nodes: &instance_nodes,
    };
    let mut planned = plan::plan(&view(&observed.group, None));
    let mut load = None;
    if planned.needs_load {
        load = match rt.watch.load().await {
            Ok(l) => Some(l),
            Err(e) => {
                return report_trouble(&pool, &ctx, Trouble::from_nomad(&e, &rt.address)).await;
            }
        };
        planned = plan::plan(&view(&observed.group, load.as_deref()));
    }
    // Setting the desired capacity is the one action the cloud does not
    // re-check for us: it is planned on a fresh read.
    let fresh;
    let mut group = &observed.group;
    if observed.age > Duration::ZERO
        && planned
            .actions
            .iter()
            .any(|a| matches!(a, Action::SetDesiredCapacity { .. }))
    {
        fresh = match rt.group.read_now().await {
            Ok(g) => g,
            Err(e) => {
                return report_trouble(
                    &pool,
                    &ctx,
                    Trouble::from_provider(&e, &rt.provider.group()),
                )
                .await;
            }
        };
        group = &fresh.group;
        if let Err(r) = super::authority::group_owned(&pool, &rt.provider.group(), group) {
            return report_trouble(&pool, &ctx, Trouble::refused(r)).await;
        }
        planned = plan::plan(&view(group, load.as_deref()));
    }

    // A write the node view does not show yet is not sent again; the event
    // that shows it wakes the next reconcile.
    let planned_at = started.elapsed();
    let unobserved = rt.writes.unobserved(&snapshot);
    if !unobserved.is_empty() {
        planned.actions.retain(|a| match a {
            Action::Cordon { node_id }
            | Action::Drain { node_id, .. }
            | Action::Release { node_id, .. }
            | Action::Purge { node_id } => !unobserved.contains(node_id),
            Action::Terminate { .. } | Action::SetDesiredCapacity { .. } => true,
        });
    }

    let mut watched = super::alloc_watch::alloc_watch_set(&planned.retiring, &nodes, now);
    let gate = super::siblings::gate_instances(&planned.retiring, &watched);
    watched.extend(super::siblings::sibling_nodes(
        &gate,
        &instance_nodes,
        &nodes,
    ));
    rt.siblings.track(&gate);
    rt.watch
        .track_allocations(&watched, pool.spec.drain.ignore_system_jobs);

    rt.clientless.settle(&mut planned, &nodes);
    let unapplied = rt.drain_resends.review(&mut planned, &nodes);
    let new_status = build_status(&pool, &status, &planned, &nodes, group, unapplied.clone());
    for (reason, message) in super::readiness::news(&status, &new_status) {
        publish(&ctx, &pool, EventType::Warning, reason, &message, None);
    }
    record_metrics(&key, &planned, new_status.ready_nodes);
    // Write-ahead: the status names every action (but a purge) before it
    // runs; with such actions to follow, the write is also the check that
    // no newer copy of the pool exists. Without, a status with nothing new
    // is not written, and one with only new progress figures waits a little
    // if we wrote recently (each write rewrites every entry of the pool).
    let write_ahead = planned.actions.iter().any(Action::needs_write_ahead);
    let progress_only = status::only_progress_differs(&status, &new_status);
    let progress_waits = progress_only
        && !write_ahead
        && ctx
            .own_writes
            .written_within(&pool, PROGRESS_WRITE_INTERVAL);
    let status_written = !progress_waits && (new_status != status || write_ahead);
    if status_written {
        write_status(&pool, &ctx, &new_status).await?;
    }
    let written_at = started.elapsed();

    // Terminate calls run on their own: a slow or throttled cloud must not
    // hold the next drained node back until every call of this reconcile
    // returned. The write-ahead status already names them; the in-flight
    // set keeps the next reconciles from sending one again, and the end of
    // each call wakes the pool.
    let mut terminates_running = false;
    for action in &planned.actions {
        if let Action::Terminate {
            instance_id,
            decrement,
            first_attempt,
            ..
        } = action
        {
            let known = super::siblings::known_on(instance_id, &instance_nodes, &nodes);
            terminates_running |=
                spawn_terminate(&rt, instance_id, *decrement, *first_attempt, known);
        }
    }
    terminates_running |= !rt.terminating.lock().expect("terminating lock").is_empty();
    // Each node has at most one action per plan, so node actions run side by
    // side (a large scale-in must not wait on hundreds of calls in a row);
    // growing the group comes last, after the retirements it replaces are
    // cancelled, and waits while a terminate with decrement may still land.
    let (node_actions, group_actions): (Vec<&Action>, Vec<&Action>) = planned
        .actions
        .iter()
        .filter(|a| !matches!(a, Action::Terminate { .. }))
        .partition(|a| a.node_id().is_some());
    // Built eagerly (boxed) rather than mapped lazily in the stream: a lazy
    // map over borrowed actions trips the Send check of the controller.
    let calls: Vec<futures::future::BoxFuture<'_, Option<String>>> = node_actions
        .into_iter()
        .map(|action| Box::pin(run_logged(&pool, &rt, action)) as _)
        .collect();
    let mut failures: Vec<String> =
        std::mem::take(&mut *rt.cloud_failures.lock().expect("failures lock"));
    failures.extend(
        futures::stream::iter(calls)
            .buffered(ACTION_CONCURRENCY)
            .filter_map(|e| async move { e })
            .collect::<Vec<_>>()
            .await,
    );
    if !terminates_running {
        for action in group_actions {
            failures.extend(run_logged(&pool, &rt, action).await);
        }
    }
    // Where a slow reconcile spends its time (cumulative milliseconds).
    debug!(
        connect_ms = connected.as_millis() as u64,
        plan_ms = planned_at.as_millis() as u64,
        status_ms = written_at.as_millis() as u64,
        actions_ms = started.elapsed().as_millis() as u64,
        status_written,
        actions = planned.actions.len(),
        retiring = planned.retiring.len(),
        "reconciled"
    );
    for ev in &planned.events {
        publish(
            &ctx,
            &pool,
            if ev.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            ev.reason,
            &ev.message,
            ev.node.as_deref(),
        );
        info!(reason = ev.reason, "{}", ev.message);
    }
    if !failures.is_empty() {
        let message = failures.join("; ");
        publish(
            &ctx,
            &pool,
            EventType::Warning,
            "ActionFailed",
            &message,
            None,
        );
        let failed = build_status(
            &pool,
            &status,
            &planned,
            &nodes,
            group,
            [Problem::new("ActionFailed", message)]
                .into_iter()
                .chain(unapplied)
                .collect(),
        );
        // Best effort: the write-ahead entries are already stored. Written
        // over the copy the write-ahead returned, or it could never apply.
        let _ = write_status(&ctx.own_writes.newest(pool.clone()), &ctx, &failed).await;
        ctx.note_failure(&pool);
        return Ok(Requeue::requeue(ctx.backoff(&pool)));
    }
    ctx.note_success(&pool);
    // The cloud group is not watched: while anything waits on it (a retirement
    // in flight, a pre-flight refusal, a budget), re-read it soon.
    let busy =
        !planned.retiring.is_empty() || !planned.actions.is_empty() || !planned.blockers.is_empty();
    Ok(Requeue::requeue(if progress_waits {
        PROGRESS_WRITE_INTERVAL
    } else if busy {
        ACTIVE_RESYNC
    } else {
        RESYNC
    }))
}

async fn write_status(
    pool: &NomadClientPool,
    ctx: &Context,
    status: &NomadClientPoolStatus,
) -> Result<(), Error> {
    let api: Api<NomadClientPool> =
        Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    // A replace, not a patch: the API server then skips applying a patch to
    // the stored object, which for a pool with hundreds of retiring entries
    // was a third of each write's cost. Only the status of the body is used.
    // Its resourceVersion makes this a compare-and-swap: a reconcile that
    // started from a stale copy must not overwrite write-ahead entries it
    // never saw. A conflict just requeues.
    let mut body = pool.clone();
    body.status = Some(status.clone());
    let written = api
        .replace_status(&pool.name_any(), &PostParams::default(), &body)
        .await
        .map_err(Error::StatusWrite)?;
    ctx.own_writes.wrote(pool, written);
    Ok(())
}

async fn report_trouble(
    pool: &NomadClientPool,
    ctx: &Context,
    trouble: Trouble,
) -> Result<Requeue, Error> {
    let previous = pool.status.clone().unwrap_or_default();
    let was_same = previous.conditions.iter().any(|c| {
        c.type_ == status::DEGRADED
            && c.status == "True"
            && c.reason == trouble.reason
            && c.message == trouble.message
    });
    let conditions = status::merge(
        &previous.conditions,
        &[
            (
                status::READY,
                Signal::new(false, trouble.reason, trouble.message.clone()),
            ),
            (
                status::DEGRADED,
                Signal::new(true, trouble.reason, trouble.message.clone()),
            ),
        ],
        pool.metadata.generation,
        Timestamp::now(),
    );
    let status = NomadClientPoolStatus {
        observed_generation: pool.metadata.generation,
        conditions,
        ..previous.clone()
    };
    if status != previous {
        write_status(pool, ctx, &status).await?;
    }
    if !was_same {
        publish(
            ctx,
            pool,
            EventType::Warning,
            trouble.reason,
            &trouble.message,
            None,
        );
    }
    ctx.note_failure(pool);
    Ok(Requeue::requeue(
        trouble
            .retry
            .min(ctx.backoff(pool))
            .max(Duration::from_secs(1)),
    ))
}

/// Publish an Event on the pool. An event about a node names it as the
/// `related` object: the recorder folds events into a series by reason and
/// objects, not by message, so without it the second node's "Retired" would
/// only bump the count of the first's.
fn publish(
    ctx: &Context,
    pool: &NomadClientPool,
    type_: EventType,
    reason: &str,
    message: &str,
    node: Option<&str>,
) {
    let ev = Event {
        type_,
        reason: reason.into(),
        note: Some(message.chars().take(1000).collect()),
        action: reason.into(),
        secondary: node.map(|name| ObjectReference {
            api_version: Some("nomadproject.io/v1".into()),
            kind: Some("NomadNode".into()),
            name: Some(name.into()),
            ..Default::default()
        }),
    };
    ctx.events.publish(ev, pool.object_ref(&()));
}
