//! The node-list watch of a pool: a subscription to Nomad's Node events, a
//! list, then the events after it (blocking list queries where the stream
//! is unusable), publishing what the pool's nodes look like now.

use super::*;

mod stream;
use stream::{StreamEnd, Subscription};

/// The node-list watch: one full list, then Nomad's Node event stream
/// (subscribed before the list, see `Subscription`), whose
/// payloads carry whole nodes (instance IDs included) so a change costs one
/// small event instead of re-reading the whole pool. Every subscription ends
/// after `EVENT_STREAM_LIFETIME` and the list is read again, which also
/// repairs anything a gap in Nomad's event buffer hid. A Nomad whose stream is
/// unusable (closed at once, refused, stalled, or not showing a write Nomad
/// shows) is watched with blocking queries on the node list instead, for
/// `STREAM_RETRY_AFTER`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn watch_nodes(
    client: NomadClient,
    filter: Option<String>,
    selector: PoolSelector,
    instance_attribute: &'static str,
    tx: watch::Sender<NodesState>,
    trigger: Trigger,
    regressions: Regressions,
    stream_missed: watch::Receiver<u64>,
    (changed, gone): (ChangedNodes, GoneNodes),
) {
    let mut w = NodeWatch {
        client,
        filter,
        instance_attribute,
        tx,
        trigger,
        changed,
        gone,
        instance_ids: Arc::default(),
        opted_out: Arc::default(),
        stale_instances: 0,
        failing_since: None,
        backoff: Duration::ZERO,
        regressions,
        stream_missed,
    };
    let mut troubled = 0;
    loop {
        // Subscribed before the list is read, so that no change after the
        // list's index can fall into a gap (see `Subscription`).
        let subscription = if troubled < STREAM_FALLBACK_AFTER {
            Some(Subscription::open(&w.client).await)
        } else {
            None
        };
        let Some(listed) = w.list(0).await else {
            continue;
        };
        w.gone.clear();
        let index = listed.index;
        let mut nodes = listed.value;
        if troubled >= STREAM_FALLBACK_AFTER {
            warn!(
                "the Nomad event stream is unusable; watching the node list with blocking queries"
            );
            w.blocking(index, STREAM_RETRY_AFTER).await;
            troubled = 0;
            continue;
        }
        let Some(subscription) = subscription else {
            continue;
        };
        let started = Instant::now();
        let unusable = match w.follow(index, subscription, &selector, &mut nodes).await {
            // A stream that stalls or sends what no Nomad sends is as
            // unusable as one that closes at once, however long it lived.
            Err(
                e @ (NomadError::Stalled { .. }
                | NomadError::BodyTooLarge { .. }
                | NomadError::Decode { .. }),
            ) => {
                warn!(error = %e, "node event stream unusable; listing again");
                true
            }
            Err(e) => {
                debug!(error = %e, "node event stream ended; listing again");
                started.elapsed() < MIN_HEALTHY_STREAM
            }
            Ok(StreamEnd::Closed) => started.elapsed() < MIN_HEALTHY_STREAM,
            Ok(StreamEnd::Relist) => continue,
            Ok(StreamEnd::IndexWentBackwards) => {
                warn!("Nomad's index went backwards; listing the nodes again");
                w.regressions.count.fetch_add(1, Ordering::Relaxed);
                w.trigger.fire();
                // Once is a cluster restored from a snapshot. Again soon
                // after each list, a stream that replays from before the
                // index it showed went back: listing again at once would
                // turn into a request loop, so back off like any stream
                // that ends young, and fall back to blocking queries.
                started.elapsed() < MIN_HEALTHY_STREAM
            }
            // It holds back what Nomad shows: the view would freeze on
            // every subscription, so fall back at once.
            Ok(StreamEnd::MissedWrite) => {
                troubled = STREAM_FALLBACK_AFTER;
                continue;
            }
        };
        if unusable {
            troubled += 1;
            w.backoff = next_backoff(w.backoff);
            tokio::time::sleep(w.backoff).await;
        } else {
            troubled = 0;
        }
    }
}

/// A stream that ends sooner than this counts as unusable.
const MIN_HEALTHY_STREAM: Duration = Duration::from_secs(5);
/// Unusable streams in a row before falling back to blocking list queries.
const STREAM_FALLBACK_AFTER: u32 = 3;
/// How long the fallback lasts before the stream is tried again (a proxy
/// may have been fixed), so one bad spell does not cost a large pool full
/// lists on every change for the rest of the process.
const STREAM_RETRY_AFTER: Duration = Duration::from_secs(30 * 60);

struct NodeWatch {
    client: NomadClient,
    filter: Option<String>,
    instance_attribute: &'static str,
    tx: watch::Sender<NodesState>,
    trigger: Trigger,
    /// The IDs each published view changed, for the express lane.
    changed: ChangedNodes,
    /// Nodes the stream reported deregistered (see `gone`).
    gone: GoneNodes,
    instance_ids: Arc<HashMap<String, String>>,
    /// Nodes whose Meta opts them out of voluntary retirement.
    opted_out: Arc<HashSet<String>>,
    /// Entries of `instance_ids` whose node left (see `forget_instance_later`).
    stale_instances: usize,
    failing_since: Option<Instant>,
    backoff: Duration,
    regressions: Regressions,
    stream_missed: watch::Receiver<u64>,
}

/// Shared between a pool's node watch and its `PoolWatch`.
pub(super) struct Regressions {
    /// Times Nomad's index was seen going backwards.
    pub(super) count: Arc<AtomicU64>,
    pub(super) relist: Arc<Notify>,
}

impl NodeWatch {
    /// List the pool's nodes (blocking on `index` when non-zero), read the
    /// instance ID of nodes not seen before, and publish. `None` on failure,
    /// after publishing it and backing off.
    async fn list(&mut self, index: u64) -> Option<QueryResponse<NodeList>> {
        let q = QueryOptions {
            index,
            wait: (index > 0).then_some(BLOCKING_WAIT),
            stale: true,
            background: false,
        };
        let listed = match self.client.list_nodes(self.filter.as_deref(), &q).await {
            Ok(resp) => self.read_opted_out().await.map(|()| resp),
            Err(e) => Err(e),
        };
        match listed {
            Ok(resp) => {
                self.backoff = Duration::ZERO;
                self.failing_since = None;
                let resp = resp.map(|v| v.into_iter().collect::<NodeList>());
                let listed = &resp.value;
                if self.instance_ids.keys().any(|id| !listed.contains(id)) {
                    Arc::make_mut(&mut self.instance_ids).retain(|id, _| listed.contains(id));
                }
                let missing: Vec<String> = resp
                    .value
                    .iter()
                    .filter(|n| !self.instance_ids.contains_key(&n.id))
                    .map(|n| n.id.clone())
                    .collect();
                self.read_instance_ids(missing).await;
                self.publish(resp.index, resp.value.clone(), None);
                Some(resp)
            }
            Err(e) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                warn!(error = %e, "Nomad node list query failed");
                self.tx.send_replace(NodesState::Failed {
                    error: Arc::new(e),
                    since,
                });
                self.trigger.fire();
                self.backoff = next_backoff(self.backoff);
                tokio::time::sleep(self.backoff).await;
                None
            }
        }
    }

    /// The pool's nodes whose Meta opts them out, as of now: a list
    /// filtered on the key (the stub has no Meta; reading every node would
    /// cost a request per client). Read after the pool's list, so a node
    /// that registered in between is at worst taken as not opted out until
    /// its event, the same as one whose key is set a moment later.
    async fn read_opted_out(&mut self) -> Result<(), NomadError> {
        let opt_out = format!("Meta[{}] == \"true\"", quote(DO_NOT_RETIRE_META));
        let filter = match self.filter.as_deref() {
            Some(f) if !f.is_empty() => format!("({f}) and {opt_out}"),
            _ => opt_out,
        };
        let q = QueryOptions {
            stale: true,
            ..QueryOptions::default()
        };
        let client = &self.client;
        let listed = backoff::quickly("opted-out node list", || {
            client.list_nodes(Some(&filter), &q)
        })
        .await?;
        let ids: HashSet<String> = listed.value.iter().map(|n| n.id.clone()).collect();
        if *self.opted_out != ids {
            self.opted_out = Arc::new(ids);
        }
        Ok(())
    }

    /// Keep the opt-out of a node an event carried current.
    fn note_opt_out(&mut self, node: &Node) {
        let opted = node.meta.get(DO_NOT_RETIRE_META).map(String::as_str) == Some("true");
        if opted != self.opted_out.contains(&node.id) {
            let set = Arc::make_mut(&mut self.opted_out);
            if opted {
                set.insert(node.id.clone());
            } else {
                set.remove(&node.id);
            }
        }
    }

    async fn read_instance_ids(&mut self, ids: Vec<String>) {
        let details = futures::stream::iter(ids)
            .map(|id| {
                let client = self.client.clone();
                async move { (id.clone(), client.node(&id, &QueryOptions::default()).await) }
            })
            .buffer_unordered(DETAIL_CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        for (id, result) in details {
            match result {
                Ok(resp) => {
                    if let Some(instance) = instance_of(&resp.value, self.instance_attribute) {
                        self.set_instance(&id, instance);
                    }
                }
                // Purged between the list and the read: the next list drops it.
                Err(NomadError::NodeNotFound { .. }) => {}
                Err(e) => {
                    debug!(node = %id, error = %e, "node read failed; retried on the next list")
                }
            }
        }
    }

    fn set_instance(&mut self, node_id: &str, instance: String) {
        if self.instance_ids.get(node_id) != Some(&instance) {
            Arc::make_mut(&mut self.instance_ids).insert(node_id.to_owned(), instance);
        }
    }

    /// A node left: its instance entry goes in the next prune. Removing it
    /// at once copied the whole map (the snapshots the reconciles hold
    /// share it), once per purged client: a thousand copies of a
    /// 5,000-entry map in the scale-in bench. A leftover entry is harmless,
    /// as the snapshot's nodes say which entries count, and a node that
    /// comes back carries its attributes in its event.
    fn forget_instance_later(&mut self, nodes: &NodeList) {
        self.stale_instances += 1;
        if self.stale_instances > 64 && self.stale_instances * 8 > self.instance_ids.len() {
            Arc::make_mut(&mut self.instance_ids).retain(|id, _| nodes.contains(id));
            self.stale_instances = 0;
        }
    }

    /// Publish a view, with the IDs whose stub it changed (`None`: a list,
    /// every node may differ from the last view).
    fn publish(&self, index: u64, nodes: NodeList, changed: Option<&[String]>) {
        let snapshot = NodesSnapshot {
            index,
            nodes,
            instance_ids: self.instance_ids.clone(),
            opted_out: self.opted_out.clone(),
        };
        self.tx.send_replace(NodesState::Ready(Arc::new(snapshot)));
        match changed {
            Some(ids) => self.changed.note(ids.iter().map(String::as_str)),
            None => self.changed.note_all(),
        }
        self.trigger.fire();
    }

    /// Nodes whose instance is not known. A node whose attributes could not
    /// be read (a failed read at list time) gets no event until it changes:
    /// `follow` retries them, or they could never be selected until the
    /// next re-list. It keeps the set up to date event by event: looking
    /// every node up on every frame was most of the watch's cost at 5,000
    /// clients.
    fn unread_instances(&self, nodes: &NodeList) -> HashSet<String> {
        (nodes.iter())
            .filter(|n| !self.instance_ids.contains_key(&n.id))
            .map(|n| n.id.clone())
            .collect()
    }

    /// Fallback for a Nomad without a usable event stream: blocking queries
    /// on the node list, one full list per change, for `period`.
    async fn blocking(&mut self, mut index: u64, period: Duration) {
        let relist = self.regressions.relist.clone();
        let until = tokio::time::Instant::now() + period;
        let mut backwards = IndexBackoff::default();
        loop {
            let listed = tokio::select! {
                listed = self.list(index) => listed,
                _ = relist.notified() => {
                    index = 0;
                    continue;
                }
                _ = tokio::time::sleep_until(until) => return,
            };
            match listed {
                Some(resp) => {
                    let pause = backwards.after(index, resp.index);
                    index = resp.next_index(index);
                    tokio::time::sleep(pause).await;
                }
                // Retry with a plain read: a blocking query on the old index
                // would leave the pool Failed until the node table changes.
                None => index = 0,
            }
        }
    }
}

fn instance_of(node: &Node, attribute: &str) -> Option<String> {
    node.attribute(attribute).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::nomad::{NomadConfig, SchedulingEligibility};
    use serde_json::json;

    /// A change made while the first list is still being read (here: its
    /// nodes' details, slowed down) and pushed out of Nomad's event buffer by
    /// later ones must still reach the view. Subscribing after the list, from
    /// its index, lost it: Nomad starts such a subscription at the oldest
    /// event it still buffers, without a word.
    #[tokio::test]
    async fn a_change_made_while_the_list_is_read_is_not_lost_to_the_event_buffer() {
        let sim = nomad_sim::serve(nomad_sim::Config {
            event_buffer_size: 2,
            ..Default::default()
        })
        .await
        .unwrap();
        let http = reqwest::Client::new();
        let post = |path: &str, body: serde_json::Value| {
            let req = http.post(format!("{}{path}", sim.url())).json(&body);
            async move { req.send().await.unwrap() }
        };
        post("/sim/nodes", json!({"count": 2, "node_pool": "ci"})).await;
        let client = NomadClient::new(NomadConfig {
            address: sim.url(),
            ..Default::default()
        })
        .unwrap();
        let ids: Vec<String> = client
            .list_nodes(None, &QueryOptions::default())
            .await
            .unwrap()
            .value
            .iter()
            .map(|n| n.id.clone())
            .collect();
        let (a, b) = (&ids[0], &ids[1]);
        // Reading each node's details (for its instance ID) takes a while.
        post(
            "/sim/faults",
            json!({"path_prefix": "/v1/node/", "latency_ms": 800}),
        )
        .await;
        let watch = PoolWatch::for_tests(client.clone());
        // The list is answered; its details are still being read. One change
        // to `a`, then three to `b` that push it out of the buffer.
        tokio::time::sleep(Duration::from_millis(300)).await;
        post("/sim/faults", json!({})).await;
        client.set_eligibility(a, false).await.unwrap();
        for eligible in [false, true, false] {
            client.set_eligibility(b, eligible).await.unwrap();
        }
        let seen = |id: &str| match watch.nodes() {
            NodesState::Ready(s) => s
                .nodes
                .iter()
                .find(|n| n.id == id)
                .map(|n| n.scheduling_eligibility.clone()),
            _ => None,
        };
        for _ in 0..150 {
            if seen(a) == Some(SchedulingEligibility::Ineligible)
                && seen(b) == Some(SchedulingEligibility::Ineligible)
            {
                sim.shutdown().await;
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the view missed a change: a {:?}, b {:?}", seen(a), seen(b));
    }
}
