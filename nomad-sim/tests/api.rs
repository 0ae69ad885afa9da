//! Contract tests over real HTTP (reqwest, the operator's client) for error
//! codes, blocking queries, filters, the event stream, ACLs, faults and the
//! control surface.
//!
//! The rooms: `errors` (Nomad's error codes and bodies, agent endpoints),
//! `reads` (filters, blocking queries), `stream` (the event stream), `acl`
//! (token headers and rights), `control` (faults, workload, allocations
//! finished through the control surface).

mod common;

#[path = "api/acl.rs"]
mod acl;
#[path = "api/control.rs"]
mod control;
#[path = "api/errors.rs"]
mod errors;
#[path = "api/reads.rs"]
mod reads;
#[path = "api/stream.rs"]
mod stream;
