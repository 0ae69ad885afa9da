//! Pure construction of the pool's status conditions.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";

/// One condition's new value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Signal {
    pub fn new(status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Merge new values into the previous conditions, keeping
/// `lastTransitionTime` unless the status flipped (what `kubectl wait` and
/// humans rely on to see how long a pool has been stuck).
pub fn merge(
    previous: &[Condition],
    updates: &[(&'static str, Signal)],
    generation: Option<i64>,
    now: Timestamp,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = previous
        .iter()
        .filter(|c| !updates.iter().any(|(t, _)| *t == c.type_))
        .cloned()
        .collect();
    for (type_, signal) in updates {
        let status = if signal.status { "True" } else { "False" }.to_string();
        let last_transition_time = previous
            .iter()
            .find(|c| c.type_ == *type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        out.push(Condition {
            type_: (*type_).to_string(),
            status,
            reason: signal.reason.clone(),
            message: signal.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    let order = |t: &str| match t {
        READY => 0,
        PROGRESSING => 1,
        DEGRADED => 2,
        _ => 3,
    };
    out.sort_by_key(|c| order(&c.type_));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_survives_unchanged_status_and_moves_on_flip() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: Timestamp = "2026-01-01T01:00:00Z".parse().unwrap();
        let first = merge(
            &[],
            &[(READY, Signal::new(false, "Retiring", "2 retiring"))],
            Some(1),
            t0,
        );
        let same = merge(
            &first,
            &[(READY, Signal::new(false, "Retiring", "1 retiring"))],
            Some(1),
            t1,
        );
        assert_eq!(same[0].last_transition_time, Time(t0));
        assert_eq!(same[0].message, "1 retiring");
        let flipped = merge(
            &same,
            &[(READY, Signal::new(true, "Settled", "ok"))],
            Some(2),
            t1,
        );
        assert_eq!(flipped[0].last_transition_time, Time(t1));
        assert_eq!(flipped[0].observed_generation, Some(2));
    }

    #[test]
    fn conditions_keep_a_stable_order() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let c = merge(
            &[],
            &[
                (DEGRADED, Signal::new(false, "AsExpected", "")),
                (READY, Signal::new(true, "Settled", "")),
                (PROGRESSING, Signal::new(false, "Idle", "")),
            ],
            None,
            t0,
        );
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, PROGRESSING, DEGRADED]);
    }
}
