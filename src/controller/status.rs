//! Pure construction of the pool's status conditions.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::NomadClientPoolStatus;

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// kstatus's "work in flight" condition (abnormal-true): see `kstatus`.
pub const RECONCILING: &str = "Reconciling";
/// kstatus's "cannot progress without a human" condition: see `kstatus`.
pub const STALLED: &str = "Stalled";

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
        RECONCILING => 3,
        STALLED => 4,
        _ => 5,
    };
    out.sort_by_key(|c| order(&c.type_));
    out
}

/// Set the condition `type_` of `status` to `signal`; the reason and
/// message of a Warning to publish when it is False and was not, or was
/// False for another reason, in `previous` (the conditions that name a
/// problem of one feature: said once, not on every reconcile).
pub fn set_with_news(
    status: &mut NomadClientPoolStatus,
    previous: &NomadClientPoolStatus,
    (type_, signal): (&'static str, Signal),
    generation: Option<i64>,
    now: Timestamp,
) -> Option<(String, String)> {
    status.conditions = merge(
        &status.conditions,
        &[(type_, signal.clone())],
        generation,
        now,
    );
    let before = previous.conditions.iter().find(|c| c.type_ == type_);
    let news = before.is_none_or(|c| c.reason != signal.reason);
    (news && !signal.status).then_some((signal.reason, signal.message))
}

/// Whether `new` differs from `old` only in progress figures: client counts,
/// allocation counts, blocking jobs, messages, the group's capacity as last
/// read. Such a status may wait for the next write: during a large scale-in
/// the pool's object holds hundreds of entries, and rewriting all of them
/// because one count moved cost more than the reconcile itself, on the
/// path of every retirement. Entries, phases, totals and condition states
/// always count.
pub fn only_progress_differs(old: &NomadClientPoolStatus, new: &NomadClientPoolStatus) -> bool {
    fn material(s: &NomadClientPoolStatus) -> NomadClientPoolStatus {
        let mut s = s.clone();
        s.nodes = 0;
        s.ready_nodes = 0;
        s.group_desired_capacity = None;
        for r in &mut s.retiring {
            r.allocations_left = 0;
            r.blocking_jobs.clear();
            r.message = None;
        }
        for r in &mut s.oldest_retirements {
            r.allocations_left = 0;
            r.message = None;
        }
        for c in &mut s.conditions {
            c.message.clear();
        }
        s
    }
    old != new && material(old) == material(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RetirePhase, RetireReason, RetiringNode};

    fn entry(phase: RetirePhase, allocations_left: i32) -> RetiringNode {
        RetiringNode {
            node_id: "n1".into(),
            node_name: "client-1".into(),
            instance_id: Some("i-1".into()),
            phase,
            since: Time("2026-01-01T00:00:00Z".parse().unwrap()),
            selected_at: None,
            reason: RetireReason::ScaleIn,
            decrement: true,
            cordoned_by_pool: true,
            drain_started_at: None,
            drain_deadline: None,
            allocations_left,
            blocking_jobs: vec![],
            message: None,
        }
    }

    #[test]
    fn progress_figures_may_wait_phases_and_entries_may_not() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let base = NomadClientPoolStatus {
            ready_nodes: 10,
            retiring: vec![entry(RetirePhase::Draining, 3)],
            conditions: merge(
                &[],
                &[(READY, Signal::new(false, "Retiring", "1 draining"))],
                None,
                t0,
            ),
            ..Default::default()
        };
        assert!(!only_progress_differs(&base, &base), "nothing differs");

        let mut progress = base.clone();
        progress.ready_nodes = 9;
        progress.retiring[0].allocations_left = 1;
        progress.retiring[0].message = Some("waiting for 1 allocation(s) to finish".into());
        progress.conditions[0].message = "0 draining".into();
        assert!(only_progress_differs(&base, &progress));

        let mut phase = progress.clone();
        phase.retiring[0].phase = RetirePhase::Terminating;
        assert!(!only_progress_differs(&base, &phase), "a phase change");

        let mut gone = progress.clone();
        gone.retiring.clear();
        gone.retired_total = 1;
        assert!(!only_progress_differs(&base, &gone), "an entry left");

        let mut flipped = progress.clone();
        flipped.conditions[0].status = "True".into();
        assert!(
            !only_progress_differs(&base, &flipped),
            "a condition flipped"
        );
    }

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
                (STALLED, Signal::new(false, "AsExpected", "")),
                (PROGRESSING, Signal::new(false, "Idle", "")),
                (RECONCILING, Signal::new(false, "Idle", "")),
            ],
            None,
            t0,
        );
        let types: Vec<_> = c.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, [READY, PROGRESSING, DEGRADED, RECONCILING, STALLED]);
    }
}
