//! The event stream (`GET /v1/event/stream`): one bounded buffer of recent
//! event batches shared by every topic (Nomad's `event_buffer_size`,
//! default 100, counts batches of all topics), plus a broadcast channel for
//! live subscribers.
//!
//! Topics produced: `Node` (every node write, payload `{"Node": {...}}`)
//! and `Allocation` (payload `{"Allocation": {...}}` with `Job` null, Types
//! `PlanResult`, `AllocationUpdated`, `AllocationUpdateDesiredStatus`).
//! Events of one Raft index form one batch, as in Nomad: writers publish
//! into a pending batch that is flushed when the index changes or the write
//! ends ([`EventBroker::flush`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use tokio::sync::broadcast;

use crate::wire::{Allocation, Node};

/// What an event carries; rendered to JSON on first use (allocation
/// events are rendered only if a subscriber reads them).
#[derive(Debug)]
pub enum Payload {
    Node(Box<Node>),
    Allocation(Box<Allocation>),
}

#[derive(Debug)]
pub struct EventItem {
    pub topic: &'static str,
    pub kind: &'static str,
    pub key: String,
    /// `""` for Node events (delivered whatever namespace was asked for).
    pub namespace: String,
    pub filter_keys: Option<Vec<String>>,
    pub index: u64,
    payload: Payload,
    json: OnceLock<String>,
}

#[derive(Serialize)]
struct EventWire<'a, P: Serialize> {
    #[serde(rename = "Topic")]
    topic: &'a str,
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Key")]
    key: &'a str,
    #[serde(rename = "Namespace")]
    namespace: &'a str,
    #[serde(rename = "FilterKeys")]
    filter_keys: &'a Option<Vec<String>>,
    #[serde(rename = "Index")]
    index: u64,
    #[serde(rename = "Payload")]
    payload: P,
}

#[derive(Serialize)]
struct NodePayload<'a> {
    #[serde(rename = "Node")]
    node: &'a Node,
}

struct AllocPayload<'a>(&'a Allocation);

impl Serialize for AllocPayload<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry("Allocation", &self.0.without_job())?;
        m.end()
    }
}

impl EventItem {
    /// The serialized event object.
    pub fn json(&self) -> &str {
        self.json.get_or_init(|| {
            let r = match &self.payload {
                Payload::Node(n) => serde_json::to_string(&self.wire(NodePayload { node: n })),
                Payload::Allocation(a) => serde_json::to_string(&self.wire(AllocPayload(a))),
            };
            r.expect("event serializes")
        })
    }

    fn wire<P: Serialize>(&self, payload: P) -> EventWire<'_, P> {
        EventWire {
            topic: self.topic,
            kind: self.kind,
            key: &self.key,
            namespace: &self.namespace,
            filter_keys: &self.filter_keys,
            index: self.index,
            payload,
        }
    }
}

#[derive(Debug)]
pub struct Batch {
    pub index: u64,
    pub events: Vec<EventItem>,
}

pub struct EventBroker {
    cap: usize,
    buffer: VecDeque<Arc<Batch>>,
    pending: Option<Batch>,
    tx: broadcast::Sender<Arc<Batch>>,
}

impl EventBroker {
    pub fn new(cap: usize) -> EventBroker {
        let (tx, _) = broadcast::channel(4096);
        EventBroker {
            cap: cap.max(1),
            buffer: VecDeque::new(),
            pending: None,
            tx,
        }
    }

    fn push(&mut self, item: EventItem) {
        if self.pending.as_ref().is_some_and(|p| p.index != item.index) {
            self.flush();
        }
        self.pending
            .get_or_insert_with(|| Batch {
                index: item.index,
                events: Vec::new(),
            })
            .events
            .push(item);
    }

    /// Ends the current batch: buffers it and sends it to live subscribers.
    pub fn flush(&mut self) {
        let Some(b) = self.pending.take() else {
            return;
        };
        let batch = Arc::new(b);
        self.buffer.push_back(batch.clone());
        while self.buffer.len() > self.cap {
            self.buffer.pop_front();
        }
        let _ = self.tx.send(batch);
    }

    pub fn publish_node(&mut self, index: u64, kind: &'static str, node: &Node) {
        let item = EventItem {
            topic: "Node",
            kind,
            key: node.id.clone(),
            namespace: String::new(),
            filter_keys: None,
            index,
            payload: Payload::Node(Box::new(node.clone())),
            json: OnceLock::new(),
        };
        // Node events are rendered now: the node keeps changing.
        let _ = item.json();
        self.push(item);
    }

    /// An `Allocation` event (`nomad/state/events.go`): Key = allocation
    /// ID, FilterKeys = [JobID, DeploymentID], the allocation's namespace.
    pub fn publish_alloc(&mut self, index: u64, kind: &'static str, alloc: &Allocation) {
        self.push(EventItem {
            topic: "Allocation",
            kind,
            key: alloc.id.clone(),
            namespace: alloc.namespace.clone(),
            filter_keys: Some(vec![alloc.job.id.clone(), String::new()]),
            index,
            payload: Payload::Allocation(Box::new(alloc.clone())),
            json: OnceLock::new(),
        });
    }

    /// Subscribes and returns the buffered batches to replay
    /// (`eventBuffer.StartAtClosest`): all of them for index 0; otherwise
    /// from the batch at `index`, or the closest later one, or, when `index`
    /// is past the newest batch, that newest batch again.
    pub fn subscribe(&self, index: u64) -> (Vec<Arc<Batch>>, broadcast::Receiver<Arc<Batch>>) {
        let rx = self.tx.subscribe();
        let backlog: Vec<Arc<Batch>> = if index == 0 {
            self.buffer.iter().cloned().collect()
        } else {
            match self.buffer.iter().position(|b| b.index >= index) {
                Some(p) => self.buffer.iter().skip(p).cloned().collect(),
                None => self.buffer.back().cloned().into_iter().collect(),
            }
        };
        (backlog, rx)
    }

    /// Indexes of the buffered batches, oldest first (for tests).
    pub fn buffered_indexes(&self) -> Vec<u64> {
        self.buffer.iter().map(|b| b.index).collect()
    }
}

/// A subscription's filter (`nomad/stream/subscription.go` `filter`):
/// topic -> keys, and the namespaces validated for it.
#[derive(Debug, Clone)]
pub struct TopicFilter {
    pub topics: BTreeMap<String, Vec<String>>,
    pub namespaces: Vec<String>,
}

impl TopicFilter {
    /// The events of `b` this subscriber gets (Nomad's `filter`, including
    /// its repeat of an event matched by two keys).
    fn select<'a>(&self, b: &'a Batch) -> Vec<&'a EventItem> {
        let all = self.topics.get("*").cloned().unwrap_or_default();
        let mut out = Vec::new();
        for e in &b.events {
            if !e.namespace.is_empty() && !self.namespaces.contains(&e.namespace) {
                continue;
            }
            if all.len() == 1 && all[0] == "*" {
                out.push(e);
                continue;
            }
            let mut keys = all.clone();
            if let Some(k) = self.topics.get(e.topic) {
                keys.extend(k.iter().cloned());
            }
            if keys.len() == 1 && keys[0] == "*" {
                out.push(e);
                continue;
            }
            for k in &keys {
                if e.key == *k || e.filter_keys.iter().flatten().any(|f| f == k) {
                    out.push(e);
                }
            }
        }
        out
    }

    /// Renders the NDJSON line for a batch, or `None` if nothing matches.
    pub fn render(&self, b: &Batch) -> Option<String> {
        let evs: Vec<&str> = self.select(b).into_iter().map(|e| e.json()).collect();
        if evs.is_empty() {
            return None;
        }
        Some(format!(
            "{{\"Index\":{},\"Events\":[{}]}}\n",
            b.index,
            evs.join(",")
        ))
    }
}
