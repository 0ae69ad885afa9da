//! How many connections the operator holds open to one Nomad agent.
//!
//! A Nomad agent accepts at most `limits.http_max_conns_per_client`
//! concurrent HTTP connections from one client IP (default 100, 0 = no
//! limit; `nomad/structs/config/limits.go` `DefaultLimits`). A connection
//! over the limit is refused as it is accepted, with a `429 Too Many
//! Requests` when the agent's rate limit for that answer allows, else closed
//! (`command/agent/http.go` `connLimiter`, through hashicorp/go-connlimit).
//! Every open connection counts, idle keep-alive ones included, until it is
//! closed. Left alone, the operator opened one connection per request in
//! flight: a parked blocking query per watched node, plus reads and writes,
//! thousands during a large scale-in.
//!
//! So every request to an agent takes a permit from that agent's budget,
//! shared by every client (every pool) that addresses it, and holds it until
//! its answer is read or dropped. The budget has lanes, first come first
//! served within each, so that nothing waits behind what may be held for
//! minutes:
//! - `Short`: reads and writes Nomad answers at once (drain, eligibility,
//!   purge, node details, lists). They never wait behind a parked query.
//! - `Parked`: blocking queries the next step of a retirement waits on (the
//!   allocations of a node at the termination gate).
//! - `View`: a pool's node view (the event stream, or blocking node-list
//!   queries). It takes a slot of its own reserve or of `Parked`, whichever
//!   frees first, so a queue of allocation watches never leaves the view,
//!   which every decision reads, waiting for minutes.
//! - `Status`: blocking queries that only keep a retirement's status fresh
//!   (the allocations of a drain still in progress); they never take the
//!   slots a termination decision needs.
//!
//! Of `max_connections`, [`IDLE_CONNECTIONS`] are left for the keep-alive
//! connections the HTTP client keeps between requests (its idle pool holds
//! at most that many per transport), so open connections stay at
//! `max_connections`: in flight (at most the lanes' sum) plus idle. Two
//! transports to one address (pools with different TLS settings) add
//! `IDLE_CONNECTIONS` each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default cap per Nomad agent: under Nomad's default of 100 with room
/// for the operator's other clients on the same IP (a `nomad` CLI on the
/// same host, a second replica starting during a rollout).
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;

/// The smallest cap that leaves every lane at least one connection.
pub const MIN_MAX_CONNECTIONS: usize = IDLE_CONNECTIONS + 4;

/// Idle keep-alive connections kept per transport.
pub const IDLE_CONNECTIONS: usize = 8;

/// Which lane a request waits in; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Short,
    Parked,
    View,
    Status,
}

impl Lane {
    /// The lane's metric label.
    pub fn name(self) -> &'static str {
        match self {
            Lane::Short => "short",
            Lane::Parked => "parked",
            Lane::View => "view",
            Lane::Status => "status",
        }
    }
}

/// How `max_connections` is shared out between the lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaneSizes {
    pub short: usize,
    pub parked: usize,
    /// The node views' own reserve (they may use `parked` too).
    pub view: usize,
    pub status: usize,
}

impl LaneSizes {
    /// A quarter for short calls, an eighth reserved for node views, and of
    /// the rest two-thirds for what the next step waits on, a third for
    /// status.
    pub fn for_max(max_connections: usize) -> Self {
        let in_flight = max_connections.max(MIN_MAX_CONNECTIONS) - IDLE_CONNECTIONS;
        let short = (in_flight / 4).max(1);
        let view = (in_flight / 8).max(1);
        let status = ((in_flight - short - view) / 3).max(1);
        let parked = in_flight - short - view - status;
        Self {
            short,
            parked,
            view,
            status,
        }
    }

    #[cfg(test)]
    pub fn in_flight(&self) -> usize {
        self.short + self.parked + self.view + self.status
    }
}

/// The permits of one Nomad agent.
#[derive(Debug)]
pub struct Budget {
    sizes: LaneSizes,
    short: Arc<Semaphore>,
    parked: Arc<Semaphore>,
    view: Arc<Semaphore>,
    status: Arc<Semaphore>,
}

/// A request's hold on its lane, released when dropped.
#[derive(Debug)]
pub struct Permit(#[allow(dead_code)] OwnedSemaphorePermit);

impl Budget {
    pub fn new(max_connections: usize) -> Self {
        let sizes = LaneSizes::for_max(max_connections);
        Self {
            sizes,
            short: Arc::new(Semaphore::new(sizes.short)),
            parked: Arc::new(Semaphore::new(sizes.parked)),
            view: Arc::new(Semaphore::new(sizes.view)),
            status: Arc::new(Semaphore::new(sizes.status)),
        }
    }

    #[cfg(test)]
    pub fn sizes(&self) -> LaneSizes {
        self.sizes
    }

    fn lane(&self, lane: Lane) -> (&Arc<Semaphore>, usize) {
        match lane {
            Lane::Short => (&self.short, self.sizes.short),
            Lane::Parked => (&self.parked, self.sizes.parked),
            Lane::View => (&self.view, self.sizes.view),
            Lane::Status => (&self.status, self.sizes.status),
        }
    }

    /// Waits (first come, first served) for a free slot in `lane`; a node
    /// view takes the first of its reserve and `Parked` to free up.
    pub async fn acquire(&self, lane: Lane) -> Permit {
        let own = self.lane(lane).0.clone().acquire_owned();
        let permit = if lane == Lane::View {
            let parked = self.parked.clone().acquire_owned();
            // The losing wait is dropped, which gives back its place (and
            // any slot it was just handed).
            tokio::select! {
                p = own => p,
                p = parked => p,
            }
        } else {
            own.await
        };
        Permit(permit.expect("budget semaphores are never closed"))
    }

    /// Slots of `lane` taken now (by any lane that may use them).
    #[cfg(test)]
    pub fn in_use(&self, lane: Lane) -> usize {
        let (sem, size) = self.lane(lane);
        size - sem.available_permits()
    }
}

/// The operator-wide cap, set once at start (`--nomad-max-connections`).
static MAX_CONNECTIONS: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_CONNECTIONS);

/// Sets the cap for budgets created from now on (call before any client).
/// Values under [`MIN_MAX_CONNECTIONS`] are raised to it.
pub fn set_max_connections(max: usize) {
    MAX_CONNECTIONS.store(max.max(MIN_MAX_CONNECTIONS), Ordering::Relaxed);
}

pub fn max_connections() -> usize {
    MAX_CONNECTIONS.load(Ordering::Relaxed)
}

/// Budgets by agent (`host:port` as configured), alive while a client uses
/// them.
fn registry() -> &'static Mutex<HashMap<String, Weak<Budget>>> {
    static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<Budget>>>> = OnceLock::new();
    REGISTRY.get_or_init(Mutex::default)
}

/// The budget of the agent at `target`, shared with every other client of it.
pub fn for_target(target: &str) -> Arc<Budget> {
    let mut budgets = registry().lock().expect("budget registry lock");
    budgets.retain(|_, b| b.strong_count() > 0);
    if let Some(b) = budgets.get(target).and_then(Weak::upgrade) {
        return b;
    }
    let b = Arc::new(Budget::new(max_connections()));
    budgets.insert(target.to_owned(), Arc::downgrade(&b));
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_lanes_and_the_idle_pool_add_up_to_the_cap() {
        for max in [MIN_MAX_CONNECTIONS, 16, 64, 100, 1000] {
            let s = LaneSizes::for_max(max);
            assert_eq!(s.in_flight() + IDLE_CONNECTIONS, max, "{max}: {s:?}");
            assert!(s.short >= 1 && s.parked >= 1 && s.status >= 1, "{s:?}");
            assert!(s.parked >= s.status, "{s:?}");
        }
        let d = LaneSizes::for_max(DEFAULT_MAX_CONNECTIONS);
        assert_eq!((d.short, d.parked, d.view, d.status), (14, 24, 7, 11));
        // Below the minimum, every lane still gets one slot.
        assert_eq!(LaneSizes::for_max(0).in_flight(), 4);
    }

    /// Nomad's `http_max_conns_per_client` default (limits.go): the cap
    /// leaves room under it for racing connects and other clients.
    const _: () = assert!(DEFAULT_MAX_CONNECTIONS + 30 <= 100);

    #[tokio::test]
    async fn parked_queries_never_hold_up_short_calls() {
        let b = Budget::new(MIN_MAX_CONNECTIONS);
        let s = b.sizes();
        let mut parked = Vec::new();
        for _ in 0..s.parked {
            parked.push(b.acquire(Lane::Parked).await);
        }
        for _ in 0..s.status {
            parked.push(b.acquire(Lane::Status).await);
        }
        for _ in 0..s.view {
            parked.push(b.acquire(Lane::View).await);
        }
        assert_eq!(b.in_use(Lane::Parked), s.parked);
        assert_eq!(b.in_use(Lane::View), s.view);
        // Every parked slot is taken; a short call still goes at once.
        let short = tokio::time::timeout(Duration::from_millis(100), b.acquire(Lane::Short)).await;
        assert!(short.is_ok(), "a short call waited behind parked queries");
        // And one more parked query waits until a parked slot frees.
        let more = tokio::time::timeout(Duration::from_millis(50), b.acquire(Lane::Parked)).await;
        assert!(more.is_err(), "the parked lane went over its size");
        parked.remove(0);
        let more = tokio::time::timeout(Duration::from_millis(100), b.acquire(Lane::Parked)).await;
        assert!(more.is_ok());
    }

    #[tokio::test]
    async fn status_watches_cannot_take_the_slots_a_decision_needs() {
        let b = Budget::new(DEFAULT_MAX_CONNECTIONS);
        let s = b.sizes();
        let mut held = Vec::new();
        for _ in 0..s.status {
            held.push(b.acquire(Lane::Status).await);
        }
        let extra = tokio::time::timeout(Duration::from_millis(50), b.acquire(Lane::Status)).await;
        assert!(extra.is_err(), "the status lane went over its size");
        for _ in 0..s.parked {
            let p = tokio::time::timeout(Duration::from_millis(100), b.acquire(Lane::Parked)).await;
            held.push(p.expect("a parked slot is free whatever status watches hold"));
        }
    }

    #[tokio::test]
    async fn a_node_view_never_queues_behind_allocation_watches() {
        let b = Budget::new(DEFAULT_MAX_CONNECTIONS);
        let s = b.sizes();
        let mut held = Vec::new();
        for _ in 0..s.parked {
            held.push(b.acquire(Lane::Parked).await);
        }
        // Allocation watches queue for the parked lane...
        let queued = tokio::time::timeout(Duration::from_millis(50), b.acquire(Lane::Parked)).await;
        assert!(queued.is_err());
        // ...and every pool's view still gets its stream from the reserve.
        for _ in 0..s.view {
            let p = tokio::time::timeout(Duration::from_millis(100), b.acquire(Lane::View)).await;
            held.push(p.expect("a view slot is free"));
        }
        // With the reserve used up too, a view takes the first parked slot
        // that frees.
        let b = Arc::new(b);
        let view = tokio::spawn({
            let b = b.clone();
            async move { b.acquire(Lane::View).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!view.is_finished());
        held.remove(0);
        let p = tokio::time::timeout(Duration::from_millis(100), view).await;
        assert!(p.is_ok(), "the view did not take the freed parked slot");
        assert_eq!(b.in_use(Lane::Parked), s.parked);
        assert_eq!(b.in_use(Lane::View), s.view);
    }

    #[tokio::test]
    async fn a_permit_is_given_back_when_dropped_and_waiters_go_in_order() {
        let b = Arc::new(Budget::new(MIN_MAX_CONNECTIONS));
        let first = b.acquire(Lane::Short).await;
        assert_eq!(b.in_use(Lane::Short), 1);
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for i in 0..3 {
            let (b, order) = (b.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = b.acquire(Lane::Short).await;
                order.lock().unwrap().push(i);
            }));
            // Queue them one after the other.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(order.lock().unwrap().is_empty());
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert_eq!(b.in_use(Lane::Short), 0);
    }

    #[test]
    fn clients_of_one_agent_share_its_budget() {
        let a = for_target("budget-test.invalid:4646");
        let b = for_target("budget-test.invalid:4646");
        let c = for_target("budget-test-other.invalid:4646");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        drop((a, b));
        // Gone with its last client: a later one starts from a fresh budget.
        let d = for_target("budget-test.invalid:4646");
        assert_eq!(d.in_use(Lane::Short), 0);
    }
}
