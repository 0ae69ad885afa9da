//! Back-off for blocking queries whose answers go backwards.
//!
//! An answer with a lower index than the one sent resets the query to a
//! plain read (see `next_blocking_index`). Where that keeps happening (two
//! clusters behind one address, a server restored from an old snapshot
//! answering at once), read, reset and read again made hundreds of requests
//! per watch every few seconds. Each watch therefore waits a little longer
//! after every backwards answer, and starts afresh once an answer moves on.

use std::time::Duration;

use rand::Rng;

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
