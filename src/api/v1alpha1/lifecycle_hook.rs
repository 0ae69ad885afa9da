//! `provider.awsAutoScalingGroup.lifecycleHook`: the group's terminating
//! lifecycle hook, through which every termination the group starts itself
//! (a lowered desired capacity, a scaling policy, an instance refresh) waits
//! in `Terminating:Wait` until the operator has drained the client.
//!
//! The limits are AWS's (PutLifecycleHook: HeartbeatTimeout 30..7200 s, hook
//! names 1..255 characters; `/work/shared/reference/aws-lifecycle-hooks.md`
//! §2.1), checked by the API server so a bad spec is refused at apply time.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The group's `autoscaling:EC2_INSTANCE_TERMINATING` lifecycle hook.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.heartbeatTimeoutSeconds) || (has(self.mode) && self.mode == 'Managed')").message("lifecycleHook.heartbeatTimeoutSeconds is only used with mode: Managed (an existing hook keeps its own timeout)"))]
pub struct LifecycleHookSpec {
    /// The hook's name (`LifecycleHookName`).
    #[schemars(length(min = 1, max = 255))]
    pub name: String,

    /// `Managed`: the operator creates the hook and keeps it as this spec
    /// says. `Existing` (default): the hook is someone else's (Terraform,
    /// CloudFormation); the operator only reads it and completes its actions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LifecycleHookMode>,

    /// How long an instance waits for a heartbeat or completion before the
    /// hook's default result applies (only with `mode: Managed`; default
    /// 300). The operator records heartbeats well within it while jobs run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 30 && self <= 7200").message("lifecycleHook.heartbeatTimeoutSeconds must be between 30 and 7200 (AWS's limits)"))]
    pub heartbeat_timeout_seconds: Option<i32>,

    /// An SQS queue (standard, not FIFO, in the group's region) that
    /// receives the hook's notifications, as its notification target or
    /// through an EventBridge rule. The operator long-polls it and finds a
    /// held VM within about a second (the group reads, every ~5 s, stay the
    /// safety net); it deletes this hook's messages once their action is
    /// over and the group's test notifications, and leaves every other
    /// message alone. Needs sqs:ReceiveMessage and sqs:DeleteMessage.
    #[serde(default, rename = "queueURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://')").message("lifecycleHook.queueURL must be an SQS queue URL (https://sqs.<region>.amazonaws.com/<account>/<name>)"))]
    pub queue_url: Option<String>,
}

/// Who owns the lifecycle hook.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LifecycleHookMode {
    /// The operator creates the hook and keeps it up to date.
    Managed,
    /// The hook exists; the operator only uses it.
    #[default]
    Existing,
}

/// `heartbeatTimeoutSeconds` of a managed hook when the spec leaves it out.
pub const DEFAULT_HEARTBEAT_TIMEOUT_SECONDS: u32 = 300;

impl LifecycleHookSpec {
    pub fn managed(&self) -> bool {
        self.mode == Some(LifecycleHookMode::Managed)
    }

    /// The heartbeat timeout a managed hook is given.
    pub fn heartbeat_timeout(&self) -> u32 {
        self.heartbeat_timeout_seconds
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(DEFAULT_HEARTBEAT_TIMEOUT_SECONDS)
    }
}
