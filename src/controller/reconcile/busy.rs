//! What a reconcile is busy with once it planned: the retirements it
//! writes and the clients it acts on, which the express lane keeps off
//! until the reconcile is done with each.

use std::collections::HashSet;
use std::sync::Mutex;

use kube::ResourceExt;

use super::super::plan;
use super::super::retirement::sync::Writes;
use super::persist::ActedOn;

/// The retirements a reconcile writes, and the clients it acts on, after
/// its plan: the lane keeps off each until the reconcile is done with it,
/// so that its compare-and-swap writes and the reconcile's never race for
/// one object, nor its terminations with the reconcile's drains. A record
/// written ahead of the actions frees its retirement once those records
/// landed (`written`), or once it landed itself when its action started
/// early (`landed`, a drain: `early`), an action frees its client once it
/// ran (`acted`):
/// waiting for the whole reconcile kept drains that ended meanwhile
/// waiting for its last write, the slowest terminations of the lane
/// (BENCHMARKS.md, thirteenth pass). What it finishes, lets go of or prunes
/// stays held to its end. A reconcile that sets the group's desired
/// capacity holds all of them: that size counts the terminations recorded
/// when it planned, and one the lane decrements meanwhile would be counted
/// twice.
#[derive(Default)]
pub struct Busy {
    ahead: Mutex<HashSet<String>>,
    ending: HashSet<String>,
    nodes: Mutex<HashSet<String>>,
    resizes: bool,
}

impl Busy {
    pub fn of(plan: &plan::Plan, writes: &Writes) -> Self {
        // A status no action of the plan rests on (figures, words,
        // conditions; a record no action is about) is written after the
        // actions and gives way to a newer record (`write::progress`):
        // holding its client for the whole reconcile made the lane's
        // slowest terminations (BENCHMARKS.md, eleventh, twelfth and
        // eighteenth passes).
        let acted_on = ActedOn::of(plan);
        let material = (writes.statuses.iter()).filter(|w| acted_on.ahead(w));
        let ahead = (writes.adopts.iter().chain(material))
            .map(|w| w.object.name_any())
            .chain(writes.creates.iter().map(|(r, _)| r.name_any()));
        let ending = (writes.finishes.iter().map(|w| &*w.object))
            .chain(writes.releases.iter().map(|r| &**r))
            .chain(writes.prunes.iter().map(|r| &**r))
            .map(ResourceExt::name_any);
        Busy {
            ahead: Mutex::new(ahead.collect()),
            ending: ending.collect(),
            nodes: Mutex::new(
                (plan.actions.iter())
                    .filter_map(|a| a.node_id().map(str::to_owned))
                    .collect(),
            ),
            resizes: (plan.actions.iter())
                .any(|a| matches!(a, plan::Action::SetDesiredCapacity { .. })),
        }
    }

    /// The records written ahead of the actions landed.
    pub fn written(&self) {
        self.ahead.lock().expect("busy lock").clear();
    }

    /// The record of retirement `name` written ahead of its action landed
    /// (a drain started early, `early`).
    pub fn landed(&self, name: &str) {
        self.ahead.lock().expect("busy lock").remove(name);
    }

    /// The reconcile's action on `node_id` ran.
    pub fn acted(&self, node_id: &str) {
        self.nodes.lock().expect("busy lock").remove(node_id);
    }

    /// Whether the lane keeps off the client `node_id` and its retirement `name`.
    pub fn holds(&self, node_id: &str, name: &str) -> bool {
        self.resizes
            || self.ending.contains(name)
            || self.nodes.lock().expect("busy lock").contains(node_id)
            || self.ahead.lock().expect("busy lock").contains(name)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{ActedOn, Busy};
    use crate::api::RetireReason;
    use crate::api::{NomadClientRetirementStatus, RetirementPhase};
    use crate::controller::drain_meta::DrainMark;
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

    /// A record change of `node`'s retirement (a drain seen running).
    fn moved_on(name: &str, node: &str) -> StatusWrite {
        let mut w = write(name);
        w.status.node_id = Some(node.into());
        w
    }

    #[test]
    fn a_record_no_action_rests_on_is_the_lanes() {
        let writes = Writes {
            statuses: vec![
                moved_on("seen-draining", "idle"),
                moved_on("drained", "drain-sent"),
            ],
            ..Default::default()
        };
        let plan = Plan {
            actions: vec![Action::Drain {
                node_id: "drain-sent".into(),
                mark: DrainMark {
                    reason: RetireReason::ScaleIn,
                    cordoned_by_pool: true,
                    selected_at: None,
                },
            }],
            ..Default::default()
        };
        let busy = Busy::of(&plan, &writes);
        assert!(
            !busy.holds("idle", "seen-draining"),
            "no action of the plan is about its client: written after them"
        );
        assert!(busy.holds("other", "drained"), "its drain rests on it");
        let resize = Plan {
            actions: vec![Action::SetDesiredCapacity { desired: 5 }],
            ..Default::default()
        };
        let acted_on = ActedOn::of(&resize);
        assert!(
            writes.statuses.iter().all(|w| acted_on.ahead(w)),
            "the group's size counts every record"
        );
        assert!(!ActedOn::of(&plan).ahead(&progress("figures")));
    }

    #[test]
    fn each_client_goes_back_to_the_lane_once_the_reconcile_is_done_with_it() {
        let writes = Writes {
            statuses: vec![write("written"), write("drain-record")],
            creates: vec![(object("created", None), Default::default())],
            finishes: vec![write("finished")],
            ..Default::default()
        };
        let plan = Plan {
            actions: vec![
                Action::Cordon {
                    node_id: "cordoned".into(),
                },
                Action::Purge {
                    node_id: "purged".into(),
                },
            ],
            ..Default::default()
        };
        let busy = Busy::of(&plan, &writes);
        busy.acted("cordoned");
        assert!(!busy.holds("cordoned", "untouched"), "its action ran");
        assert!(busy.holds("purged", "untouched"), "its action has not");
        assert!(busy.holds("some-node", "written"));
        busy.landed("drain-record");
        assert!(
            !busy.holds("some-node", "drain-record"),
            "a drain's own record landed (`early`)"
        );
        assert!(busy.holds("some-node", "written"), "the others have not");
        busy.written();
        for name in ["written", "created"] {
            assert!(!busy.holds("some-node", name), "{name}: its record landed");
        }
        assert!(
            busy.holds("some-node", "finished"),
            "what the reconcile finishes stays held to its end"
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
}
