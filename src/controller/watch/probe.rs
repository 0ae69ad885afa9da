//! The pool's check that Nomad's index has not gone back (a snapshot
//! restore, a rebuilt cluster), and the regressions it and the node watch
//! count for the reconcile.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::PoolWatch;

/// How often a busy pool checks that Nomad's index has not gone back.
const INDEX_PROBE_INTERVAL: Duration = Duration::from_secs(10);

impl PoolWatch {
    /// While retirements wait on Nomad, check now and then (one small
    /// leader read per `INDEX_PROBE_INTERVAL`, never while the pool is idle)
    /// that Nomad's node table has not gone back behind the view at
    /// `view_index` or any view before it since the last regression. After
    /// a snapshot restore every parked query waits on an index the cluster
    /// no longer reaches: without this the pool would sit still for
    /// minutes. (The node watch lists again when the restore ends its
    /// event stream, so the view itself may already carry the lower index.
    /// A server that stopped applying the log answers lower too: the
    /// queries parked on it would wait as long, so it is treated alike.)
    pub fn probe_index(&self, view_index: u64) {
        let high = self
            .probe_high
            .fetch_max(view_index, Ordering::Relaxed)
            .max(view_index);
        {
            let mut last = self.last_probe.lock().expect("probe lock");
            if last.is_some_and(|at| at.elapsed() < INDEX_PROBE_INTERVAL) {
                return;
            }
            *last = Some(Instant::now());
        }
        let client = self.client.clone();
        let regressions = self.regressions.clone();
        let relist = self.relist.clone();
        let trigger = self.trigger.clone();
        let probe_high = self.probe_high.clone();
        tokio::spawn(async move {
            match client.nodes_table_index().await {
                Ok(index) if index < high => {
                    warn!(
                        index,
                        view_index = high,
                        "Nomad's node index went backwards; reading everything again"
                    );
                    // The cluster's past: compare later views with its present.
                    probe_high.store(index, Ordering::Relaxed);
                    regressions.fetch_add(1, Ordering::Relaxed);
                    relist.notify_one();
                    trigger.fire();
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "Nomad index probe failed"),
            }
        });
    }

    /// Whether Nomad's index went backwards since the last call. An
    /// allocation query parked on an index the cluster no longer reaches
    /// would wait out its whole wait (Nomad answers only once the index
    /// passes the one asked for), so the pool restarts those queries.
    pub fn index_went_backwards_since_seen(&self) -> bool {
        let now = self.regressions.load(Ordering::Relaxed);
        self.regressions_seen.swap(now, Ordering::Relaxed) != now
    }

    /// Whether a regression waits for `index_went_backwards_since_seen`,
    /// which is left to it.
    pub fn index_regression_unseen(&self) -> bool {
        self.regressions_seen.load(Ordering::Relaxed) != self.regressions.load(Ordering::Relaxed)
    }
}
