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
//!
//! A hook may also send a notification for each action to a queue; the
//! operator reads it ([`LifecycleQueue`]) to find held instances within a
//! second instead of at its next look at the group.

use futures::future::BoxFuture;

use super::ProviderError;

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

/// The AWS name of the test message a hook sends to a new notification
/// target (ref §2.1, §3.2): it carries no action.
pub const TEST_NOTIFICATION: &str = "autoscaling:TEST_NOTIFICATION";

/// What one queued notification says, whichever way it was delivered
/// (an EventBridge rule or the hook's own notification target). Its Debug
/// output leaves the token out: not a secret, but no log line needs it.
#[derive(Clone, PartialEq, Eq)]
pub enum Notice {
    /// The test message a hook sends when its target is set.
    Test { group: Option<String> },
    /// An instance entered `Terminating:Wait` under `hook`.
    Terminating {
        group: String,
        hook: String,
        instance_id: String,
        token: Option<String>,
    },
    /// Anything else: another transition, another event, a body that is not
    /// a lifecycle notification. Not the operator's to judge or delete.
    Other { why: &'static str },
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Notice::Test { group } => f.debug_struct("Test").field("group", group).finish(),
            Notice::Terminating {
                group,
                hook,
                instance_id,
                token,
            } => f
                .debug_struct("Terminating")
                .field("group", group)
                .field("hook", hook)
                .field("instance_id", instance_id)
                .field("token", &token.as_ref().map(|_| "(not shown)"))
                .finish(),
            Notice::Other { why } => f.debug_struct("Other").field("why", why).finish(),
        }
    }
}

/// One received message: what it says, and the handle that deletes it
/// (the one from the latest receive; an older one may not delete it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueuedNotice {
    pub message_id: String,
    pub receipt_handle: String,
    pub notice: Notice,
}

/// Why the queue could not be read or a message not deleted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the queue URL {url} cannot be used: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("queue {url} does not exist")]
    NotFound { url: String },
    #[error("not allowed to use queue {url}: {source}")]
    Denied {
        url: String,
        #[source]
        source: ProviderError,
    },
    #[error("reading queue {url}: {source}")]
    Failed {
        url: String,
        #[source]
        source: ProviderError,
    },
}

impl QueueError {
    /// What a person must change, for the condition's message.
    pub fn what_to_fix(&self) -> &'static str {
        match self {
            QueueError::BadUrl { .. } => {
                "set lifecycleHook.queueURL to the queue's URL (https://sqs.<region>.amazonaws.com/<account>/<name>) in the group's region"
            }
            QueueError::NotFound { .. } => "create the queue or correct lifecycleHook.queueURL",
            QueueError::Denied { .. } => {
                "grant sqs:ReceiveMessage and sqs:DeleteMessage on the queue (and kms:Decrypt on its key if it is encrypted with a customer key)"
            }
            QueueError::Failed { .. } => "nothing if it passes; otherwise check the queue endpoint",
        }
    }
}

/// A queue of lifecycle notifications (AWS: an SQS queue).
pub trait LifecycleQueue: Send + Sync + std::fmt::Debug {
    fn url(&self) -> &str;

    /// Long-poll for up to ten messages; an empty answer after the wait.
    fn receive(&self) -> BoxFuture<'_, Result<Vec<QueuedNotice>, QueueError>>;

    /// Delete one message for good.
    fn delete<'a>(&'a self, receipt_handle: &'a str) -> BoxFuture<'a, Result<(), QueueError>>;
}
