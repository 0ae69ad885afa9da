//! The writes `sync` chose, against the API server, side by side. Each
//! write-ahead write (a create, a status) must land before the reconcile
//! acts; each one is remembered in the ledger until the store shows it.

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt, stream};
use kube::api::DeleteParams;
use kube::{Api, ResourceExt};
use tracing::debug;

use super::sync::{StatusWrite, Writes, adopted_object};
use super::{FINALIZER, Ledgers};
use crate::api::{
    NomadClientPool, NomadClientRetirement, NomadClientRetirementStatus, RetirementPhase,
};
use crate::controller::post_params;

/// Write-ahead records of one reconcile in flight at once: actions wait on
/// them.
pub const WRITE_CONCURRENCY: usize = 16;

/// Writes of one reconcile that no action waits on (final statuses,
/// progress, finalizers released, history pruned) in flight at once. They
/// share the API server with the express lane's terminate records, which
/// a drained client's VM waits on. At 16 a reconcile's batch of ~250 final
/// statuses held each record landing meanwhile behind 16 others: the
/// 20,000-client scale-in's retire p50 / p99 were ~480 ms / 1.5-2.1 s, at
/// two ~70 ms / 0.84-1.11 s (BENCHMARKS.md, twenty-second pass). The batch
/// takes longer, and nothing waits on it but the next reconcile.
pub const BACKGROUND_CONCURRENCY: usize = 2;

/// A retirement write the API server refused or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("creating retirement {name}: {source}")]
    Create {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("taking over retirement {name}: {source}")]
    Adopt {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing the status of retirement {name}: {source}")]
    Status {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("removing the finalizer of retirement {name}: {source}")]
    Finalizer {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting finished retirement {name}: {source}")]
    Prune {
        name: String,
        #[source]
        source: kube::Error,
    },
}

impl WriteError {
    /// Someone changed the object since we read it: retry on the newer copy.
    pub fn is_conflict(&self) -> bool {
        let source = match self {
            WriteError::Create { source, .. }
            | WriteError::Adopt { source, .. }
            | WriteError::Status { source, .. }
            | WriteError::Finalizer { source, .. }
            | WriteError::Prune { source, .. } => source,
        };
        matches!(source, kube::Error::Api(s) if s.code == 409)
    }
}

/// The write-ahead half: objects created, hand-made ones taken over, new
/// statuses. The reconcile acts only once these all landed.
pub async fn write_ahead(
    api: &Api<NomadClientRetirement>,
    pool: &NomadClientPool,
    ledger: &Ledgers,
    writes: &Writes,
) -> Result<(), WriteError> {
    let creates = writes
        .creates
        .iter()
        .map(|(obj, status)| Box::pin(create(api, pool, ledger, obj, status)) as Call<'_>);
    let adopts = (writes.adopts.iter()).map(|w| Box::pin(adopt(api, pool, ledger, w)) as Call<'_>);
    let statuses = (writes.statuses.iter())
        .map(|w| Box::pin(write_status(api, ledger, &w.object, &w.status)) as Call<'_>);
    run(
        ledger,
        creates.chain(adopts).chain(statuses).collect(),
        WRITE_CONCURRENCY,
    )
    .await
}

/// Statuses no action of the reconcile rests on (`persist::ActedOn`: the
/// record left as it was, or no action about its client), written after
/// the actions. A conflict means a newer record landed, the express lane's
/// for this client: this one must not go over it, and the next reconcile
/// writes it again if still news.
pub async fn progress(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    writes: &Writes,
) -> Result<(), WriteError> {
    let statuses = (writes.statuses.iter())
        .map(|w| {
            Box::pin(async move {
                match write_status(api, ledger, &w.object, &w.status).await {
                    Err(e) if e.is_conflict() => {
                        debug!(error = %e, "progress not written: a newer record landed");
                        Ok(())
                    }
                    other => other,
                }
            }) as Call<'_>
        })
        .collect();
    run(ledger, statuses, BACKGROUND_CONCURRENCY).await
}

/// The retirements the plan let go of: their final statuses (each with its
/// finalizer dropped). Written before the pool's status, which counts the
/// retired ones by name: a crash in between leaves them finished and
/// uncounted, and the next reconcile counts them, exactly once.
pub async fn finish_all(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    writes: &Writes,
) -> Result<(), WriteError> {
    // Until each final status lands the planner must not see them again.
    for w in &writes.finishes {
        ledger.finishing(&w.object);
    }
    let finishes = (writes.finishes.iter())
        .map(|w| Box::pin(finish(api, ledger, w, writes)) as Call<'_>)
        .collect();
    run(ledger, finishes, BACKGROUND_CONCURRENCY).await
}

/// After the pool's status: finalizers of deleted retirements given up,
/// the history pruned.
pub async fn wind_up(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    writes: &Writes,
) -> Result<(), WriteError> {
    let finished: Vec<String> = writes
        .finishes
        .iter()
        .map(|w| w.object.name_any())
        .collect();
    let releases = (writes.releases.iter())
        .filter(|r| !finished.contains(&r.name_any()))
        .map(|r| Box::pin(release(api, ledger, r)) as Call<'_>)
        .collect();
    run(ledger, releases, BACKGROUND_CONCURRENCY).await?;
    let prunes = (writes.prunes.iter())
        .map(|r| Box::pin(prune(api, ledger, r)) as Call<'_>)
        .collect();
    run(ledger, prunes, BACKGROUND_CONCURRENCY).await
}

/// One write, boxed: built eagerly rather than mapped lazily in the stream,
/// where a map over borrowed items trips the controller's Send check.
type Call<'a> = BoxFuture<'a, Result<(), WriteError>>;

/// `calls`, `at_once` at a time, each started once it gave way to the
/// writes a VM waits on (`Urgent`).
async fn run(ledger: &Ledgers, calls: Vec<Call<'_>>, at_once: usize) -> Result<(), WriteError> {
    // Boxed eagerly, as the calls are (see `Call`).
    let calls: Vec<Call<'_>> = (calls.into_iter())
        .map(|call| {
            Box::pin(async move {
                ledger.urgent.give_way().await;
                call.await
            }) as Call<'_>
        })
        .collect();
    stream::iter(calls)
        .buffer_unordered(at_once)
        .try_collect::<Vec<()>>()
        .await
        .map(drop)
}

async fn create(
    api: &Api<NomadClientRetirement>,
    pool: &NomadClientPool,
    ledger: &Ledgers,
    obj: &NomadClientRetirement,
    status: &NomadClientRetirementStatus,
) -> Result<(), WriteError> {
    let name = obj.name_any();
    let created = match api.create(&post_params(), obj).await {
        Ok(created) => created,
        // Created by a write whose answer was lost, or by an earlier
        // process: it is ours if it names the same client.
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let existing = api.get(&name).await.map_err(|source| WriteError::Create {
                name: name.clone(),
                source,
            })?;
            if existing.spec != obj.spec || existing.phase().is_finished() {
                return Err(WriteError::Create {
                    name,
                    source: kube::Error::Api(s),
                });
            }
            existing
        }
        Err(source) => return Err(WriteError::Create { name, source }),
    };
    ledger.wrote(None, created.clone());
    write_status(api, ledger, &created, status).await?;
    count_start(pool, obj, status);
    Ok(())
}

/// A retirement starts when its first record lands in the phase a
/// selection writes (`Cordoned`, the drain going out with it; `Selected`
/// for a broken client, only cordoned), counted then and only then: a plan
/// whose writes failed is planned (and its clients selected) again, and an
/// object created for a drain already under way (adopted after a lost
/// status) starts in a later phase.
fn count_start(
    pool: &NomadClientPool,
    obj: &NomadClientRetirement,
    status: &NomadClientRetirementStatus,
) {
    if matches!(
        status.phase,
        Some(RetirementPhase::Selected | RetirementPhase::Cordoned)
    ) {
        let key = format!(
            "{}/{}",
            pool.namespace().unwrap_or_default(),
            pool.name_any()
        );
        crate::metrics::metrics().retirement_started(&key, obj.spec.reason.as_str());
    }
}

async fn adopt(
    api: &Api<NomadClientRetirement>,
    pool: &NomadClientPool,
    ledger: &Ledgers,
    w: &StatusWrite,
) -> Result<(), WriteError> {
    let name = w.object.name_any();
    let owned = api
        .replace(&name, &post_params(), &adopted_object(pool, &w.object))
        .await
        .map_err(|source| WriteError::Adopt {
            name: name.clone(),
            source,
        })?;
    ledger.wrote(w.object.resource_version(), owned.clone());
    write_status(api, ledger, &owned, &w.status).await?;
    count_start(pool, &w.object, &w.status);
    Ok(())
}

/// One new status, alone (a terminate's record, which it waits on): the
/// bulk writes give way to it.
pub async fn status(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    w: &StatusWrite,
) -> Result<(), WriteError> {
    let _urgent = ledger.urgent.begin();
    write_status(api, ledger, &w.object, &w.status).await
}

/// A new retirement (its object, then its first record) whose drain starts
/// once both landed: it gives way like the bulk writes.
pub async fn create_giving_way(
    api: &Api<NomadClientRetirement>,
    pool: &NomadClientPool,
    ledger: &Ledgers,
    (obj, status): &(NomadClientRetirement, NomadClientRetirementStatus),
) -> Result<(), WriteError> {
    ledger.urgent.give_way().await;
    create(api, pool, ledger, obj, status).await
}

/// One new status whose action starts once it lands, but that a VM does
/// not wait on (a drain's record): it gives way like the bulk writes.
pub async fn status_giving_way(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    w: &StatusWrite,
) -> Result<(), WriteError> {
    ledger.urgent.give_way().await;
    write_status(api, ledger, &w.object, &w.status).await
}

async fn write_status(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    obj: &NomadClientRetirement,
    status: &NomadClientRetirementStatus,
) -> Result<(), WriteError> {
    let name = obj.name_any();
    let mut body = obj.clone();
    body.status = Some(status.clone());
    // A replace with the version we read: a compare-and-swap, so a reconcile
    // working from a stale copy never writes a phase over a newer one.
    let written = api
        .replace_status(&name, &post_params(), &body)
        .await
        .map_err(|source| WriteError::Status { name, source })?;
    ledger.wrote(obj.resource_version(), written);
    Ok(())
}

async fn finish(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    w: &StatusWrite,
    writes: &Writes,
) -> Result<(), WriteError> {
    let name = w.object.name_any();
    let mut body = (*w.object).clone();
    body.status = Some(w.status.clone());
    let written = match api.replace_status(&name, &post_params(), &body).await {
        Ok(written) => written,
        Err(kube::Error::Api(s)) if s.code == 404 => {
            ledger.deleted(&w.object);
            ledger.finished(&w.object);
            return Ok(());
        }
        Err(source) => return Err(WriteError::Status { name, source }),
    };
    ledger.wrote(w.object.resource_version(), written.clone());
    ledger.finished(&w.object);
    if writes
        .releases
        .iter()
        .any(|r| r.name_any() == written.name_any())
    {
        release(api, ledger, &written).await?;
    }
    Ok(())
}

async fn release(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    obj: &NomadClientRetirement,
) -> Result<(), WriteError> {
    let name = obj.name_any();
    let mut body = obj.clone();
    body.finalizers_mut().retain(|f| f != FINALIZER);
    match api.replace(&name, &post_params(), &body).await {
        Ok(after)
            if obj.metadata.deletion_timestamp.is_none() || !after.finalizers().is_empty() =>
        {
            ledger.wrote(obj.resource_version(), after);
            Ok(())
        }
        // The last finalizer of a deleted object (it is gone now), or gone already.
        Ok(_) => gone(ledger, obj),
        Err(kube::Error::Api(s)) if s.code == 404 => gone(ledger, obj),
        Err(source) => Err(WriteError::Finalizer { name, source }),
    }
}

async fn prune(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    obj: &NomadClientRetirement,
) -> Result<(), WriteError> {
    let name = obj.name_any();
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => gone(ledger, obj),
        Err(kube::Error::Api(s)) if s.code == 404 => gone(ledger, obj),
        Err(source) => Err(WriteError::Prune { name, source }),
    }
}

fn gone(ledger: &Ledgers, obj: &NomadClientRetirement) -> Result<(), WriteError> {
    ledger.deleted(obj);
    Ok(())
}

/// Every retirement of a deleted pool: finalizers dropped, objects deleted.
pub async fn remove_all(
    api: &Api<NomadClientRetirement>,
    ledger: &Ledgers,
    retirements: &[std::sync::Arc<NomadClientRetirement>],
) -> Result<(), WriteError> {
    let releases = (retirements.iter())
        .filter(|r| r.finalizers().iter().any(|f| f == FINALIZER))
        .map(|r| Box::pin(release(api, ledger, r)) as Call<'_>)
        .collect();
    // Sixteen at a time: a deleted pool has no lane of its own left to
    // yield to (each write still gives way to other pools' urgent ones).
    run(ledger, releases, WRITE_CONCURRENCY).await?;
    let deletes = (retirements.iter())
        .map(|r| Box::pin(prune(api, ledger, r)) as Call<'_>)
        .collect();
    run(ledger, deletes, WRITE_CONCURRENCY).await
}
