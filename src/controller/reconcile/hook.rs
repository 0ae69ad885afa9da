//! The reconcile's steps for a pool whose group has a terminating lifecycle
//! hook (`controller::hooks` holds the logic): confirm the hook before the
//! plan, hold the plan to the actions already completed, give the held
//! clients' retirements what the hook knows (`retirement::hold`), report its
//! condition with the status, keep held clients' heartbeats and warn before
//! the global timeout after the actions, publish the held clients' Events on
//! their retirements, and look again soon.

use std::collections::HashSet;
use std::time::Duration;

use kube::runtime::events::EventType;

use super::super::hooks::{self, HookCheck};
use super::super::plan::{Action, Plan, PlanEvent};
use super::super::retirement::hold::{self, HoldFacts};
use super::super::runtime::PoolRuntime;
use super::super::{Context, group};
use super::act::ActionError;
use super::observe::Observed;
use super::report;
use crate::api::{NomadClientPool, NomadClientPoolStatus, RetireReason};

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
        hooks::queue::overlay(
            &rt.hooks.queued(),
            std::sync::Arc::make_mut(&mut seen.group),
        );
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

/// The pool's `LifecycleHook` condition, and a Warning Event when it turns
/// false. Returns the capped drains announced on the pool (node, text),
/// for their retirements' Events (see [`retirement_events`]).
pub fn report_condition(
    ctx: &Context,
    pool: &NomadClientPool,
    (rt, seen): (&PoolRuntime, &Observed),
    status: &mut NomadClientPoolStatus,
    check: Option<&HookCheck>,
) -> Vec<(String, String)> {
    let now = jiff::Timestamp::now();
    let generation = pool.metadata.generation;
    let news = hooks::condition(status, &seen.status, check, generation, now);
    let queue = rt.hooks.queue_state();
    let queue_news = hooks::queue_condition(status, &seen.status, queue, generation, now);
    for (reason, message) in news.into_iter().chain(queue_news) {
        report::publish(ctx, pool, EventType::Warning, &reason, &message, None);
    }
    hooks::global_condition(status, &rt.hooks, check, generation, now);
    let capped = rt.hooks.capped_news();
    for (node, message) in &capped {
        report::publish(ctx, pool, EventType::Normal, CAPPED, message, Some(node));
    }
    capped
}

const CAPPED: &str = "DrainDeadlineCapped";
const COMPLETED: &str = "LifecycleActionCompleted";

/// What the hook adds to the retirements' statuses this reconcile: the
/// hook confirmed, the tokens the queue gave, the actions this process
/// completed (forgetting those no retirement or group holds any more).
pub fn hold_facts(rt: &PoolRuntime, seen: &Observed, check: Option<&HookCheck>) -> HoldFacts {
    let in_use = |id: &str| {
        seen.group.instance(id).is_some()
            || (seen.tracked.iter()).any(|e| e.instance_id.as_deref() == Some(id))
    };
    rt.hooks.completed.retain(in_use);
    let hook = match check {
        Some(HookCheck::Ready {
            name,
            heartbeat_timeout,
        }) => Some((name.clone(), *heartbeat_timeout)),
        _ => None,
    };
    let tokens = (rt.hooks.queued().into_iter())
        .filter_map(|(id, token)| Some((id, token?)))
        .collect();
    HoldFacts {
        hook,
        tokens,
        completed: rt.hooks.completed.all(),
    }
}

/// Hold the plan to what is known of the hook's actions: one completed
/// before (its retirement records it, or this process did it) is not
/// completed again, by a restarted operator either.
pub fn settle(rt: &PoolRuntime, seen: &Observed, plan: &mut Plan) {
    let mut done: HashSet<String> = hold::completed(&seen.retirements).into_iter().collect();
    done.extend(rt.hooks.completed.all().into_keys());
    let mut dropped = HashSet::new();
    plan.actions.retain(|a| match a {
        Action::CompleteLifecycleAction {
            instance_id,
            node_id,
        } if done.contains(instance_id) => {
            dropped.extend(node_id.clone());
            false
        }
        _ => true,
    });
    for e in (plan.retiring.iter_mut()).filter(|e| dropped.contains(&e.node_id)) {
        e.message = Some(
            "lifecycle action completed; waiting for the group to let the VM go (another hook may hold it)".into(),
        );
    }
}

/// Events on the retirements of held clients: each action this process
/// completed that the retirement did not record yet (once: a later
/// reconcile, or a restarted operator, reads the record), and each drain
/// the global timeout capped (`capped`, announced on the pool too).
pub fn retirement_events(
    rt: &PoolRuntime,
    seen: &Observed,
    plan: &mut Plan,
    capped: Vec<(String, String)>,
) {
    let recorded: HashSet<String> = hold::completed(&seen.retirements).into_iter().collect();
    let completed = rt.hooks.completed.all();
    let mut news: Vec<PlanEvent> = (plan.retiring.iter())
        .filter(|e| e.reason == RetireReason::LifecycleHook)
        .filter_map(|e| {
            let id = e.instance_id.as_deref()?;
            (completed.contains_key(id) && !recorded.contains(id)).then(|| PlanEvent {
                warning: false,
                node: Some(e.node_name.clone()),
                reason: COMPLETED,
                message: format!(
                    "node {} is drained: the lifecycle action of its VM {id} is completed (CONTINUE), the group terminates the VM",
                    e.node_name
                ),
            })
        })
        .collect();
    rt.hooks.once.filter(&mut news);
    news.extend(capped.into_iter().map(|(node, message)| PlanEvent {
        warning: false,
        node: Some(node),
        reason: CAPPED,
        message,
    }));
    plan.events.extend(news);
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
        (name, *heartbeat_timeout),
        &seen.group,
        &plan.retiring,
        &seen.tokens,
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
