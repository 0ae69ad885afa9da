//! Report: what the pool's status, Events and metrics say after a
//! reconcile: trouble that stopped it, the planner's events, actions that
//! failed, the gauges per phase.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use tracing::info;

use super::super::conditions::{Problem, Trouble, build_status};
use super::super::kstatus;
use super::super::plan;
use super::super::status::{self, Signal};
use super::super::{Context, Error};
use super::act::ActionError;
use super::observe::{Observed, Planned};
use super::persist;
use crate::api::{NomadClientPool, NomadClientPoolStatus, RetirePhase, RetiringNode};
use crate::metrics::{DrainAges, PhaseLabels, PoolLabels, ReconcileLabels, metrics};

/// The pool cannot be worked on: Degraded and not Ready say why, an Event
/// says it once, and the pool is retried after its back-off.
pub async fn trouble(
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
            (status::RECONCILING, kstatus::reconciling_despite(&trouble)),
            (status::STALLED, kstatus::stalled_by(&trouble)),
        ],
        pool.metadata.generation,
        Timestamp::now(),
    );
    let status = NomadClientPoolStatus {
        observed_generation: pool.metadata.generation,
        conditions,
        ..previous.clone()
    };
    record_conditions(&pool_key(pool), &status);
    if status != previous {
        persist::write_status(pool, ctx, &status).await?;
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

/// The planner's Events, and its decisions in the log. An Event about one
/// client goes on its retirement object, where `kubectl describe ncr`
/// shows it; the others on the pool.
pub async fn plan_events(
    ctx: &Context,
    pool: &NomadClientPool,
    planned: &plan::Plan,
    by_node_name: &HashMap<String, String>,
) {
    let about_clients = planned.events.iter().any(|ev| ev.node.is_some());
    let objects: HashMap<String, ObjectReference> = if about_clients {
        ctx.ledgers
            .of_pool(pool)
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| (r.name_any(), r.object_ref(&())))
            .collect()
    } else {
        HashMap::new()
    };
    for ev in &planned.events {
        let type_ = if ev.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        let retirement = ev
            .node
            .as_ref()
            .and_then(|n| by_node_name.get(n))
            .and_then(|name| objects.get(name));
        match retirement {
            Some(object) => ctx
                .events
                .publish(event(type_, ev.reason, &ev.message, None), object.clone()),
            None => publish(ctx, pool, type_, ev.reason, &ev.message, ev.node.as_deref()),
        }
        info!(reason = ev.reason, "{}", ev.message);
    }
}

/// Actions failed: an `ActionFailed` Event and condition naming each; the
/// pool backs off. The write is best effort: the write-ahead entries are
/// already stored.
pub async fn failures(
    ctx: &Context,
    pool: &std::sync::Arc<NomadClientPool>,
    seen: &Observed,
    planned: &Planned,
    failures: &[ActionError],
    persisted: &persist::Persisted,
) -> Requeue {
    let message = failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    publish(
        ctx,
        pool,
        EventType::Warning,
        "ActionFailed",
        &message,
        None,
    );
    let problems = [Problem::new("ActionFailed", message)]
        .into_iter()
        .chain(planned.unapplied.iter().cloned())
        .collect();
    let mut failed = build_status(
        pool,
        &seen.status,
        &planned.plan,
        &seen.nodes,
        &seen.group,
        problems,
    );
    persist::carry_summary(&mut failed, &persisted.status);
    let m = metrics();
    for f in failures {
        m.action_failed(&seen.key, f.kind());
    }
    record_conditions(&seen.key, &failed);
    // Written over the copy the write-ahead returned, or it could never apply.
    let newest = ctx.own_writes.newest(pool.clone());
    let _ = persist::write_status(&newest, ctx, &failed).await;
    ctx.note_failure(pool);
    Requeue::requeue(ctx.backoff(pool))
}

/// Each reconcile's duration and result (`ok`, `conflict`, `error`).
pub fn reconcile_metrics(pool_key: &str, took: Duration, result: &Result<Requeue, Error>) {
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) if e.is_conflict() => "conflict",
        Err(_) => "error",
    };
    let m = metrics();
    m.reconcile_duration
        .get_or_create(&PoolLabels {
            pool: pool_key.into(),
        })
        .observe(took.as_secs_f64());
    m.reconciles
        .get_or_create(&ReconcileLabels {
            pool: pool_key.into(),
            result: outcome.into(),
        })
        .inc();
}

const PHASES: [RetirePhase; 6] = [
    RetirePhase::Selected,
    RetirePhase::Cordoned,
    RetirePhase::Draining,
    RetirePhase::Drained,
    RetirePhase::Terminating,
    RetirePhase::Cancelling,
];

/// A reconcile of the pool ran to its end without error: the clock the
/// `NomadPoolNotReconciled` alert reads.
pub fn reconciled(pool_key: &str) {
    metrics().reconciled(pool_key, Timestamp::now().as_millisecond() as f64 / 1000.0);
}

/// The pool's conditions as `nomadpool_pool_condition`.
pub fn record_conditions(pool_key: &str, status: &NomadClientPoolStatus) {
    metrics().set_conditions(
        pool_key,
        (status.conditions.iter()).map(|c| (c.type_.as_str(), c.status.as_str())),
    );
}

fn pool_key(pool: &NomadClientPool) -> String {
    format!(
        "{}/{}",
        pool.namespace().unwrap_or_default(),
        pool.name_any()
    )
}

/// How old the pool's drains in flight are at `now` (pure): a drain is a
/// client in phase `Draining`, its age counted from when Nomad says the
/// drain started (else from when it entered the phase).
pub fn drain_ages(retiring: &[RetiringNode], now: Timestamp) -> DrainAges {
    let mut ages = DrainAges::default();
    for e in retiring.iter().filter(|e| e.phase == RetirePhase::Draining) {
        let started = e.drain_started_at.as_ref().unwrap_or(&e.since).0;
        let age = now.duration_since(started).as_secs_f64().max(0.0);
        match &e.drain_deadline {
            Some(deadline) => {
                ages.oldest_with_deadline = ages.oldest_with_deadline.max(age);
                if deadline.0 < now {
                    ages.past_deadline += 1;
                }
            }
            None => ages.oldest_without_deadline = ages.oldest_without_deadline.max(age),
        }
    }
    ages
}

/// A deleted pool's gauges would otherwise report its last counts forever.
pub fn forget_metrics(pool_key: &str) {
    let m = metrics();
    m.forget_pool_state(pool_key);
    let phases = PHASES
        .iter()
        .map(|p| p.as_str().to_string())
        .chain(["Ready".to_string()]);
    for phase in phases {
        m.nodes.remove(&PhaseLabels {
            pool: pool_key.into(),
            phase,
        });
    }
}

pub fn record_metrics(pool_key: &str, planned: &plan::Plan, ready: i32, now: Timestamp) {
    let m = metrics();
    m.set_drains(pool_key, drain_ages(&planned.retiring, now));
    let mut by_phase: std::collections::BTreeMap<String, i64> =
        PHASES.iter().map(|p| (p.as_str().to_string(), 0)).collect();
    for r in &planned.retiring {
        *by_phase.entry(r.phase.as_str().to_string()).or_default() += 1;
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

/// Publish an Event on the pool. An event about a node names it as the
/// `related` object: the recorder folds events into a series by reason and
/// objects, not by message, so without it the second node's "Retired" would
/// only bump the count of the first's.
pub fn publish(
    ctx: &Context,
    pool: &NomadClientPool,
    type_: EventType,
    reason: &str,
    message: &str,
    node: Option<&str>,
) {
    ctx.events
        .publish(event(type_, reason, message, node), pool.object_ref(&()));
}

fn event(type_: EventType, reason: &str, message: &str, node: Option<&str>) -> Event {
    Event {
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
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::drain_ages;
    use crate::api::{RetirePhase, RetireReason, RetiringNode};
    use crate::metrics::DrainAges;

    const NOW: i64 = 1_800_000_000;

    fn at(seconds_ago: i64) -> Time {
        Time(Timestamp::from_second(NOW - seconds_ago).unwrap())
    }

    /// A client in `phase` since `since` seconds ago, whose drain started
    /// `started` seconds ago with a deadline `deadline` seconds from now.
    fn client(
        phase: RetirePhase,
        since: i64,
        started: Option<i64>,
        deadline: Option<i64>,
    ) -> RetiringNode {
        RetiringNode {
            node_id: format!("id-{since}"),
            node_name: format!("node-{since}"),
            instance_id: None,
            phase,
            since: at(since),
            selected_at: None,
            reason: RetireReason::ScaleIn,
            decrement: true,
            cordoned_by_pool: true,
            drain_started_at: started.map(at),
            drain_deadline: deadline.map(|d| at(-d)),
            allocations_left: 1,
            blocking_jobs: vec![],
            message: None,
        }
    }

    #[test]
    fn only_drains_in_flight_count_each_by_whether_it_has_a_deadline() {
        let now = Timestamp::from_second(NOW).unwrap();
        let retiring = [
            // Past its deadline by a minute, draining for an hour.
            client(RetirePhase::Draining, 3000, Some(3600), Some(-60)),
            // Within its deadline; younger.
            client(RetirePhase::Draining, 600, Some(600), Some(600)),
            // No deadline, no start Nomad reported: aged from the phase.
            client(RetirePhase::Draining, 9000, None, None),
            client(RetirePhase::Draining, 100, Some(100), None),
            // Not draining (any more): whatever their records say.
            client(RetirePhase::Drained, 50_000, Some(50_000), Some(-40_000)),
            client(RetirePhase::Cordoned, 60_000, None, None),
        ];
        assert_eq!(
            drain_ages(&retiring, now),
            DrainAges {
                oldest_with_deadline: 3600.0,
                oldest_without_deadline: 9000.0,
                past_deadline: 1,
            }
        );
        assert_eq!(drain_ages(&[], now), DrainAges::default());
        // Nomad's clock ahead of ours: a drain never reads as started in the future.
        let ahead = client(RetirePhase::Draining, 0, Some(-30), None);
        assert_eq!(drain_ages(&[ahead], now).oldest_without_deadline, 0.0);
    }
}
