//! The reconcile's steps for a pool whose group has a terminating lifecycle
//! hook (`controller::hooks` holds the logic): confirm the hook before the
//! plan, report its condition with the status, keep held clients'
//! heartbeats and warn before the global timeout after the actions, and look
//! again soon.

use std::time::Duration;

use kube::runtime::events::EventType;

use super::super::hooks::{self, HookCheck};
use super::super::plan::Plan;
use super::super::runtime::PoolRuntime;
use super::super::{Context, group};
use super::act::ActionError;
use super::observe::Observed;
use super::report;
use crate::api::{NomadClientPool, NomadClientPoolStatus};

/// The hook the spec names, checked (read, or put when the operator manages
/// it); the plan may complete actions only under a hook found ready.
pub async fn check(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    seen: &mut Observed,
) -> Option<HookCheck> {
    rt.hooks.ensure_queue(&pool.spec, &rt.provider, &rt.trigger);
    let check = match hooks::spec_hook(&pool.spec) {
        Some(spec) => {
            rt.group.set_fresh(hooks::GROUP_FRESH);
            Some(hooks::check(spec, rt.provider.as_ref(), &rt.hooks).await)
        }
        None => {
            rt.group.set_fresh(group::FRESH);
            None
        }
    };
    seen.lifecycle_hook = check.as_ref().and_then(|c| c.ready()).map(str::to_owned);
    if seen.lifecycle_hook.is_some() {
        // VMs the queue named, confirmed held, that the view predates.
        hooks::queue::overlay(&rt.hooks.queued(), &mut seen.group);
    }
    if let Some(HookCheck::Ready {
        heartbeat_timeout, ..
    }) = &check
    {
        // The global timeout is a drain deadline for held clients.
        let (tracked, drain) = (&seen.tracked, &pool.spec.drain);
        (rt.hooks).cap_drains(
            *heartbeat_timeout,
            tracked,
            &mut seen.drains,
            drain,
            seen.now,
        );
    }
    check
}

/// The pool's `LifecycleHook` condition, and a Warning Event when it turns false.
pub fn report_condition(
    ctx: &Context,
    pool: &NomadClientPool,
    (rt, seen): (&PoolRuntime, &Observed),
    status: &mut NomadClientPoolStatus,
    check: Option<&HookCheck>,
) {
    let now = jiff::Timestamp::now();
    let generation = pool.metadata.generation;
    let news = hooks::condition(status, &seen.status, check, generation, now);
    let queue = rt.hooks.queue_state();
    let queue_news = hooks::queue_condition(status, &seen.status, queue, generation, now);
    for (reason, message) in news.into_iter().chain(queue_news) {
        report::publish(ctx, pool, EventType::Warning, &reason, &message, None);
    }
    hooks::global_condition(status, &rt.hooks, check, generation, now);
    for (node, message) in rt.hooks.capped_news() {
        let reason = "DrainDeadlineCapped";
        report::publish(ctx, pool, EventType::Normal, reason, &message, Some(&node));
    }
}

/// After the actions: heartbeats for the held clients whose jobs still run,
/// and a warning for each that nears the hook's global timeout. Returns the
/// heartbeats that failed.
pub async fn upkeep(
    ctx: &Context,
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    seen: &Observed,
    plan: &Plan,
    check: Option<&HookCheck>,
) -> Vec<ActionError> {
    let Some(HookCheck::Ready {
        name,
        heartbeat_timeout,
    }) = check
    else {
        return Vec::new();
    };
    let missed = hooks::heartbeat(
        rt.provider.as_ref(),
        &rt.hooks,
        name,
        *heartbeat_timeout,
        &seen.group,
        &plan.retiring,
    )
    .await;
    let now = jiff::Timestamp::now();
    let late = hooks::global_timeout_warnings(
        &rt.hooks.warned,
        *heartbeat_timeout,
        &seen.group,
        &plan.retiring,
        now,
    );
    for (node, message) in late {
        let reason = "LifecycleGlobalTimeoutNear";
        report::publish(ctx, pool, EventType::Warning, reason, &message, Some(&node));
    }
    missed.into_iter().map(ActionError::Heartbeat).collect()
}

/// A VM the group's hook holds must be seen within seconds, and a held
/// client's heartbeats must not wait for the resync.
pub fn next_look(look: Duration, check: Option<&HookCheck>) -> Duration {
    match check {
        Some(_) => look.min(hooks::LOOK_EVERY),
        None => look,
    }
}
