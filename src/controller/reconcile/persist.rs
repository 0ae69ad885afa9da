//! Persist: the status a plan leads to, written before any of its side
//! effects (the write-ahead record a restarted controller adopts from),
//! and every status write of the reconciler.

use std::time::Duration;

use kube::api::PostParams;
use kube::{Api, ResourceExt};

use super::super::plan::{self, Action};
use super::super::{Context, Error, status};
use crate::api::{NomadClientPool, NomadClientPoolStatus};

/// How long a status whose only news is progress figures (counts,
/// messages; see `status::only_progress_differs`) may wait for the next write.
pub const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(5);

/// What the write-ahead step did.
pub struct Persisted {
    pub written: bool,
    /// Only progress figures changed and we wrote recently: not written now,
    /// the pool is requeued soon to write them.
    pub progress_waits: bool,
}

/// Write-ahead: the status names every action (but a purge) before it
/// runs; with such actions to follow, the write is also the check that no
/// newer copy of the pool exists. Without, a status with nothing new is not
/// written, and one with only new progress figures waits a little if we
/// wrote recently (each write rewrites every entry of the pool).
pub async fn write_ahead(
    pool: &NomadClientPool,
    ctx: &Context,
    previous: &NomadClientPoolStatus,
    next: &NomadClientPoolStatus,
    planned: &plan::Plan,
) -> Result<Persisted, Error> {
    let write_ahead = planned.actions.iter().any(Action::needs_write_ahead);
    let progress_only = status::only_progress_differs(previous, next);
    let progress_waits = progress_only
        && !write_ahead
        && ctx.own_writes.written_within(pool, PROGRESS_WRITE_INTERVAL);
    let written = !progress_waits && (next != previous || write_ahead);
    if written {
        write_status(pool, ctx, next).await?;
    }
    Ok(Persisted {
        written,
        progress_waits,
    })
}

pub async fn write_status(
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
