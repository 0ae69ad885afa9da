//! Terminating lifecycle hooks, as the reconciler sees them whatever the
//! cloud: the hook's settings, one instance's pending action, and what a
//! completion or heartbeat found.
//!
//! AWS answers a completion or heartbeat for an action that is no longer
//! pending (completed already, timed out, never started) with a
//! `ValidationError` "No active Lifecycle Action found ..."
//! (`/work/shared/reference/aws-lifecycle-hooks.md` §2.3, §2.4). That is
//! not a failure for the operator: a restarted operator completes again
//! what it may have completed before it died, so it is an outcome here,
//! [`LifecycleActionOutcome::NotActive`], never an error.

/// The AWS name of the transition the operator's hooks hold.
pub const TERMINATING_TRANSITION: &str = "autoscaling:EC2_INSTANCE_TERMINATING";

/// A lifecycle hook as the cloud describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleHook {
    pub name: String,
    /// e.g. `autoscaling:EC2_INSTANCE_TERMINATING`.
    pub transition: String,
    /// Seconds an instance waits without a heartbeat.
    pub heartbeat_timeout: u32,
    /// The longest an instance can wait, heartbeats or not.
    pub global_timeout: Option<u32>,
    /// `CONTINUE` or `ABANDON`, applied at a timeout.
    pub default_result: String,
}

impl LifecycleHook {
    /// Whether the hook holds terminating instances (the only kind the
    /// operator completes).
    pub fn is_terminating(&self) -> bool {
        self.transition == TERMINATING_TRANSITION
    }
}

/// One instance's pending action under one hook. Without a token the
/// cloud finds the action by instance ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LifecycleAction {
    pub hook: String,
    pub instance_id: String,
    pub token: Option<String>,
}

/// What a completion or heartbeat found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LifecycleActionOutcome {
    /// The action was pending and the call applied to it.
    Applied,
    /// No such action is pending: completed before (by us, before a
    /// restart, or by someone else), timed out, or never started.
    NotActive,
}
