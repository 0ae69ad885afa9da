//! The pool's nodes in ID order, shared in chunks between the node watch
//! and every view it published.
//!
//! The watch publishes a view per Node event. As one `Vec` of all the
//! nodes, each view cost a copy of every node's `Arc` (and dropping the
//! last view as many releases): 5 % of the operator's CPU at 5,000 clients
//! (BENCHMARKS.md, sixteenth pass), and four times that per event at
//! 20,000. In chunks, a change copies the chunk it falls in and the list
//! of chunks: a 64th of the pointers.

use std::sync::Arc;

use crate::nomad::NodeListStub;

/// Nodes per chunk when a list is built; a chunk splits in two past twice
/// this, and goes when its last node does.
const CHUNK: usize = 64;

/// Nodes in ID order, each ID once.
#[derive(Clone, Debug, Default)]
pub struct NodeList {
    /// Non-empty, each in ID order, each one's IDs below the next one's.
    chunks: Vec<Arc<Vec<Arc<NodeListStub>>>>,
    len: usize,
}

impl NodeList {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<NodeListStub>> + Clone {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The node `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<NodeListStub>> {
        let chunk = self.chunks.get(self.chunk_of(id))?;
        let at = chunk.binary_search_by(|n| n.id.as_str().cmp(id)).ok()?;
        Some(&chunk[at])
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Add `node`, or replace the node with its ID.
    pub fn upsert(&mut self, node: Arc<NodeListStub>) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![node]));
            self.len = 1;
            return;
        }
        // Past the last chunk's IDs: into the last chunk.
        let at = self.chunk_of(&node.id).min(self.chunks.len() - 1);
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        match chunk.binary_search_by(|n| n.id.cmp(&node.id)) {
            Ok(i) => chunk[i] = node,
            Err(i) => {
                chunk.insert(i, node);
                self.len += 1;
                if chunk.len() > 2 * CHUNK {
                    let tail = chunk.split_off(CHUNK);
                    self.chunks.insert(at + 1, Arc::new(tail));
                }
            }
        }
    }

    /// Take out the node `id`; whether it was there.
    pub fn remove(&mut self, id: &str) -> bool {
        let at = self.chunk_of(id);
        let Some(chunk) = self.chunks.get(at) else {
            return false;
        };
        let Ok(i) = chunk.binary_search_by(|n| n.id.as_str().cmp(id)) else {
            return false;
        };
        let chunk = Arc::make_mut(&mut self.chunks[at]);
        chunk.remove(i);
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(at);
        }
        true
    }

    /// The chunk that holds `id` or would: the first whose last ID is not
    /// below it (`chunks.len()` past the end).
    fn chunk_of(&self, id: &str) -> usize {
        self.chunks
            .partition_point(|c| c.last().is_some_and(|n| n.id.as_str() < id))
    }
}

/// Nodes in any order; of two with one ID, the later stays.
impl FromIterator<Arc<NodeListStub>> for NodeList {
    fn from_iter<I: IntoIterator<Item = Arc<NodeListStub>>>(nodes: I) -> Self {
        let mut all: Vec<Arc<NodeListStub>> = nodes.into_iter().collect();
        // Stable: the later of two equal IDs stays last, and is kept.
        all.sort_by(|a, b| a.id.cmp(&b.id));
        let mut unique: Vec<Arc<NodeListStub>> = Vec::with_capacity(all.len());
        for n in all {
            match unique.last_mut() {
                Some(last) if last.id == n.id => *last = n,
                _ => unique.push(n),
            }
        }
        let len = unique.len();
        let chunks = unique.chunks(CHUNK).map(|c| Arc::new(c.to_vec())).collect();
        NodeList { chunks, len }
    }
}

impl From<Vec<Arc<NodeListStub>>> for NodeList {
    fn from(nodes: Vec<Arc<NodeListStub>>) -> Self {
        nodes.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn stub(id: &str, modify_index: u64) -> Arc<NodeListStub> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "ID": id, "Name": id, "Datacenter": "dc1",
                "SchedulingEligibility": "eligible", "Status": "ready",
                "CreateIndex": 1, "ModifyIndex": modify_index,
            }))
            .expect("a stub"),
        )
    }

    fn ids(list: &NodeList) -> Vec<(String, u64)> {
        list.iter()
            .map(|n| (n.id.clone(), n.modify_index))
            .collect()
    }

    /// Random inserts, updates and removals keep the list equal to a
    /// sorted map, across chunk splits and emptied chunks.
    #[test]
    fn follows_a_sorted_map_through_every_change() {
        let mut list = NodeList::default();
        let mut map: BTreeMap<String, u64> = BTreeMap::new();
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for step in 0..20_000u64 {
            let id = format!("node-{:04}", next(600));
            if next(3) == 0 {
                assert_eq!(list.remove(&id), map.remove(&id).is_some(), "remove {id}");
            } else {
                list.upsert(stub(&id, step));
                map.insert(id, step);
            }
            if step % 997 == 0 {
                let want: Vec<(String, u64)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
                assert_eq!(ids(&list), want, "step {step}");
                assert_eq!(list.len(), map.len());
            }
        }
        for (id, at) in &map {
            assert_eq!(list.get(id).map(|n| n.modify_index), Some(*at));
        }
        assert!(list.get("node-9999").is_none() && !list.contains("a"));
        assert!(
            list.chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() <= 2 * CHUNK)
        );
    }

    #[test]
    fn a_change_copies_one_chunk_and_leaves_earlier_lists_alone() {
        let before: NodeList = (0..1_000).map(|i| stub(&format!("n{i:04}"), 1)).collect();
        let mut after = before.clone();
        after.upsert(stub("n0500", 2));
        assert_eq!(before.get("n0500").unwrap().modify_index, 1);
        assert_eq!(after.get("n0500").unwrap().modify_index, 2);
        let shared = (before.chunks.iter().zip(&after.chunks))
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, before.chunks.len() - 1, "only one chunk copied");
        assert!(after.remove("n0500") && !after.remove("n0500"));
        assert_eq!((before.len(), after.len()), (1_000, 999));
    }

    #[test]
    fn built_from_any_order_keeping_the_later_of_two_ids() {
        let list: NodeList = vec![stub("b", 1), stub("a", 1), stub("b", 2)].into();
        assert_eq!(ids(&list), [("a".into(), 1), ("b".into(), 2)]);
    }
}
