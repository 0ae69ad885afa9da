//! Why a reconcile fails and is retried with back-off. Trouble with Nomad
//! or the cloud is not here: it is reported in status and requeued.

use super::reconcile::CleanupError;

/// Errors that make a reconcile fail and retry with backoff. Trouble with
/// Nomad or the cloud is not here: it is reported in status and requeued.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the pool's status failed: {0}")]
    StatusWrite(#[source] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cleanup on deletion: {0}")]
    Cleanup(#[source] CleanupError),
}

impl Error {
    /// A write refused because the pool changed since the copy it was made
    /// from: not a failure to back off from.
    pub fn is_conflict(&self) -> bool {
        let status_write = match self {
            Error::StatusWrite(e) => Some(e),
            Error::Finalizer(f) => match f.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(Error::StatusWrite(e))
                | kube::runtime::finalizer::Error::CleanupFailed(Error::StatusWrite(e)) => Some(e),
                _ => None,
            },
            Error::Cleanup(_) => None,
        };
        matches!(status_write, Some(kube::Error::Api(s)) if s.code == 409)
    }
}
