//! Fault injection for `/v1/` requests: a fraction of 5xx answers, added
//! latency, a fraction of dropped connections (closed without a response),
//! and leader loss (`500 No cluster leader`, `X-Nomad-KnownLeader: false`).
//! Each is scoped to requests whose path starts with `path_prefix`.
//! `stale_reads` answers reads as a lagging follower would: from a copy of
//! the state frozen when the fault was set, with that copy's (lower)
//! indexes and `X-Nomad-LastContact` / `X-Nomad-KnownLeader` as configured.

use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::state::{Cluster, StateError};
use crate::wire::NodeUpdateResponse;

/// A follower that stopped applying the Raft log: reads see the state as of
/// the moment the fault was set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaleReads {
    /// `X-Nomad-LastContact` (ms) on the follower's answers.
    pub last_contact_ms: u64,
    /// `X-Nomad-KnownLeader` on the follower's answers.
    pub known_leader: bool,
    /// Only reads with `?stale` (or `stale=true`) reach the follower; the
    /// others are forwarded to the leader, as Nomad does. Default `false`:
    /// every affected read is answered by the follower.
    pub only_stale_param: bool,
    /// Fraction (0..=1) of affected reads the follower answers (the rest
    /// reach an up-to-date server). Default 1.
    pub rate: f64,
    /// Index of the frozen state (set by the simulator; ignored on input).
    pub frozen_at_index: u64,
}

impl Default for StaleReads {
    fn default() -> Self {
        StaleReads {
            last_contact_ms: 0,
            known_leader: true,
            only_stale_param: false,
            rate: 1.0,
            frozen_at_index: 0,
        }
    }
}

/// The dice of the rate faults: seeded from `Faults::seed` when it is
/// set (not serialized), the thread's random source otherwise.
#[derive(Clone, Default)]
pub struct Dice(Option<Arc<Mutex<StdRng>>>);

impl Dice {
    pub fn seeded(seed: u64) -> Dice {
        Dice(Some(Arc::new(Mutex::new(StdRng::seed_from_u64(seed)))))
    }

    /// A draw in `0..1`.
    fn roll(&self) -> f64 {
        match &self.0 {
            Some(rng) => rng.lock().unwrap().random(),
            None => rand::rng().random(),
        }
    }
}

impl std::fmt::Debug for Dice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dice(seeded: {})", self.0.is_some())
    }
}

/// The follower's frozen state (not serialized).
#[derive(Clone, Default)]
pub struct FollowerState(pub Option<Arc<Cluster>>);

impl std::fmt::Debug for FollowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FollowerState({})", self.0.is_some())
    }
}

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
    /// Reads answered by a lagging follower (see [`StaleReads`]).
    pub stale_reads: Option<StaleReads>,
    /// Every event-stream subscription is refused the way this Nomad
    /// version refuses one its ACL check fails (`200` then an empty close
    /// since 1.11.2; a plain `403` with `legacy_event_stream_refusal`), as
    /// when a token loses `node:read` between the list and the subscription.
    pub event_stream_refused: bool,
    /// Drain writes that set a `DrainSpec` are answered exactly as an
    /// applied one (`200`, `NodeDrainUpdateResponse` with a new index) but
    /// change nothing: the node shows no drain, no event is emitted.
    /// Cancels (`DrainSpec: null`) are applied. Scoped by `path_prefix`
    /// (e.g. `/v1/node/<id>/drain` for one node).
    pub drains_not_applied: bool,
    /// `200` JSON answers lose their second half, as through a proxy that
    /// cuts bodies short: the status and headers are Nomad's, the body is
    /// not valid JSON. Scoped by `path_prefix`; the event stream is never cut.
    pub truncated_json: bool,
    /// Seeds the dice of `error_rate`, `drop_rate` and `stale_reads.rate`
    /// when set: the same requests in the same order then meet the same
    /// faults, so a failing run can be replayed. Unset, every draw is
    /// fresh.
    pub seed: Option<u64>,
    #[serde(skip)]
    pub follower: FollowerState,
    #[serde(skip)]
    pub dice: Dice,
}

#[derive(Debug, PartialEq)]
pub enum FaultAction {
    None,
    Error,
    Drop,
    NoLeader,
}

impl FaultAction {
    /// The action's key in `/sim/stats` `faults_injected`.
    pub fn name(&self) -> &'static str {
        match self {
            FaultAction::None => "None",
            FaultAction::Error => "Error",
            FaultAction::Drop => "Drop",
            FaultAction::NoLeader => "NoLeader",
        }
    }
}

impl Faults {
    pub fn applies(&self, path: &str) -> bool {
        path.starts_with("/v1/") && path.starts_with(self.path_prefix.as_str())
    }

    /// The follower state a GET of `path` with query `query` is answered
    /// from, if the `stale_reads` fault picks it.
    pub fn follower_for(&self, path: &str, query: Option<&str>) -> Option<Arc<Cluster>> {
        let sr = self.stale_reads.as_ref()?;
        let state = self.follower.0.clone()?;
        if !self.applies(path)
            || matches!(
                path,
                "/v1/agent/self" | "/v1/status/leader" | "/v1/event/stream"
            )
        {
            return None;
        }
        if sr.only_stale_param {
            let stale = crate::http_common::parse_pairs(query)
                .iter()
                .any(|(k, v)| k == "stale" && (v.is_empty() || v == "true"));
            if !stale {
                return None;
            }
        }
        if sr.rate < 1.0 && self.dice.roll() >= sr.rate {
            return None;
        }
        Some(state)
    }

    pub fn decide(&self, path: &str) -> FaultAction {
        if !self.applies(path) {
            return FaultAction::None;
        }
        if self.leader_lost && path != "/v1/agent/self" && path != "/v1/status/leader" {
            return FaultAction::NoLeader;
        }
        if self.drop_rate > 0.0 && self.dice.roll() < self.drop_rate {
            return FaultAction::Drop;
        }
        if self.error_rate > 0.0 && self.dice.roll() < self.error_rate {
            return FaultAction::Error;
        }
        FaultAction::None
    }
}

impl Cluster {
    /// The answer to a drain write under `drains_not_applied`: what an
    /// applied drain gets (a fresh Raft index for both indexes, no
    /// evaluation), with the node left as it was. An unknown node is still
    /// refused as Nomad refuses it.
    pub fn accept_drain_unapplied(
        &mut self,
        node_id: &str,
    ) -> Result<NodeUpdateResponse, StateError> {
        if !self.nodes.contains_key(node_id) {
            return Err(StateError::NodeNotFound);
        }
        let idx = self.bump();
        Ok(NodeUpdateResponse {
            eval_create_index: 0,
            eval_ids: None,
            index: idx,
            node_modify_index: idx,
        })
    }
}

/// The `truncated_json` fault: a `200` JSON answer under the prefix keeps
/// its status and headers and loses the second half of its body.
pub async fn truncate_json(
    app: &crate::App,
    path: &str,
    r: crate::http_common::Resp,
) -> crate::http_common::Resp {
    use http_body_util::BodyExt;
    let cut = {
        let f = app.faults.lock().unwrap();
        f.truncated_json && f.applies(path) && path != "/v1/event/stream"
    };
    let json = r
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !cut || !json || r.status() != hyper::StatusCode::OK {
        return r;
    }
    let (mut parts, body) = r.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let half = bytes.slice(..bytes.len() / 2);
    parts.headers.remove("content-length");
    hyper::Response::from_parts(parts, crate::http_common::full(half))
}
