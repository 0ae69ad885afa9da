//! Act: the side effects a plan names, run after its write-ahead status is
//! persisted. Terminate calls run on their own tasks; node actions side by
//! side; group actions last.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use kube::ResourceExt;
use tracing::{Instrument, debug, warn};

use super::super::hooks::HeartbeatFailed;
use super::super::plan::{self, Action};
use super::super::siblings::{self, LastCheckError};
use super::super::{PoolRuntime, drain_meta};
use super::early;
use super::observe::Observed;
use super::turns::MAX_CHECK_AGE;
use crate::api::{DrainPolicy, NomadClientPool};
use crate::nomad::{DrainRequest, DrainSpec, NomadError};
use crate::provider::{LifecycleAction, LifecycleActionOutcome, ProviderError, TerminateOutcome};

/// Nomad and cloud calls of one reconcile in flight at once.
const ACTION_CONCURRENCY: usize = 16;

/// An action that failed; retried by a later reconcile, and named in the
/// pool's `ActionFailed` condition and Event.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A cordon, drain, release or purge Nomad refused or did not answer.
    #[error("{0}")]
    Nomad(#[source] NomadError),
    #[error("setting desired capacity to {desired}: {source}")]
    SetDesiredCapacity {
        desired: u32,
        #[source]
        source: ProviderError,
    },
    #[error("terminating {instance_id}: {source}")]
    Terminate {
        instance_id: String,
        #[source]
        source: ProviderError,
    },
    /// The last look at the VM's nodes before the call stopped it.
    #[error("terminating {instance_id}: {source}")]
    TerminateWithheld {
        instance_id: String,
        #[source]
        source: LastCheckError,
    },
    #[error("completing the lifecycle action of {instance_id}: {source}")]
    CompleteLifecycleAction {
        instance_id: String,
        #[source]
        source: ProviderError,
    },
    #[error(transparent)]
    Heartbeat(#[from] HeartbeatFailed),
}

impl ActionError {
    /// What failed, as the `action` label of `nomadpool_action_failures_total`.
    pub const fn kind(&self) -> &'static str {
        match self {
            ActionError::Nomad(_) => "nomad",
            ActionError::SetDesiredCapacity { .. } => "set_desired_capacity",
            ActionError::Terminate { .. } => "terminate",
            ActionError::TerminateWithheld { .. } => "terminate_withheld",
            ActionError::CompleteLifecycleAction { .. } => "complete_lifecycle_action",
            ActionError::Heartbeat(_) => "heartbeat",
        }
    }
}

/// Run the plan's actions (but the terminates and drains the write-ahead
/// step already took on, `ahead`), telling each client's as it ran
/// (`acted`); the failures, with those of terminate calls that ended since
/// the last reconcile.
pub async fn act(
    pool: &NomadClientPool,
    rt: &Arc<PoolRuntime>,
    seen: &Observed,
    planned: &plan::Plan,
    names: &HashMap<String, String>,
    ahead: &early::Ahead,
    acted: &(dyn Fn(&str) + Sync),
) -> Vec<ActionError> {
    // The retirement of each client, named in its drain's Meta.
    let named = |a: &Action| a.node_id().and_then(|n| names.get(n)).map(String::as_str);
    // Terminate calls run on their own: a slow or throttled cloud must not
    // hold the next drained node back until every call of this reconcile
    // returned. The write-ahead status already names them; the in-flight
    // set keeps the next reconciles from sending one again, and the end of
    // each call wakes the pool.
    let mut terminates_running = false;
    for action in &planned.actions {
        if let Action::Terminate { instance_id, .. } = action
            && !ahead.instances.contains(instance_id)
        {
            terminates_running |= start_terminate(rt, seen, action);
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
        .filter(|a| match a {
            Action::Terminate { .. } | Action::CompleteLifecycleAction { .. } => false,
            Action::Drain { node_id, .. } => !ahead.drains.contains(node_id),
            _ => true,
        })
        .partition(|a| a.node_id().is_some());
    // Built eagerly (boxed) rather than mapped lazily in the stream: a lazy
    // map over borrowed actions trips the Send check of the controller.
    let calls: Vec<futures::future::BoxFuture<'_, Option<ActionError>>> = node_actions
        .into_iter()
        .map(|action| {
            Box::pin(async move {
                let failed = run_logged(pool, rt, &seen.drains, named(action), action).await;
                acted(action.node_id().unwrap_or_default());
                failed
            }) as _
        })
        .collect();
    let mut failures: Vec<ActionError> =
        std::mem::take(&mut *rt.cloud_failures.lock().expect("failures lock"));
    if let Some(hook) = seen.lifecycle_hook.as_deref() {
        failures.extend(complete_actions(rt, (hook, &seen.tokens), &planned.actions).await);
    }
    failures.extend(
        futures::stream::iter(calls)
            .buffered(ACTION_CONCURRENCY)
            .filter_map(|e| async move { e })
            .collect::<Vec<_>>()
            .await,
    );
    if !terminates_running {
        for action in group_actions {
            failures.extend(run_logged(pool, rt, &seen.drains, named(action), action).await);
        }
    }
    failures
}

/// Start the terminate `action` names unless one for its instance is
/// running; whether one runs now. Called once its retirement's record
/// (`Terminating`) landed: by the write-ahead step as soon as that one
/// write did, or by `act`.
pub fn start_terminate(rt: &Arc<PoolRuntime>, seen: &Observed, action: &Action) -> bool {
    let Action::Terminate {
        instance_id,
        decrement,
        first_attempt,
        ..
    } = action
    else {
        return false;
    };
    let known = siblings::known_on(instance_id, &seen.instance_nodes, &seen.nodes);
    spawn_terminate(rt, instance_id, *decrement, *first_attempt, known)
}

/// Start a terminate call unless one for the instance is running; whether
/// one runs now.
pub(super) fn spawn_terminate(
    rt: &Arc<PoolRuntime>,
    instance_id: &str,
    decrement: bool,
    first_attempt: bool,
    known_on_vm: HashSet<String>,
) -> bool {
    if rt.group.leaving(instance_id) {
        return false;
    }
    if !rt
        .terminating
        .lock()
        .expect("terminating lock")
        .insert(instance_id.to_owned())
    {
        return true;
    }
    let rt = rt.clone();
    let instance_id = instance_id.to_owned();
    let span = tracing::info_span!("terminate", instance = %instance_id);
    tokio::spawn(
        async move {
            let check = || rt.siblings.last_check(&instance_id, &known_on_vm);
            let turn = rt.terminate_turns.checked_turn(MAX_CHECK_AGE, check);
            let _turn = match turn.await {
                Ok(turn) => turn,
                Err(e) => {
                    warn!(error = %e, "terminate withheld");
                    let failure = ActionError::TerminateWithheld {
                        instance_id: instance_id.clone(),
                        source: e,
                    };
                    rt.cloud_failures
                        .lock()
                        .expect("failures lock")
                        .push(failure);
                    rt.terminating
                        .lock()
                        .expect("terminating lock")
                        .remove(&instance_id);
                    return;
                }
            };
            debug!("last check passed; calling the cloud");
            let call = if first_attempt {
                rt.provider.terminate_new_instance(&instance_id, decrement)
            } else {
                rt.provider.terminate_instance(&instance_id, decrement)
            };
            let result = call.await;
            // Only a landed termination wakes the pool at once; anything else
            // waits for the pool's own requeue and back-off, or a call that
            // keeps failing (or finds the instance gone) would spin it.
            let wake = matches!(result, Ok(TerminateOutcome::Terminated));
            if wake && let Some(hook) = rt.hooks.ready() {
                // Our own terminate of a drained client: the group's hook
                // holds the VM now; let it go at once instead of after the
                // heartbeat timeout. A hook of someone else's that holds it
                // too is theirs to complete.
                let token = rt.hooks.token(&instance_id, &HashMap::new());
                if let Err(e) = complete(&rt, &hook, &instance_id, token).await {
                    rt.cloud_failures.lock().expect("failures lock").push(e);
                }
            }
            match &result {
                Ok(outcome) => rt.group.terminated(&instance_id, decrement, outcome),
                Err(e) => {
                    warn!(error = %e, "terminate failed; retried on the next reconcile");
                    rt.group.forget();
                    rt.cloud_failures
                        .lock()
                        .expect("failures lock")
                        .push(ActionError::Terminate {
                            instance_id: instance_id.clone(),
                            source: e.clone(),
                        });
                }
            }
            rt.terminating
                .lock()
                .expect("terminating lock")
                .remove(&instance_id);
            if wake {
                rt.trigger.fire();
            }
        }
        .instrument(span),
    );
    true
}

/// Completions of lifecycle actions, side by side. Each may repeat one that
/// landed before (a restart, a view not refreshed yet): AWS then answers
/// that no action is active, which is success here.
/// `recorded`: the tokens the pool's retirements record, by instance ID.
async fn complete_actions(
    rt: &PoolRuntime,
    (hook, recorded): (&str, &HashMap<String, String>),
    actions: &[Action],
) -> Vec<ActionError> {
    // Boxed eagerly, as the node actions are: a lazy map trips the Send check.
    let calls: Vec<futures::future::BoxFuture<'_, Result<(), ActionError>>> = actions
        .iter()
        .filter_map(|a| match a {
            Action::CompleteLifecycleAction { instance_id, .. } => {
                let token = rt.hooks.token(instance_id, recorded);
                Some(Box::pin(complete(rt, hook, instance_id, token)) as _)
            }
            _ => None,
        })
        .collect();
    futures::stream::iter(calls)
        .buffer_unordered(ACTION_CONCURRENCY)
        .filter_map(|r| async move { r.err() })
        .collect()
        .await
}

/// Complete one action (with its token when known: not logged). Once it
/// is over for us (completed now, or found no longer pending) this process
/// remembers it until the retirement records it: it is not sent again.
async fn complete(
    rt: &PoolRuntime,
    hook: &str,
    instance_id: &str,
    token: Option<String>,
) -> Result<(), ActionError> {
    let by_token = token.is_some();
    let action = LifecycleAction {
        hook: hook.to_owned(),
        instance_id: instance_id.to_owned(),
        token,
    };
    match rt.provider.complete_lifecycle_action(&action).await {
        Ok(LifecycleActionOutcome::Applied) => {
            debug!(instance_id, hook, by_token, "lifecycle action completed");
            rt.hooks
                .completed
                .record(instance_id, jiff::Timestamp::now());
            // The VM proceeds: read the group afresh on the next look
            // rather than complete it again from the old view.
            rt.group.forget();
            Ok(())
        }
        Ok(LifecycleActionOutcome::NotActive) => {
            debug!(
                instance_id,
                hook, by_token, "no lifecycle action active: completed before"
            );
            rt.hooks
                .completed
                .record(instance_id, jiff::Timestamp::now());
            Ok(())
        }
        Err(source) => {
            warn!(instance_id, hook, error = %source, "completing the lifecycle action failed; retried on the next reconcile");
            Err(ActionError::CompleteLifecycleAction {
                instance_id: instance_id.to_owned(),
                source,
            })
        }
    }
}

/// A drain whose own record landed, run by the write-ahead step while the
/// other records are written (`early`); its retirement is `name`.
pub async fn drain_early(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    seen: &Observed,
    action: &Action,
    name: &str,
) -> Option<ActionError> {
    run_logged(pool, rt, &seen.drains, Some(name), action).await
}

/// Run one action in a span naming its node; the error, if any, for status.
/// `drains`: the clients whose retirement sets its own drain; `retirement`:
/// the action's client's, named in its drain's Meta.
async fn run_logged(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    drains: &HashMap<String, DrainPolicy>,
    retirement: Option<&str>,
    action: &Action,
) -> Option<ActionError> {
    let span = tracing::info_span!("action", node = action.node_id().unwrap_or("-"));
    let result = run_action(pool, rt, (drains, retirement), action)
        .instrument(span)
        .await;
    if let Err(e) = &result {
        warn!(?action, error = %e, "action failed; retried on the next reconcile");
    }
    result.err()
}

async fn run_action(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    (drains, retirement): (&HashMap<String, DrainPolicy>, Option<&str>),
    action: &Action,
) -> Result<(), ActionError> {
    let nomad = &rt.nomad;
    let result = match action {
        Action::Cordon { node_id } => nomad
            .set_eligibility(node_id, false)
            .await
            .map(|r| rt.wrote(node_id, r.index)),
        Action::Drain { node_id, mark } => {
            let drain = drains.get(node_id).unwrap_or(&pool.spec.drain);
            let spec = match drain.deadline.as_deref().and_then(plan::parse_go_duration) {
                Some(d) => DrainSpec::with_deadline(d.unsigned_abs(), drain.ignore_system_jobs),
                None => DrainSpec::no_deadline(drain.ignore_system_jobs),
            };
            let meta = drain_meta::with_retirement(
                drain_meta::drain_meta(
                    &format!(
                        "{}/{}",
                        pool.namespace().unwrap_or_default(),
                        pool.name_any()
                    ),
                    &pool.uid().unwrap_or_default(),
                    mark,
                ),
                retirement,
            );
            let req = DrainRequest {
                drain_spec: Some(spec),
                mark_eligible: false,
                meta,
            };
            nomad.drain(node_id, &req).await.map(|r| {
                rt.wrote(node_id, r.index);
                rt.drain_resends.accepted(node_id, r.index);
            })
        }
        Action::Release {
            node_id,
            mark_eligible,
        } => {
            // Cancel through the drain endpoint even when no drain shows yet:
            // one just sent may not be visible, and on an idle node Nomad
            // only applies MarkEligible.
            let req = DrainRequest {
                drain_spec: None,
                mark_eligible: *mark_eligible,
                meta: [(
                    "cancel_message".to_string(),
                    "retirement cancelled by nomad-pool-operator".to_string(),
                )]
                .into(),
            };
            nomad
                .drain(node_id, &req)
                .await
                .map(|r| rt.wrote(node_id, r.index))
        }
        Action::Purge { node_id } => match nomad.purge(node_id).await {
            Err(NomadError::NodeNotFound { .. }) => Ok(()),
            other => other.map(|r| rt.wrote(node_id, r.index)),
        },
        Action::Terminate { .. } | Action::CompleteLifecycleAction { .. } => {
            unreachable!("cloud calls of a VM run on their own, see spawn_terminate")
        }
        Action::SetDesiredCapacity { desired } => {
            let result = rt.provider.set_desired_capacity(*desired).await;
            match &result {
                Ok(()) => rt.group.desired_set(*desired),
                Err(_) => rt.group.forget(),
            }
            return result.map_err(|source| ActionError::SetDesiredCapacity {
                desired: *desired,
                source,
            });
        }
    };
    result.map_err(ActionError::Nomad)
}
