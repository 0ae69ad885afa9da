//! What the lane keeps off while a reconcile writes and acts.

use std::sync::Arc;

use super::Busy;
use crate::api::{NomadClientRetirementStatus, RetirementPhase};
use crate::controller::plan::{Action, Plan};
use crate::controller::retirement::records::tests::object;
use crate::controller::retirement::sync::{StatusWrite, Writes};

/// A status write that moves the retirement to another phase.
fn write(name: &str) -> StatusWrite {
    let object = Arc::new(object(name, None));
    StatusWrite {
        status: NomadClientRetirementStatus {
            phase: Some(RetirementPhase::Draining),
            ..Default::default()
        },
        object,
    }
}

/// A status write whose only news is a progress figure.
fn progress(name: &str) -> StatusWrite {
    let mut w = write(name);
    let mut object = (*w.object).clone();
    object.status = Some(w.status.clone());
    w.object = Arc::new(object);
    w.status.allocations_left = 3;
    w
}

/// A status write whose news is words, the record unchanged (a drain's
/// message as its jobs finish).
fn words(name: &str) -> StatusWrite {
    let mut w = progress(name);
    w.status.message = Some("waiting for jobs build, test".into());
    w
}

#[test]
fn the_lane_keeps_off_what_the_reconcile_writes_or_acts_on() {
    let writes = Writes {
        statuses: vec![
            write("written"),
            progress("progress-only"),
            words("words-only"),
        ],
        finishes: vec![write("finished")],
        releases: vec![Arc::new(object("released", None))],
        ..Default::default()
    };
    let plan = Plan {
        actions: vec![Action::Purge {
            node_id: "acted-on".into(),
        }],
        ..Default::default()
    };
    let busy = Busy::of(&plan, &writes);
    for name in ["written", "finished", "released"] {
        assert!(busy.holds("some-node", name), "{name}");
    }
    assert!(busy.holds("acted-on", "untouched"));
    assert!(
        !busy.holds("some-node", "untouched"),
        "the rest is the lane's"
    );
    assert!(
        !busy.holds("some-node", "progress-only"),
        "progress figures give way to the lane's record"
    );
    assert!(
        !busy.holds("some-node", "words-only"),
        "so do words that leave the record as it was"
    );
}

#[test]
fn a_reconcile_that_resizes_the_group_holds_every_retirement() {
    let plan = Plan {
        actions: vec![Action::SetDesiredCapacity { desired: 5 }],
        ..Default::default()
    };
    let busy = Busy::of(&plan, &Writes::default());
    assert!(busy.holds("some-node", "untouched"));
    assert!(!Busy::default().holds("some-node", "untouched"));
}

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
        let mut nodes: Vec<_> = nodes.iter().map(|(id, d)| stub(id, *d)).collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
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
