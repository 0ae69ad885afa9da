//! The pool's terminating lifecycle hook, outside the pure planner: whether
//! the hook the spec names exists (or is put, with `mode: Managed`), the
//! heartbeats that keep a held VM's action alive while its client drains,
//! and the pool's `LifecycleHook` condition; with `queueURL`, the queue's
//! receiver (`queue`) and the pool's `LifecycleQueue` condition.
//!
//! The planner (`plan::hooks`) decides which held VMs are retired and when
//! their actions are completed; it only sees the hook once this module has
//! confirmed it, so a hook that does not exist completes nothing.
//!
//! Heartbeats depend on time since the last one, which no record holds:
//! this process keeps the times, and a restarted operator (which has none)
//! records a heartbeat for every held VM at its first look, so a restart
//! never makes a VM wait out its timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use tracing::{debug, warn};

use super::status::{self, Signal};
use super::trigger::Trigger;
use crate::api::{LifecycleHookSpec, NomadClientPoolSpec, NomadClientPoolStatus, RetiringNode};
use crate::provider::{
    CloudProvider, GroupState, Lifecycle, LifecycleAction, LifecycleActionOutcome, ProviderError,
    QueueError,
};

/// The pool condition this module owns.
pub const CONDITION: &str = "LifecycleHook";
/// How long a confirmed hook is trusted before it is read again (someone may
/// delete it or, for a managed one, change it).
const CONFIRMED_FOR: Duration = Duration::from_secs(60);
/// How long a hook found missing or unreadable waits for the next look.
const RECHECK: Duration = Duration::from_secs(15);
/// How often a pool with a hook looks at its group, so that a held VM is
/// seen within about ten seconds (issue 16): the group view refreshes
/// after `GROUP_FRESH`, and the pool is woken every `LOOK_EVERY`.
pub const LOOK_EVERY: Duration = Duration::from_secs(5);
pub const GROUP_FRESH: Duration = Duration::from_secs(4);
/// Heartbeat calls in flight at once.
const HEARTBEAT_CALLS: usize = 8;

/// What the cloud says of the hook the spec names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookCheck {
    Ready {
        name: String,
        heartbeat_timeout: u32,
    },
    /// `mode: Existing` and the group has no hook of that name.
    Missing {
        name: String,
    },
    /// The hook holds launching instances, not terminating ones.
    NotTerminating {
        name: String,
        transition: String,
    },
    Failed {
        name: String,
        error: ProviderError,
    },
}

impl HookCheck {
    /// The hook's name when the planner may use it.
    pub fn ready(&self) -> Option<&str> {
        match self {
            HookCheck::Ready { name, .. } => Some(name),
            _ => None,
        }
    }

    fn signal(&self) -> Signal {
        match self {
            HookCheck::Ready {
                name,
                heartbeat_timeout,
            } => Signal::new(
                true,
                "HookReady",
                format!(
                    "lifecycle hook {name} holds terminating VMs until their clients are drained (heartbeat timeout {heartbeat_timeout}s)"
                ),
            ),
            HookCheck::Missing { name } => Signal::new(
                false,
                "HookNotFound",
                format!(
                    "the group has no lifecycle hook named {name}: VMs the group terminates are not protected and no lifecycle action is completed; create the hook or set lifecycleHook.mode: Managed"
                ),
            ),
            HookCheck::NotTerminating { name, transition } => Signal::new(
                false,
                "HookNotTerminating",
                format!(
                    "lifecycle hook {name} is for {transition}, not autoscaling:EC2_INSTANCE_TERMINATING: nothing is completed"
                ),
            ),
            HookCheck::Failed { name, error } => Signal::new(
                false,
                "HookCheckFailed",
                format!("reading lifecycle hook {name}: {error}"),
            ),
        }
    }
}

/// What a pool remembers of its hook between reconciles.
#[derive(Default)]
pub struct HookRuntime {
    checked: Mutex<Option<(Instant, HookCheck)>>,
    /// The last heartbeat recorded for each held VM.
    heartbeats: Mutex<HashMap<String, Instant>>,
    /// Held VMs whose global timeout this process warned about.
    pub warned: Warned,
    /// The receiver of `lifecycleHook.queueURL`, while the spec names one.
    queue: Mutex<Option<queue::QueueWatch>>,
    /// Held clients (node names) whose drain deadline the global timeout
    /// set, while they drain; each was announced by an Event.
    capped: Mutex<std::collections::BTreeSet<String>>,
    /// Events published once per lifecycle action.
    pub once: once::Once,
    /// Actions this process completed, until their retirements record it.
    pub completed: done::Completed,
    /// Events about capped drains not published yet (node, text).
    capped_news: Mutex<Vec<(String, String)>>,
}

impl HookRuntime {
    /// The confirmed hook's name, for calls made outside a plan.
    pub fn ready(&self) -> Option<String> {
        let checked = self.checked.lock().expect("hook lock");
        checked
            .as_ref()
            .and_then(|(_, c)| c.ready().map(str::to_owned))
    }
}

impl HookRuntime {
    /// Start, restart or stop the queue's receiver as the spec says.
    pub fn ensure_queue(
        &self,
        spec: &NomadClientPoolSpec,
        provider: &Arc<dyn CloudProvider>,
        trigger: &Trigger,
    ) {
        let wanted = spec_hook(spec).and_then(|h| Some((h.queue_url.as_deref()?, &h.name)));
        let group = (spec.provider.aws_auto_scaling_group.as_ref()).map(|g| g.name.clone());
        let mut current = self.queue.lock().expect("queue lock");
        let same = match (current.as_ref(), wanted) {
            (Some(q), Some((url, hook))) => q.url == url && q.hook == *hook,
            (None, None) => true,
            _ => false,
        };
        if same {
            return;
        }
        *current = wanted.map(|(url, hook)| {
            queue::QueueWatch::start(
                url,
                queue::QueueParts {
                    queue: provider.lifecycle_queue(url),
                    provider: provider.clone(),
                    group: group.unwrap_or_default(),
                    hook: hook.clone(),
                    trigger: trigger.clone(),
                },
            )
        });
    }

    /// The VMs the queue named and the group confirmed held.
    pub fn queued(&self) -> Vec<(String, Option<String>)> {
        let q = self.queue.lock().expect("queue lock");
        q.as_ref().map(|q| q.held()).unwrap_or_default()
    }

    /// The action token of a held VM: the queue's, else the one its
    /// retirement recorded (`recorded`, by instance ID; a restarted
    /// operator's only source until the queue gives the message again).
    pub fn token(&self, instance_id: &str, recorded: &HashMap<String, String>) -> Option<String> {
        let q = self.queue.lock().expect("queue lock");
        (q.as_ref().and_then(|q| q.token(instance_id)))
            .or_else(|| recorded.get(instance_id).cloned())
    }

    /// Give held clients drains that end before the global timeout (see
    /// `global::capped_drains`); keeps the Events to publish (node, text)
    /// for those not announced before (see [`HookRuntime::capped_news`]).
    pub fn cap_drains(
        &self,
        heartbeat_timeout: u32,
        tracked: &[RetiringNode],
        drains: &mut HashMap<String, crate::api::DrainPolicy>,
        pool_drain: &crate::api::DrainPolicy,
        now: Timestamp,
    ) {
        let capped = capped_drains(heartbeat_timeout, tracked, drains, pool_drain, now);
        let global = global_timeout_seconds(heartbeat_timeout);
        let mut announced = self.capped.lock().expect("capped lock");
        announced.retain(|n| {
            (tracked.iter())
                .any(|e| e.node_name == *n && e.phase < crate::api::RetirePhase::Terminating)
        });
        let mut news = Vec::new();
        for c in &capped {
            drains.insert(c.node_id.clone(), c.drain.clone());
            if announced.insert(c.node_name.clone()) {
                news.push((
                    c.node_name.clone(),
                    format!(
                        "the lifecycle hook's global timeout ({global}s) ends the wait of node {}'s VM whatever runs: its drain deadline is {}s, so Nomad stops what still runs then and the operator completes the action before AWS does",
                        c.node_name, c.deadline_seconds
                    ),
                ));
            }
        }
        drop(announced);
        self.capped_news.lock().expect("capped lock").extend(news);
    }

    /// The capped-drain Events to publish (node, text), once each.
    pub fn capped_news(&self) -> Vec<(String, String)> {
        std::mem::take(&mut *self.capped_news.lock().expect("capped lock"))
    }

    /// The queue's state, `None` when the spec names no queue.
    pub fn queue_state(&self) -> Option<(String, Option<QueueError>)> {
        let q = self.queue.lock().expect("queue lock");
        q.as_ref().map(|q| (q.url.clone(), q.problem()))
    }
}

pub fn spec_hook(spec: &NomadClientPoolSpec) -> Option<&LifecycleHookSpec> {
    spec.provider
        .aws_auto_scaling_group
        .as_ref()?
        .lifecycle_hook
        .as_ref()
}

/// The hook as the cloud has it now (read at most every `CONFIRMED_FOR`);
/// a managed hook that is missing or differs is put first.
pub async fn check(
    spec: &LifecycleHookSpec,
    provider: &dyn CloudProvider,
    runtime: &HookRuntime,
) -> HookCheck {
    {
        let checked = runtime.checked.lock().expect("hook lock");
        if let Some((at, c)) = checked.as_ref() {
            let valid_for = if c.ready().is_some() {
                CONFIRMED_FOR
            } else {
                RECHECK
            };
            let same = match c {
                HookCheck::Ready { name, .. }
                | HookCheck::Missing { name }
                | HookCheck::NotTerminating { name, .. }
                | HookCheck::Failed { name, .. } => *name == spec.name,
            };
            if same && at.elapsed() < valid_for {
                return c.clone();
            }
        }
    }
    let result = read_or_put(spec, provider).await;
    *runtime.checked.lock().expect("hook lock") = Some((Instant::now(), result.clone()));
    result
}

async fn read_or_put(spec: &LifecycleHookSpec, provider: &dyn CloudProvider) -> HookCheck {
    let name = spec.name.clone();
    let failed = |error| HookCheck::Failed {
        name: name.clone(),
        error,
    };
    let found = match provider.describe_lifecycle_hook(&spec.name).await {
        Ok(found) => found,
        Err(error) => return failed(error),
    };
    let wanted = spec.heartbeat_timeout();
    match found {
        Some(h) if !spec.managed() && !h.is_terminating() => HookCheck::NotTerminating {
            name,
            transition: h.transition,
        },
        Some(h) if !spec.managed() || (h.is_terminating() && h.heartbeat_timeout == wanted) => {
            HookCheck::Ready {
                name,
                heartbeat_timeout: h.heartbeat_timeout,
            }
        }
        None if !spec.managed() => HookCheck::Missing { name },
        _ => match provider.put_lifecycle_hook(&spec.name, wanted).await {
            Ok(()) => HookCheck::Ready {
                name,
                heartbeat_timeout: wanted,
            },
            Err(error) => failed(error),
        },
    }
}

/// The pool's `LifecycleHook` condition after this check (removed when the
/// spec names no hook); the reason of a new warning to publish, if the
/// condition turned false or changed its reason.
pub fn condition(
    status: &mut NomadClientPoolStatus,
    previous: &NomadClientPoolStatus,
    check: Option<&HookCheck>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<(String, String)> {
    let Some(check) = check else {
        status.conditions.retain(|c| c.type_ != CONDITION);
        return None;
    };
    let signal = (CONDITION, check.signal());
    status::set_with_news(status, previous, signal, generation, now)
}

/// The pool condition on drains the hook's global timeout shortens.
pub const GLOBAL_CONDITION: &str = "LifecycleGlobalTimeout";

/// The pool's `LifecycleGlobalTimeout` condition, while a hook is ready:
/// `False` while some held client drains under a deadline the global
/// timeout set (jobs still running then are stopped), `True` otherwise.
pub fn global_condition(
    status: &mut NomadClientPoolStatus,
    runtime: &HookRuntime,
    check: Option<&HookCheck>,
    generation: Option<i64>,
    now: Timestamp,
) {
    let Some(HookCheck::Ready {
        heartbeat_timeout, ..
    }) = check
    else {
        status.conditions.retain(|c| c.type_ != GLOBAL_CONDITION);
        return;
    };
    let global = global_timeout_seconds(*heartbeat_timeout);
    let capped = runtime.capped.lock().expect("capped lock");
    let names: Vec<&str> = capped.iter().map(String::as_str).collect();
    let signal = if names.is_empty() {
        Signal::new(
            true,
            "WithinGlobalTimeout",
            format!("no held client's drain is cut short by the hook's global timeout ({global}s)"),
        )
    } else {
        Signal::new(
            false,
            "DrainDeadlineCapped",
            format!(
                "the hook's global timeout ({global}s, min(48 h, 100 x heartbeat timeout)) cannot be extended: the drains of {} end before it, stopping jobs that still run then; set a shorter drain.deadline, or a longer heartbeat timeout",
                names.join(", ")
            ),
        )
    };
    status.conditions = status::merge(
        &status.conditions,
        &[(GLOBAL_CONDITION, signal)],
        generation,
        now,
    );
}

/// The pool condition the queue's receiver reports on.
pub const QUEUE_CONDITION: &str = "LifecycleQueue";

fn queue_signal(url: &str, problem: Option<&QueueError>) -> Signal {
    match problem {
        None => Signal::new(
            true,
            "QueueReading",
            format!("receiving the lifecycle hook's notifications from {url}"),
        ),
        Some(e) => {
            let reason = match e {
                QueueError::BadUrl { .. } => "QueueURLInvalid",
                QueueError::NotFound { .. } => "QueueNotFound",
                QueueError::Denied { .. } => "QueueAccessDenied",
                QueueError::Failed { .. } => "QueueUnreadable",
            };
            Signal::new(
                false,
                reason,
                format!(
                    "{e}; to fix: {}. Held VMs are still found from the group, every ~5 s",
                    e.what_to_fix()
                ),
            )
        }
    }
}

/// The pool's `LifecycleQueue` condition (removed when the spec names no
/// queue); the reason and message of a new warning, as [`condition`].
pub fn queue_condition(
    status: &mut NomadClientPoolStatus,
    previous: &NomadClientPoolStatus,
    state: Option<(String, Option<QueueError>)>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<(String, String)> {
    let Some((url, problem)) = state else {
        status.conditions.retain(|c| c.type_ != QUEUE_CONDITION);
        return None;
    };
    let signal = (QUEUE_CONDITION, queue_signal(&url, problem.as_ref()));
    status::set_with_news(status, previous, signal, generation, now)
}

/// The held VM of each retirement still draining, as an action to heartbeat.
fn held_draining<'a>(
    group: &'a GroupState,
    retiring: &'a [RetiringNode],
) -> impl Iterator<Item = &'a str> + 'a {
    retiring
        .iter()
        .filter(|e| e.phase < crate::api::RetirePhase::Terminating)
        .filter_map(|e| e.instance_id.as_deref())
        .filter(|id| {
            group
                .instance(id)
                .is_some_and(|i| i.lifecycle == Lifecycle::TerminatingWait)
        })
}

/// A heartbeat that failed, for the pool's `ActionFailed` report.
#[derive(Debug, thiserror::Error)]
#[error("recording a lifecycle heartbeat for {instance_id}: {source}")]
pub struct HeartbeatFailed {
    pub instance_id: String,
    #[source]
    pub source: ProviderError,
}

/// Record a heartbeat for every held VM whose client still drains, a third
/// of the hook's heartbeat timeout after the last one (and at once for a
/// VM this process has not heartbeated yet).
pub async fn heartbeat(
    provider: &dyn CloudProvider,
    runtime: &HookRuntime,
    (hook, heartbeat_timeout): (&str, u32),
    group: &GroupState,
    retiring: &[RetiringNode],
    recorded: &HashMap<String, String>,
) -> Vec<HeartbeatFailed> {
    let every = Duration::from_secs(u64::from(heartbeat_timeout) / 3);
    let due: Vec<String> = {
        let mut last = runtime.heartbeats.lock().expect("heartbeat lock");
        let held: Vec<&str> = held_draining(group, retiring).collect();
        last.retain(|id, _| held.contains(&id.as_str()));
        (held.into_iter())
            .filter(|id| last.get(*id).is_none_or(|at| at.elapsed() >= every))
            .map(str::to_owned)
            .collect()
    };
    // Boxed eagerly: a lazy map over borrowed values trips the controller's
    // Send check.
    type Call<'a> =
        futures::future::BoxFuture<'a, (String, Result<LifecycleActionOutcome, ProviderError>)>;
    let calls: Vec<Call<'_>> = due
        .into_iter()
        .map(|instance_id| {
            let action = LifecycleAction {
                hook: hook.to_owned(),
                token: runtime.token(&instance_id, recorded),
                instance_id,
            };
            Box::pin(async move {
                let result = provider.record_lifecycle_action_heartbeat(&action).await;
                (action.instance_id, result)
            }) as Call<'_>
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(calls)
        .buffer_unordered(HEARTBEAT_CALLS)
        .collect()
        .await;
    let mut failures = Vec::new();
    let mut last = runtime.heartbeats.lock().expect("heartbeat lock");
    for (instance_id, result) in results {
        match result {
            Ok(LifecycleActionOutcome::Applied) => {
                debug!(instance_id, hook, "lifecycle heartbeat recorded");
                last.insert(instance_id, Instant::now());
            }
            // The action ended (timed out, or someone completed it): the VM
            // goes; the retirement sees it leave the group.
            Ok(LifecycleActionOutcome::NotActive) => {
                warn!(
                    instance_id,
                    hook, "no lifecycle action to heartbeat: it ended"
                );
                last.insert(instance_id, Instant::now());
            }
            Err(source) => failures.push(HeartbeatFailed {
                instance_id,
                source,
            }),
        }
    }
    failures
}

mod done;
mod global;
mod once;
pub mod queue;
pub use global::{
    CappedDrain, GlobalCap, Warned, capped_drains, global_cap, global_timeout_seconds,
    warnings as global_timeout_warnings,
};

#[cfg(test)]
mod tests;
