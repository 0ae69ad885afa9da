//! Wake-ups: what the Nomad and cloud watches fire to have a pool
//! reconciled, the throttle that spaces them out per pool, and the channel's
//! receiving end as the controller's stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

use crate::api::NomadClientPool;

/// Wakes the reconciler for one pool, and its express lane.
#[derive(Clone)]
pub struct Trigger {
    tx: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
    pool: ObjectRef<NomadClientPool>,
    /// The pool's express lane (see `reconcile::express`): every change a
    /// watch reports may be a drained client it can terminate at once.
    lane: Option<Arc<Notify>>,
}

impl Trigger {
    pub fn new(
        tx: mpsc::UnboundedSender<ObjectRef<NomadClientPool>>,
        pool: ObjectRef<NomadClientPool>,
    ) -> Self {
        Self {
            tx,
            pool,
            lane: None,
        }
    }

    /// The same trigger, waking `lane` too.
    pub fn with_lane(self, lane: Arc<Notify>) -> Self {
        Self {
            lane: Some(lane),
            ..self
        }
    }

    pub(crate) fn fire(&self) {
        // The controller dedups queued requests for the same pool, so a burst
        // of changes costs one reconcile; the lane takes a burst in one pass.
        let _ = self.tx.send(self.pool.clone());
        if let Some(lane) = &self.lane {
            lane.notify_one();
        }
    }
}

/// Spaces out the wake-ups of each pool: the first one after a quiet spell
/// passes at once, later ones are held until `min_interval` after the last
/// one that passed, and all those held for a pool pass as one.
///
/// Every reconcile plans the whole pool, so its cost grows with the pool's
/// size. During a large scale-in something changes for some client almost
/// all the time (an allocation finishes, a drain ends, a VM goes), and
/// reconciling once per change ran back to back: 2,205 reconciles of a
/// 5,000-client pool in 200 s, their CPU the operator's largest cost. A
/// leading edge keeps a lone change (the common case) as fast as before,
/// where a trailing debounce would delay every one and could hold a busy
/// pool off forever.
pub struct Throttle<K> {
    min_interval: Duration,
    /// When each key last passed, and whether one is held for it.
    keys: HashMap<K, (Instant, bool)>,
}

/// What to do with a wake-up.
#[derive(Debug, PartialEq, Eq)]
pub enum Pass {
    Now,
    /// Hold it and offer it again (`release`) at this instant.
    At(Instant),
    /// One is already held: this one rides along.
    Merged,
}

impl<K: std::hash::Hash + Eq + Clone> Throttle<K> {
    pub fn new(min_interval: Duration) -> Self {
        Self {
            min_interval,
            keys: HashMap::new(),
        }
    }

    pub fn offer(&mut self, key: &K, now: Instant) -> Pass {
        self.offer_spaced(key, now, Duration::ZERO)
    }

    /// `offer`, with this key's wake-ups at least `spacing` apart.
    pub fn offer_spaced(&mut self, key: &K, now: Instant, spacing: Duration) -> Pass {
        let interval = self.min_interval.max(spacing);
        match self.keys.get_mut(key) {
            Some((_, true)) => Pass::Merged,
            Some((last, held)) if now < *last + interval => {
                *held = true;
                Pass::At(*last + interval)
            }
            _ => {
                self.keys.insert(key.clone(), (now, false));
                Pass::Now
            }
        }
    }

    /// A held wake-up's time came: it passes now.
    pub fn release(&mut self, key: &K, now: Instant) {
        self.keys.insert(key.clone(), (now, false));
        // Keys quiet for long are forgotten, so the map follows the pools
        // that exist rather than every pool ever seen.
        let horizon = self.min_interval.max(Duration::from_secs(1)) * 60;
        self.keys
            .retain(|_, (last, held)| *held || now.duration_since(*last) < horizon);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_passes_at_once_the_rest_are_held_and_merged_into_one() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut t = Throttle::new(ms(200));
        assert_eq!(t.offer(&"a", t0), Pass::Now);
        // Another pool is not held by this one.
        assert_eq!(t.offer(&"b", t0 + ms(10)), Pass::Now);
        assert_eq!(t.offer(&"a", t0 + ms(50)), Pass::At(t0 + ms(200)));
        assert_eq!(t.offer(&"a", t0 + ms(120)), Pass::Merged);
        t.release(&"a", t0 + ms(200));
        // Right after a release, the next one waits a whole interval again.
        assert_eq!(t.offer(&"a", t0 + ms(250)), Pass::At(t0 + ms(400)));
        t.release(&"a", t0 + ms(400));
        // After a quiet spell, at once.
        assert_eq!(t.offer(&"a", t0 + ms(700)), Pass::Now);
        // A pool spaced wider than the minimum waits its own spacing.
        let spaced = t.offer_spaced(&"a", t0 + ms(800), ms(1000));
        assert_eq!(spaced, Pass::At(t0 + ms(1700)));
    }
}
