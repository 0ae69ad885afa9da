//! The budgets' evaluation in words and in `status.disruption`: which
//! budget applies, what it allows, until when, and when the next window
//! opens. One line each, for `kubectl describe` and the conditions.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Evaluation;
use crate::api::{DisruptionBudget, DisruptionStatus};

/// An instant as people read it: whole seconds, UTC.
fn at(t: Timestamp) -> String {
    Timestamp::from_second(t.as_second())
        .unwrap_or(t)
        .to_string()
}

/// `budget 0 ('0 9 * * 1-5' Europe/Berlin, for 8h)` or `budget 1 (always)`.
pub fn label(index: usize, budgets: &[DisruptionBudget]) -> String {
    match budgets.get(index) {
        Some(DisruptionBudget {
            schedule: Some(schedule),
            duration,
            time_zone,
            ..
        }) => format!(
            "budget {index} ('{}' {}, for {})",
            schedule.trim(),
            time_zone.as_deref().unwrap_or("UTC"),
            duration.as_deref().unwrap_or("?"),
        ),
        _ => format!("budget {index} (always)"),
    }
}

/// What applies now, in one line.
fn applies(eval: &Evaluation, budgets: &[DisruptionBudget]) -> String {
    if !eval.errors.is_empty() {
        let errors: Vec<String> = eval.errors.iter().map(ToString::to_string).collect();
        return format!(
            "voluntary retirements wait until disruption.budgets is fixed: {}",
            errors.join("; ")
        );
    }
    let who = match eval.applying {
        Some(i) => label(i, budgets),
        None => "disruption.maxUnavailable".to_owned(),
    };
    let until = eval
        .window_closes
        .map(|t| format!(" until {}", at(t)))
        .unwrap_or_default();
    let mut line = format!(
        "{who} applies{until}: {} client(s) may be out of service",
        eval.allowed
    );
    if let (Some(left), Some(i)) = (eval.starts_left, eval.rate_budget) {
        line.push_str(&format!(
            "; the rate of {} allows {left} more start(s)",
            label(i, budgets)
        ));
        if let Some(t) = eval.rate_frees {
            line.push_str(&format!(", the next at {}", at(t)));
        }
    }
    line
}

/// The full message: what applies, then when the next window opens.
pub fn message(eval: &Evaluation, budgets: &[DisruptionBudget]) -> String {
    let mut line = applies(eval, budgets);
    if let Some((i, t)) = eval.next_opening {
        line.push_str(&format!(
            "; next window opens at {} ({})",
            at(t),
            label(i, budgets)
        ));
    }
    line
}

/// Why a retirement that is due does not start: `in_flight` clients are
/// out of service, or the rate is used up (`rate`).
pub fn blocker_message(
    eval: &Evaluation,
    budgets: &[DisruptionBudget],
    in_flight: u32,
    rate: bool,
) -> String {
    let head = if rate {
        "voluntary retirements wait for the rate".to_owned()
    } else {
        format!("{in_flight} client(s) out of service")
    };
    format!("{head}: {}", message(eval, budgets))
}

/// `status.disruption` for the evaluation and the record of starts.
pub fn status(
    eval: &Evaluation,
    budgets: &[DisruptionBudget],
    recent_starts: Vec<Time>,
) -> DisruptionStatus {
    DisruptionStatus {
        budget: eval.applying.map(|i| i as i32),
        allowed: eval.allowed.min(i32::MAX as u32) as i32,
        starts_allowed: eval.starts_left.map(|l| l as i32),
        window_closes: eval.window_closes.map(Time),
        next_window_opens: eval.next_opening.map(|(_, t)| Time(t)),
        message: message(eval, budgets),
        recent_starts,
    }
}
