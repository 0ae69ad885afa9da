//! Wake-ups: what the Nomad and cloud watches fire to have a pool
//! reconciled, and the channel's receiving end as the controller's stream.

use kube::runtime::reflector::ObjectRef;
use tokio::sync::mpsc;

use crate::api::NomadClientPool;

/// Wakes the reconciler for one pool.
#[derive(Clone)]
pub struct Trigger {
    tx: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
    pool: ObjectRef<NomadClientPool>,
}

impl Trigger {
    pub fn new(
        tx: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
        pool: ObjectRef<NomadClientPool>,
    ) -> Self {
        Self { tx, pool }
    }
    pub(crate) fn fire(&self) {
        // The controller dedups queued requests for the same pool, so a burst
        // of changes costs one reconcile.
        let _ = self.tx.send(self.pool.clone());
    }
}

/// `tokio::sync::mpsc::UnboundedReceiver` as a `Stream`, without pulling in
/// tokio-stream for one adapter.
pub mod stream {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc::UnboundedReceiver;

    pub struct UnboundedReceiverStream<T>(pub UnboundedReceiver<T>);

    impl<T> futures::Stream for UnboundedReceiverStream<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
            self.0.poll_recv(cx)
        }
    }
}
