//! The planner's facts about a pool's nodes, kept between reconciles.
//!
//! A reconcile plans on every node of the pool, and building the facts of
//! 5,000 nodes afresh each time (three strings each, a drain Meta parsed)
//! was the largest single cost of a reconcile in the scale-in benchmark,
//! with freeing them again. The node view shares each unchanged node's stub
//! between its snapshots, so a node whose stub and instance ID are the ones
//! seen last time keeps its facts; only the nodes that changed are built.

use std::sync::{Arc, Mutex};

use super::super::drain_meta;
use super::super::plan::{LastDrainStatus, NodeFacts, NodeStatus};
use super::super::watch::{NodeList, NodesSnapshot};
use crate::nomad::{self, DrainStatus, NodeListStub};

/// The facts of the pool's last snapshot, with the stubs they came from.
#[derive(Default)]
pub struct FactsCache {
    last: Mutex<Last>,
}

#[derive(Default)]
struct Last {
    /// The pool's key and UID the facts' drain marks were read with.
    owner: (String, String),
    /// Sorted by node ID, as the node view keeps them.
    stubs: NodeList,
    facts: Arc<Vec<NodeFacts>>,
}

impl FactsCache {
    /// The facts of `snapshot`'s nodes, reusing those of unchanged nodes.
    /// Reconciles of one pool run one at a time, so the previous facts are
    /// usually no longer shared here and are reused in place.
    pub fn of(&self, snapshot: &NodesSnapshot, key: &str, uid: &str) -> Arc<Vec<NodeFacts>> {
        let mut last = self.last.lock().expect("facts cache lock");
        if last.owner.0 != key || last.owner.1 != uid {
            *last = Last {
                owner: (key.to_owned(), uid.to_owned()),
                ..Last::default()
            };
        }
        let old_stubs = std::mem::take(&mut last.stubs);
        let old_facts = Arc::try_unwrap(std::mem::take(&mut last.facts))
            .unwrap_or_else(|shared| (*shared).clone());
        let mut old = old_stubs.iter().zip(old_facts).peekable();
        let mut facts = Vec::with_capacity(snapshot.nodes.len());
        for n in snapshot.nodes.iter() {
            // Both are in node ID order: a merge finds the node's old facts.
            while old.next_if(|(s, _)| s.id < n.id).is_some() {}
            let instance = snapshot.instance_ids.get(&n.id);
            let opted_out = snapshot.opted_out.contains(&n.id);
            let kept = old
                .next_if(|(s, f)| {
                    Arc::ptr_eq(s, n)
                        && f.instance_id.as_ref() == instance
                        && f.do_not_retire == opted_out
                })
                .map(|(_, f)| f);
            facts.push(kept.unwrap_or_else(|| fact(n, instance.cloned(), opted_out, key, uid)));
        }
        last.stubs = snapshot.nodes.clone();
        last.facts = Arc::new(facts);
        last.facts.clone()
    }
}

/// The facts of every node of `snapshot`, built afresh (nodes read outside
/// the node view).
pub fn node_facts(snapshot: &NodesSnapshot, key: &str, uid: &str) -> Vec<NodeFacts> {
    snapshot
        .nodes
        .iter()
        .map(|n| {
            let instance = snapshot.instance_ids.get(&n.id).cloned();
            fact(n, instance, snapshot.opted_out.contains(&n.id), key, uid)
        })
        .collect()
}

/// A node of the view as the planner takes it.
pub(super) fn fact(
    n: &NodeListStub,
    instance_id: Option<String>,
    do_not_retire: bool,
    key: &str,
    uid: &str,
) -> NodeFacts {
    NodeFacts {
        do_not_retire,
        id: n.id.clone(),
        name: n.name.clone(),
        status: match n.status {
            nomad::NodeStatus::Ready => NodeStatus::Ready,
            nomad::NodeStatus::Down => NodeStatus::Down,
            nomad::NodeStatus::Disconnected => NodeStatus::Disconnected,
            _ => NodeStatus::Initializing,
        },
        eligible: n.scheduling_eligibility == nomad::SchedulingEligibility::Eligible,
        draining: n.drain,
        last_drain: n.last_drain.as_ref().and_then(|d| match d.status {
            DrainStatus::Draining => Some(LastDrainStatus::Draining),
            DrainStatus::Complete => Some(LastDrainStatus::Complete),
            DrainStatus::Canceled => Some(LastDrainStatus::Canceled),
            _ => None,
        }),
        last_drain_started: n.last_drain.as_ref().and_then(|d| d.started_at),
        last_drain_mark: n
            .last_drain
            .as_ref()
            .and_then(|d| drain_meta::read_drain_meta_of(&d.meta, key, uid)),
        create_index: n.create_index,
        instance_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn stub(id: &str, eligible: bool) -> Arc<NodeListStub> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "ID": id, "Name": format!("n-{id}"), "Datacenter": "dc1",
                "SchedulingEligibility": if eligible { "eligible" } else { "ineligible" },
                "Status": "ready", "CreateIndex": 1, "ModifyIndex": 1,
            }))
            .unwrap(),
        )
    }

    fn snapshot(nodes: &[&Arc<NodeListStub>], instances: &[(&str, &str)]) -> NodesSnapshot {
        NodesSnapshot {
            index: 1,
            nodes: nodes.iter().map(|n| (*n).clone()).collect(),
            instance_ids: Arc::new(
                instances
                    .iter()
                    .map(|(n, i)| (n.to_string(), i.to_string()))
                    .collect::<HashMap<_, _>>(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn unchanged_nodes_keep_their_facts_changed_ones_are_built_again() {
        let cache = FactsCache::default();
        let (a, b, c) = (stub("a", true), stub("b", true), stub("c", true));
        let first = cache.of(&snapshot(&[&a, &b, &c], &[("a", "i-a")]), "ns/p", "u");
        assert_eq!(first.len(), 3);
        assert_eq!(first[0].instance_id.as_deref(), Some("i-a"));
        let a_id = first[0].id.as_ptr();
        // Nothing else holds the facts (the sibling watch keeps the node
        // view's instance map, not them): reused in place, not copied.
        drop(first);

        // b changes (a new stub), c leaves, d joins, b's instance is read.
        let (b2, d) = (stub("b", false), stub("d", true));
        let s = snapshot(&[&a, &b2, &d], &[("a", "i-a"), ("b", "i-b")]);
        let next = cache.of(&s, "ns/p", "u");
        assert_eq!(*next, node_facts(&s, "ns/p", "u"), "same as built afresh");
        assert_eq!(next[0].id.as_ptr(), a_id, "a's facts moved, not cloned");
        assert!(!next[1].eligible);
        assert_eq!(next[1].instance_id.as_deref(), Some("i-b"));

        // Held by a reconcile still: the next call does not change it.
        let held = next.clone();
        let s2 = snapshot(&[&a, &d], &[("a", "i-a")]);
        let after = cache.of(&s2, "ns/p", "u");
        assert_eq!(held.len(), 3);
        assert_eq!(*after, node_facts(&s2, "ns/p", "u"));
    }
}
