//! The `NomadClientRetirement` objects: one per client in flight, each the
//! write-ahead record of its own client.
//!
//! The pool's reconcile still decides every step (the planner sees all of a
//! pool's retirements at once: the budget, the group's capacity and the
//! VMs' shared nodes are pool-wide facts), but what it decides is stored in
//! each client's own object, so a write costs what one client changed:
//! - `records`: an object as the planner's entry and back, its name, and
//!   what a hand-made or deleted object asks of the pool (pure);
//! - `ledger`: every retirement the pool has, from the watch's store and our
//!   own writes the store does not show yet;
//! - `sync`: the writes that take the objects from what they say to what
//!   the plan decided: create, status, finish, give up the finalizer,
//!   prune the history (pure);
//! - `write`: those writes against the API server, side by side; `urgent`:
//!   the bulk of them gives way to the records a VM waits on;
//! - `hold`: what the pool's lifecycle hook adds to a held client's status
//!   (the action's record, the global-timeout condition); `conditions`:
//!   a retirement's conditions, one function each (pure).

pub mod conditions;
pub mod hold;
pub mod ledger;
pub mod records;
pub mod sync;
pub mod urgent;
pub mod write;

pub use ledger::Ledgers;

/// The label naming a retirement's pool, for `kubectl get ncr -l`.
pub const POOL_LABEL: &str = "nomadpool.dev/pool";
/// Held by every unfinished retirement the pool has started: deleting one
/// first gives its client back (or sees a termination through).
pub const FINALIZER: &str = "nomadpool.dev/retirement";
/// Set on the retirements the pool created; one without it was made by hand
/// and is kept wanted until it finishes or is deleted.
pub const CREATED_BY: &str = "nomadpool.dev/created-by";
