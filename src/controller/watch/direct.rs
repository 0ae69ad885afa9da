//! Reading back a write the node view does not show.
//!
//! The node view comes from Nomad's event stream, which a buffering proxy
//! can hold back while still passing heartbeats. The pool then planned on a
//! view without its own cordon or drain and, once the write log gave up on
//! it, sent the write again, for as long as the subscription lived. Now a
//! write the view does not show within `READ_BACK_AFTER` makes the pool
//! read that node directly (`GET /v1/node/:id`, from the leader) and plan
//! on what Nomad says; a write Nomad shows and the stream did not proves
//! the stream unusable, and the node watch falls back to blocking queries.

use super::*;

/// A healthy stream shows a write within milliseconds; a busy one within a
/// second or two.
pub(super) const READ_BACK_AFTER: Duration = Duration::from_secs(5);

/// Nodes read directly, newer than the watch's view of them, with the
/// index of the write that made us read. `None`: the node is gone (purged).
pub(super) type DirectReads = Arc<Mutex<HashMap<String, (u64, Option<Arc<NodeListStub>>)>>>;

impl NodesSnapshot {
    /// Whether this view shows a write Nomad answered with `index`: the view
    /// as a whole or the node itself is at that index, or the node is gone.
    pub fn shows_write(&self, node_id: &str, index: u64) -> bool {
        self.index >= index
            || self
                .nodes
                .get(node_id)
                .is_none_or(|n| n.modify_index >= index)
    }
}

impl PoolWatch {
    /// A write to `node_id` that Nomad answered with `index`: read the node
    /// back if the view does not show it soon.
    pub fn expect_write(&self, node_id: &str, index: u64) {
        if index == 0 {
            return;
        }
        let node_id = node_id.to_owned();
        let view = self.nodes.clone();
        let client = self.client.clone();
        let direct = self.direct.clone();
        let missed = self.stream_missed.clone();
        let trigger = self.trigger.clone();
        let changed = self.changed.clone();
        tokio::spawn(async move {
            tokio::time::sleep(READ_BACK_AFTER).await;
            let shown = |view: &watch::Receiver<NodesState>| match &*view.borrow() {
                NodesState::Ready(s) => s.shows_write(&node_id, index),
                _ => false,
            };
            if shown(&view) {
                return;
            }
            let read = match client.node(&node_id, &QueryOptions::default()).await {
                Ok(resp) => Some(resp.value),
                Err(NomadError::NodeNotFound { .. }) => None,
                Err(e) => {
                    debug!(node = %node_id, error = %e, "reading back a write failed");
                    return;
                }
            };
            // Nomad shows the write, the stream did not: it is not
            // delivering. A node that does not show it (a write Nomad
            // accepted and did not apply) says nothing about the stream.
            let applied = read.as_ref().is_none_or(|n| n.modify_index >= index);
            if applied && !shown(&view) {
                warn!(
                    node = %node_id,
                    index,
                    "Nomad shows our write but the event stream did not after {}s",
                    READ_BACK_AFTER.as_secs()
                );
                missed.send_modify(|n| *n += 1);
            }
            direct.lock().expect("direct reads lock").insert(
                node_id.clone(),
                (index, read.map(|n| Arc::new(n.to_stub()))),
            );
            changed.note([node_id.as_str()]);
            trigger.fire();
        });
    }

    /// `snapshot` with the nodes read directly that it does not show yet.
    /// A direct read the watch has caught up with is forgotten.
    pub(super) fn with_direct_reads(&self, snapshot: Arc<NodesSnapshot>) -> Arc<NodesSnapshot> {
        let mut direct = self.direct.lock().expect("direct reads lock");
        if direct.is_empty() {
            return snapshot;
        }
        let mut nodes: Option<NodeList> = None;
        direct.retain(|id, (write, read)| {
            let Some(seen) = snapshot.nodes.get(id) else {
                // Not in the pool's view (any more): nothing to correct.
                return false;
            };
            let nodes = nodes.get_or_insert_with(|| snapshot.nodes.clone());
            match read {
                Some(read) if seen.modify_index >= read.modify_index => false,
                Some(read) => {
                    nodes.upsert(read.clone());
                    true
                }
                // The watch shows the node changed since our write: a
                // client that registered again after the purge.
                None if seen.modify_index >= *write => false,
                None => {
                    nodes.remove(id);
                    true
                }
            }
        });
        match nodes {
            None => snapshot,
            Some(nodes) => Arc::new(NodesSnapshot {
                index: snapshot.index,
                nodes,
                instance_ids: snapshot.instance_ids.clone(),
                opted_out: snapshot.opted_out.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stub(id: &str, modify_index: u64, drain: bool) -> Arc<NodeListStub> {
        let mut n: NodeListStub = serde_json::from_value(serde_json::json!({
            "ID": id, "Name": id, "Datacenter": "dc1", "SchedulingEligibility": "eligible",
            "Status": "ready", "CreateIndex": 1, "ModifyIndex": modify_index,
        }))
        .unwrap();
        n.drain = drain;
        Arc::new(n)
    }

    #[test]
    fn a_view_shows_a_write_by_its_index_or_the_nodes() {
        let s = NodesSnapshot {
            index: 10,
            nodes: vec![stub("a", 5, false), stub("b", 20, true)].into(),
            ..Default::default()
        };
        assert!(s.shows_write("a", 10), "the view is at the write");
        assert!(!s.shows_write("a", 15));
        assert!(s.shows_write("b", 15), "the node is past the write");
        assert!(s.shows_write("gone", 15), "a node not in the view");
    }

    #[tokio::test]
    async fn direct_reads_correct_the_view_until_it_catches_up() {
        let client = NomadClient::new(crate::nomad::NomadConfig {
            address: "http://127.0.0.1:9".into(),
            ..Default::default()
        })
        .unwrap();
        let w = PoolWatch::for_tests(client);
        let view = |a: u64, b: u64| {
            Arc::new(NodesSnapshot {
                index: 10,
                nodes: vec![stub("a", a, false), stub("b", b, false)].into(),
                ..Default::default()
            })
        };
        w.direct.lock().unwrap().extend([
            ("a".to_string(), (12, Some(stub("a", 12, true)))),
            ("b".to_string(), (12, None)),
            ("c".to_string(), (12, Some(stub("c", 12, true)))),
        ]);
        let merged = w.with_direct_reads(view(5, 5));
        let ids: Vec<_> = merged
            .nodes
            .iter()
            .map(|n| (n.id.as_str(), n.drain))
            .collect();
        assert_eq!(ids, [("a", true)], "a read back, b purged");
        assert_eq!(w.direct.lock().unwrap().len(), 2, "c is not in the pool");
        let merged = w.with_direct_reads(view(12, 5));
        assert!(
            !merged.nodes.get("a").unwrap().drain,
            "the watch caught up with a: its view wins"
        );
        assert_eq!(merged.nodes.len(), 1);
        assert_eq!(w.direct.lock().unwrap().len(), 1);
        let merged = w.with_direct_reads(view(12, 13));
        assert_eq!(merged.nodes.len(), 2, "b registered again after the purge");
        assert!(w.direct.lock().unwrap().is_empty());
    }
}
