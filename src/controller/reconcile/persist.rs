//! Persist: the write-ahead record of a plan, written before any of its
//! side effects: each client's retirement object (created, taken over or
//! moved on), then the pool's own status; after them the retirements the
//! plan let go of are finished. What no action waits on (statuses that
//! leave the record as it was or that no action is about, the pruning of
//! old history) is written after the actions.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use kube::{Api, ResourceExt};

use super::super::plan::{self, Action};
use super::super::retirement::hold::HoldFacts;
use super::super::retirement::{records, sync, write};
use super::super::{Context, Error, post_params, status};
use super::early;
use super::observe::Observed;
use crate::api::{NomadClientPool, NomadClientPoolStatus, NomadClientRetirement, RetirementPhase};

/// How long a status whose only news is progress figures (counts,
/// messages; see `status::only_progress_differs`) may wait for the next write.
pub const PROGRESS_WRITE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a retirement whose only news is progress (allocations left,
/// blocking allocations, its message) may wait for the next write. Longer
/// than the pool's: a scale-in has hundreds of retirements whose counts move
/// every few seconds, and each write costs the API server a full update;
/// phases are always written at once.
pub const RETIREMENT_PROGRESS_INTERVAL: Duration = Duration::from_secs(15);
/// How many retirements the pool's status names.
const SUMMARY_SIZE: usize = 5;

/// What the write-ahead step did.
pub struct Persisted {
    pub written: bool,
    /// Only progress figures changed and we wrote recently: not written now,
    /// the pool is requeued soon to write them.
    pub progress_waits: bool,
    /// The retirement of each client, by node ID and by node name.
    pub names: HashMap<String, String>,
    pub by_node_name: HashMap<String, String>,
    /// The pool status this step wrote or found unchanged.
    pub status: NomadClientPoolStatus,
    /// What no action waits on, written after them (`write_behind`).
    pub behind: sync::Writes,
    /// The terminates and drains this step took on (`early`).
    pub ahead: early::Ahead,
}

/// What of a plan a retirement's new record may have to land before: the
/// clients it acts on, and whether it acts on the group itself.
pub struct ActedOn<'a> {
    nodes: HashSet<&'a str>,
    /// A group-level action (the group's size counts the terminations the
    /// records name): every record lands first.
    group: bool,
}

impl<'a> ActedOn<'a> {
    pub fn of(plan: &'a plan::Plan) -> Self {
        Self {
            nodes: plan.actions.iter().filter_map(Action::node_id).collect(),
            group: plan.actions.iter().any(|a| a.node_id().is_none()),
        }
    }

    /// Whether `w` lands before the reconcile acts: it changes the record
    /// (`records::record_change`) and an action of the plan is about its
    /// client (or the group). A record no action rests on (a drain seen
    /// running: `Cordoned` to `Draining`) names no side effect; written
    /// ahead, it held its client off the express lane for the whole
    /// write-ahead step (9.6 s at 20,000 clients, 3,629 drains in flight)
    /// while its drain ended (BENCHMARKS.md, eighteenth pass). Written after the
    /// actions, it gives way to a newer record (the lane's), and the next
    /// reconcile plans from whichever landed.
    pub fn ahead(&self, w: &sync::StatusWrite) -> bool {
        let old = w.object.status.clone().unwrap_or_default();
        if !records::record_change(&old, &w.status) {
            return false;
        }
        let node = (w.status.node_id.as_deref()).or(old.node_id.as_deref());
        self.group || node.is_none_or(|n| self.nodes.contains(n))
    }
}

/// Take out of `writes` what no action of the plan depends on: statuses
/// no action rests on (`ActedOn::ahead`) and the pruning of old history.
/// The actions (a terminate call most of all) no longer wait for the API
/// server to answer them; a crash before they are written loses only what
/// the next reconcile writes again, or leaves history the next one prunes.
fn write_behind_part(writes: &mut sync::Writes, planned: &plan::Plan) -> sync::Writes {
    let acted_on = ActedOn::of(planned);
    let (ahead, behind) = std::mem::take(&mut writes.statuses)
        .into_iter()
        .partition(|w| acted_on.ahead(w));
    writes.statuses = ahead;
    sync::Writes {
        statuses: behind,
        prunes: std::mem::take(&mut writes.prunes),
        ..Default::default()
    }
}

/// After the actions: what `write_behind_part` held back.
pub async fn write_behind(
    pool: &NomadClientPool,
    ctx: &Context,
    behind: &sync::Writes,
) -> Result<(), Error> {
    if behind.is_empty() {
        return Ok(());
    }
    let api: Api<NomadClientRetirement> =
        Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    write::progress(&api, &ctx.ledgers, behind)
        .await
        .map_err(Error::RetirementWrite)?;
    write::wind_up(&api, &ctx.ledgers, behind)
        .await
        .map_err(Error::RetirementWrite)
}

/// The retirement writes `planned` needs (pure, but for what the ledger
/// remembers of our recent writes).
pub fn retirement_writes(
    pool: &NomadClientPool,
    ctx: &Context,
    seen: &Observed,
    planned: &plan::Plan,
    hold: &HoldFacts,
) -> sync::Writes {
    let blocking = seen
        .allocs
        .iter()
        .map(|(id, facts)| (id.clone(), facts.blocking.clone()))
        .collect();
    let recently =
        |r: &NomadClientRetirement| ctx.ledgers.written_within(r, RETIREMENT_PROGRESS_INTERVAL);
    sync::writes(
        &sync::Inputs {
            pool,
            retirements: &seen.retirements,
            meta_names: &seen.meta_names,
            blocking: &blocking,
            written_recently: &recently,
            hold,
            now: seen.now,
        },
        planned,
    )
}

/// The pool status's summary of its retirements, and `retiredTotal`
/// counted from them: each retirement whose final status says `Retired` is
/// counted once, by name (`countedRetirements` remembers which), so a
/// crash between a final status and this status neither loses nor repeats
/// one. The planner's own count covers only clients that never had an
/// object: entries of the previous version's `status.retiring`.
pub fn summarize(
    status: &mut NomadClientPoolStatus,
    seen: &Observed,
    planned: &plan::Plan,
    writes: &sync::Writes,
) {
    let retired = |r: &NomadClientRetirement| r.phase() == RetirementPhase::Retired;
    let ended: Vec<String> = (seen.retirements.iter().filter(|r| retired(r)))
        .map(|r| r.name_any())
        .chain(
            (writes.finishes.iter())
                .filter(|w| w.status.phase == Some(RetirementPhase::Retired))
                .map(|w| w.object.name_any()),
        )
        .collect();
    let (newly, counted) = tally(&seen.status.counted_retirements, ended);
    status.retired_total =
        seen.status.retired_total + (newly + legacy_retired(seen, planned)) as i64;
    status.counted_retirements = counted;
    summarize_in_flight(status, planned, writes, seen.pending);
}

/// How many of the retirements seen `ended` the count does not have yet,
/// and the names it has now. A name stays for as long as its object may
/// still be seen, even once it is being pruned: a delete that fails, a
/// crash before it, or a store that shows the object one event longer
/// must not count it again. It leaves with the first reconcile that no
/// longer sees the object, so the list stays as short as the history.
fn tally(counted: &[String], mut ended: Vec<String>) -> (usize, Vec<String>) {
    ended.sort();
    ended.dedup();
    let newly = ended.iter().filter(|n| !counted.contains(n)).count();
    (newly, ended)
}

/// Entries of the previous version's status (clients without an object)
/// that the plan saw retired.
fn legacy_retired(seen: &Observed, planned: &plan::Plan) -> usize {
    let has_object = |id: &str| {
        seen.retirements
            .iter()
            .any(|r| r.status.as_ref().and_then(|s| s.node_id.as_deref()) == Some(id))
    };
    (seen.status.retiring.iter())
        .filter(|e| e.phase == crate::api::RetirePhase::Terminating && !has_object(&e.node_id))
        .filter(|e| !planned.retiring.iter().any(|n| n.node_id == e.node_id))
        .count()
}

fn summarize_in_flight(
    status: &mut NomadClientPoolStatus,
    planned: &plan::Plan,
    writes: &sync::Writes,
    pending: usize,
) {
    status.retiring.clear();
    status.retirements_in_flight = planned.retiring.len() as i32;
    status.retirements_pending = pending.saturating_sub(writes.adopts.len()) as i32;
    status.oldest_retirements = sync::oldest(&planned.retiring, &writes.names, SUMMARY_SIZE);
}

/// A later status of the same reconcile keeps the summary `summarize` made.
pub fn carry_summary(status: &mut NomadClientPoolStatus, from: &NomadClientPoolStatus) {
    status.retiring.clear();
    status.retired_total = from.retired_total;
    status.counted_retirements = from.counted_retirements.clone();
    status.retirements_in_flight = from.retirements_in_flight;
    status.retirements_pending = from.retirements_pending;
    status.oldest_retirements = from.oldest_retirements.clone();
}

/// Write-ahead: every retirement the plan moves on is written before the
/// action it names runs; a terminate or a drain starts as soon as its own
/// record landed (`early`), the lane is told once the other records
/// written ahead landed (`landed.records`), and the other actions wait for
/// every write and for the pool's status. That write is the check that no
/// newer copy of the pool exists when the plan starts new retirements or
/// changes the group's size; otherwise a status with nothing new is not
/// written, and one with only new progress figures waits a little if we
/// wrote recently.
pub async fn write_ahead(
    pool: &NomadClientPool,
    ctx: &Context,
    previous: &NomadClientPoolStatus,
    next: &NomadClientPoolStatus,
    planned: &plan::Plan,
    mut writes: sync::Writes,
    landed: &early::Landed<'_>,
) -> Result<Persisted, Error> {
    let api: Api<NomadClientRetirement> =
        Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    let behind = write_behind_part(&mut writes, planned);
    let lanes = early::lanes(planned, &mut writes);
    // Creations count wherever they are written: the lanes take theirs out
    // of `writes`.
    let pool_decides = lanes.took_creations()
        || !writes.creates.is_empty()
        || !writes.adopts.is_empty()
        || planned
            .actions
            .iter()
            .any(|a| matches!(a, Action::SetDesiredCapacity { .. }));
    let rest = async {
        let written = write::write_ahead(&api, pool, &ctx.ledgers, &writes).await;
        if written.is_ok() {
            (landed.records)();
        }
        written
    };
    let (ahead, rest) = futures::join!(early::run((&api, ctx, pool), &lanes, landed), rest);
    let ahead = ahead?;
    rest.map_err(Error::RetirementWrite)?;
    let progress_only = status::only_progress_differs(previous, next);
    let progress_waits = progress_only
        && !pool_decides
        && ctx.own_writes.written_within(pool, PROGRESS_WRITE_INTERVAL);
    write::finish_all(&api, &ctx.ledgers, &writes)
        .await
        .map_err(Error::RetirementWrite)?;
    let written = !progress_waits && (next != previous || pool_decides);
    if written {
        write_status(pool, ctx, next).await?;
    }
    write::wind_up(&api, &ctx.ledgers, &writes)
        .await
        .map_err(Error::RetirementWrite)?;
    Ok(Persisted {
        written,
        progress_waits,
        behind,
        ahead,
        names: writes.names,
        by_node_name: writes.by_node_name,
        status: next.clone(),
    })
}

pub async fn write_status(
    pool: &NomadClientPool,
    ctx: &Context,
    status: &NomadClientPoolStatus,
) -> Result<(), Error> {
    let api: Api<NomadClientPool> =
        Api::namespaced(ctx.client.clone(), &pool.namespace().unwrap_or_default());
    // Its resourceVersion makes this a compare-and-swap: a reconcile that
    // started from a stale copy must not overwrite a newer status, nor act
    // on decisions made from a spec that changed since. A conflict requeues.
    let mut body = pool.clone();
    body.status = Some(status.clone());
    let written = api
        .replace_status(&pool.name_any(), &post_params(), &body)
        .await
        .map_err(Error::StatusWrite)?;
    ctx.own_writes.wrote(pool, written);
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;

    use super::{sync, tally, write_behind_part};
    use crate::api::{
        NomadClientRetirement, NomadClientRetirementSpec, NomadClientRetirementStatus,
        RetireReason, RetirementPhase, RetirementTarget,
    };
    use crate::controller::plan::{self, Action};

    pub(in crate::controller::reconcile) fn draining(
        name: &str,
        left: i32,
    ) -> NomadClientRetirement {
        let mut r = NomadClientRetirement::new(
            name,
            NomadClientRetirementSpec {
                pool: "ci".into(),
                target: RetirementTarget {
                    node_name: Some(name.into()),
                    ..Default::default()
                },
                reason: RetireReason::ScaleIn,
                capacity: None,
                drain: None,
            },
        );
        r.status = Some(NomadClientRetirementStatus {
            phase: Some(RetirementPhase::Draining),
            node_id: Some(name.into()),
            allocations_left: left,
            ..Default::default()
        });
        r
    }

    pub(in crate::controller::reconcile) fn moved(
        r: &NomadClientRetirement,
        f: impl Fn(&mut NomadClientRetirementStatus),
    ) -> sync::StatusWrite {
        let mut status = r.status.clone().unwrap();
        f(&mut status);
        sync::StatusWrite {
            object: Arc::new(r.clone()),
            status,
        }
    }

    #[test]
    fn only_what_no_action_waits_on_is_written_after_the_actions() {
        let terminating = moved(&draining("a", 0), |s| {
            s.phase = Some(RetirementPhase::Terminating)
        });
        let fewer = moved(&draining("b", 3), |s| s.allocations_left = 2);
        let words = moved(&draining("d", 1), |s| {
            s.message = Some("node is disconnected with 1 allocation(s) that may still run".into())
        });
        let mut cordoned = draining("e", 2);
        cordoned.status.as_mut().unwrap().phase = Some(RetirementPhase::Cordoned);
        let seen_draining = moved(&cordoned, |s| s.phase = Some(RetirementPhase::Draining));
        let old = Arc::new(draining("c", 0));
        let mut writes = sync::Writes {
            statuses: vec![terminating, fewer, words, seen_draining],
            prunes: vec![old],
            ..Default::default()
        };
        let planned = plan::Plan {
            actions: vec![Action::Terminate {
                node_id: "a".into(),
                instance_id: "i-a".into(),
                decrement: true,
                first_attempt: true,
            }],
            ..Default::default()
        };
        let behind = write_behind_part(&mut writes, &planned);
        let names = |w: &[sync::StatusWrite]| -> Vec<String> {
            w.iter()
                .map(|w| w.object.metadata.name.clone().unwrap())
                .collect()
        };
        assert_eq!(
            names(&writes.statuses),
            ["a"],
            "the record its terminate rests on is written ahead"
        );
        assert!(writes.prunes.is_empty());
        assert_eq!(
            names(&behind.statuses),
            ["b", "d", "e"],
            "figures, words, and a phase no action is about"
        );
        assert_eq!(behind.prunes.len(), 1);
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_retirement_is_counted_once_however_long_its_pruned_object_is_seen() {
        let mut total = 0;
        let mut counted = Vec::new();
        // a and b end; a is pruned in the same reconcile; the store shows a
        // for two more reconciles (a failed delete, a lagging watch), then
        // it is gone; c ends later.
        for ended in [
            &["a", "b", "a"][..],
            &["a", "b"],
            &["b", "a"],
            &["b"],
            &["b", "c"],
        ] {
            let (newly, now) = tally(&counted, names(ended));
            total += newly;
            counted = now;
        }
        assert_eq!(total, 3);
        assert_eq!(
            counted,
            names(&["b", "c"]),
            "a left once it was no longer seen"
        );
    }
}
