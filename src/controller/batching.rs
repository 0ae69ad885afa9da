//! The pool's `BatchTerminations` condition: whether the batches the spec
//! asks for (`batchTerminations`, AWS) run. A detach skips every
//! terminating lifecycle hook, so a group with one other than the pool's
//! own gets one VM per call; that used to be a log line only, and a pool
//! whose scale-in went slower than asked said nothing of why. Pure.

use jiff::Timestamp;

use super::status::{self, Signal};
use crate::api::{NomadClientPoolSpec, NomadClientPoolStatus};
use crate::provider::Batching;

pub const CONDITION: &str = "BatchTerminations";

/// Whether the spec asks for batches.
pub fn asked(spec: &NomadClientPoolSpec) -> bool {
    (spec.provider.aws_auto_scaling_group.as_ref()).is_some_and(|a| a.batch_terminations)
}

fn signal(state: &Batching) -> Signal {
    match state {
        Batching::On => Signal::new(
            true,
            "Batching",
            "drained VMs are terminated up to 20 per call (tag, detach, terminate)",
        ),
        Batching::OtherHooks(hooks) => Signal::new(
            false,
            "OtherTerminatingHooks",
            format!(
                "the group has terminating lifecycle hooks other than the pool's ({}): a detach would skip them, so drained VMs are terminated one per call; remove them, or name the hook in lifecycleHook if the pool is to complete it",
                hooks.join(", ")
            ),
        ),
        Batching::Unreadable(error) => Signal::new(
            false,
            "LifecycleHooksUnreadable",
            format!(
                "reading the group's lifecycle hooks (autoscaling:DescribeLifecycleHooks): {error}; drained VMs are terminated one per call until they can be read"
            ),
        ),
    }
}

/// The pool's `BatchTerminations` condition: removed when the spec does
/// not ask for batches, left as it was while the provider has not read the
/// group's hooks yet. Returns the reason and message of a Warning to
/// publish when batches turn off (or turn off for another reason).
pub fn condition(
    status: &mut NomadClientPoolStatus,
    previous: &NomadClientPoolStatus,
    asked: bool,
    state: Option<&Batching>,
    generation: Option<i64>,
    now: Timestamp,
) -> Option<(String, String)> {
    if !asked {
        status.conditions.retain(|c| c.type_ != CONDITION);
        return None;
    }
    let signal = (CONDITION, signal(state?));
    status::set_with_news(status, previous, signal, generation, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-06T12:00:00Z".parse().unwrap()
    }

    fn found(status: &NomadClientPoolStatus) -> Option<(String, String)> {
        let c = status.conditions.iter().find(|c| c.type_ == CONDITION)?;
        Some((c.status.clone(), c.reason.clone()))
    }

    #[test]
    fn other_hooks_turn_it_false_with_one_warning_naming_them() {
        let before = NomadClientPoolStatus::default();
        let mut st = before.clone();
        let others = Batching::OtherHooks(vec!["log-shipper".into()]);
        let news = condition(&mut st, &before, true, Some(&others), Some(3), now());
        assert_eq!(
            found(&st),
            Some(("False".into(), "OtherTerminatingHooks".into()))
        );
        let (reason, message) = news.expect("a warning");
        assert_eq!(reason, "OtherTerminatingHooks");
        assert!(message.contains("log-shipper"), "{message}");

        // The next reconcile, same hooks: no second warning.
        let mut again = st.clone();
        assert_eq!(
            condition(&mut again, &st, true, Some(&others), Some(3), now()),
            None
        );
        // Unreadable now: a new reason, a new warning.
        let denied = Batching::Unreadable("AccessDenied".into());
        let news = condition(&mut again, &st, true, Some(&denied), Some(3), now());
        assert_eq!(news.map(|n| n.0), Some("LifecycleHooksUnreadable".into()));
    }

    #[test]
    fn batches_running_say_so_without_a_warning() {
        let before = NomadClientPoolStatus::default();
        let mut st = before.clone();
        let news = condition(&mut st, &before, true, Some(&Batching::On), None, now());
        assert_eq!(news, None);
        assert_eq!(found(&st), Some(("True".into(), "Batching".into())));
    }

    #[test]
    fn not_read_yet_keeps_it_and_not_asked_removes_it() {
        let before = NomadClientPoolStatus::default();
        let mut st = before.clone();
        let others = Batching::OtherHooks(vec!["a".into()]);
        condition(&mut st, &before, true, Some(&others), None, now());
        // A new provider (spec changed, operator restarted) has read nothing.
        let mut next = st.clone();
        assert_eq!(condition(&mut next, &st, true, None, None, now()), None);
        assert_eq!(found(&next), found(&st));
        condition(&mut next, &st, false, Some(&Batching::On), None, now());
        assert_eq!(found(&next), None);
    }
}
