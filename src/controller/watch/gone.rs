//! Nodes the event stream reported deregistered, kept for the reads of
//! tracked nodes the view lacks (`outside`).
//!
//! Each retirement ends with its node purged, so the node leaves the view
//! while its retirement is still tracked, and every reconcile read each
//! such node by ID to learn it is gone (a 404): at 20,000 clients ~200
//! reads per reconcile, eight at a time, 0.1-0.55 s of a reconcile's
//! observation, during which the express lane waits (BENCHMARKS.md,
//! twenty-second pass). A node the stream reported deregistered at or
//! before a view's index is gone as of that view: the read would say so.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Most IDs kept, the oldest dropped first; a forgotten one is read again
/// (and found gone), as before.
const KEEP: usize = 16_384;

/// Shared between a pool's node watch and its `PoolWatch`.
#[derive(Clone, Default)]
pub struct GoneNodes(Arc<Mutex<Gone>>);

#[derive(Default)]
struct Gone {
    /// Node ID → the index of its deregistration event.
    at: HashMap<String, u64>,
    /// Insertion order, for the bound; an entry whose index no longer
    /// matches `at` was re-registered or noted again since.
    order: VecDeque<(String, u64)>,
}

impl GoneNodes {
    /// The stream reported `id` deregistered at `index`.
    pub(super) fn deregistered(&self, id: &str, index: u64) {
        let mut g = self.0.lock().expect("gone nodes lock");
        g.at.insert(id.to_owned(), index);
        g.order.push_back((id.to_owned(), index));
        while g.order.len() > KEEP {
            let Some((old, i)) = g.order.pop_front() else {
                break;
            };
            if g.at.get(&old) == Some(&i) {
                g.at.remove(&old);
            }
        }
    }

    /// The stream showed `id` again (registered or updated): it exists.
    pub(super) fn seen(&self, id: &str) {
        let mut g = self.0.lock().expect("gone nodes lock");
        if !g.at.is_empty() {
            g.at.remove(id);
        }
    }

    /// A new list replaces what the stream said (it may follow a restore,
    /// whose indexes are not comparable with the old ones).
    pub(super) fn clear(&self) {
        let mut g = self.0.lock().expect("gone nodes lock");
        g.at.clear();
        g.order.clear();
    }

    /// Whether the stream reported `id` deregistered at or before `index`
    /// (a view's index) and not seen since.
    pub fn gone_by(&self, id: &str, index: u64) -> bool {
        let g = self.0.lock().expect("gone nodes lock");
        g.at.get(id).is_some_and(|&at| at <= index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_is_gone_only_as_of_views_at_or_after_its_deregistration() {
        let gone = GoneNodes::default();
        gone.deregistered("n1", 100);
        assert!(gone.gone_by("n1", 100));
        assert!(gone.gone_by("n1", 150));
        assert!(!gone.gone_by("n1", 99), "a view before the event");
        assert!(!gone.gone_by("n2", 150), "never reported");
    }

    #[test]
    fn a_node_seen_again_or_a_new_list_is_no_longer_gone() {
        let gone = GoneNodes::default();
        gone.deregistered("n1", 100);
        gone.deregistered("n2", 101);
        gone.seen("n1");
        assert!(!gone.gone_by("n1", 200));
        assert!(gone.gone_by("n2", 200));
        gone.clear();
        assert!(!gone.gone_by("n2", 200));
    }

    #[test]
    fn the_oldest_are_forgotten_beyond_the_bound() {
        let gone = GoneNodes::default();
        for i in 0..(KEEP as u64 + 2) {
            gone.deregistered(&format!("n{i}"), i + 1);
        }
        assert!(!gone.gone_by("n0", u64::MAX));
        assert!(!gone.gone_by("n1", u64::MAX));
        assert!(gone.gone_by("n2", u64::MAX));
        assert!(gone.gone_by(&format!("n{}", KEEP + 1), u64::MAX));
        // Noted again: the old order entry does not drop the new one.
        gone.deregistered("n2", 10 * KEEP as u64);
        for i in 0..(KEEP as u64) {
            gone.deregistered(&format!("m{i}"), 20 * KEEP as u64 + i);
        }
        assert!(!gone.gone_by("n2", u64::MAX), "dropped in its turn");
    }
}
