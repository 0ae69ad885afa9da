//! `remediation.maxUnhealthy`: how many remediations may start now.
//!
//! Every reason that replaces a broken client (`RetireReason::is_remediation`:
//! `Unhealthy`, `Unregistered`) draws on this one cap, never on the
//! disruption budgets: a budget of 0 during business hours must not keep a
//! dead client's capacity away, but an outage that takes a whole pool down
//! must not become a mass deletion either. As with Cluster API's
//! MachineHealthCheck, the cap looks at how many clients are unhealthy in
//! all (being replaced, plus waiting to be): above it, nothing new starts.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::api::{DEFAULT_MAX_UNHEALTHY, NomadClientPoolSpec, RetirePhase, RetiringNode};

/// The most unhealthy clients for remediation to go on: a count, or a
/// percentage of `members` rounded down. Never 0: one broken client of a
/// small pool is always replaceable (a spec that wants none leaves
/// `unhealthyAfter` unset).
pub(in crate::controller::plan) fn max_unhealthy(max: &IntOrString, members: u32) -> u32 {
    match max {
        IntOrString::Int(n) => (*n).max(1) as u32,
        IntOrString::String(s) => {
            // The API server checked the form; a value it let through that
            // does not parse falls back to the default, not to "no cap".
            let pct = s
                .strip_suffix('%')
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or_else(default_percent)
                .min(100);
            (u64::from(members) * u64::from(pct) / 100).max(1) as u32
        }
    }
}

fn default_percent() -> u32 {
    DEFAULT_MAX_UNHEALTHY
        .trim_end_matches('%')
        .parse()
        .expect("the default is a percentage")
}

/// What the cap allows in one plan, shared by every remediation reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::controller::plan) struct RemediationCap {
    /// `maxUnhealthy` resolved against the pool's size.
    pub allowed: u32,
    /// Unhealthy clients in all: remediations in flight and clients
    /// waiting for one (within their grace or past it).
    pub unhealthy: u32,
    /// Remediations that may still start in this plan.
    pub left: u32,
}

impl RemediationCap {
    /// The cap for `in_flight` remediations under way and `waiting` broken
    /// clients no remediation covers yet, in a pool of `members`.
    pub(in crate::controller::plan) fn new(
        max: &IntOrString,
        members: u32,
        in_flight: u32,
        waiting: u32,
    ) -> Self {
        let allowed = max_unhealthy(max, members);
        let unhealthy = in_flight.saturating_add(waiting);
        let left = if unhealthy > allowed {
            0
        } else {
            allowed - in_flight
        };
        RemediationCap {
            allowed,
            unhealthy,
            left,
        }
    }

    /// The cap of a pool's plan: `maxUnhealthy` (defaulted when
    /// `remediation` is unset) of the group's desired capacity, the
    /// remediations in `next`, and `waiting` broken clients (each reason
    /// counts its own and they are added up).
    pub(in crate::controller::plan) fn of(
        spec: &NomadClientPoolSpec,
        desired_capacity: u32,
        next: &[RetiringNode],
        waiting: u32,
    ) -> Self {
        let max = spec.remediation.as_ref().map_or_else(
            || IntOrString::String(DEFAULT_MAX_UNHEALTHY.into()),
            |r| r.max_unhealthy(),
        );
        Self::new(&max, desired_capacity, in_flight(next), waiting)
    }

    /// Whether more clients are unhealthy than the cap allows: nothing new
    /// is remediated, and a condition says so.
    pub(in crate::controller::plan) fn refused(&self) -> bool {
        self.unhealthy > self.allowed
    }

    /// Take one start; `false` when none is left.
    pub(in crate::controller::plan) fn take(&mut self) -> bool {
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
}

/// Remediations in flight (any remediation reason, not being given back).
pub(in crate::controller::plan) fn in_flight(next: &[RetiringNode]) -> u32 {
    next.iter()
        .filter(|r| r.reason.is_remediation() && r.phase != RetirePhase::Cancelling)
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pct(p: u32) -> IntOrString {
        IntOrString::String(format!("{p}%"))
    }

    #[test]
    fn percentages_round_down_but_never_to_zero() {
        assert_eq!(max_unhealthy(&pct(20), 10), 2);
        assert_eq!(max_unhealthy(&pct(20), 14), 2);
        assert_eq!(max_unhealthy(&pct(20), 4), 1, "one client of a small pool");
        assert_eq!(max_unhealthy(&pct(20), 0), 1);
        assert_eq!(max_unhealthy(&pct(100), 7), 7);
        assert_eq!(max_unhealthy(&IntOrString::Int(3), 100), 3);
        assert_eq!(max_unhealthy(&IntOrString::Int(0), 100), 1);
        assert_eq!(
            max_unhealthy(&IntOrString::String("lots".into()), 10),
            2,
            "a value that does not parse is the default 20%, not no cap"
        );
    }

    #[test]
    fn an_outage_above_the_cap_starts_nothing() {
        // 10 clients, 20%: 2 may be unhealthy. 3 down at once: none starts.
        let cap = RemediationCap::new(&pct(20), 10, 0, 3);
        assert!(cap.refused());
        assert_eq!(cap.left, 0);
        // 2 down: both may go.
        let mut cap = RemediationCap::new(&pct(20), 10, 0, 2);
        assert!(!cap.refused());
        assert!(cap.take() && cap.take() && !cap.take());
        // One in flight, one more down: one may start.
        let cap = RemediationCap::new(&pct(20), 10, 1, 1);
        assert_eq!((cap.refused(), cap.left), (false, 1));
        // One in flight and two more down: refused until it finishes.
        let cap = RemediationCap::new(&pct(20), 10, 1, 2);
        assert_eq!((cap.refused(), cap.left), (true, 0));
    }

    proptest! {
        /// Whatever the inputs: starts only while the unhealthy total is
        /// within the cap, never more starts than the cap leaves beside
        /// those in flight, and never enough to take the in-flight count
        /// past the cap.
        #[test]
        fn cap_arithmetic(
            percent in 1u32..=100,
            count in 1i32..=50,
            use_count in any::<bool>(),
            members in 0u32..500,
            in_flight in 0u32..60,
            waiting in 0u32..60,
        ) {
            let max = if use_count { IntOrString::Int(count) } else { pct(percent) };
            let allowed = max_unhealthy(&max, members);
            prop_assert!(allowed >= 1);
            if !use_count {
                prop_assert!(allowed <= members.max(1));
                prop_assert!(allowed as u64 * 100 <= (members.max(1) as u64) * percent as u64 + 100);
            }
            let mut cap = RemediationCap::new(&max, members, in_flight, waiting);
            prop_assert_eq!(cap.allowed, allowed);
            prop_assert_eq!(cap.refused(), in_flight + waiting > allowed);
            let mut started = 0;
            while cap.take() {
                started += 1;
                prop_assert!(started <= 1000);
            }
            if in_flight + waiting > allowed {
                prop_assert_eq!(started, 0);
            } else {
                prop_assert_eq!(started, allowed - in_flight);
                prop_assert!(in_flight + started <= allowed);
                // Every waiting client fits.
                prop_assert!(started >= waiting);
            }
        }
    }
}
