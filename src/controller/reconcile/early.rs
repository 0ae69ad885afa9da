//! Early: the actions that start as soon as their own record lands instead
//! of after every write of the reconcile. A terminate waits on its
//! retirement's `Terminating` record, a drain on its `Cordoned` one (for a
//! client selected in this plan: its object's creation, then that first
//! record); each status is written compare-and-swap, so a retirement
//! cancelled meanwhile fails the write and stops its action. What the
//! pool's status write checks for the others (that no newer spec came
//! since the plan) each checks itself before it starts
//! (`PoolsSeen::spec_moved_on`); one that finds a newer spec is left to
//! the next plan, and the reconcile ends as a refused status write would
//! end it (`Error::SpecMovedOn`).
//!
//! Why: a large scale-in writes thousands of records in one reconcile.
//! Waiting for all of them was most of the time from "allocations finished"
//! to "terminate sent"; and the 20,000-client scale-in's 4,000 drains, sent
//! together after their 4,000 records (10-13 s), ended at once on the idle
//! clients: 150-200 VMs a second ready, beyond what the terminate path
//! takes, the scale-in's slowest retirements (BENCHMARKS.md).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use kube::Api;

use super::super::plan::{self, Action};
use super::super::retirement::{sync, write};
use super::super::{Context, Error};
use crate::api::{NomadClientPool, NomadClientRetirement, NomadClientRetirementStatus};

/// A planned action and the one write it waits on, if any: none when its
/// record landed in an earlier reconcile.
struct Item<'a> {
    action: &'a Action,
    /// The instance (a terminate) or the client (a drain) acted on.
    target: &'a str,
    /// Its retirement, named in a drain's Meta.
    name: String,
    write: Option<Record>,
}

/// The write an early action waits on.
enum Record {
    /// Its retirement's new status.
    Status(Box<sync::StatusWrite>),
    /// Its retirement's object and first status (a drain of a client this
    /// plan selected).
    Create(Box<(NomadClientRetirement, NomadClientRetirementStatus)>),
}

/// The plan's actions that start early, by kind.
pub struct Lanes<'a> {
    terminates: Vec<Item<'a>>,
    drains: Vec<Item<'a>>,
}

/// Take each planned terminate's and drain's own write out of `writes`
/// (pure): its retirement's status, or for a drain its creation. A
/// terminate of a retirement created in this reconcile, and any action of
/// one taken over or finished in it, stays with `act`, after every write.
pub fn lanes<'a>(planned: &'a plan::Plan, writes: &mut sync::Writes) -> Lanes<'a> {
    let mut lanes = Lanes {
        terminates: Vec::new(),
        drains: Vec::new(),
    };
    for action in &planned.actions {
        let (node_id, target, lane) = match action {
            Action::Terminate {
                node_id,
                instance_id,
                ..
            } => (node_id, instance_id, &mut lanes.terminates),
            Action::Drain { node_id, .. } => (node_id, node_id, &mut lanes.drains),
            _ => continue,
        };
        let Some(name) = writes.names.get(node_id).cloned() else {
            continue;
        };
        let named = |o: &NomadClientRetirement| o.metadata.name.as_deref() == Some(name.as_str());
        if (writes.adopts.iter().chain(&writes.finishes)).any(|w| named(&w.object)) {
            continue;
        }
        let created = writes.creates.iter().position(|(o, _)| named(o));
        let write = match created {
            Some(_) if !matches!(action, Action::Drain { .. }) => continue,
            Some(i) => Some(Record::Create(Box::new(writes.creates.swap_remove(i)))),
            None => (writes.statuses.iter())
                .position(|w| named(&w.object))
                .map(|i| Record::Status(Box::new(writes.statuses.swap_remove(i)))),
        };
        lane.push(Item {
            action,
            target,
            name,
            write,
        });
    }
    lanes
}

impl Lanes<'_> {
    /// Whether a lane took a retirement's creation out of the writes.
    pub fn took_creations(&self) -> bool {
        (self.drains.iter()).any(|i| matches!(i.write, Some(Record::Create(_))))
    }
}

/// What the write-ahead step calls as records land.
pub struct Landed<'a> {
    /// A terminate whose own record landed: start it (on its own task).
    pub terminate: &'a (dyn Fn(&Action) + Sync),
    /// A drain whose own record landed, and its retirement: run it.
    pub drain: &'a (dyn Fn(Action, String) -> BoxFuture<'a, ()> + Sync),
    /// The retirements' records written ahead of the other actions all
    /// landed (not yet the finishes, nor the pool's status).
    pub records: &'a (dyn Fn() + Sync),
}

/// The actions the write-ahead step started: `act` runs none of them
/// again.
#[derive(Default)]
pub struct Ahead {
    /// Instances whose terminate it started.
    pub instances: HashSet<String>,
    /// Clients whose drain it ran.
    pub drains: HashSet<String>,
}

/// Each lane item's write, and its action started as soon as that one
/// write landed (at once when it has none): the terminates' records as
/// the ones a VM waits on (`write::status`), the drains' giving way to
/// them (`write::status_giving_way`), each lane `WRITE_CONCURRENCY` at once.
pub async fn run(
    (api, ctx, pool): (&Api<NomadClientRetirement>, &Context, &NomadClientPool),
    lanes: &Lanes<'_>,
    landed: &Landed<'_>,
) -> Result<Ahead, Error> {
    let overtaken = AtomicBool::new(false);
    let overtaken = &overtaken;
    // Ours to start unless a newer spec came since the plan.
    let current = move || {
        let moved_on = ctx.pools_seen.spec_moved_on(pool);
        overtaken.fetch_or(moved_on, Ordering::Relaxed);
        !moved_on
    };
    // Boxed eagerly: a lazy map over borrowed items trips the controller's
    // Send check.
    let terminates = (lanes.terminates.iter())
        .map(|item| {
            Box::pin(async move {
                if let Some(Record::Status(w)) = &item.write {
                    write::status(api, &ctx.ledgers, w).await?;
                }
                if current() {
                    (landed.terminate)(item.action);
                }
                Ok(item.target)
            }) as Call<'_>
        })
        .collect();
    let drains = (lanes.drains.iter())
        .map(|item| {
            Box::pin(async move {
                match &item.write {
                    Some(Record::Status(w)) => {
                        write::status_giving_way(api, &ctx.ledgers, w).await?;
                    }
                    Some(Record::Create(c)) => {
                        write::create_giving_way(api, pool, &ctx.ledgers, c).await?;
                    }
                    None => {}
                }
                if current() {
                    (landed.drain)(item.action.clone(), item.name.clone()).await;
                }
                Ok(item.target)
            }) as Call<'_>
        })
        .collect();
    let (instances, drains) = futures::join!(side_by_side(terminates), side_by_side(drains));
    let ahead = Ahead {
        instances: instances.map_err(Error::RetirementWrite)?,
        drains: drains.map_err(Error::RetirementWrite)?,
    };
    // As the pool's status write would have refused: the next plan, on
    // the newer spec, decides what was left (and a check that kept
    // answering so would show as a failing reconcile, not a quiet stall).
    if overtaken.load(Ordering::Relaxed) {
        return Err(Error::SpecMovedOn);
    }
    Ok(ahead)
}

/// One item's write and action; its target.
type Call<'a> = BoxFuture<'a, Result<&'a str, write::WriteError>>;

/// `calls`, `WRITE_CONCURRENCY` at once; their targets.
async fn side_by_side(calls: Vec<Call<'_>>) -> Result<HashSet<String>, write::WriteError> {
    futures::stream::iter(calls)
        .buffer_unordered(write::WRITE_CONCURRENCY)
        .map_ok(str::to_owned)
        .try_collect()
        .await
}

#[cfg(test)]
mod tests {
    use super::{Record, lanes};
    use crate::api::{RetireReason, RetirementPhase};
    use crate::controller::drain_meta::DrainMark;
    use crate::controller::plan::{self, Action};
    use crate::controller::reconcile::persist::tests::{draining, moved};
    use crate::controller::retirement::sync;

    fn terminate(node: &str) -> Action {
        Action::Terminate {
            node_id: node.into(),
            instance_id: format!("i-{node}"),
            decrement: true,
            first_attempt: true,
        }
    }

    fn drain(node: &str) -> Action {
        Action::Drain {
            node_id: node.into(),
            mark: DrainMark {
                reason: RetireReason::ScaleIn,
                cordoned_by_pool: true,
                selected_at: None,
            },
        }
    }

    #[test]
    fn an_action_waits_on_its_own_record_only() {
        let a = moved(&draining("ret-a", 0), |s| {
            s.phase = Some(RetirementPhase::Terminating)
        });
        let b = moved(&draining("ret-b", 2), |s| s.allocations_left = 1);
        let c = draining("ret-c", 0);
        let e = moved(&draining("ret-e", 2), |s| {
            s.phase = Some(RetirementPhase::Cordoned)
        });
        let f = draining("ret-f", 0);
        let mut writes = sync::Writes {
            statuses: vec![a, b, e],
            creates: vec![
                (c.clone(), c.status.clone().unwrap()),
                (f.clone(), f.status.clone().unwrap()),
            ],
            names: ["a", "b", "c", "d", "e", "f"]
                .into_iter()
                .map(|n| (n.to_string(), format!("ret-{n}")))
                .collect(),
            ..Default::default()
        };
        let planned = plan::Plan {
            // d: a retried terminate whose record landed before.
            actions: vec![
                terminate("a"),
                terminate("c"),
                terminate("d"),
                Action::Cordon {
                    node_id: "b".into(),
                },
                drain("e"),
                drain("f"),
            ],
            ..Default::default()
        };
        let lanes = lanes(&planned, &mut writes);
        let summary = |items: &[super::Item<'_>]| -> Vec<(String, Option<String>)> {
            items
                .iter()
                .map(|i| {
                    let name = i.write.as_ref().map(|w| match w {
                        Record::Status(w) => w.object.metadata.name.clone().unwrap(),
                        Record::Create(c) => {
                            format!("create {}", c.0.metadata.name.clone().unwrap())
                        }
                    });
                    (i.target.to_string(), name)
                })
                .collect()
        };
        assert_eq!(
            summary(&lanes.terminates),
            [("i-a".into(), Some("ret-a".into())), ("i-d".into(), None)],
            "c's object is created in this reconcile: its terminate waits for every write"
        );
        assert_eq!(
            summary(&lanes.drains),
            [
                ("e".into(), Some("ret-e".into())),
                ("f".into(), Some("create ret-f".into()))
            ],
            "f's object is created in this reconcile: its drain waits for that creation only"
        );
        assert_eq!(
            lanes.drains[0].name, "ret-e",
            "its Meta names its retirement"
        );
        let left: Vec<_> = (writes.statuses.iter())
            .map(|w| w.object.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(left, ["ret-b"]);
        let created: Vec<_> = (writes.creates.iter())
            .map(|(o, _)| o.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            created,
            ["ret-c"],
            "the terminate's stays in the bulk creates"
        );
        assert!(
            lanes.took_creations(),
            "the pool's status write must still check f"
        );
        let resent = plan::Plan {
            actions: vec![drain("e")],
            ..Default::default()
        };
        let mut cordoned = sync::Writes {
            statuses: vec![moved(&draining("ret-e", 2), |s| {
                s.phase = Some(RetirementPhase::Cordoned)
            })],
            names: [("e".to_string(), "ret-e".to_string())].into(),
            ..Default::default()
        };
        assert!(!super::lanes(&resent, &mut cordoned).took_creations());
    }
}
