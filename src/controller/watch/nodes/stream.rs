//! Following Nomad's Node event stream after a list: the subscription
//! opened before the list, and the frames applied to the listed nodes.

use super::*;

/// What a frame's events are applied to (`apply_events`): the list as of
/// `index`, the pool's selector, and the nodes whose instance is unread.
struct Listed<'a> {
    index: u64,
    selector: &'a PoolSelector,
    nodes: &'a mut NodeList,
    missing: &'a mut HashSet<String>,
}

/// Why a subscription ended without an error.
pub(super) enum StreamEnd {
    Closed,
    /// The stream itself showed the cluster's index going backwards.
    IndexWentBackwards,
    /// The index probe asked for a fresh list.
    Relist,
    /// Nomad showed a write of ours that the stream did not deliver.
    MissedWrite,
}

/// A Node event subscription opened before the node list is read, its
/// frames read as they come while the list is out.
///
/// Nomad's event broker starts a subscription asked for an index it no
/// longer buffers at the oldest event it still has, silently
/// (`nomad/stream/event_broker.go` `Subscribe`, `StartAtClosest`; the
/// buffer holds `event_buffer_size` batches, 100 by default). Subscribing
/// after the list from the list's index lost every change made while a
/// large list was read and answered once the buffer had moved on: in the
/// 20,000-client bench, 39 nodes whose drains ended then stayed `Draining`
/// in the pool's view until the subscription's lifetime ran out. Opened
/// first, the subscription holds every change from then on; the replayed
/// ones the list already shows are skipped by index. Its frames are read
/// into a queue meanwhile, or Nomad would drop a subscriber that falls
/// behind.
pub(super) struct Subscription {
    frames: tokio::sync::mpsc::UnboundedReceiver<Result<Option<EventFrame>, NomadError>>,
    reader: JoinHandle<()>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Subscription {
    /// Opened once Nomad answered the request (the subscription exists);
    /// a refusal is its first frame.
    pub(super) async fn open(client: &NomadClient) -> Subscription {
        let (tx, frames) = tokio::sync::mpsc::unbounded_channel();
        let opened = client.node_events(0).await;
        let reader = tokio::spawn(async move {
            let mut stream = match opened {
                Ok(stream) => stream,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            loop {
                let frame = stream.next().await;
                let more = matches!(frame, Ok(Some(_)));
                if tx.send(frame).is_err() || !more {
                    return;
                }
            }
        });
        Subscription { frames, reader }
    }

    async fn next(&mut self) -> Result<Option<EventFrame>, NomadError> {
        self.frames.recv().await.unwrap_or(Ok(None))
    }
}

impl NodeWatch {
    /// Apply Node events after `index` to `nodes` until the stream ends.
    pub(super) async fn follow(
        &mut self,
        index: u64,
        mut stream: Subscription,
        selector: &PoolSelector,
        nodes: &mut NodeList,
    ) -> Result<StreamEnd, NomadError> {
        let mut last = index;
        let mut batches = 0u32;
        // Only misses from now on concern this subscription.
        self.stream_missed.borrow_and_update();
        let mut missing = self.unread_instances(nodes);
        loop {
            let relist = self.regressions.relist.clone();
            let mut missed = self.stream_missed.clone();
            let next_frame = async {
                tokio::select! {
                    next = stream.next() => next.map(Ok),
                    // The probe saw the cluster go back: its counter is
                    // already raised.
                    _ = relist.notified() => Ok(Err(StreamEnd::Relist)),
                    Ok(()) = missed.changed() => Ok(Err(StreamEnd::MissedWrite)),
                }
            };
            let next = if missing.is_empty() {
                match next_frame.await? {
                    Ok(next) => next,
                    Err(end) => return Ok(end),
                }
            } else {
                match tokio::time::timeout(DETAIL_RETRY, next_frame).await {
                    Ok(next) => match next? {
                        Ok(next) => next,
                        Err(end) => return Ok(end),
                    },
                    Err(_) => {
                        let known = self.instance_ids.len();
                        self.read_instance_ids(missing.iter().cloned().collect())
                            .await;
                        missing.retain(|id| !self.instance_ids.contains_key(id));
                        if self.instance_ids.len() > known {
                            // Instance IDs only: no node's stub changed.
                            self.publish(last, nodes.clone(), Some(&[]));
                        }
                        continue;
                    }
                }
            };
            let Some(frame) = next else { break };
            if frame.index > 0 {
                // Opened before the list, the subscription first replays
                // what the list already shows.
                if batches == 0 && frame.index <= index {
                    continue;
                }
                batches += 1;
                // Within one subscription Nomad's indexes only grow; only the
                // first batch may replay what the list already showed (an
                // index past the newest event re-delivers the newest). A
                // later batch at or below what we hold means the cluster went
                // backwards (a snapshot restore, a rebuilt cluster): its
                // events would all be skipped below, so list again.
                if batches > 1 && frame.index <= last {
                    return Ok(StreamEnd::IndexWentBackwards);
                }
            }
            let listed = Listed {
                index,
                selector,
                nodes: &mut *nodes,
                missing: &mut missing,
            };
            let changed = self.apply_events(frame.events, listed, &mut last);
            if !changed.is_empty() {
                self.publish(last, nodes.clone(), Some(&changed));
            }
        }
        Ok(StreamEnd::Closed)
    }

    /// Apply one frame's node events to the list (events at or below the
    /// list's `index` are already in it); the IDs of the nodes that changed.
    /// `last` becomes the highest index applied.
    fn apply_events(
        &mut self,
        events: Vec<crate::nomad::NomadEvent>,
        listed: Listed<'_>,
        last: &mut u64,
    ) -> Vec<String> {
        let Listed {
            index,
            selector,
            nodes,
            missing,
        } = listed;
        let mut changed = Vec::new();
        for ev in events {
            let Some(node) = ev.payload.node else {
                continue;
            };
            if ev.topic != "Node" || ev.index <= index {
                continue;
            }
            if ev.kind == "NodeDeregistration" {
                self.gone.deregistered(&node.id, ev.index);
            } else {
                self.gone.seen(&node.id);
            }
            if ev.kind == "NodeDeregistration" || !selector.matches(&node) {
                if nodes.remove(&node.id) {
                    changed.push(node.id.clone());
                }
                missing.remove(&node.id);
                if self.instance_ids.contains_key(&node.id) {
                    self.forget_instance_later(nodes);
                }
            } else {
                if let Some(instance) = instance_of(&node, self.instance_attribute) {
                    self.set_instance(&node.id, instance);
                    missing.remove(&node.id);
                } else if !self.instance_ids.contains_key(&node.id) {
                    missing.insert(node.id.clone());
                }
                self.note_opt_out(&node);
                nodes.upsert(Arc::new(node.to_stub()));
                changed.push(node.id.clone());
            }
            *last = (*last).max(ev.index);
        }
        changed
    }
}
