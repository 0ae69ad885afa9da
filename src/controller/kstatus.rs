//! The two conditions GitOps tools judge a pool by: `Reconciling` and
//! `Stalled`, as kstatus (sigs.k8s.io/cli-utils, used by Flux and
//! kubectl-based pipelines) reads them. Both are abnormal-true: absent or
//! False means nothing unusual.
//!
//! kstatus looks at `status.observedGeneration` first (not equal to
//! `metadata.generation`: `InProgress`), then at these two (`Reconciling`
//! True: `InProgress`; `Stalled` True: `Failed`), and only when neither is
//! True falls back to `Ready` (True: `Current`, False: `InProgress`). So the
//! pool never sets both True, and `Ready` must be True whenever a pipeline
//! should move on (see `conditions::ready_condition` for paused and dry-run
//! pools).
//!
//! Stalled means no retry helps: the spec, a Secret, a token's policy, the
//! group or its owner's tag must change. A problem that may pass by itself
//! (Nomad unreachable, a throttled cloud, clients still joining) is only
//! `Degraded`, and the pipeline keeps waiting.

use super::conditions::{Problem, Trouble};
use super::plan::{self, Blocker};
use super::status::Signal;

/// Problems named in one Stalled message; more are counted.
const MAX_LISTED: usize = 4;

/// Progressing reasons for retirements that are due and wait for something
/// that passes by itself (a budget, a window, a rate, an empty client).
const WAITING: [&str; 4] = [
    "BudgetExhausted",
    "DisruptionBudget",
    "RateLimited",
    "NoEmptyNodes",
];

/// `Stalled` after a plan: the problems only a human can clear, or a
/// pre-flight check that refuses every retirement due while nothing else
/// moves.
pub fn stalled(problems: &[Problem], planned: &plan::Plan, scaling_up: bool) -> Signal {
    let stalling: Vec<&Problem> = problems.iter().filter(|p| p.stalls).collect();
    if let Some(first) = stalling.first() {
        let mut listed: Vec<String> = stalling
            .iter()
            .take(MAX_LISTED)
            .map(|p| p.message.clone())
            .collect();
        if stalling.len() > MAX_LISTED {
            listed.push(format!("and {} more", stalling.len() - MAX_LISTED));
        }
        return Signal::new(true, first.reason, listed.join("; "));
    }
    let refused = planned.blockers.iter().find_map(|b| match b {
        Blocker::Preflight(m) => Some(m),
        _ => None,
    });
    match refused {
        Some(m) if planned.retiring.is_empty() && !scaling_up => Signal::new(
            true,
            "PreflightFailed",
            format!(
                "the cloud would refuse every retirement due ({m}); nothing moves until the group allows it (scale-in protection, MinSize)"
            ),
        ),
        _ => Signal::new(false, "AsExpected", ""),
    }
}

/// `Reconciling` after a plan: True while retirements or a scale-up are in
/// flight, or retirements are due and wait their turn; False when settled,
/// held by the spec (paused, dry run) or stalled.
pub fn reconciling(
    planned: &plan::Plan,
    scaling_up: bool,
    progressing: &Signal,
    stalled: &Signal,
) -> Signal {
    if stalled.status {
        return Signal::new(
            false,
            "Stalled",
            "no progress without a change: see Stalled",
        );
    }
    let waiting = WAITING.contains(&progressing.reason.as_str());
    if progressing.status || waiting {
        return Signal::new(
            true,
            progressing.reason.clone(),
            progressing.message.clone(),
        );
    }
    if scaling_up || !planned.retiring.is_empty() {
        // In flight under a pause or a dry run: what started finishes.
        return Signal::new(
            true,
            "Retiring",
            format!(
                "{} retirement(s) started earlier still in flight",
                planned.retiring.len()
            ),
        );
    }
    Signal::new(
        false,
        progressing.reason.clone(),
        progressing.message.clone(),
    )
}

/// `Stalled` when the pool could not be observed at all.
pub(super) fn stalled_by(trouble: &Trouble) -> Signal {
    if trouble.stalls {
        Signal::new(true, trouble.reason, trouble.message.clone())
    } else {
        Signal::new(false, "AsExpected", "")
    }
}

/// `Reconciling` when the pool could not be observed: True while it retries
/// something that may pass (the pipeline waits), False once stalled.
pub(super) fn reconciling_despite(trouble: &Trouble) -> Signal {
    if trouble.stalls {
        Signal::new(
            false,
            "Stalled",
            "no progress without a change: see Stalled",
        )
    } else {
        Signal::new(
            true,
            trouble.reason,
            format!("retrying: {}", trouble.message),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RetirePhase, RetireReason, RetiringNode};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    fn entry() -> RetiringNode {
        RetiringNode {
            node_id: "n1".into(),
            node_name: "client-1".into(),
            instance_id: Some("i-1".into()),
            phase: RetirePhase::Draining,
            since: Time(jiff::Timestamp::UNIX_EPOCH),
            selected_at: None,
            reason: RetireReason::ScaleIn,
            decrement: true,
            cordoned_by_pool: true,
            drain_started_at: None,
            drain_deadline: None,
            allocations_left: 1,
            blocking_jobs: vec![],
            message: None,
        }
    }

    fn idle() -> Signal {
        Signal::new(false, "Idle", "nothing to do")
    }

    #[test]
    fn only_problems_no_retry_clears_stall_the_pool() {
        let plan = plan::Plan::default();
        let passing = [Problem::new("ActionFailed", "throttled")];
        assert!(!stalled(&passing, &plan, false).status);
        let both = [
            Problem::new("ActionFailed", "throttled"),
            Problem::stalling("UnknownRetireTarget", "spec.retire names x"),
            Problem::stalling("InvalidDisruptionBudget", "bad budget"),
        ];
        let s = stalled(&both, &plan, false);
        assert!(s.status);
        assert_eq!(s.reason, "UnknownRetireTarget");
        assert_eq!(s.message, "spec.retire names x; bad budget");
        let many: Vec<Problem> = (0..MAX_LISTED + 2)
            .map(|i| Problem::stalling("InvalidSpec", format!("p{i}")))
            .collect();
        assert!(stalled(&many, &plan, false).message.ends_with("and 2 more"));
    }

    #[test]
    fn a_preflight_refusal_stalls_only_when_nothing_else_moves() {
        let mut plan = plan::Plan {
            blockers: vec![Blocker::Preflight("client-3: protected".into())],
            ..Default::default()
        };
        let s = stalled(&[], &plan, false);
        assert_eq!((s.status, s.reason.as_str()), (true, "PreflightFailed"));
        assert!(s.message.contains("client-3: protected"), "{}", s.message);
        assert!(!stalled(&[], &plan, true).status, "scaling up");
        plan.retiring.push(entry());
        assert!(!stalled(&[], &plan, false).status, "others retire");
    }

    #[test]
    fn reconciling_while_work_is_in_flight_or_due() {
        let mut plan = plan::Plan::default();
        let quiet = Signal::new(false, "AsExpected", "");
        assert!(!reconciling(&plan, false, &idle(), &quiet).status);
        let retiring = Signal::new(true, "Retiring", "1 client(s) draining");
        let r = reconciling(&plan, false, &retiring, &quiet);
        assert_eq!((r.status, r.reason.as_str()), (true, "Retiring"));
        let window = Signal::new(false, "DisruptionBudget", "window closed");
        assert!(reconciling(&plan, false, &window, &quiet).status, "due");
        let paused = Signal::new(false, "Paused", "disruption.paused is set");
        let r = reconciling(&plan, false, &paused, &quiet);
        assert_eq!((r.status, r.reason.as_str()), (false, "Paused"));
        plan.retiring.push(entry());
        assert!(
            reconciling(&plan, false, &paused, &quiet).status,
            "what started under a pause still finishes"
        );
        let stuck = Signal::new(true, "Unauthorized", "denied");
        assert!(
            !reconciling(&plan, true, &retiring, &stuck).status,
            "never both: kstatus reads the first True one"
        );
    }

    #[test]
    fn trouble_stalls_or_retries_never_both() {
        let t = |stalls| Trouble {
            reason: "X",
            message: "m".into(),
            retry: Duration::from_secs(1),
            stalls,
        };
        for stalls in [true, false] {
            let (s, r) = (stalled_by(&t(stalls)), reconciling_despite(&t(stalls)));
            assert_eq!(s.status, stalls);
            assert_eq!(r.status, !stalls);
        }
    }
}
