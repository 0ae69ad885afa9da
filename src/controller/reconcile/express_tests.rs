//! Which drained clients the lane looks at on each pass.

mod ended {
    use std::collections::{HashMap, HashSet};
    use std::sync::Arc;

    use super::super::{Candidate, Ended};
    use crate::controller::watch::NodesSnapshot;
    use crate::nomad::NodeListStub;

    /// A node of the view, its drain running or complete.
    fn stub(id: &str, drained: bool) -> Arc<NodeListStub> {
        let status = if drained { "complete" } else { "draining" };
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "ID": id, "Name": id, "Datacenter": "dc1", "Status": "ready",
                "SchedulingEligibility": "ineligible", "Drain": !drained,
                "CreateIndex": 1, "ModifyIndex": 2,
                "LastDrain": {"Status": status},
            }))
            .unwrap(),
        )
    }

    fn view(nodes: &[(&str, bool)]) -> NodesSnapshot {
        let nodes = nodes.iter().map(|(id, d)| stub(id, *d)).collect();
        NodesSnapshot {
            index: 2,
            nodes,
            instance_ids: Arc::default(),
            opted_out: Arc::default(),
        }
    }

    fn candidates(ids: &[&str]) -> HashMap<String, Candidate> {
        (ids.iter())
            .map(|id| {
                let c = Candidate {
                    name: format!("r-{id}"),
                    instance: format!("i-{id}"),
                    seen: None,
                };
                (id.to_string(), c)
            })
            .collect()
    }

    fn sorted(mut ids: Vec<String>) -> Vec<String> {
        ids.sort();
        ids
    }

    fn set(ids: &[&str]) -> Option<HashSet<String>> {
        Some(ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn after_the_first_pass_only_changed_candidates_are_looked_up() {
        let cands = candidates(&["a", "b", "c"]);
        let mut ended = Ended::default();
        let v1 = view(&[("a", true), ("b", false), ("c", false), ("x", true)]);
        // The first pass looks at every candidate, whatever changed.
        assert_eq!(sorted(ended.update(&cands, set(&[]), &v1)), ["a"]);
        // b's drain ends and x (not a candidate) changes: only b is new.
        let v2 = view(&[("a", true), ("b", true), ("c", false), ("x", true)]);
        assert_eq!(
            sorted(ended.update(&cands, set(&["b", "x"]), &v2)),
            ["a", "b"]
        );
        // c ended too, but nothing says it changed: not looked up. This is
        // what makes a pass cost what changed; the watch notes every change.
        let v3 = view(&[("a", true), ("b", true), ("c", true)]);
        assert_eq!(sorted(ended.update(&cands, set(&[]), &v3)), ["a", "b"]);
        // A node that left the view (or drains again) is no longer ended.
        let v4 = view(&[("b", true), ("c", true)]);
        assert_eq!(sorted(ended.update(&cands, set(&["a"]), &v4)), ["b"]);
        // A new list: everything is looked at again.
        assert_eq!(sorted(ended.update(&cands, None, &v4)), ["b", "c"]);
        ended.remove("b");
        assert_eq!(sorted(ended.update(&cands, set(&[]), &v4)), ["c"]);
    }
}
