//! Fault injection on `/compute/` requests and the request log (reference
//! §5.1.11). A rule matches by method and a path substring and fires a
//! number of times: added latency, an HTTP error in Google's shape, a
//! dropped connection, or an operation that ends `DONE` with an error.
//! With `after: true` the request is carried out first and only its answer
//! is replaced or lost — the "lost answer" case the operator must survive.
//! With `probability` a rule fires on a seeded random fraction of the
//! requests it matches, so a fault storm repeats from its seed.
//!
//! The log keeps requests in arrival (`seq`) order, although each is
//! recorded only once answered: concurrent requests finish in any order,
//! and a reader pairing calls by position needs the order they came in.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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
    /// The chance (`0..=1`) that a matching request is affected; absent:
    /// every one. A request the dice spare goes on to the next rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
    /// Seed of this rule's dice. Absent: derived from the fake's `--seed`
    /// and the rule's position, or random without one; either way the rule
    /// as listed (`GET /sim/faults`) shows the seed used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Times it fired (set by the fake).
    #[serde(default)]
    pub fired: u32,
    /// Matching requests the dice were thrown for (set by the fake).
    #[serde(default)]
    pub rolled: u32,
    #[serde(skip)]
    dice: Option<StdRng>,
}

fn one() -> u32 {
    1
}

/// Why a rule was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultRuleError {
    #[error("probability must be between 0 and 1, not {0}")]
    Probability(f64),
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

    /// Whether the dice let the rule fire on this matching request.
    fn rolls_true(&mut self) -> bool {
        let Some(p) = self.probability else {
            return true;
        };
        self.rolled += 1;
        // `Faults::add` sets the seed; a rule built by hand without one
        // gets seed 0 rather than a panic.
        let seed = self.seed.unwrap_or_default();
        let dice = self.dice.get_or_insert_with(|| StdRng::seed_from_u64(seed));
        dice.random_bool(p)
    }
}

/// The rules, in order; the first match fires.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Faults {
    pub rules: Vec<FaultRule>,
}

impl Faults {
    /// Appends `rule` with its counters reset and its seed chosen (from
    /// `sim_seed`, the fake's `--seed`, when it has one); the rule as kept.
    pub fn add(
        &mut self,
        mut rule: FaultRule,
        sim_seed: Option<u64>,
    ) -> Result<FaultRule, FaultRuleError> {
        if let Some(p) = rule.probability
            && !(0.0..=1.0).contains(&p)
        {
            return Err(FaultRuleError::Probability(p));
        }
        if rule.probability.is_some() && rule.seed.is_none() {
            let position = self.rules.len() as u64;
            rule.seed = Some(match sim_seed {
                Some(s) => s ^ position.wrapping_mul(0x9e37_79b9_7f4a_7c15),
                None => rand::random(),
            });
        }
        rule.fired = 0;
        rule.rolled = 0;
        rule.dice = None;
        self.rules.push(rule.clone());
        Ok(rule)
    }

    /// The rule firing for this request, if any (counted as fired).
    pub fn fire(&mut self, method: &str, path: &str) -> Option<FaultRule> {
        let r = self
            .rules
            .iter_mut()
            .filter(|r| r.matches(method, path))
            .find_map(|r| r.rolls_true().then_some(r))?;
        r.fired += 1;
        Some(r.clone())
    }
}

/// Records `entry` at its place in arrival order (`seq`): usually the end,
/// earlier when a request that came later was answered first.
pub fn record(log: &mut Vec<LoggedRequest>, entry: LoggedRequest) {
    let at = log.partition_point(|e| e.seq < entry.seq);
    log.insert(at, entry);
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
    /// The action of the fault rule that fired, if any, as a rule gives
    /// it (`"drop"`, `{"fail_operation": {…}}`, …; a preset as the error
    /// it names).
    pub fault: Option<FaultAction>,
    /// Whether the call's effect was applied: a mutating call started an
    /// Operation that does its work (not failed, not a repeated
    /// `requestId` answered with an earlier call's Operation), a read was
    /// answered. True for a call carried out whose answer a fault with
    /// `after: true` then lost or replaced; false for one refused, failed
    /// (`fail_operation`, a failed validation) or dropped before.
    pub carried_out: bool,
}
