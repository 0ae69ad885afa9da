//! The conditions a retirement carries, one function per condition. Each
//! is built from the retirement's previous conditions and keeps its
//! `lastTransitionTime` while its status holds (as the pool's do, see
//! `controller::status::merge`). Pure.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::RetirementPhase;
use crate::controller::hooks::GlobalCap;

/// Every retirement's: in flight or finished.
pub const PROGRESSING: &str = "Progressing";
/// A `LifecycleHook` retirement's: whether the hook's global timeout ends
/// its drain.
pub const GLOBAL_TIMEOUT: &str = "LifecycleGlobalTimeout";

/// `Progressing`: True while in flight (reason: the phase), False once
/// finished (reason `Retired` or `Cancelled`).
pub fn progressing(
    previous: &[Condition],
    generation: Option<i64>,
    on: bool,
    phase: RetirementPhase,
    message: &str,
    now: Timestamp,
) -> Condition {
    let value = Value {
        on,
        reason: phase.as_str(),
        message,
    };
    condition(previous, PROGRESSING, generation, value, now)
}

/// kstatus's abnormal-true "work in flight" (see `controller::kstatus`).
pub const RECONCILING: &str = "Reconciling";
/// kstatus's abnormal-true "no progress without a human".
pub const STALLED: &str = "Stalled";

/// `Reconciling`: True while the retirement waits for the pool or is in
/// flight (reason: the phase), False once finished or stalled. kstatus
/// reads True as `InProgress`, so a pipeline waits for the client to go.
pub fn reconciling(
    previous: &[Condition],
    generation: Option<i64>,
    phase: RetirementPhase,
    stalled: bool,
    message: &str,
    now: Timestamp,
) -> Condition {
    let value = if stalled {
        Value {
            on: false,
            reason: "Stalled",
            message: "no progress without a change: see Stalled",
        }
    } else {
        Value {
            on: !phase.is_finished(),
            reason: phase.as_str(),
            message,
        }
    };
    condition(previous, RECONCILING, generation, value, now)
}

/// `Stalled`: True (with `problem`'s reason and message) when only a
/// human can move the retirement on, such as a target that names no client
/// of the pool; kstatus reads it as `Failed`. False otherwise.
pub fn stalled(
    previous: &[Condition],
    generation: Option<i64>,
    problem: Option<(&str, &str)>,
    now: Timestamp,
) -> Condition {
    let value = match problem {
        Some((reason, message)) => Value {
            on: true,
            reason,
            message,
        },
        None => Value {
            on: false,
            reason: "AsExpected",
            message: "",
        },
    };
    condition(previous, STALLED, generation, value, now)
}

/// `LifecycleGlobalTimeout`: AWS lets a held VM go at the hook's global
/// timeout whatever runs, and heartbeats cannot extend it, so it is a drain
/// deadline. False (`DrainDeadlineCapped`) when it ends the drain sooner
/// than the drain's own deadline (or than no deadline): jobs still running
/// then are stopped. True (`WithinGlobalTimeout`) when the drain's own
/// deadline ends first.
pub fn lifecycle_global_timeout(
    previous: &[Condition],
    generation: Option<i64>,
    cap: &GlobalCap,
    now: Timestamp,
) -> Condition {
    let ends = seconds(cap.ends_at);
    let own = cap.own_deadline.as_deref().unwrap_or("none");
    let (on, reason, message) = match cap.capped_deadline {
        Some(deadline) => (
            false,
            "DrainDeadlineCapped",
            format!(
                "jobs may outlast the lifecycle hook's global timeout ({}s, min(48 h, 100 x heartbeat timeout)), which heartbeats cannot extend: AWS lets the VM go at {ends} whatever runs. The drain's deadline is therefore {} (its own: {own}), so Nomad stops what still runs then and the operator completes the action before AWS does",
                cap.global,
                seconds(deadline)
            ),
        ),
        None => (
            true,
            "WithinGlobalTimeout",
            format!(
                "the drain's own deadline ({own}) ends before the lifecycle hook's global timeout ({}s) lets the VM go at {ends}",
                cap.global
            ),
        ),
    };
    let value = Value {
        on,
        reason,
        message: &message,
    };
    condition(previous, GLOBAL_TIMEOUT, generation, value, now)
}

/// A condition's new value.
struct Value<'a> {
    on: bool,
    reason: &'a str,
    message: &'a str,
}

fn condition(
    previous: &[Condition],
    type_: &str,
    generation: Option<i64>,
    value: Value<'_>,
    now: Timestamp,
) -> Condition {
    let status = if value.on { "True" } else { "False" };
    let since = (previous.iter())
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: value.reason.into(),
        message: value.message.chars().take(1024).collect(),
        last_transition_time: since,
        observed_generation: generation,
    }
}

/// Whole seconds: a message that says the same thing stays the same text.
fn seconds(t: Timestamp) -> Timestamp {
    Timestamp::from_second(t.as_second()).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciling_until_finished_and_never_beside_stalled() {
        let now: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let on = |phase, stalled| reconciling(&[], Some(1), phase, stalled, "m", now);
        let c = on(RetirementPhase::Draining, false);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "Draining"));
        assert_eq!(on(RetirementPhase::Pending, false).status, "True");
        for done in [RetirementPhase::Retired, RetirementPhase::Cancelled] {
            let c = on(done, false);
            assert_eq!(
                (c.status.as_str(), c.reason.as_str()),
                ("False", done.as_str())
            );
        }
        let c = on(RetirementPhase::Pending, true);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("False", "Stalled"));
        let s = stalled(&[], Some(3), Some(("UnknownTarget", "no client")), now);
        assert_eq!(
            (s.status.as_str(), s.reason.as_str()),
            ("True", "UnknownTarget")
        );
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(stalled(&[s], Some(3), None, now).status, "False");
    }

    fn cap(capped: Option<&str>) -> GlobalCap {
        GlobalCap {
            global: 3000,
            ends_at: "2026-12-02T12:50:00.25Z".parse().unwrap(),
            own_deadline: Some("2h".into()),
            capped_deadline: capped.map(|t| t.parse().unwrap()),
        }
    }

    #[test]
    fn the_global_timeout_condition_says_whether_it_cuts_the_drain_short() {
        let now: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let capped =
            lifecycle_global_timeout(&[], Some(1), &cap(Some("2026-12-02T12:45:00Z")), now);
        assert_eq!(
            (capped.type_.as_str(), capped.status.as_str()),
            (GLOBAL_TIMEOUT, "False")
        );
        assert_eq!(capped.reason, "DrainDeadlineCapped");
        assert!(
            capped
                .message
                .contains("AWS lets the VM go at 2026-12-02T12:50:00Z")
                && capped
                    .message
                    .contains("deadline is therefore 2026-12-02T12:45:00Z (its own: 2h)"),
            "{}",
            capped.message
        );
        // Still capped a minute later: the same text, the same transition.
        let later = now
            .checked_add(jiff::SignedDuration::from_secs(60))
            .unwrap();
        let again = lifecycle_global_timeout(
            std::slice::from_ref(&capped),
            Some(1),
            &cap(Some("2026-12-02T12:45:00Z")),
            later,
        );
        assert_eq!(again, capped);
        let within = lifecycle_global_timeout(&[capped], Some(1), &cap(None), later);
        assert_eq!(
            (within.status.as_str(), within.reason.as_str()),
            ("True", "WithinGlobalTimeout")
        );
        assert_eq!(within.last_transition_time, Time(later));
    }
}
