//! Fault injection on `/compute/` requests and the request log (reference
//! §5.1.11). A rule matches by method and a path substring and fires a
//! number of times: added latency, an HTTP error in Google's shape, a
//! dropped connection, or an operation that ends `DONE` with an error.
//! With `after: true` the request is carried out first and only its answer
//! is replaced or lost — the "lost answer" case the operator must survive.

use serde::{Deserialize, Serialize};

use crate::error::ErrorSpec;
use crate::state::OpFailure;

/// What a matching rule does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Only the rule's `delay_ms`.
    Delay,
    /// Close the connection without an answer.
    Drop,
    /// Answer with this HTTP error.
    Error(ErrorSpec),
    /// Answer with the error `ErrorSpec::preset` names (`rateLimitExceeded`,
    /// `backendError`, …); turned into `Error` when the rule is added.
    ErrorPreset(String),
    /// Carry out nothing; answer with an Operation that ends `DONE` with
    /// this error (a mutating call only).
    FailOperation(OpFailure),
}

impl FaultAction {
    /// `ErrorPreset` as the `Error` it names (an unknown name: no action).
    pub fn resolved(self) -> FaultAction {
        match self {
            FaultAction::ErrorPreset(name) => {
                ErrorSpec::preset(&name).map_or(FaultAction::Delay, FaultAction::Error)
            }
            other => other,
        }
    }
}

/// `POST /sim/faults` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// `GET` or `POST`; absent = any.
    #[serde(default)]
    pub method: Option<String>,
    /// A substring of the path, e.g. `/deleteInstances`; absent = any.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// How many matching requests it affects; 0 = until cleared.
    #[serde(default = "one")]
    pub times: u32,
    /// Real milliseconds before answering (with any action).
    #[serde(default)]
    pub delay_ms: u64,
    /// Carry out the request, then answer with the fault.
    #[serde(default)]
    pub after: bool,
    pub action: FaultAction,
    /// Times it fired (set by the fake).
    #[serde(default)]
    pub fired: u32,
}

fn one() -> u32 {
    1
}

impl FaultRule {
    fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
            && (self.times == 0 || self.fired < self.times)
    }
}

/// The rules, in order; the first match fires.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
}

impl Faults {
    /// The rule firing for this request, if any (counted as fired).
    pub fn fire(&mut self, method: &str, path: &str) -> Option<FaultRule> {
        let r = self.rules.iter_mut().find(|r| r.matches(method, path))?;
        r.fired += 1;
        Some(r.clone())
    }
}

/// One `/compute/` request as received (`GET /sim/requests`).
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// Decoded query pairs, in order (`$alt` decoded from `%24alt`).
    pub query: Vec<(String, String)>,
    pub body: String,
    /// The `x-goog-api-client` header, when sent (§4.3).
    pub api_client: Option<String>,
    /// Status answered; `None` when the connection was dropped.
    pub status: Option<u16>,
    /// The fault that fired, if any.
    pub fault: Option<String>,
}
