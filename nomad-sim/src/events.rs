//! The event stream (`GET /v1/event/stream`): a bounded buffer of recent
//! event batches (Nomad's `event_buffer_size`, default 100) plus a broadcast
//! channel for live subscribers. Only topic `Node` is produced; every node
//! write publishes one batch at its Raft index, with the full sanitized node
//! as payload (`{"Node": {...}}`).

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::wire::Node;

#[derive(Debug)]
pub struct EventItem {
    pub topic: String,
    pub key: String,
    /// The serialized event object.
    pub json: String,
}

#[derive(Debug)]
pub struct Batch {
    pub index: u64,
    pub events: Vec<EventItem>,
}

pub struct EventBroker {
    cap: usize,
    buffer: VecDeque<Arc<Batch>>,
    tx: broadcast::Sender<Arc<Batch>>,
}

#[derive(Serialize)]
struct EventWire<'a> {
    #[serde(rename = "Topic")]
    topic: &'a str,
    #[serde(rename = "Type")]
    kind: &'a str,
    #[serde(rename = "Key")]
    key: &'a str,
    #[serde(rename = "Namespace")]
    namespace: &'a str,
    #[serde(rename = "FilterKeys")]
    filter_keys: Option<Vec<String>>,
    #[serde(rename = "Index")]
    index: u64,
    #[serde(rename = "Payload")]
    payload: NodePayload<'a>,
}

#[derive(Serialize)]
struct NodePayload<'a> {
    #[serde(rename = "Node")]
    node: &'a Node,
}

impl EventBroker {
    pub fn new(cap: usize) -> EventBroker {
        let (tx, _) = broadcast::channel(4096);
        EventBroker {
            cap: cap.max(1),
            buffer: VecDeque::new(),
            tx,
        }
    }

    pub fn publish_node(&mut self, index: u64, kind: &str, node: &Node) {
        let json = serde_json::to_string(&EventWire {
            topic: "Node",
            kind,
            key: &node.id,
            namespace: "",
            filter_keys: None,
            index,
            payload: NodePayload { node },
        })
        .expect("event serializes");
        let item = EventItem {
            topic: "Node".into(),
            key: node.id.clone(),
            json,
        };
        // One write here touches one node, so one batch per event. (Nomad
        // groups all events of one Raft index into one batch.)
        let batch = Arc::new(Batch {
            index,
            events: vec![item],
        });
        self.buffer.push_back(batch.clone());
        while self.buffer.len() > self.cap {
            self.buffer.pop_front();
        }
        let _ = self.tx.send(batch);
    }

    /// Subscribes and returns the buffered batches starting at `index`
    /// (N is included; if N is no longer buffered, the closest later one).
    pub fn subscribe(&self, index: u64) -> (Vec<Arc<Batch>>, broadcast::Receiver<Arc<Batch>>) {
        let rx = self.tx.subscribe();
        let backlog = self
            .buffer
            .iter()
            .filter(|b| index == 0 || b.index >= index)
            .cloned()
            .collect();
        (backlog, rx)
    }
}

/// A subscription's topic filter: `(topic, key)`, `*` matches anything.
#[derive(Debug, Clone)]
pub struct TopicFilter(pub Vec<(String, String)>);

impl TopicFilter {
    pub fn matches(&self, item: &EventItem) -> bool {
        self.0
            .iter()
            .any(|(t, k)| (t == "*" || *t == item.topic) && (k == "*" || *k == item.key))
    }

    /// Renders the NDJSON line for a batch, or `None` if nothing matches.
    pub fn render(&self, b: &Batch) -> Option<String> {
        let evs: Vec<&str> = b
            .events
            .iter()
            .filter(|e| self.matches(e))
            .map(|e| e.json.as_str())
            .collect();
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
