//! The side effects a plan names, run after its write-ahead status is
//! persisted: Nomad writes, and cloud calls timed and counted per operation.

use super::*;

/// Time a cloud call and count it by operation and outcome.
pub(super) async fn cloud<T, E>(
    operation: &str,
    call: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = call.await;
    metrics().cloud_request(operation, result.is_ok(), started.elapsed());
    result
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
            // No wake-up on a refusal: the watch that shows the new node does.
            if let Err(e) = rt.siblings.last_check(&instance_id, &known_on_vm).await {
                warn!(error = %e, "terminate withheld");
                let failure = format!("terminating {instance_id}: {e}");
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
            let call = if first_attempt {
                rt.provider.terminate_new_instance(&instance_id, decrement)
            } else {
                rt.provider.terminate_instance(&instance_id, decrement)
            };
            let result = cloud("TerminateInstance", call).await;
            // Only a landed termination wakes the pool at once; anything else
            // waits for the pool's own requeue and back-off, or a call that
            // keeps failing (or finds the instance gone) would spin it.
            let wake = matches!(result, Ok(TerminateOutcome::Terminated));
            match &result {
                Ok(outcome) => rt.group.terminated(&instance_id, decrement, outcome),
                Err(e) => {
                    warn!(error = %e, "terminate failed; retried on the next reconcile");
                    rt.group.forget();
                    rt.cloud_failures
                        .lock()
                        .expect("failures lock")
                        .push(format!("terminating {instance_id}: {e}"));
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

/// Run one action in a span naming its node; the error, if any, for status.
pub(super) async fn run_logged(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    action: &Action,
) -> Option<String> {
    let span = tracing::info_span!("action", node = action.node_id().unwrap_or("-"));
    let result = run_action(pool, rt, action).instrument(span).await;
    if let Err(e) = &result {
        warn!(?action, error = %e, "action failed; retried on the next reconcile");
    }
    result.err()
}

pub(super) async fn run_action(
    pool: &NomadClientPool,
    rt: &PoolRuntime,
    action: &Action,
) -> Result<(), String> {
    let nomad = &rt.nomad;
    let result = match action {
        Action::Cordon { node_id } => nomad
            .set_eligibility(node_id, false)
            .await
            .map(|r| rt.wrote(node_id, r.index)),
        Action::Drain { node_id, mark } => {
            let spec = match pool
                .spec
                .drain
                .deadline
                .as_deref()
                .and_then(plan::parse_go_duration)
            {
                Some(d) => {
                    DrainSpec::with_deadline(d.unsigned_abs(), pool.spec.drain.ignore_system_jobs)
                }
                None => DrainSpec::no_deadline(pool.spec.drain.ignore_system_jobs),
            };
            let meta = plan::drain_meta(
                &format!(
                    "{}/{}",
                    pool.namespace().unwrap_or_default(),
                    pool.name_any()
                ),
                &pool.uid().unwrap_or_default(),
                mark,
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
        Action::Terminate { .. } => {
            unreachable!("terminate calls run on their own, see spawn_terminate")
        }
        Action::SetDesiredCapacity { desired } => {
            let result = cloud(
                "SetDesiredCapacity",
                rt.provider.set_desired_capacity(*desired),
            )
            .await;
            match &result {
                Ok(()) => rt.group.desired_set(*desired),
                Err(_) => rt.group.forget(),
            }
            return result.map_err(|e| format!("setting desired capacity to {desired}: {e}"));
        }
    };
    result.map_err(|e| format!("{e}"))
}
