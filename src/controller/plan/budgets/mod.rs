//! `disruption.budgets` as arithmetic: given the budgets, the instant, the
//! pool's size and when recent voluntary retirements started, which budget
//! applies, how many clients may be out of service, how many retirements
//! the rates still let start, and when any of that changes. No I/O and no
//! clock: the planner passes "now" in, so every edge is a unit test.
//!
//! The rules, each a function below:
//! - a budget applies always (no schedule) or while one of its windows is
//!   open (`schedule`); `disruption.maxUnavailable` always applies;
//! - of those that apply, the smallest allowance counts (Karpenter's rule:
//!   budgets only ever restrict);
//! - a rate counts the voluntary starts in its rolling period, or since its
//!   window opened, and allows what is left of its `retirements`;
//! - a budget that does not parse blocks voluntary retirements (fail safe)
//!   until it is fixed; the error says which budget and why.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::parse_go_duration;
use crate::api::{DisruptionBudget, DisruptionRate, RetiringNode};

mod report;
mod schedule;

pub use report::{blocker_message, status};
pub use schedule::{MAX_DURATION, Schedule, ScheduleError, Window};

/// A budget the controller cannot evaluate.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("disruption.budgets[{index}]: {source}")]
    Schedule { index: usize, source: ScheduleError },
    #[error(
        "disruption.budgets[{index}].maxUnavailable '{value}' is neither a count nor a percentage"
    )]
    MaxUnavailable { index: usize, value: String },
    #[error(
        "disruption.budgets[{index}].rate.per '{value}' is not a positive Go duration of at most 744h"
    )]
    RatePeriod { index: usize, value: String },
}

/// What the budgets allow at one instant.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// Clients that may be out of service at once now.
    pub allowed: u32,
    /// The budget that sets `allowed`, when one is at least as strict as
    /// `disruption.maxUnavailable`.
    pub applying: Option<usize>,
    /// When `applying`'s window closes (unset: it has no schedule).
    pub window_closes: Option<Timestamp>,
    /// Voluntary retirements that may still start now; `None`: no rate applies.
    pub starts_left: Option<u32>,
    /// The budget whose rate sets `starts_left`.
    pub rate_budget: Option<usize>,
    /// When the rate lets a retirement start again, once used up.
    pub rate_frees: Option<Timestamp>,
    /// The next opening of a scheduled budget after now, and which budget.
    pub next_opening: Option<(usize, Timestamp)>,
    /// The first instant at which this evaluation may change (a window
    /// opens or closes, a counted start leaves its period): plan again then.
    pub next_change: Option<Timestamp>,
    /// Budgets that do not parse; while any, nothing voluntary starts.
    pub errors: Vec<BudgetError>,
}

/// One budget at one instant.
#[derive(Debug, PartialEq)]
struct State {
    /// `Some` while the budget applies: its window (`None` inside: always).
    applies: Option<Option<Window>>,
    allowed: u32,
    /// Starts left and, when none, when one frees up.
    rate: Option<(u32, Option<Timestamp>)>,
    next_opening: Option<Timestamp>,
}

/// Clients a budget's `maxUnavailable` allows out of service in a pool of
/// `pool_size`: a count as is; a percentage rounded down, at least 1 unless
/// it is 0% (as `disruption.maxUnavailable` rounds, where 0 is no option).
pub fn allowance(max_unavailable: &IntOrString, pool_size: u32) -> Option<u32> {
    match max_unavailable {
        IntOrString::Int(n) => u32::try_from(*n).ok(),
        IntOrString::String(s) => {
            let pct: u32 = s.strip_suffix('%')?.parse().ok().filter(|p| *p <= 100)?;
            let scaled = (u64::from(pool_size) * u64::from(pct) / 100) as u32;
            Some(if pct == 0 { 0 } else { scaled.max(1) })
        }
    }
}

/// Evaluate every budget at `now`. `pool_allowed` is what
/// `disruption.maxUnavailable` allows; `starts` are the voluntary starts
/// known (see [`starts`]), in any order.
pub fn evaluate(
    budgets: &[DisruptionBudget],
    pool_allowed: u32,
    pool_size: u32,
    now: Timestamp,
    starts: &[Timestamp],
) -> Evaluation {
    let mut eval = Evaluation {
        allowed: pool_allowed,
        ..Evaluation::default()
    };
    for (index, budget) in budgets.iter().enumerate() {
        match one(index, budget, pool_size, now, starts) {
            Ok(state) => merge(&mut eval, index, &state, now),
            Err(e) => eval.errors.push(e),
        }
    }
    if !eval.errors.is_empty() {
        // Fail safe: a budget we cannot read may be the one that forbids
        // disruption now.
        eval.allowed = 0;
        eval.starts_left = Some(0);
    }
    eval
}

/// Fold one budget's state into the evaluation.
fn merge(eval: &mut Evaluation, index: usize, state: &State, now: Timestamp) {
    let window = state.applies;
    let closes = window.flatten().map(|w| w.closes);
    let frees = state.rate.and_then(|(_, frees)| frees);
    for t in [state.next_opening, closes, frees].into_iter().flatten() {
        if t > now {
            eval.next_change = Some(eval.next_change.map_or(t, |c| c.min(t)));
        }
    }
    if let Some(opening) = state.next_opening
        && eval.next_opening.is_none_or(|(_, t)| opening < t)
    {
        eval.next_opening = Some((index, opening));
    }
    let Some(window) = window else {
        return;
    };
    if state.allowed < eval.allowed || (eval.applying.is_none() && state.allowed == eval.allowed) {
        eval.allowed = state.allowed;
        eval.applying = Some(index);
        eval.window_closes = window.map(|w| w.closes);
    }
    if let Some((left, frees)) = state.rate
        && eval.starts_left.is_none_or(|l| left < l)
    {
        eval.starts_left = Some(left);
        eval.rate_budget = Some(index);
        eval.rate_frees = frees;
    }
}

/// One budget at `now`.
fn one(
    index: usize,
    budget: &DisruptionBudget,
    pool_size: u32,
    now: Timestamp,
    starts: &[Timestamp],
) -> Result<State, BudgetError> {
    let allowed = allowance(&budget.max_unavailable, pool_size).ok_or_else(|| {
        BudgetError::MaxUnavailable {
            index,
            value: int_or_string(&budget.max_unavailable),
        }
    })?;
    let schedule = schedule_of(index, budget)?;
    let (applies, next_opening) = match &schedule {
        None => (Some(None), None),
        Some(s) => {
            let err = |source| BudgetError::Schedule { index, source };
            let window = s.window_at(now).map_err(err)?;
            let next = s.next_opening(now).map_err(err)?;
            (window.map(Some), Some(next))
        }
    };
    let rate = match (&budget.rate, applies) {
        (Some(rate), Some(window)) => Some(rate_left(index, rate, window, now, starts)?),
        _ => None,
    };
    Ok(State {
        applies,
        allowed,
        rate,
        next_opening,
    })
}

/// The budget's schedule, parsed; `None` without one.
pub fn schedule_of(
    index: usize,
    budget: &DisruptionBudget,
) -> Result<Option<Schedule>, BudgetError> {
    let (Some(schedule), Some(duration)) = (&budget.schedule, &budget.duration) else {
        return Ok(None);
    };
    Schedule::parse(schedule, budget.time_zone.as_deref(), duration)
        .map(Some)
        .map_err(|source| BudgetError::Schedule { index, source })
}

/// What a rate leaves of its `retirements` at `now`, and when a start
/// frees up once none is left. `window`: the budget's open window, whose
/// opening starts the period when the rate has no `per`.
fn rate_left(
    index: usize,
    rate: &DisruptionRate,
    window: Option<Window>,
    now: Timestamp,
    starts: &[Timestamp],
) -> Result<(u32, Option<Timestamp>), BudgetError> {
    let limit = rate.retirements.max(1) as usize;
    let per = match &rate.per {
        None => None,
        Some(text) => Some(
            parse_go_duration(text)
                .filter(|d| d.is_positive() && *d <= MAX_DURATION)
                .ok_or_else(|| BudgetError::RatePeriod {
                    index,
                    value: text.clone(),
                })?,
        ),
    };
    // A start later than now (a clock that ran ahead) still happened.
    let mut counted: Vec<Timestamp> = match (per, window) {
        (Some(per), _) => starts.iter().copied().filter(|s| *s > now - per).collect(),
        (None, Some(w)) => starts.iter().copied().filter(|s| *s >= w.opened).collect(),
        // The API server requires `per` on a budget without a schedule;
        // without either there is no period to count in.
        (None, None) => {
            return Err(BudgetError::RatePeriod {
                index,
                value: String::new(),
            });
        }
    };
    counted.sort();
    let left = limit.saturating_sub(counted.len());
    let frees = (left == 0).then(|| match per {
        // The oldest of the `limit` newest starts leaves the period first.
        Some(per) => counted[counted.len() - limit] + per,
        None => window.map_or(now, |w| w.closes),
    });
    Ok((left as u32, frees))
}

fn int_or_string(v: &IntOrString) -> String {
    match v {
        IntOrString::Int(n) => n.to_string(),
        IntOrString::String(s) => s.clone(),
    }
}

/// The voluntary starts the planner knows: the status's record and the
/// retirements in flight, merged as multisets (each instant counted as
/// often as the source that saw more starts then): two retirements started
/// in one plan share their instant, and a start may be in either source
/// alone (in flight but not yet recorded after a crash; recorded but its
/// retirement long gone).
pub fn starts(record: &[Time], in_flight: &[RetiringNode]) -> Vec<Timestamp> {
    // Whole seconds, as the API server stores them: a start made in this
    // process and the same start read back must be one instant.
    let second = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap_or(t);
    let mut recorded: BTreeMap<Timestamp, usize> = BTreeMap::new();
    for t in record {
        *recorded.entry(second(t.0)).or_default() += 1;
    }
    let mut tracked: BTreeMap<Timestamp, usize> = BTreeMap::new();
    for r in in_flight.iter().filter(|r| r.reason.is_voluntary()) {
        if let Some(at) = &r.selected_at {
            *tracked.entry(second(at.0)).or_default() += 1;
        }
    }
    for (t, n) in tracked {
        let e = recorded.entry(t).or_default();
        *e = (*e).max(n);
    }
    recorded
        .into_iter()
        .flat_map(|(t, n)| std::iter::repeat_n(t, n))
        .collect()
}

/// The record to keep in status after a plan: the starts known (`starts`
/// of the previous record and of every retirement the plan keeps, new ones
/// included), newest last, at most as many as the largest rate counts
/// (a rate of N needs only the N newest) and none older than the longest
/// period. Empty when no budget has a rate.
pub fn record(
    budgets: &[DisruptionBudget],
    previous: &[Time],
    retiring: &[RetiringNode],
    now: Timestamp,
) -> Vec<Time> {
    let keep = (budgets.iter())
        .filter_map(|b| b.rate.as_ref())
        .map(|r| r.retirements.max(1) as usize)
        .max()
        .unwrap_or(0);
    if keep == 0 {
        return Vec::new();
    }
    let horizon = now - MAX_DURATION - SignedDuration::from_hours(1);
    let all = starts(previous, retiring);
    let recent: Vec<Timestamp> = all.into_iter().filter(|t| *t > horizon).collect();
    let skip = recent.len().saturating_sub(keep);
    recent.into_iter().skip(skip).map(Time).collect()
}

/// The next `status.disruption` once the plan is made (`next`: the
/// retirements it keeps and starts), and when the budgets change next;
/// `None` without budgets. Evaluated again on the record that includes the
/// plan's own starts, so the status says what is left after them.
pub fn after_plan(
    view: &super::PoolView<'_>,
    next: &[RetiringNode],
) -> Option<(crate::api::DisruptionStatus, Option<Timestamp>)> {
    let list = &view.spec.disruption.budgets;
    if list.is_empty() {
        return None;
    }
    let kept = record(list, view.recent_starts, next, view.now);
    let starts: Vec<Timestamp> = kept.iter().map(|t| t.0).collect();
    let (pool_size, pool_allowed) = super::select::pool_allowance(view);
    let eval = evaluate(list, pool_allowed, pool_size, view.now, &starts);
    Some((status(&eval, list, kept), eval.next_change))
}

#[cfg(test)]
mod properties;
#[cfg(test)]
mod tests;
