//! One reconcile of one pool, as a table of contents: observe → plan (pure)
//! → persist the write-ahead records (each client's retirement object, then
//! the pool's status) → act → report, each step in the room named for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::{debug, instrument, warn};

use super::conditions::build_status;
use super::hooks::HookCheck;
use super::runtime::runtime;
use super::{Context, Error, readiness};
use crate::api::{NomadClientPool, NomadClientPoolStatus};
use crate::provider::GroupState;

mod act;
mod busy;
mod cleanup;
mod early;
pub(super) mod express;
pub(super) mod facts;
mod hook;
mod observe;
mod persist;
mod prime;
mod report;
mod turns;

use busy::Busy;

pub use act::ActionError;
pub use cleanup::CleanupError;
use observe::NotObserved;
pub use turns::TerminateTurns;

pub const FINALIZER: &str = "nomadpool.dev/release-nodes";

/// Safety-net resync: the watches wake us on every change, this only covers
/// what no watch can see (for example the cloud group changed by hand).
const RESYNC: Duration = Duration::from_secs(300);
/// While the express lane is armed, a pool's reconciles are spaced this
/// many times the last one's duration apart (at least `ARMED_SPACING_PER_NODE`,
/// at most `MAX_SPACING`): in the 5,000-client benchmark a
/// reconcile takes 80-160 ms (wall), so ~1.3-2.6 s. The lane takes the
/// terminations users wait on; what is left to reconciles (starting drains
/// as the budget frees, finishing retirements) can wait that long. From 8
/// to 16: 309 reconciles to 165, operator CPU 21.6 s to 17.3 s, the
/// scale-in 1.08 to 1.11 times its ideal length (BENCHMARKS.md).
const SPACING_PER_RECONCILE_TIME: u32 = 16;
/// The least spacing while the lane is armed, per client of the pool: a
/// reconcile plans every client, so its cost grows with the pool. 16 times
/// a short reconcile (one that found little to do) let the next come
/// within a second: most of a 5,000-client scale-in's ~200 reconciles
/// selected nothing, at ~22 ms of CPU each. There a freed budget slot now
/// waits up to 2.5 s for its next drain, a few percent of a CI drain's
/// minute; a 50-client pool is held 25 ms, as before.
const ARMED_SPACING_PER_NODE: Duration = Duration::from_micros(500);
const MAX_SPACING: Duration = Duration::from_secs(5);
/// How often a pool with retirements in flight re-reads its cloud group,
/// which no Nomad watch reports on.
const ACTIVE_RESYNC: Duration = Duration::from_secs(10);

#[instrument(skip_all, fields(pool = %format!("{}/{}", pool.namespace().unwrap_or_default(), pool.name_any())))]
pub async fn reconcile(pool: Arc<NomadClientPool>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let started = Instant::now();
    let pool = ctx.own_writes.newest(pool);
    let ns = pool.namespace().unwrap_or_default();
    let api: Api<NomadClientPool> = Api::namespaced(ctx.client.clone(), &ns);
    let key = format!("{ns}/{}", pool.name_any());
    // No express lane while the pool is reconciled, nor after, until a
    // reconcile succeeds: the lane acts only on what one planned.
    let pool_ref = ObjectRef::from_obj(&*pool);
    disarm(&ctx, &pool_ref).await;
    let armed = AtomicBool::new(false);
    let result = finalizer(&api, FINALIZER, pool, |event| async {
        match event {
            Finalizer::Apply(pool) => {
                let result = apply(pool, ctx.clone(), &armed).await;
                if result.is_ok() {
                    report::reconciled(&key);
                }
                result
            }
            Finalizer::Cleanup(pool) => cleanup::cleanup(pool, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    // Kept through the reconcile (wake-ups during it are spaced by the last
    // one's), dropped once one ends without arming the lane. A reconcile
    // that failed after its plan leaves the lane disarmed.
    if !armed.load(Ordering::Relaxed) {
        disarm(&ctx, &pool_ref).await;
        ctx.set_spacing(&pool_ref, None);
    }
    report::reconcile_metrics(&key, started.elapsed(), &result);
    result
}

/// Disarm the pool's express lane, once a pass running has ended.
async fn disarm(ctx: &Context, pool: &ObjectRef<NomadClientPool>) {
    let current = (ctx.pools.lock().expect("pools lock")).get(pool).cloned();
    if let Some(rt) = current {
        drop(rt.express.hold().await);
    }
}

/// `armed`: set once the express lane is armed (see `express`).
async fn apply(
    pool: Arc<NomadClientPool>,
    ctx: Arc<Context>,
    armed: &AtomicBool,
) -> Result<Requeue, Error> {
    let started = Instant::now();
    let rt = match runtime(&pool, &ctx).await {
        Ok(rt) => rt,
        Err(trouble) => return report::trouble(&pool, &ctx, trouble).await,
    };
    let connected = started.elapsed();
    let mut lane = rt.express.hold().await;

    // Observe.
    let mut seen = match observe::observe(&pool, &rt, &ctx.ledgers).await {
        Ok(seen) => seen,
        // The watch fires the trigger as soon as its first answer lands.
        Err(NotObserved::Pending) => return Ok(Requeue::requeue(Duration::from_secs(5))),
        Err(NotObserved::Trouble(t)) => return report::trouble(&pool, &ctx, t).await,
    };

    // The lifecycle hook the spec names, confirmed before the planner may
    // complete anything under it.
    let hook_check = hook::check(&pool, &rt, &mut seen).await;

    let mut planned = match plan_held(&pool, &rt, &mut seen).await {
        Ok(planned) => planned,
        Err(t) => return report::trouble(&pool, &ctx, t).await,
    };
    let planned_at = started.elapsed();

    // Persist the write-ahead records: the retirements, then the pool; each
    // terminate and drain starts as soon as its own record landed.
    let hold = hook::hold_facts(&rt, &seen, hook_check.as_ref());
    let writes = persist::retirement_writes(&pool, &ctx, &seen, &planned.plan, &hold);
    // While this reconcile writes and acts, the lane goes on with the drains
    // it leaves alone, and with each other one once it is done with it.
    let busy = Arc::new(Busy::of(&planned.plan, &writes));
    let names = &writes.names;
    if hook_check.is_none() && lane.arm(&ctx, pool.clone(), &planned.plan, names, busy.clone()) {
        rt.express.wake.notify_one();
    }
    drop(lane);
    let (new_status, capped) = next_status(
        &ctx,
        &pool,
        (&rt, &seen),
        &planned,
        &writes,
        hook_check.as_ref(),
    );
    let (persisted, written_at, mut failures) = write_and_act(
        (&pool, &ctx, &rt),
        (&seen, &planned.plan),
        writes,
        &new_status,
        (&busy, started),
    )
    .await?;
    failures
        .extend(hook::upkeep(&ctx, &pool, &rt, &seen, &planned.plan, hook_check.as_ref()).await);
    let behind = persist::write_behind(&pool, &ctx, &persisted.behind).await;
    let steps_done_at = [connected, planned_at, written_at, started.elapsed()];
    log_timings(steps_done_at, persisted.written, &planned.plan);

    // Report.
    hook::retirement_events(&rt, &seen, &mut planned.plan, capped);
    report::plan_events(&ctx, &pool, &planned.plan, &persisted.by_node_name).await;
    if let Err(e) = behind {
        // What the actions' failures say comes first; the next reconcile
        // writes the figures again.
        if failures.is_empty() {
            return Err(e);
        }
        warn!(error = %e, "writing retirement progress after the actions failed");
    }
    if !failures.is_empty() {
        return Ok(report::failures(&ctx, &pool, &seen, &planned, &failures, &persisted).await);
    }
    ctx.note_success(&pool);
    let mut lane = rt.express.hold().await;
    let names = &persisted.names;
    if hook_check.is_none() && lane.arm(&ctx, pool.clone(), &planned.plan, names, Arc::default()) {
        // The lane takes the step users wait on; the whole-pool plan can
        // wait in proportion to what it costs.
        let spacing = armed_spacing(started.elapsed(), seen.nodes.len());
        ctx.set_spacing(&ObjectRef::from_obj(&*pool), Some(spacing));
        armed.store(true, Ordering::Relaxed);
        drop(lane);
        // What the reconcile was busy with.
        rt.express.wake.notify_one();
    }
    let look = next_look(&planned.plan, persisted.progress_waits, &seen.group);
    let look = hook::next_look(look, hook_check.as_ref());
    Ok(Requeue::requeue(look))
}

/// Where a slow reconcile spends its time: when it had connected, planned,
/// written its records and acted (cumulative since its start).
fn log_timings(steps_done_at: [Duration; 4], status_written: bool, plan: &super::plan::Plan) {
    let [connect, planned, written, acted] = steps_done_at.map(|d| d.as_millis() as u64);
    debug!(
        connect_ms = connect,
        plan_ms = planned,
        status_ms = written,
        actions_ms = acted,
        status_written,
        actions = plan.actions.len(),
        retiring = plan.retiring.len(),
        "reconciled"
    );
}

/// Persist the write-ahead records, each terminate and drain started as
/// soon as its own record landed (`early`), then run the rest of the plan
/// (`act`); what was persisted, when (since `started`), and the actions'
/// failures. Each client the reconcile is done with goes back to the lane
/// (`busy`).
async fn write_and_act(
    (pool, ctx, rt): (&NomadClientPool, &Context, &Arc<super::PoolRuntime>),
    (seen, planned): (&observe::Observed, &super::plan::Plan),
    writes: super::retirement::sync::Writes,
    new_status: &NomadClientPoolStatus,
    (busy, started): (&Busy, Instant),
) -> Result<(persist::Persisted, Duration, Vec<ActionError>), Error> {
    let acted = |node_id: &str| {
        busy.acted(node_id);
        rt.express.wake.notify_one();
    };
    let acted = &acted;
    let drain_failures = std::sync::Mutex::new(Vec::new());
    let drain_failures = &drain_failures;
    let landed = early::Landed {
        terminate: &|action| {
            act::start_terminate(rt, seen, action);
        },
        drain: &|action, name| {
            Box::pin(async move {
                let failed = act::drain_early(pool, rt, seen, &action, &name).await;
                drain_failures.lock().expect("failures lock").extend(failed);
                busy.landed(&name);
                acted(action.node_id().unwrap_or_default());
            })
        },
        records: &|| {
            busy.written();
            rt.express.wake.notify_one();
        },
    };
    let persisted = persist::write_ahead(
        pool,
        ctx,
        &seen.status,
        new_status,
        planned,
        writes,
        &landed,
    )
    .await?;
    let written_at = started.elapsed();
    let mut failures = std::mem::take(&mut *drain_failures.lock().expect("failures lock"));
    let names = &persisted.names;
    failures.extend(act::act(pool, rt, seen, planned, names, &persisted.ahead, acted).await);
    Ok((persisted, written_at, failures))
}

/// How far apart the reconciles of a pool of `nodes` clients are spaced
/// while its lane is armed, after one that took `took`.
fn armed_spacing(took: Duration, nodes: usize) -> Duration {
    let floor = ARMED_SPACING_PER_NODE.saturating_mul(u32::try_from(nodes).unwrap_or(u32::MAX));
    (took.saturating_mul(SPACING_PER_RECONCILE_TIME))
        .max(floor)
        .min(MAX_SPACING)
}

/// The pool's next status, and the pool-level news in it published; what
/// the hook condition reports for the retirements' Events (`capped`).
fn next_status(
    ctx: &Context,
    pool: &NomadClientPool,
    (rt, seen): (&super::PoolRuntime, &observe::Observed),
    planned: &observe::Planned,
    writes: &super::retirement::sync::Writes,
    hook_check: Option<&HookCheck>,
) -> (NomadClientPoolStatus, Vec<(String, String)>) {
    let mut new_status = build_status(
        pool,
        &seen.status,
        &planned.plan,
        &seen.nodes,
        &seen.group,
        planned.unapplied.clone(),
    );
    persist::summarize(&mut new_status, seen, &planned.plan, writes);
    for (reason, message) in readiness::news(&seen.status, &new_status) {
        report::publish(ctx, pool, EventType::Warning, reason, &message, None);
    }
    if let Some(message) = invalid_budget_news(&seen.status, &new_status, &planned.plan) {
        report::publish(
            ctx,
            pool,
            EventType::Warning,
            "InvalidDisruptionBudget",
            &message,
            None,
        );
    }
    let batching = super::batching::condition(
        &mut new_status,
        &seen.status,
        super::batching::asked(&pool.spec),
        rt.provider.batching().as_ref(),
        pool.metadata.generation,
        seen.now,
    );
    if let Some((reason, message)) = batching {
        report::publish(ctx, pool, EventType::Warning, &reason, &message, None);
    }
    let hook_seen = (rt, seen);
    let capped = hook::report_condition(ctx, pool, hook_seen, &mut new_status, hook_check);
    report::record_metrics(&seen.key, &planned.plan, new_status.ready_nodes, seen.now);
    report::record_conditions(&seen.key, &new_status);
    (new_status, capped)
}

/// Plan (pure), then held to what this process remembers and the
/// retirements record (see `observe::settle`, `hook::settle`).
async fn plan_held(
    pool: &NomadClientPool,
    rt: &super::PoolRuntime,
    seen: &mut observe::Observed,
) -> Result<observe::Planned, super::conditions::Trouble> {
    let planned = observe::plan(pool, rt, seen).await?;
    let mut planned = observe::settle(pool, rt, seen, planned);
    rt.hooks.once.filter(&mut planned.plan.events);
    hook::settle(rt, seen, &mut planned.plan);
    Ok(planned)
}

/// A budget that does not parse, when the words about the budgets changed
/// (an Event once, not on every pass; `Degraded` lists it meanwhile,
/// possibly behind other problems).
fn invalid_budget_news(
    previous: &crate::api::NomadClientPoolStatus,
    new: &crate::api::NomadClientPoolStatus,
    planned: &super::plan::Plan,
) -> Option<String> {
    let words =
        |s: &crate::api::NomadClientPoolStatus| s.disruption.as_ref().map(|d| d.message.clone());
    let invalid: Vec<&str> = (planned.blockers.iter())
        .filter_map(|b| match b {
            super::plan::Blocker::InvalidBudget(m) => Some(m.as_str()),
            _ => None,
        })
        .collect();
    (!invalid.is_empty() && words(previous) != words(new)).then(|| {
        format!(
            "{}; voluntary retirements wait until it is fixed",
            invalid.join("; ")
        )
    })
}

/// When to look again. The cloud group is not watched: while anything waits
/// on it (a retirement in flight, a pre-flight refusal, a budget, a size
/// the group has not reached yet), soon.
fn next_look(planned: &super::plan::Plan, progress_waits: bool, group: &GroupState) -> Duration {
    // The group's size reaches the plan's after the last terminate lands,
    // and the view a plan reads may predate that (a cached view, or one
    // dropped after a terminate whose answer was lost): Ready waits for
    // that size, and no watch would tell.
    let converging = group.desired_capacity != planned.desired_nodes;
    let busy = converging
        || !planned.retiring.is_empty()
        || !planned.actions.is_empty()
        || !planned.blockers.is_empty();
    let look = if progress_waits {
        persist::PROGRESS_WRITE_INTERVAL
    } else if busy {
        ACTIVE_RESYNC
    } else {
        RESYNC
    };
    // A window that opens or closes, a rate that frees a start, or a
    // remediation grace that ends changes what may start: no watch reports
    // the clock.
    let change = [planned.budgets_change, planned.wake]
        .into_iter()
        .flatten()
        .min();
    match change {
        Some(at) => {
            let until = at.duration_since(jiff::Timestamp::now()).as_secs_f64();
            look.min(Duration::from_secs_f64(
                until.clamp(1.0, RESYNC.as_secs_f64()),
            ))
        }
        None => look,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(desired_capacity: u32) -> GroupState {
        let fake = crate::provider::fake::FakeProvider::new("ci", &[]);
        fake.update(|g| g.desired_capacity = desired_capacity);
        fake.group_state()
    }

    #[test]
    fn armed_spacing_grows_with_the_reconcile_and_the_pool() {
        let ms = Duration::from_millis;
        // A small pool: its reconciles' own length sets the pace.
        assert_eq!(armed_spacing(ms(10), 50), ms(160));
        assert_eq!(armed_spacing(ms(1), 50), ms(25));
        // A large pool's short reconcile does not bring the next one closer.
        assert_eq!(armed_spacing(ms(30), 5_000), ms(2_500));
        assert_eq!(armed_spacing(ms(200), 5_000), ms(3_200));
        assert_eq!(armed_spacing(ms(100), 20_000), MAX_SPACING);
    }

    #[test]
    fn a_group_still_shrinking_is_looked_at_again_soon() {
        let planned = super::super::plan::Plan {
            desired_nodes: 3,
            ..Default::default()
        };
        assert_eq!(next_look(&planned, false, &group(3)), RESYNC);
        // The last delete's Operation has not lowered the size yet.
        assert_eq!(next_look(&planned, false, &group(4)), ACTIVE_RESYNC);
    }
}
