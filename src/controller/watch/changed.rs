//! Which nodes changed since a reader last asked.
//!
//! The express lane looked at every candidate in the node view on every
//! wake-up: ~500 lookups in a 5,000-node view per watch answer, 11 % of the
//! operator's CPU in the scale-in benchmark (BENCHMARKS.md, tenth pass),
//! while an answer changes a few nodes. The node watch notes the IDs each
//! published view changed, and a direct read the ID it corrected; the lane
//! takes them and looks again only at those.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// More IDs than this untaken (a lane disarmed while thousands of nodes
/// changed) and the reader is told to look at everything instead.
const MAX_KEPT: usize = 4096;

/// The changed node IDs, shared by the node watch and the reader.
#[derive(Clone)]
pub struct ChangedNodes(Arc<Mutex<Changed>>);

enum Changed {
    /// Anything may have changed: a new list, too many IDs, or no take yet.
    All,
    Ids(HashSet<String>),
}

impl Default for ChangedNodes {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Changed::All)))
    }
}

impl ChangedNodes {
    /// Note IDs after the view that shows their change is published, so a
    /// reader that takes them and then reads the view sees the change.
    pub fn note<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut changed = self.0.lock().expect("changed nodes lock");
        if let Changed::Ids(set) = &mut *changed {
            set.extend(ids.into_iter().map(str::to_owned));
            if set.len() > MAX_KEPT {
                *changed = Changed::All;
            }
        }
    }

    /// A view not built from the last one (a list): every node may differ.
    pub fn note_all(&self) {
        *self.0.lock().expect("changed nodes lock") = Changed::All;
    }

    /// The IDs noted since the last take, or `None` when the reader must
    /// look at every node. Take before reading the view.
    pub fn take(&self) -> Option<HashSet<String>> {
        let mut changed = self.0.lock().expect("changed nodes lock");
        match std::mem::replace(&mut *changed, Changed::Ids(HashSet::new())) {
            Changed::All => None,
            Changed::Ids(ids) => Some(ids),
        }
    }
}

impl super::PoolWatch {
    /// The nodes whose stub changed since the last call (`None`: look at
    /// every node), taken before reading the view.
    pub fn take_changed_nodes(&self) -> Option<HashSet<String>> {
        self.changed.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_gets_everything_first_then_only_what_changed() {
        let c = ChangedNodes::default();
        c.note(["a"]);
        assert_eq!(c.take(), None, "nothing taken yet");
        assert_eq!(c.take(), Some(HashSet::new()));
        c.note(["a", "b"]);
        c.note(["a"]);
        let ids = c.take().unwrap();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains("a") && ids.contains("b"));
        c.note_all();
        c.note(["c"]);
        assert_eq!(c.take(), None, "a new list");
    }

    #[test]
    fn too_many_untaken_ids_become_everything() {
        let c = ChangedNodes::default();
        c.take();
        let ids: Vec<String> = (0..=MAX_KEPT).map(|i| format!("n{i}")).collect();
        c.note(ids.iter().map(String::as_str));
        assert_eq!(c.take(), None);
        assert_eq!(c.take(), Some(HashSet::new()));
    }

    /// The node watch notes exactly the nodes an event changed, after the
    /// view that shows the change is published.
    #[tokio::test]
    async fn the_node_watch_notes_the_nodes_each_event_changed() {
        use crate::controller::watch::{NodesState, PoolWatch};
        use crate::nomad::{NomadClient, NomadConfig, QueryOptions, SchedulingEligibility};
        let sim = nomad_sim::serve(nomad_sim::Config::default())
            .await
            .unwrap();
        reqwest::Client::new()
            .post(format!("{}/sim/nodes", sim.url()))
            .json(&serde_json::json!({"count": 3, "node_pool": "ci"}))
            .send()
            .await
            .unwrap();
        let client = NomadClient::new(NomadConfig {
            address: sim.url(),
            ..Default::default()
        })
        .unwrap();
        let listed = client.list_nodes(None, &QueryOptions::default()).await;
        let a = listed.unwrap().value[0].id.clone();
        let watch = PoolWatch::for_tests(client.clone());
        let ready = |w: &PoolWatch| matches!(w.nodes(), NodesState::Ready(_));
        while !ready(&watch) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(watch.take_changed_nodes(), None, "the first list");
        client.set_eligibility(&a, false).await.unwrap();
        let mut taken = HashSet::new();
        for _ in 0..200 {
            taken.extend(watch.take_changed_nodes().expect("no new list"));
            if taken.contains(&a) {
                // Noted after it was published: the view read now shows it.
                let NodesState::Ready(view) = watch.nodes() else {
                    panic!("the view went away")
                };
                let shown = view.node(&a).map(|n| n.scheduling_eligibility.clone());
                assert_eq!(shown, Some(SchedulingEligibility::Ineligible));
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(taken, HashSet::from([a]), "only the node that changed");
        sim.shutdown().await;
    }
}
