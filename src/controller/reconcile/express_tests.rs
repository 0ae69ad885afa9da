//! What the lane keeps off while a reconcile writes and acts.

use std::sync::Arc;

use super::Busy;
use crate::controller::plan::{Action, Plan};
use crate::controller::retirement::records::tests::object;
use crate::controller::retirement::sync::{StatusWrite, Writes};

fn write(name: &str) -> StatusWrite {
    let object = Arc::new(object(name, None));
    StatusWrite {
        status: Default::default(),
        object,
    }
}

#[test]
fn the_lane_keeps_off_what_the_reconcile_writes_or_acts_on() {
    let writes = Writes {
        statuses: vec![write("written")],
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
