//! Fault injection for `/v1/` requests: a fraction of 5xx answers, added
//! latency, a fraction of dropped connections (closed without a response),
//! and leader loss (`500 No cluster leader`, `X-Nomad-KnownLeader: false`).
//! Each is scoped to requests whose path starts with `path_prefix`.

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Only requests whose path starts with this are affected ("" = all /v1/).
    pub path_prefix: String,
    /// Fraction (0..=1) of requests answered `500` with a plain-text body.
    pub error_rate: f64,
    /// Real milliseconds added before answering.
    pub latency_ms: u64,
    /// Fraction (0..=1) of requests whose connection is closed without a response.
    pub drop_rate: f64,
    /// No leader: every affected request gets `500 No cluster leader`.
    pub leader_lost: bool,
}

#[derive(Debug, PartialEq)]
pub enum FaultAction {
    None,
    Error,
    Drop,
    NoLeader,
}

impl Faults {
    pub fn applies(&self, path: &str) -> bool {
        path.starts_with("/v1/") && path.starts_with(self.path_prefix.as_str())
    }

    pub fn decide(&self, path: &str) -> FaultAction {
        if !self.applies(path) {
            return FaultAction::None;
        }
        if self.leader_lost && path != "/v1/agent/self" && path != "/v1/status/leader" {
            return FaultAction::NoLeader;
        }
        let mut rng = rand::rng();
        if self.drop_rate > 0.0 && rng.random::<f64>() < self.drop_rate {
            return FaultAction::Drop;
        }
        if self.error_rate > 0.0 && rng.random::<f64>() < self.error_rate {
            return FaultAction::Error;
        }
        FaultAction::None
    }
}
