//! A pool's turns to call the cloud's terminate, and the last checks that
//! run ahead of them.
//!
//! Each VM's last check (a filtered node list) runs before its turn, so a
//! turn holds the cloud call and not a list as well; a turn that comes more
//! than [`MAX_CHECK_AGE`] after the check passed is checked again inside it,
//! so that nothing registers unseen while a VM waits.
//!
//! How many VMs are checked ahead follows the pace of the checks and of the
//! turns: as many as the calls take while a check runs and then half the
//! age. By Little's law a VM stays in that set (VMs ahead) / (calls per
//! second), its check and its wait for a turn. A fixed three per call made
//! every VM wait three calls: once calls slowed past a third of the age
//! (213-290 ms at 20,000 clients on a busy machine) a sixth of the VMs were
//! checked again inside their turn, each such turn held a list as well as
//! a call, and where that happened the pool terminated a third as many VMs
//! a second (BENCHMARKS.md, fifteenth pass). The check's own time counts
//! too: sized on the turns alone, the set would leave that much less for
//! the wait.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::debug;

use super::super::siblings::LastCheckError;

/// How old a passed last check may be when its call goes; an older one is
/// made again first.
pub const MAX_CHECK_AGE: Duration = Duration::from_secs(1);
/// The wait for a turn, once checked, that the VMs ahead are sized for:
/// half the age, so that a turn a little late still finds its check young
/// enough.
const AHEAD_WAIT: Duration = Duration::from_millis(500);
/// At most this many VMs per call are checked ahead, whatever the pace: the
/// fixed number before the pace (BENCHMARKS.md, fourteenth pass), so a
/// fast cloud (5,000 clients, calls of 8 ms) sees no change.
const MOST_AHEAD_PER_CALL: usize = 3;
/// The pace assumed before a turn ended: a fast call and an instant check,
/// so a pool starts with the most checked ahead.
const FIRST_TURN: Duration = Duration::from_millis(100);
/// Weight of the newest turn or check in the pace (a moving average over
/// about ten, one per call in flight at the default).
const PACE_WEIGHT: f64 = 0.1;

/// VMs checked ahead of `calls` turns that each last `turn`, when a check
/// takes `check`: those the calls take while a check runs and then
/// [`AHEAD_WAIT`], at least one, at most [`MOST_AHEAD_PER_CALL`] per call.
fn ahead_limit(calls: usize, turn: Duration, check: Duration) -> usize {
    let stay = check.as_secs_f64() + AHEAD_WAIT.as_secs_f64();
    let per_call = stay / turn.as_secs_f64().max(1e-3);
    // Truncation is the point: fewer ahead, never a longer wait.
    let limit = (calls as f64 * per_call) as usize;
    limit.clamp(1, MOST_AHEAD_PER_CALL * calls.max(1))
}

/// The turns of one pool.
pub struct TerminateTurns {
    calls: Semaphore,
    n_calls: usize,
    /// VMs whose last check runs or passed while they wait for a turn.
    ahead: Semaphore,
    pace: Mutex<Pace>,
}

struct Pace {
    /// The moving averages of a turn's length and of a check's (from its
    /// place ahead to its answer), in seconds.
    turn_secs: f64,
    check_secs: f64,
    /// Permits `ahead` has in all, taken or not.
    ahead_total: usize,
}

impl Pace {
    fn limit(&self, calls: usize) -> usize {
        let secs = Duration::from_secs_f64;
        ahead_limit(calls, secs(self.turn_secs), secs(self.check_secs))
    }

    /// Fold `took` into `average`.
    fn fold(average: &mut f64, took: Duration) {
        *average += PACE_WEIGHT * (took.as_secs_f64() - *average);
    }
}

/// A VM's place among those checked ahead; given back (or retired, when the
/// pace lowered the limit) on drop.
struct AheadSlot<'a> {
    permit: Option<SemaphorePermit<'a>>,
    turns: &'a TerminateTurns,
}

impl Drop for AheadSlot<'_> {
    fn drop(&mut self) {
        let mut pace = self.turns.pace.lock().expect("pace lock");
        if pace.ahead_total > pace.limit(self.turns.n_calls)
            && let Some(permit) = self.permit.take()
        {
            // Shrinks the set as VMs leave it: a semaphore cannot take
            // back permits that others wait for.
            permit.forget();
            pace.ahead_total -= 1;
        }
    }
}

/// A turn to call the cloud; its length feeds the pace when it ends.
pub struct Turn<'a> {
    _permit: SemaphorePermit<'a>,
    turns: &'a TerminateTurns,
    since: Instant,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.turns.turn_ended(self.since.elapsed());
    }
}

impl TerminateTurns {
    /// `calls` turns (at least one).
    pub fn new(calls: usize) -> Self {
        let n_calls = calls.max(1);
        let pace = Pace {
            turn_secs: FIRST_TURN.as_secs_f64(),
            check_secs: 0.0,
            ahead_total: ahead_limit(n_calls, FIRST_TURN, Duration::ZERO),
        };
        Self {
            calls: Semaphore::new(n_calls),
            n_calls,
            ahead: Semaphore::new(pace.ahead_total),
            pace: Mutex::new(pace),
        }
    }

    /// How many VMs may be checked ahead now.
    #[cfg(test)]
    fn ahead_limit(&self) -> usize {
        self.pace.lock().expect("pace lock").limit(self.n_calls)
    }

    fn turn_ended(&self, took: Duration) {
        self.repace(|pace| Pace::fold(&mut pace.turn_secs, took));
    }

    fn check_ended(&self, took: Duration) {
        self.repace(|pace| Pace::fold(&mut pace.check_secs, took));
    }

    /// Change the pace with `change`, and the VMs ahead with it.
    fn repace(&self, change: impl FnOnce(&mut Pace)) {
        let mut pace = self.pace.lock().expect("pace lock");
        change(&mut pace);
        let limit = pace.limit(self.n_calls);
        if limit > pace.ahead_total {
            self.ahead.add_permits(limit - pace.ahead_total);
            pace.ahead_total = limit;
        } else {
            // Those free now go at once; those taken, as their VMs leave.
            pace.ahead_total -= self.ahead.forget_permits(pace.ahead_total - limit);
        }
    }

    /// The last check of a VM (`check`), then its turn, held until the
    /// call's answer. The check comes before the turn (see the module's
    /// doc); a turn that comes more than `max_age` after the check passed
    /// is checked again first.
    pub async fn checked_turn<F, C>(
        &self,
        max_age: Duration,
        check: F,
    ) -> Result<Turn<'_>, LastCheckError>
    where
        F: Fn() -> C,
        C: Future<Output = Result<(), LastCheckError>>,
    {
        let permit = (self.ahead.acquire().await).expect("the check semaphore is never closed");
        let ahead = AheadSlot {
            permit: Some(permit),
            turns: self,
        };
        debug!("terminate decided; last check of the VM's nodes");
        let asked = Instant::now();
        // No wake-up on a refusal: the watch that shows the new node does.
        let first = check().await;
        self.check_ended(asked.elapsed());
        first?;
        let checked = Instant::now();
        let permit = (self.calls.acquire().await).expect("the terminate semaphore is never closed");
        let turn = Turn {
            _permit: permit,
            turns: self,
            since: Instant::now(),
        };
        drop(ahead);
        if checked.elapsed() > max_age {
            debug!("the turn came long after the last check; checking again");
            check().await?;
        }
        Ok(turn)
    }
}

#[cfg(test)]
#[path = "turns_tests.rs"]
mod tests;
