//! The retirement writes a VM waits on, and the bulk writes that give way
//! to them.
//!
//! A drained client's VM is terminated only once its retirement's
//! `Terminating` record landed (the express lane's write, or a reconcile's
//! own write of it); every other write of a reconcile (creates, the records
//! of drains about to start, final statuses) waits for nothing that users
//! wait on. Both share the API server, which on a busy machine answers in
//! proportion to what is in flight: at 20,000 clients one terminate's record
//! took ~250 ms to land while a reconcile's write step had up to 32 writes
//! out (16 records, 16 of its own terminates' records), and most of the
//! retirements over 0.5 s were drained during such a step (BENCHMARKS.md,
//! twenty-third pass). So a bulk write does not start
//! while a write a VM waits on is in flight, for at most [`MAX_YIELD`]
//! each: the bulk goes on at a pace, never stops for good.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// The longest a bulk write waits for the urgent ones before it goes anyway.
const MAX_YIELD: Duration = Duration::from_millis(250);

/// The urgent writes in flight (of every pool: they share the API server).
pub struct Urgent {
    in_flight: AtomicUsize,
    idle: Notify,
    max_yield: Duration,
}

impl Default for Urgent {
    fn default() -> Self {
        Self::yielding_at_most(MAX_YIELD)
    }
}

/// One urgent write in flight, until dropped.
pub struct UrgentWrite<'a>(&'a Urgent);

impl Drop for UrgentWrite<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Urgent {
    fn yielding_at_most(max_yield: Duration) -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            max_yield,
        }
    }

    /// Mark a write a VM waits on as in flight.
    pub fn begin(&self) -> UrgentWrite<'_> {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        UrgentWrite(self)
    }

    /// Before a bulk write: wait until no urgent write is in flight, or
    /// [`MAX_YIELD`] passed.
    pub async fn give_way(&self) {
        let until = tokio::time::Instant::now() + self.max_yield;
        loop {
            // Registered before the check, so a drop to idle in between is
            // not missed.
            let idle = self.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if self.in_flight.load(Ordering::Acquire) == 0 {
                return;
            }
            if tokio::time::timeout_at(until, idle).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Real time (paused time needs tokio's `test-util`, see
    /// `turns_tests`): the bounds are far apart from the sleeps.
    const LONG: Duration = Duration::from_secs(600);
    const SHORT: Duration = Duration::from_millis(50);

    #[tokio::test]
    async fn bulk_waits_for_the_urgent_writes_then_goes() {
        let urgent = Urgent::yielding_at_most(LONG);
        let start = Instant::now();
        urgent.give_way().await;
        assert!(start.elapsed() < LONG / 2, "nothing urgent: at once");

        let first = urgent.begin();
        let second = urgent.begin();
        let bulk = async {
            urgent.give_way().await;
            Instant::now()
        };
        let ends = async {
            tokio::time::sleep(SHORT).await;
            drop(first);
            tokio::time::sleep(SHORT).await;
            drop(second);
            Instant::now()
        };
        let (went, last_ended) = tokio::time::timeout(LONG / 2, futures::future::join(bulk, ends))
            .await
            .expect("goes once the last urgent write ended, long before the bound");
        assert!(went >= last_ended, "waited for both urgent writes");
    }

    #[tokio::test]
    async fn bulk_waits_no_longer_than_the_bound() {
        let urgent = Urgent::yielding_at_most(SHORT);
        let _held = urgent.begin();
        let start = Instant::now();
        tokio::time::timeout(LONG, urgent.give_way())
            .await
            .expect("the bound ends the wait");
        assert!(start.elapsed() >= SHORT);
    }
}
