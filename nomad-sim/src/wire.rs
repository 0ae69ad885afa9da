//! The simulator's own encoding of Nomad's JSON wire format.
//!
//! This deliberately duplicates the operator's Nomad API types instead of
//! sharing them: two independent encodings of one wire format, each pinned to
//! the JSON examples in Nomad's docs (`tests/fixtures/nomad/`), are what catch
//! a misspelled field or a wrong JSON type on either side. Do not "dedupe"
//! this with the operator's client.
//!
//! Field names are the Go field names (PascalCase), durations are integer
//! nanoseconds, times are RFC 3339 strings, and maps that were never set are
//! `null`, as in Nomad's HTTP responses.
//!
//! One room per resource: `node`, `allocation` (with the `task` states it
//! embeds), `job`, and `requests` (bodies and answers of the write
//! endpoints). Shared pieces (`StrMap`, `Shared`) stay here.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Serialize, Serializer};
use serde_json::Value;

mod allocation;
mod job;
mod node;
mod requests;
mod task;

pub use allocation::{AllocListStub, Allocation, DeploymentStatus, DesiredTransition};
pub use job::Job;
pub use node::{
    DrainMetadata, DrainStrategy, Node, NodeEvent, NodeListStub, default_drivers,
    default_node_resources, default_reserved_resources,
};
pub use requests::{
    DrainRequest, DrainSpec, EligibilityRequest, NodePurgeResponse, NodeUpdateResponse,
    canonical_keys,
};
pub use task::{TaskEvent, TaskState, TaskStates};

pub type StrMap = BTreeMap<String, String>;

/// A shared, immutable JSON sub-document (for large static parts such as
/// `NodeResources` that every simulated node carries).
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Value>);

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}
