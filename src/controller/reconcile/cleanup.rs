//! The finalizer's side: what a deleted pool gives back before it goes.

use std::sync::Arc;

use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use tracing::warn;

use super::super::retirement::ledger::LedgerError;
use super::super::retirement::records;
use super::super::retirement::write::{self, WriteError};
use super::super::runtime::runtime;
use super::super::{Context, Error};
use super::report::{forget_metrics, publish};
use crate::api::{NomadClientPool, RetirePhase};
use crate::nomad::{DrainRequest, NomadError};

/// Why a deleted pool's finalizer stays: a node it cordoned could not be
/// returned to service yet. The cleanup is retried.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    #[error("returning {node} to service: {source}")]
    Release {
        node: String,
        #[source]
        source: NomadError,
    },
    #[error("Nomad is unreachable; cannot return cordoned nodes to service")]
    NomadUnreachable,
    #[error("{0}")]
    Retirements(#[source] LedgerError),
    /// The pool's retirement objects could not be removed.
    #[error("{0}")]
    RemoveRetirements(#[source] WriteError),
}

/// The pool is being deleted: never terminate anything. Nodes that were only
/// selected or cordoned go back to service; drains already running are left
/// to finish (their jobs are already moving) and named in an event. The
/// pool's retirement objects are deleted with it.
pub(super) async fn cleanup(
    pool: Arc<NomadClientPool>,
    ctx: Arc<Context>,
) -> Result<Requeue, Error> {
    let key = ObjectRef::from_obj(pool.as_ref());
    let retirements = ctx
        .ledgers
        .of_pool(&pool)
        .await
        .map_err(|e| Error::Cleanup(CleanupError::Retirements(e)))?;
    let legacy = pool.status.clone().unwrap_or_default().retiring;
    let retiring =
        records::tracked(&retirements, &legacy, jiff::Timestamp::now(), &|_| false).entries;
    let rt = match runtime(&pool, &ctx).await {
        Ok(rt) => Some(rt),
        Err(t) => {
            warn!(
                reason = t.reason,
                "cannot reach Nomad while deleting the pool: {}", t.message
            );
            None
        }
    };
    let mut released = Vec::new();
    let mut left = Vec::new();
    for r in &retiring {
        // A VM no client registered on, not terminated yet: nothing in
        // Nomad to give back, and the VM stays.
        if !r.reason.has_node() && r.phase != RetirePhase::Terminating {
            continue;
        }
        match r.phase {
            RetirePhase::Selected | RetirePhase::Cordoned | RetirePhase::Cancelling => {
                if let Some(rt) = &rt {
                    let result =
                        if r.phase == RetirePhase::Cordoned || r.phase == RetirePhase::Cancelling {
                            // A drain may have been sent just before the status write.
                            let req = DrainRequest {
                                drain_spec: None,
                                mark_eligible: r.cordoned_by_pool,
                                meta: Default::default(),
                            };
                            rt.nomad.drain(&r.node_id, &req).await.map(drop)
                        } else if r.cordoned_by_pool {
                            rt.nomad.set_eligibility(&r.node_id, true).await.map(drop)
                        } else {
                            Ok(())
                        };
                    match result {
                        Ok(()) | Err(NomadError::NodeNotFound { .. }) => {
                            released.push(r.node_name.clone())
                        }
                        Err(e) => {
                            // Keep the finalizer: returning an error retries the cleanup.
                            return Err(Error::Cleanup(CleanupError::Release {
                                node: r.node_name.clone(),
                                source: e,
                            }));
                        }
                    }
                } else {
                    return Err(Error::Cleanup(CleanupError::NomadUnreachable));
                }
            }
            _ => left.push(format!("{} ({})", r.node_name, r.phase)),
        }
    }
    let mut message = String::from("pool deleted; no VM was terminated by the deletion");
    if !released.is_empty() {
        message.push_str(&format!("; returned to service: {}", released.join(", ")));
    }
    if !left.is_empty() {
        message.push_str(&format!(
            "; left as they were (drain already running, or VM already terminating): {}",
            left.join(", ")
        ));
    }
    publish(
        &ctx,
        &pool,
        EventType::Normal,
        "PoolDeleted",
        &message,
        None,
    );
    // The objects go with the pool: owner references are not collected in
    // every cluster, and a finalizer would keep each one forever.
    let api = Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    write::remove_all(&api, &ctx.ledgers, &retirements)
        .await
        .map_err(|e| Error::Cleanup(CleanupError::RemoveRetirements(e)))?;
    ctx.pools.lock().expect("pools lock").remove(&key);
    ctx.own_writes.forget(&pool);
    forget_metrics(&format!(
        "{}/{}",
        pool.namespace().unwrap_or_default(),
        pool.name_any()
    ));
    Ok(Requeue::await_change())
}
