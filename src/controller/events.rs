//! Kubernetes Events on pools, published off the reconcile path.
//!
//! A retirement emits six Events (Selected … Retired), each an API round
//! trip. Published inline they ran one after another at the end of every
//! reconcile, so a slow or struggling API server held back the next
//! reconcile and every node waiting on it. One background task per process
//! publishes them in order instead; the reconcile only queues them. (In the
//! scale-in bench the measured gain was small: the status write, not the
//! Events, is what a reconcile waits on there; see BENCHMARKS.md.)

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use tokio::sync::mpsc;
use tracing::warn;

/// Events waiting to be published. Beyond this the API server is far behind
/// (or down), and newer Events are dropped with a warning rather than held
/// in memory without bound; status and logs carry the same facts.
const QUEUE: usize = 10_000;

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<(Event, ObjectReference)>,
}

impl EventSink {
    /// Start the publishing task (needs a Tokio runtime).
    pub fn start(recorder: Recorder) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        tokio::spawn(async move {
            while let Some((ev, reference)) = rx.recv().await {
                if let Err(e) = recorder.publish(&ev, &reference).await {
                    warn!(error = %e, reason = ev.reason, "publishing event failed");
                }
            }
        });
        EventSink { tx }
    }

    /// Queue an Event; never waits.
    pub fn publish(&self, ev: Event, reference: ObjectReference) {
        if let Err(e) = self.tx.try_send((ev, reference)) {
            let (ev, _) = e.into_inner();
            warn!(
                reason = ev.reason,
                "event queue full ({QUEUE}); event dropped"
            );
        }
    }
}
