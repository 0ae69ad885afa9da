//! Typed client for the parts of Nomad's HTTP API that cordon, drain and
//! retire client nodes: node and allocation reads (with blocking queries),
//! drain, eligibility and purge.

pub mod acl;
mod client;
mod error;
pub mod filter;
mod types;

pub use client::{
    DEFAULT_BLOCKING_WAIT, DEFAULT_MAX_CONNECTIONS, EVENT_STREAM_LIFETIME, EventFrame,
    MIN_MAX_CONNECTIONS, NodeEventStream, NomadClient, NomadConfig, NomadEvent, NomadTlsConfig,
    QueryOptions, QueryResponse, SecretToken, Timeouts, next_blocking_index, set_max_connections,
};
pub use error::{NomadError, StallStage, error_chain};
pub use filter::{PoolSelector, node_pool_filter};
pub use types::*;
