//! The pool's view of its cloud group, kept off the reconcile's critical path.
//!
//! Cloud groups are not watchable, and describing a large one is slow (moto
//! takes ~0.5 s for 5,000 instances; clouds rate-limit describes). A reconcile
//! that waits for a fresh read before every terminate makes each drained node
//! wait that long. So a reconcile plans on the last answer while it is young
//! enough, a single background read refreshes it, and our own mutations are
//! applied to it as they land, and again to the answer of any read that was
//! out meanwhile (the cloud would show them on the next read anyway). That
//! is safe because nothing irreversible is decided on it alone: the
//! provider re-reads an instance before terminating it, and a plan that
//! sets the desired capacity is made on a fresh read (see `reconcile`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::provider::{CloudProvider, GroupState, Lifecycle, ProviderError, TerminateOutcome};

use super::trigger::Trigger;

/// Younger than this, the snapshot is used without a refresh.
pub const FRESH: Duration = Duration::from_secs(10);
/// Older than this, a reconcile waits for a new read: a view this old may
/// hide someone else's change to the group (a scale-up, suspended processes).
pub const MAX_STALE: Duration = Duration::from_secs(60);

pub struct GroupView {
    provider: Arc<dyn CloudProvider>,
    trigger: Trigger,
    state: Arc<Mutex<State>>,
    /// `FRESH`, or shorter while a lifecycle hook may hold VMs (see
    /// `hooks::GROUP_FRESH`), in milliseconds.
    fresh_ms: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct State {
    snapshot: Option<(Instant, Arc<GroupState>)>,
    /// Bumped by each mutation applied locally.
    seq: u64,
    /// Our own mutations a read still in flight may not show, by `seq`: they
    /// are applied again to its answer. Dropping such an answer instead (as
    /// this view once did) starved a scale-in of fresh reads, since some
    /// terminate always lands while a read of a large group is out, and every
    /// reconcile then started another read of it.
    log: Vec<(u64, Mutation)>,
    /// The `seq` of the last mutation whose effect is unknown: an answer to a
    /// read started before it is dropped.
    forgotten_at: u64,
    /// The `seq` each read in flight started at.
    reads: Vec<u64>,
    refreshing: bool,
}

/// One of our own changes to the group, as the cloud will show it.
#[derive(Clone, Debug)]
enum Mutation {
    Terminated {
        instance_id: String,
        decrement: bool,
    },
    DesiredSet(u32),
}

impl Mutation {
    /// Apply to a view. Idempotent, so a view that already shows it (a read
    /// that landed after the cloud applied it) is not changed twice.
    fn apply(&self, g: &mut GroupState) {
        match self {
            Mutation::Terminated {
                instance_id,
                decrement,
            } => {
                if let Some(i) =
                    (g.instances.iter_mut()).find(|i| i.id == *instance_id && i.lifecycle.counted())
                {
                    i.lifecycle = Lifecycle::Terminating;
                    if *decrement {
                        g.desired_capacity = g.desired_capacity.saturating_sub(1);
                    }
                }
            }
            Mutation::DesiredSet(d) => g.desired_capacity = *d,
        }
    }
}

impl State {
    /// A read starts: the mutations from now on are kept for its answer.
    fn read_started(&mut self) -> u64 {
        self.reads.push(self.seq);
        self.seq
    }

    /// A read started at `start` ended: its answer, with our mutations since
    /// applied, becomes the view (unless a mutation of unknown effect came
    /// after its start). Returns the view stored, if any.
    fn read_ended(&mut self, start: u64, answer: Option<GroupState>) -> Option<Arc<GroupState>> {
        if let Some(at) = self.reads.iter().position(|s| *s == start) {
            self.reads.swap_remove(at);
        }
        let stored = answer.filter(|_| start >= self.forgotten_at).map(|mut g| {
            for (_, m) in self.log.iter().filter(|(seq, _)| *seq > start) {
                m.apply(&mut g);
            }
            let g = Arc::new(g);
            self.snapshot = Some((Instant::now(), g.clone()));
            g
        });
        let oldest = self.reads.iter().min().copied().unwrap_or(self.seq);
        self.log.retain(|(seq, _)| *seq > oldest);
        stored
    }

    fn mutate(&mut self, m: Mutation) {
        self.seq += 1;
        // In place unless a reconcile still holds the view it planned on.
        if let Some((_, g)) = self.snapshot.as_mut() {
            m.apply(Arc::make_mut(g));
        }
        if !self.reads.is_empty() {
            self.log.push((self.seq, m));
        }
    }

    fn forget(&mut self) {
        self.seq += 1;
        self.forgotten_at = self.seq;
        self.snapshot = None;
        self.log.clear();
    }
}

/// A read in flight. Dropped before it ends (its reconcile cancelled), it is
/// ended without an answer, or the mutations kept for it would pile up.
struct ReadInFlight {
    state: Arc<Mutex<State>>,
    start: u64,
    open: bool,
}

impl ReadInFlight {
    fn new(state: &Arc<Mutex<State>>, st: &mut State) -> Self {
        Self {
            state: state.clone(),
            start: st.read_started(),
            open: true,
        }
    }

    /// End it under the lock the caller holds.
    fn end(mut self, st: &mut State, answer: Option<GroupState>) -> Option<Arc<GroupState>> {
        self.open = false;
        st.read_ended(self.start, answer)
    }
}

impl Drop for ReadInFlight {
    fn drop(&mut self) {
        if self.open
            && let Ok(mut st) = self.state.lock()
        {
            st.read_ended(self.start, None);
        }
    }
}

/// A group answer and how old it is. Shared with the view: a reconcile
/// holds thousands of instances without copying them.
pub struct Observed {
    pub group: Arc<GroupState>,
    pub age: Duration,
}

impl GroupView {
    pub fn new(provider: Arc<dyn CloudProvider>, trigger: Trigger) -> Self {
        Self {
            provider,
            trigger,
            state: Arc::new(Mutex::new(State::default())),
            fresh_ms: std::sync::atomic::AtomicU64::new(FRESH.as_millis() as u64),
        }
    }

    /// Refresh the view once older than `fresh` (at most `FRESH`).
    pub fn set_fresh(&self, fresh: Duration) {
        let ms = fresh.min(FRESH).as_millis() as u64;
        self.fresh_ms
            .store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("group view lock")
    }

    /// The group as last seen if it is at most `MAX_STALE` old (refreshed in
    /// the background once older than `FRESH`), else a read now.
    pub async fn get(&self) -> Result<Observed, ProviderError> {
        {
            let mut st = self.lock();
            if let Some((at, g)) = &st.snapshot {
                let age = at.elapsed();
                if age < MAX_STALE {
                    let observed = Observed {
                        group: g.clone(),
                        age,
                    };
                    let fresh = Duration::from_millis(
                        self.fresh_ms.load(std::sync::atomic::Ordering::Relaxed),
                    );
                    if age >= fresh && !st.refreshing {
                        st.refreshing = true;
                        let read = ReadInFlight::new(&self.state, &mut st);
                        self.spawn_refresh(read);
                    }
                    return Ok(observed);
                }
            }
        }
        self.read_now().await
    }

    /// A read now, stored for the next reconciles.
    pub async fn read_now(&self) -> Result<Observed, ProviderError> {
        let read = ReadInFlight::new(&self.state, &mut self.lock());
        let result = self.provider.describe_group().await;
        let mut st = self.lock();
        let group = match result {
            Ok(g) => g,
            Err(e) => {
                read.end(&mut st, None);
                return Err(e);
            }
        };
        let group = (read.end(&mut st, Some(group.clone()))).unwrap_or_else(|| Arc::new(group));
        Ok(Observed {
            group,
            age: Duration::ZERO,
        })
    }

    fn spawn_refresh(&self, read: ReadInFlight) {
        let provider = self.provider.clone();
        let state = self.state.clone();
        let trigger = self.trigger.clone();
        tokio::spawn(async move {
            let result = provider.describe_group().await;
            let mut st = state.lock().expect("group view lock");
            st.refreshing = false;
            let before = st.snapshot.as_ref().map(|(_, g)| g.clone());
            // An error keeps the old view until it is too old to use; the
            // reconcile's own read then reports the trouble.
            let Some(group) = read.end(&mut st, result.ok()) else {
                return;
            };
            drop(st);
            if before.as_deref() != Some(&*group) {
                trigger.fire();
            }
        });
    }

    /// What a successful terminate does to the group, as the cloud will show it.
    pub fn terminated(&self, instance_id: &str, decrement: bool, outcome: &TerminateOutcome) {
        let mut st = self.lock();
        match outcome {
            TerminateOutcome::Terminated => st.mutate(Mutation::Terminated {
                instance_id: instance_id.to_owned(),
                decrement,
            }),
            // Someone else's doing, or a call of ours whose answer was lost:
            // what it did to the desired capacity is not known here, and a
            // view with the instance gone but the capacity not lowered would
            // retire one node too many. The next reconcile reads the group.
            _ => st.forget(),
        }
    }

    /// The latest view with `instance_id` its only VM (`with_only`), if one
    /// at most `MAX_STALE` old is held: the express lane decides on one VM.
    pub fn narrowed(&self, instance_id: &str) -> Option<GroupState> {
        let st = self.lock();
        let (at, g) = st.snapshot.as_ref()?;
        if at.elapsed() >= MAX_STALE {
            return None;
        }
        Some(g.with_only(instance_id))
    }

    /// Whether the latest view shows the instance on its way out (or gone).
    /// A reconcile plans on the view it started with; a terminate that landed
    /// meanwhile is only in the latest one.
    pub fn leaving(&self, instance_id: &str) -> bool {
        let st = self.lock();
        st.snapshot.as_ref().is_some_and(|(_, g)| {
            g.instance(instance_id)
                .is_none_or(|i| i.lifecycle.is_terminating() || i.lifecycle == Lifecycle::Detaching)
        })
    }

    pub fn desired_set(&self, desired: u32) {
        self.lock().mutate(Mutation::DesiredSet(desired));
    }

    /// Drop the view (after a failed mutation whose effect is unknown).
    pub fn forget(&self) {
        self.lock().forget();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fake::{Call, FakeProvider};
    use tokio::sync::mpsc;

    /// Describe calls the fake group answered so far.
    fn reads(p: &FakeProvider) -> usize {
        p.calls().iter().filter(|c| **c == Call::Describe).count()
    }

    fn view(desired: u32) -> (GroupView, Arc<FakeProvider>, mpsc::UnboundedReceiver<()>) {
        let p = FakeProvider::new("g", &["i-1"]);
        p.update(|g| g.desired_capacity = desired);
        let (tx, rx) = mpsc::unbounded_channel();
        let key = kube::runtime::reflector::ObjectRef::new("p").within("ns");
        let (fwd_tx, fwd_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut rx = rx;
            while rx.recv().await.is_some() {
                let _ = fwd_tx.send(());
            }
        });
        (GroupView::new(p.clone(), Trigger::new(tx, key)), p, fwd_rx)
    }

    fn age(v: &GroupView, by: Duration) {
        let mut st = v.lock();
        if let Some((at, _)) = st.snapshot.as_mut() {
            *at -= by;
        }
    }

    #[tokio::test]
    async fn young_view_is_reused_and_stale_one_refreshed_in_background() {
        let (v, p, mut fired) = view(3);
        assert_eq!(v.get().await.unwrap().group.desired_capacity, 3);
        assert_eq!(v.get().await.unwrap().group.desired_capacity, 3);
        assert_eq!(reads(&p), 1, "a young view is reused");

        // Someone else lowers the group; a stale view is answered at once and
        // the background read wakes the pool with the news.
        p.update(|g| g.desired_capacity = 2);
        age(&v, FRESH);
        let o = v.get().await.unwrap();
        assert_eq!(o.group.desired_capacity, 3);
        assert!(o.age >= FRESH);
        tokio::time::timeout(Duration::from_secs(5), fired.recv())
            .await
            .expect("refresh fires the trigger")
            .unwrap();
        assert_eq!(v.get().await.unwrap().group.desired_capacity, 2);

        // An unchanged answer does not wake the pool: no reconcile loop.
        age(&v, FRESH);
        v.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(reads(&p), 3);
        assert!(fired.try_recv().is_err());

        // Too old to plan on: read inline.
        age(&v, MAX_STALE);
        let o = v.get().await.unwrap();
        assert_eq!(o.age, Duration::ZERO);
        assert_eq!(reads(&p), 4);
    }

    #[tokio::test]
    async fn own_terminate_shows_at_once_and_an_older_read_cannot_undo_it() {
        let (v, p, _fired) = view(3);
        v.get().await.unwrap();
        age(&v, FRESH);
        // The refresh starts (before the terminate) and lands after it.
        v.get().await.unwrap();
        v.terminated("i-1", true, &TerminateOutcome::Terminated);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let g = v.get().await.unwrap().group;
        assert_eq!(g.desired_capacity, 2);
        assert_eq!(g.instances[0].lifecycle, Lifecycle::Terminating);
        assert_eq!(reads(&p), 2);

        assert!(v.leaving("i-1"));
        assert!(v.leaving("i-unknown"), "absent from the view: gone");

        // Counted once even when repeated (a read already showing it).
        v.terminated("i-1", true, &TerminateOutcome::Terminated);
        assert_eq!(v.get().await.unwrap().group.desired_capacity, 2);

        v.desired_set(5);
        assert_eq!(v.get().await.unwrap().group.desired_capacity, 5);
        // A lost answer: the capacity is unknown, so the view is read again.
        v.terminated("i-1", true, &TerminateOutcome::AlreadyTerminating);
        assert!(!v.leaving("i-1"), "no view: the provider's re-read decides");
        assert_eq!(v.get().await.unwrap().age, Duration::ZERO, "read again");
    }

    #[tokio::test]
    async fn a_read_out_during_our_terminates_lands_with_them_applied() {
        let (v, p, _fired) = view(3);
        v.get().await.unwrap();
        // Someone else raises the group meanwhile; the refresh must show it
        // although our terminate landed while the read was out.
        p.update(|g| g.max_size = 9);
        age(&v, FRESH);
        v.get().await.unwrap();
        v.terminated("i-1", true, &TerminateOutcome::Terminated);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let o = v.get().await.unwrap();
        assert!(o.age < FRESH, "the answer was kept, not dropped");
        assert_eq!(o.group.max_size, 9, "someone else's change shows");
        assert_eq!(o.group.desired_capacity, 2, "our terminate counted once");
        assert_eq!(o.group.instances[0].lifecycle, Lifecycle::Terminating);
        assert!(v.lock().log.is_empty(), "nothing kept once no read is out");
    }

    #[tokio::test]
    async fn a_read_out_during_a_mutation_of_unknown_effect_is_dropped() {
        let (v, p, _fired) = view(3);
        v.get().await.unwrap();
        age(&v, FRESH);
        v.get().await.unwrap();
        v.forget();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(v.lock().snapshot.is_none(), "the older answer is not used");
        assert_eq!(v.get().await.unwrap().age, Duration::ZERO, "read again");
        assert_eq!(reads(&p), 3);
    }

    #[tokio::test]
    async fn a_read_cancelled_midway_keeps_nothing_for_it() {
        let (v, _p, _fired) = view(3);
        v.get().await.unwrap();
        // A read started, then dropped before the provider answers (as
        // when the reconcile awaiting `read_now` is cancelled).
        let mut st = v.lock();
        let read = ReadInFlight::new(&v.state, &mut st);
        drop(st);
        v.terminated("i-1", true, &TerminateOutcome::Terminated);
        assert_eq!(v.lock().log.len(), 1, "kept for the read out");
        drop(read);
        let st = v.lock();
        assert!(
            st.reads.is_empty() && st.log.is_empty(),
            "nothing left behind"
        );
    }
}
