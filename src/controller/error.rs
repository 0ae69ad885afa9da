//! Why a reconcile fails and is retried with back-off. Trouble with Nomad
//! or the cloud is not here: it is reported in status and requeued.

use super::reconcile::CleanupError;
use super::retirement::write::WriteError;

/// Errors that make a reconcile fail and retry with backoff. Trouble with
/// Nomad or the cloud is not here: it is reported in status and requeued.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("writing the pool's status failed: {0}")]
    StatusWrite(#[source] kube::Error),
    #[error("{0}")]
    RetirementWrite(#[source] WriteError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cleanup on deletion: {0}")]
    Cleanup(#[source] CleanupError),
    /// An action started ahead of the pool's status write found a newer
    /// spec than the plan's (`PoolsSeen::spec_moved_on`): what the status
    /// write's compare-and-swap would have refused.
    #[error(
        "the pool's spec changed since this reconcile planned; its actions wait for the next plan"
    )]
    SpecMovedOn,
}

impl Error {
    /// A write refused because the pool or one of its retirements changed
    /// since the copy it was made from: not a failure to back off from.
    pub fn is_conflict(&self) -> bool {
        let inner = match self {
            Error::Finalizer(f) => match f.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
                _ => return false,
            },
            e => e,
        };
        match inner {
            Error::StatusWrite(kube::Error::Api(s)) => s.code == 409,
            Error::RetirementWrite(w) => w.is_conflict(),
            Error::SpecMovedOn => true,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn a_spec_that_moved_on_is_retried_soon_like_a_refused_status_write() {
        assert!(Error::SpecMovedOn.is_conflict());
        let inside = kube::runtime::finalizer::Error::ApplyFailed(Error::SpecMovedOn);
        assert!(Error::Finalizer(Box::new(inside)).is_conflict());
    }
}
