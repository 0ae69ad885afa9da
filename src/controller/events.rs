//! Kubernetes Events on pools, published off the reconcile path.
//!
//! A retirement emits six Events (Selected … Retired), each an API round
//! trip. Published inline they ran one after another at the end of every
//! reconcile, so a slow or struggling API server held back the next
//! reconcile and every node waiting on it. One background task per process
//! publishes them in order instead; the reconcile only queues them. (In the
//! scale-in bench the measured gain was small: the status write, not the
//! Events, is what a reconcile waits on there; see BENCHMARKS.md.)
//!
//! The task writes `events.k8s.io/v1` Events itself rather than through
//! kube's `Recorder`. The Recorder keeps every Event it published for six
//! minutes to count repeats, under a key that includes the pool's
//! resourceVersion, which changes with each status write: in a 1,000-client
//! scale-in it held ~6,000 full Events that no repeat could ever match, about
//! 20 MiB of the operator's peak memory. Here a repeat is the same reason,
//! note, type and node on the same pool within six minutes, and only what a
//! repeat needs (the Event's name and count) is kept, for at most
//! `SERIES_KEYS` keys.

use std::collections::HashMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch};
use kube::runtime::events::{Event, EventType, Reporter};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::warn;

use crate::controller::{patch_params, post_params};
use crate::metrics::metrics;

/// Events waiting to be published. Beyond this the API server is far behind
/// (or down), and newer Events are dropped with a warning rather than held
/// in memory without bound; status and logs carry the same facts.
const QUEUE: usize = 10_000;

/// A repeat within this time bumps the first Event's series instead of
/// creating another Event (the window client-go and kube use).
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// Most repeat keys remembered. A repeat whose key was forgotten creates a
/// new Event, which is harmless; the bound keeps memory flat however many
/// clients a scale-in retires.
const SERIES_KEYS: usize = 1_000;

#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::Sender<(Event, ObjectReference)>,
}

impl EventSink {
    /// Start the publishing task (needs a Tokio runtime).
    pub fn start(client: Client, reporter: Reporter) -> Self {
        let (tx, mut rx) = mpsc::channel::<(Event, ObjectReference)>(QUEUE);
        tokio::spawn(async move {
            let mut publisher = Publisher {
                client,
                reporter,
                series: Series::default(),
                last_name_nanos: 0,
            };
            while let Some((ev, regarding)) = rx.recv().await {
                match publisher.publish(&ev, regarding).await {
                    Ok(outcome) => metrics().event(outcome),
                    Err(e) => {
                        metrics().event("failed");
                        warn!(error = %e, reason = ev.reason, "publishing event failed");
                    }
                }
            }
        });
        EventSink { tx }
    }

    /// Queue an Event; never waits.
    pub fn publish(&self, ev: Event, reference: ObjectReference) {
        if let Err(e) = self.tx.try_send((ev, reference)) {
            let (ev, _) = e.into_inner();
            metrics().event("dropped");
            warn!(
                reason = ev.reason,
                "event queue full ({QUEUE}); event dropped"
            );
        }
    }
}

/// What makes two Events the same occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    namespace: String,
    /// The pool's UID (its name when the UID is unknown), not its
    /// resourceVersion.
    regarding: String,
    related: Option<String>,
    warning: bool,
    reason: String,
    note: Option<String>,
}

#[derive(Clone, Debug)]
struct Seen {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Repeat keys of recent Events, bounded by `SERIES_KEYS`.
#[derive(Default)]
struct Series {
    seen: HashMap<Key, Seen>,
}

impl Series {
    /// The Event a repeat at `now` belongs to, with its new count.
    fn repeat(&mut self, key: &Key, now: Timestamp) -> Option<(String, i32)> {
        let seen = self.seen.get_mut(key)?;
        if now.duration_since(seen.last) >= SERIES_WINDOW {
            self.seen.remove(key);
            return None;
        }
        seen.count += 1;
        seen.last = now;
        Some((seen.name.clone(), seen.count))
    }

    fn created(&mut self, key: Key, name: String, now: Timestamp) {
        if self.seen.len() >= SERIES_KEYS {
            self.seen
                .retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
        }
        if self.seen.len() >= SERIES_KEYS {
            // Still full of recent keys: forget the oldest.
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(_, s)| s.last)
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
        self.seen.insert(
            key,
            Seen {
                name,
                count: 1,
                last: now,
            },
        );
    }
}

struct Publisher {
    client: Client,
    reporter: Reporter,
    series: Series,
    /// Event names end in the creation time in nanoseconds, kept strictly
    /// increasing so two Events of one instant never collide.
    last_name_nanos: i128,
}

impl Publisher {
    /// Create the Event, or count a repeat on the first one; which of the
    /// two it was.
    async fn publish(
        &mut self,
        ev: &Event,
        regarding: ObjectReference,
    ) -> kube::Result<&'static str> {
        let now = Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_default();
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
        let key = Key {
            namespace: namespace.clone(),
            regarding: regarding
                .uid
                .clone()
                .or_else(|| regarding.name.clone())
                .unwrap_or_default(),
            related: ev.secondary.as_ref().and_then(|r| r.name.clone()),
            warning: ev.type_ == EventType::Warning,
            reason: ev.reason.clone(),
            note: ev.note.clone(),
        };
        if let Some((name, count)) = self.series.repeat(&key, now) {
            let patch = json!({
                "series": EventSeries {
                    count,
                    last_observed_time: MicroTime(now),
                }
            });
            let patched = api
                .patch(&name, &patch_params(), &Patch::Merge(&patch))
                .await;
            if patched.is_err() {
                // Gone or unreachable: the next repeat starts a new Event
                // rather than failing on this one for as long as it repeats.
                self.series.seen.remove(&key);
            }
            return patched.map(|_| "repeated");
        }
        let nanos = now.as_nanosecond().max(self.last_name_nanos + 1);
        self.last_name_nanos = nanos;
        let name = format!(
            "{}.{nanos:x}",
            regarding
                .name
                .as_deref()
                .unwrap_or(&self.reporter.controller)
        );
        let event = K8sEvent {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            type_: Some(
                match ev.type_ {
                    EventType::Normal => "Normal",
                    EventType::Warning => "Warning",
                }
                .into(),
            ),
            regarding: Some(regarding),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.reporter.controller.clone()),
            reporting_instance: Some(
                self.reporter
                    .instance
                    .clone()
                    .unwrap_or_else(|| self.reporter.controller.clone()),
            ),
            ..Default::default()
        };
        api.create(&post_params(), &event).await?;
        self.series.created(key, name, now);
        Ok("created")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(note: &str) -> Key {
        Key {
            namespace: "ns".into(),
            regarding: "uid-1".into(),
            related: Some("client-1".into()),
            warning: true,
            reason: "TerminateBlocked".into(),
            note: Some(note.into()),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_repeat_within_the_window_counts_on_the_first_event() {
        let mut s = Series::default();
        assert_eq!(s.repeat(&key("a"), at("2026-11-27T00:00:00Z")), None);
        s.created(key("a"), "pool.1".into(), at("2026-11-27T00:00:00Z"));
        assert_eq!(
            s.repeat(&key("a"), at("2026-11-27T00:05:00Z")),
            Some(("pool.1".into(), 2))
        );
        // The window runs from the latest repeat.
        assert_eq!(
            s.repeat(&key("a"), at("2026-11-27T00:10:59Z")),
            Some(("pool.1".into(), 3))
        );
        // Another note is another Event.
        assert_eq!(s.repeat(&key("b"), at("2026-11-27T00:11:00Z")), None);
        // Past the window, a new Event.
        assert_eq!(s.repeat(&key("a"), at("2026-11-27T00:17:00Z")), None);
        assert!(s.seen.is_empty());
    }

    #[test]
    fn remembered_keys_stay_bounded() {
        let mut s = Series::default();
        let t0 = at("2026-11-27T00:00:00Z");
        for i in 0..(SERIES_KEYS + 500) {
            let now = t0 + SignedDuration::from_millis(i as i64);
            s.created(key(&i.to_string()), format!("pool.{i}"), now);
        }
        assert_eq!(s.seen.len(), SERIES_KEYS);
        // The oldest went first; the newest is still counted.
        assert!(!s.seen.contains_key(&key("0")));
        let last = (SERIES_KEYS + 499).to_string();
        assert!(
            s.repeat(&key(&last), t0 + SignedDuration::from_secs(2))
                .is_some()
        );
    }
}
