//! `GET /v1/event/stream` for Node events: the subscription and its NDJSON
//! frames.

use super::*;

/// How long a Node event-stream subscription lives before it is closed and
/// the watcher re-lists: a bounded subscription doubles as a periodic full
/// resync, which repairs anything a gap in Nomad's event buffer hid.
pub const EVENT_STREAM_LIFETIME: Duration = Duration::from_secs(600);

/// Nomad sends `{}` every 30 s; three missed heartbeats mean a dead stream.
const EVENT_STREAM_IDLE: Duration = Duration::from_secs(95);

/// Nomad answers a subscription with its headers and a `{}` heartbeat at
/// once (`nomad/event_endpoint.go`). A stream without them in this time is
/// stuck (a buffering proxy, a hung server): without this bound it held the
/// node view for the subscription's whole lifetime.
pub const EVENT_STREAM_FIRST_BYTE: Duration = Duration::from_secs(10);

/// One NDJSON line of `GET /v1/event/stream`. A heartbeat is `{}`: index 0
/// and no events.
#[derive(Debug, Default, serde::Deserialize)]
pub struct EventFrame {
    #[serde(rename = "Index", default)]
    pub index: u64,
    #[serde(rename = "Events", default)]
    pub events: Vec<NomadEvent>,
}

#[derive(Debug, serde::Deserialize)]
pub struct NomadEvent {
    #[serde(rename = "Topic", default)]
    pub topic: String,
    /// `NodeRegistration`, `NodeDeregistration`, `NodeEligibility`,
    /// `NodeDrain`, `NodeStreamEvent` (the docs' `NodeEvent`).
    #[serde(rename = "Type", default)]
    pub kind: String,
    #[serde(rename = "Index", default)]
    pub index: u64,
    #[serde(rename = "Payload", default)]
    pub payload: EventPayload,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct EventPayload {
    #[serde(rename = "Node", default)]
    pub node: Option<crate::nomad::types::Node>,
}

/// A live subscription to Node events.
pub struct NodeEventStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
    /// How much of `buf` is known to hold no newline: a long frame arriving
    /// in small chunks is scanned once, not once per chunk.
    scanned: usize,
    endpoint: String,
    /// No frame yet: the first must come within `EVENT_STREAM_FIRST_BYTE`.
    opening: bool,
    /// The subscription's connection, parked for its lifetime.
    _permit: super::budget::Permit,
}

impl NomadClient {
    /// `GET /v1/event/stream?topic=Node&index=N`: every change to any node,
    /// with the full node as payload, from index `index` (inclusive).
    pub async fn node_events(&self, index: u64) -> Result<NodeEventStream, NomadError> {
        let (url, endpoint) = self.url(
            &Method::GET,
            &["event", "stream"],
            vec![("topic", "Node".to_string()), ("index", index.to_string())],
        );
        // Waiting for a free connection is not Nomad being slow: the
        // first-byte bound starts once the request can go.
        let permit = self.permit(super::budget::Lane::View).await;
        let started = Instant::now();
        let send = self
            .request(Method::GET, url)
            .timeout(EVENT_STREAM_LIFETIME)
            .send();
        let stalled = || NomadError::Stalled {
            endpoint: endpoint.clone(),
            stage: crate::nomad::StallStage::Opening,
            waited: EVENT_STREAM_FIRST_BYTE,
        };
        let resp = tokio::time::timeout(EVENT_STREAM_FIRST_BYTE, send)
            .await
            .map_err(|_| {
                crate::metrics::metrics().nomad_request(&endpoint, None, started.elapsed());
                stalled()
            })?
            .map_err(|e| {
                crate::metrics::metrics().nomad_request(&endpoint, None, started.elapsed());
                NomadError::from_reqwest(&endpoint, e)
            })?;
        let status = resp.status();
        crate::metrics::metrics().nomad_request(
            &endpoint,
            Some(status.as_u16()),
            started.elapsed(),
        );
        if !status.is_success() {
            let body = super::body::error_body(resp).await;
            return Err(status_error(status, &body, endpoint, NodeScope::None));
        }
        Ok(NodeEventStream {
            resp,
            buf: Vec::new(),
            scanned: 0,
            endpoint,
            opening: true,
            _permit: permit,
        })
    }
}

impl NodeEventStream {
    /// The next frame (heartbeats included), or `None` when the server ended
    /// the stream. The subscription's lifetime ending is an error like any
    /// other: the caller re-lists.
    pub async fn next(&mut self) -> Result<Option<EventFrame>, NomadError> {
        loop {
            let from = self.scanned;
            let newline = self.buf[from..].iter().position(|b| *b == b'\n');
            self.scanned = self.buf.len();
            if let Some(pos) = newline.map(|p| from + p) {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                self.scanned = 0;
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                self.opening = false;
                return super::body::decode(line, &self.endpoint).map(Some);
            }
            // One frame is held whole before it is decoded: a line that
            // never ends must not grow without bound.
            if self.buf.len() > super::body::EVENT_FRAME_LIMIT {
                return Err(NomadError::BodyTooLarge {
                    endpoint: self.endpoint.clone(),
                    limit: super::body::EVENT_FRAME_LIMIT,
                });
            }
            let (wait, stage) = if self.opening {
                (EVENT_STREAM_FIRST_BYTE, crate::nomad::StallStage::Opening)
            } else {
                (EVENT_STREAM_IDLE, crate::nomad::StallStage::Frames)
            };
            let chunk = tokio::time::timeout(wait, self.resp.chunk())
                .await
                .map_err(|_| NomadError::Stalled {
                    endpoint: self.endpoint.clone(),
                    stage,
                    waited: wait,
                })?
                .map_err(|e| NomadError::from_reqwest(&self.endpoint, e))?;
            match chunk {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}
