//! Back-off for blocking queries whose answers go backwards, and quick
//! retries for a read that completes one already answered.
//!
//! An answer with a lower index than the one sent resets the query to a
//! plain read (see `next_blocking_index`). Where that keeps happening (two
//! clusters behind one address, a server restored from an old snapshot
//! answering at once), read, reset and read again made hundreds of requests
//! per watch every few seconds. Each watch therefore waits a little longer
//! after every backwards answer, and starts afresh once an answer moves on.

use std::future::Future;
use std::time::Duration;

use rand::Rng;
use tracing::debug;

use crate::nomad::NomadError;

const FIRST: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) struct IndexBackoff {
    next: Duration,
}

impl Default for IndexBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl IndexBackoff {
    /// After a read sent with index `sent` answered with `returned`: how long
    /// to wait before the next read. A blocking read whose answer did not go
    /// back is progress and resets the back-off; the plain read that
    /// follows a reset (`sent == 0`) says nothing either way.
    pub(super) fn after(&mut self, sent: u64, returned: u64) -> Duration {
        if sent == 0 {
            return Duration::ZERO;
        }
        if returned >= sent {
            self.next = FIRST;
            return Duration::ZERO;
        }
        // Jitter in [d/2, d]: watches that went backwards together do not
        // come back in step.
        let wait = self.next.mul_f64(rand::rng().random_range(0.5..=1.0));
        self.next = (self.next * 2).min(MAX);
        wait
    }
}

/// Attempts `quickly` makes, and its first pause (doubled after each).
const QUICK_ATTEMPTS: u32 = 3;
const QUICK_FIRST: Duration = Duration::from_millis(200);

/// Run `read` again after a retryable error, a few times within a second.
/// For a read that completes an answer already in hand (the opted-out list
/// after the pool's list): failing it throws that answer away and puts the
/// whole watch on its back-off, which under a steady rate of 5xx made a
/// two-request list fail twice as often as one request and could leave the
/// pool blind for minutes at the 30 s cap.
pub(super) async fn quickly<T, F, Fut>(what: &str, mut read: F) -> Result<T, NomadError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, NomadError>>,
{
    let mut pause = QUICK_FIRST;
    let mut attempt = 1;
    loop {
        match read().await {
            Err(e) if e.is_retryable() && attempt < QUICK_ATTEMPTS => {
                debug!(error = %e, attempt, "{what} failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
#[test]
fn backs_off_exponentially_while_answers_go_backwards_and_resets_on_progress() {
    let mut b = IndexBackoff::default();
    assert_eq!(b.after(0, 50), Duration::ZERO, "a plain read");
    assert_eq!(b.after(50, 60), Duration::ZERO, "progress");
    let mut last = Duration::ZERO;
    for i in 0..12 {
        let w = b.after(100, 40);
        let cap = (FIRST * 2u32.pow(i)).min(MAX);
        assert!(
            w >= cap / 2 && w <= cap,
            "{i}: {w:?} outside [{:?}, {cap:?}]",
            cap / 2
        );
        assert_eq!(b.after(0, 40), Duration::ZERO, "the resync read");
        last = w;
    }
    assert!(last >= MAX / 2);
    assert_eq!(b.after(40, 40), Duration::ZERO, "a wait that ran out");
    assert!(b.after(100, 40) <= FIRST, "reset after progress");
}

#[cfg(test)]
mod quick_tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn server_error() -> NomadError {
        NomadError::Api {
            endpoint: "/v1/nodes".into(),
            status: 500,
            message: "rpc error".into(),
        }
    }

    #[tokio::test]
    async fn a_transient_failure_is_read_again_and_a_lasting_one_is_not_hidden() {
        let calls = AtomicU32::new(0);
        let third_time_lucky = quickly("read", || {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move { if n < 2 { Err(server_error()) } else { Ok(n) } }
        })
        .await;
        assert_eq!(third_time_lucky.unwrap(), 2);

        calls.store(0, Ordering::Relaxed);
        let lasting: Result<(), _> = quickly("read", || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(server_error()) }
        })
        .await;
        assert!(matches!(lasting, Err(NomadError::Api { status: 500, .. })));
        assert_eq!(calls.load(Ordering::Relaxed), QUICK_ATTEMPTS);

        // A refusal will not fix itself: one request, its error returned.
        calls.store(0, Ordering::Relaxed);
        let refused: Result<(), _> = quickly("read", || {
            calls.fetch_add(1, Ordering::Relaxed);
            async { Err(NomadError::InvalidToken) }
        })
        .await;
        assert!(matches!(refused, Err(NomadError::InvalidToken)));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }
}
