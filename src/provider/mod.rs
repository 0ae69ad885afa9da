//! Cloud instance-group providers.
//!
//! The reconciler only sees [`CloudProvider`], chosen at runtime from the
//! pool's spec as an `Arc<dyn CloudProvider>`, so the trait returns boxed
//! futures instead of using `async fn` (which is not dyn-compatible).
//!
//! - `config`: `spec.provider` and its Secret keys → a [`ProviderConfig`] (pure);
//! - `factory`: the one [`connect`] that builds a provider through a
//!   [`Connector`] and wraps it in the `metered` decorator;
//! - `aws`: EC2 Auto Scaling groups; `gce`: Compute Engine managed instance
//!   groups; `fake`: the tests' in-memory group;
//! - `ownership`, `preflight`: rules every provider applies the same way.
//!
//! The safety rules that do not depend on a cloud's API live here as pure
//! functions ([`preflight`]), so that every provider refuses the same things
//! for the same reasons and the rules are testable without I/O.

pub mod aws;
pub mod config;
mod factory;
pub mod fake;
pub mod gce;
pub mod lifecycle;
pub mod metered;
pub mod ownership;
mod preflight;

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

pub use aws::{
    AwsAsgConfig, AwsAutoScalingGroup, AwsCredentials, BatchTerminations, Batching, DETACHED_TAG,
    FEWEST_PER_BATCH,
};
pub use config::{CredentialsReference, MissingKey, ProviderConfig, credentials_reference};
pub use factory::{Clouds, Connector, connect};
pub use gce::{
    GceCredentials, GceError, GceLocation, GceManagedInstanceGroup, GceMigConfig, GceSettings,
};
pub use lifecycle::{
    LifecycleAction, LifecycleActionOutcome, LifecycleHook, LifecycleQueue, Notice, QueueError,
    QueuedNotice,
};
pub use ownership::{OWNER_TAG, OwnershipRefusal};
pub use preflight::{PreflightRefusal, preflight, preflight_with};

/// A cloud instance group that holds Nomad client VMs.
pub trait CloudProvider: Send + Sync + fmt::Debug {
    /// e.g. "aws-asg", used in status messages and metric labels
    fn kind(&self) -> &'static str;

    /// Human-readable group identity for messages, e.g. "asg/ci-clients (us-east-1)"
    fn group(&self) -> String;

    /// One call that answers everything pre-flight needs: sizes, suspended
    /// processes, every instance's lifecycle state and scale-in protection.
    fn describe_group(&self) -> BoxFuture<'_, Result<GroupState, ProviderError>>;

    /// Terminate one instance. `decrement = true` lowers desired capacity by
    /// one in the same call (no replacement).
    ///
    /// Implementations must re-read the instance from the cloud right before
    /// terminating and must not call the cloud's terminate when the instance
    /// is already on its way out or no longer in the group: a reconciler that
    /// crashed after terminating will call this again on restart, and a second
    /// decrement would shrink the group below what the user asked for.
    fn terminate_instance<'a>(
        &'a self,
        instance_id: &'a str,
        decrement: bool,
    ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>>;

    /// [`CloudProvider::terminate_instance`] for an instance this controller
    /// has never asked the cloud to terminate (its write-ahead status record
    /// proves it) and that the group view shows in service: the re-read
    /// before the call may be skipped, which takes a round trip off every
    /// retirement. A failed call must still be checked against the cloud.
    fn terminate_new_instance<'a>(
        &'a self,
        instance_id: &'a str,
        decrement: bool,
    ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>> {
        self.terminate_instance(instance_id, decrement)
    }

    /// How many VMs one terminate call of this provider may carry: the
    /// pool lets that many more VMs wait for their call at once.
    fn terminations_per_call(&self) -> usize {
        1
    }

    /// Whether drained VMs go in batches (`batchTerminations`), as last
    /// read; `None` when the pool does not ask for batches or nothing was
    /// read yet. Makes no call.
    fn batching(&self) -> Option<Batching> {
        None
    }

    /// Set the group's desired capacity (absolute, so repeating it is harmless).
    fn set_desired_capacity(&self, desired: u32) -> BoxFuture<'_, Result<(), ProviderError>>;

    /// Which Nomad node attribute carries this provider's instance ID
    /// (AWS: "unique.platform.aws.instance-id"; GCE: "unique.platform.gce.id")
    fn instance_id_attribute(&self) -> &'static str;

    // Terminating lifecycle hooks (see [`lifecycle`]). A cloud without them
    // keeps the defaults, which refuse: a pool can only name a hook in the
    // spec of a provider that has them.

    /// The group's hook named `hook`; `None` when the group has no such hook.
    fn describe_lifecycle_hook<'a>(
        &'a self,
        hook: &'a str,
    ) -> BoxFuture<'a, Result<Option<LifecycleHook>, ProviderError>> {
        let _ = hook;
        no_lifecycle_hooks(self.kind())
    }

    /// Create or update the group's terminating hook `hook` (CONTINUE at a
    /// timeout: a terminating instance goes either way, and CONTINUE lets
    /// the group's other hooks run).
    fn put_lifecycle_hook<'a>(
        &'a self,
        hook: &'a str,
        heartbeat_timeout: u32,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        let _ = (hook, heartbeat_timeout);
        no_lifecycle_hooks(self.kind())
    }

    /// Complete a pending action with CONTINUE: the instance may terminate.
    fn complete_lifecycle_action<'a>(
        &'a self,
        action: &'a LifecycleAction,
    ) -> BoxFuture<'a, Result<LifecycleActionOutcome, ProviderError>> {
        let _ = action;
        no_lifecycle_hooks(self.kind())
    }

    /// Restart a pending action's heartbeat timeout.
    fn record_lifecycle_action_heartbeat<'a>(
        &'a self,
        action: &'a LifecycleAction,
    ) -> BoxFuture<'a, Result<LifecycleActionOutcome, ProviderError>> {
        let _ = action;
        no_lifecycle_hooks(self.kind())
    }

    /// The lifecycle state, read now, of each of these instances that is
    /// in the group (one missing from the answer is not in it). The default
    /// reads the whole group; a cloud that can read a few instances does.
    fn instance_lifecycles<'a>(
        &'a self,
        instance_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Lifecycle)>, ProviderError>> {
        Box::pin(async move {
            let group = self.describe_group().await?;
            Ok((group.instances.into_iter())
                .filter(|i| instance_ids.contains(&i.id))
                .map(|i| (i.id, i.lifecycle))
                .collect())
        })
    }

    /// Which launch facts (launch time, launch spec) the next describes
    /// read besides the group: each costs calls on some clouds, so only
    /// what a feature the pool turned on needs (`spec.maxNodeAge`,
    /// `spec.replaceDrifted`). Set before every reconcile; a cloud whose
    /// group listing carries them anyway may ignore it.
    fn read_launch_facts(&self, facts: LaunchFacts) {
        let _ = facts;
    }

    /// The queue that carries the hook's notifications, at `queue_url`.
    /// Makes no call; a cloud without such queues refuses.
    fn lifecycle_queue(&self, queue_url: &str) -> Result<Arc<dyn LifecycleQueue>, QueueError> {
        Err(QueueError::BadUrl {
            url: queue_url.to_owned(),
            reason: format!(
                "provider {} has no lifecycle notification queue",
                self.kind()
            ),
        })
    }
}

fn no_lifecycle_hooks<'a, T: Send + 'a>(kind: &str) -> BoxFuture<'a, Result<T, ProviderError>> {
    Box::pin(futures::future::ready(Err(ProviderError::Refused {
        message: format!("provider {kind} has no lifecycle hooks"),
    })))
}

/// A snapshot of an instance group, as one describe call returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupState {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    /// The cloud will refuse (or silently not perform) terminations.
    pub terminate_suspended: bool,
    /// Every suspended process by the cloud's own name, for messages.
    pub suspended_processes: Vec<String>,
    pub instances: Vec<InstanceState>,
    /// The value of the group's [`OWNER_TAG`]: the one pool that may drive it.
    pub owner_tag: Option<String>,
    /// What the group launches new VMs from now (several while a GCE group
    /// rolls out a canary version, or an AWS mixed-instances group
    /// overrides the template per instance type). Empty when not read
    /// ([`LaunchFacts::launch_spec`] off) or not known: then no VM is
    /// called drifted.
    pub launch_specs: Vec<LaunchSpec>,
    /// Whether this provider can read VM launch times at all: `false`
    /// says `maxNodeAge` cannot work on this cloud (yet), as opposed to
    /// launch times not asked for or not read yet.
    pub reads_launch_times: bool,
}

impl GroupState {
    pub fn instance(&self, instance_id: &str) -> Option<&InstanceState> {
        self.instances.iter().find(|i| i.id == instance_id)
    }

    /// The group with `instance_id` its only VM (and no launch specs): what
    /// a decision on that one VM reads, without a copy of every VM.
    pub fn with_only(&self, instance_id: &str) -> GroupState {
        GroupState {
            name: self.name.clone(),
            min_size: self.min_size,
            max_size: self.max_size,
            desired_capacity: self.desired_capacity,
            terminate_suspended: self.terminate_suspended,
            suspended_processes: self.suspended_processes.clone(),
            instances: self.instance(instance_id).cloned().into_iter().collect(),
            owner_tag: self.owner_tag.clone(),
            launch_specs: Vec::new(),
            reads_launch_times: self.reads_launch_times,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceState {
    pub id: String,
    pub lifecycle: Lifecycle,
    pub protected_from_scale_in: bool,
    pub zone: Option<String>,
    pub healthy: bool,
    /// When the VM was launched; `None` when not read
    /// ([`LaunchFacts::launch_time`] off) or not known yet.
    pub launched_at: Option<jiff::Timestamp>,
    /// What the VM was launched from; `None` when not read or not known.
    pub launch_spec: Option<LaunchSpec>,
}

/// The launch facts a describe reads besides the group (see
/// [`CloudProvider::read_launch_facts`]); none by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LaunchFacts {
    /// Each VM's launch time, for `spec.maxNodeAge`.
    pub launch_time: bool,
    /// Each VM's launch spec and the group's current ones, for drift.
    pub launch_spec: bool,
}

impl LaunchFacts {
    pub fn any(self) -> bool {
        self.launch_time || self.launch_spec
    }
}

/// What a VM is launched from, as exactly as the cloud names it: two
/// VMs launched from equal specs are configured alike. A `$Latest` or
/// `$Default` AWS version is resolved to its number before it is put
/// here, so a spec says which version, not which rule picked it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LaunchSpec {
    /// An AWS launch template (by ID) at a version number.
    LaunchTemplate { id: String, version: String },
    /// An AWS launch configuration, by name (launch configurations have
    /// no versions: a change is a new configuration).
    LaunchConfiguration(String),
    /// A GCE instance template, by its URL's path from `projects/` on
    /// (the API answers full URLs, whose host may differ).
    InstanceTemplate(String),
}

impl fmt::Display for LaunchSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchSpec::LaunchTemplate { id, version } => {
                write!(f, "launch template {id} version {version}")
            }
            LaunchSpec::LaunchConfiguration(name) => write!(f, "launch configuration {name}"),
            LaunchSpec::InstanceTemplate(path) => write!(f, "instance template {path}"),
        }
    }
}

impl GroupState {
    /// The launch spec `instance` runs when it differs from every one the
    /// group launches now; `None` when it is current or either side is
    /// not known.
    pub fn drifted<'a>(&self, instance: &'a InstanceState) -> Option<&'a LaunchSpec> {
        let spec = instance.launch_spec.as_ref()?;
        (!self.launch_specs.is_empty() && !self.launch_specs.contains(spec)).then_some(spec)
    }
}

/// Where an instance is in its group's lifecycle, reduced to what the
/// reconciler decides on. Cloud-specific sub-states (AWS `Pending:Wait`,
/// `Terminating:Proceed`, ...) fold into their main state; anything that is
/// neither serving nor leaving (AWS warm pools, quarantine, states added after
/// this was written) is [`Lifecycle::Other`] with the cloud's own name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Pending,
    InService,
    Standby,
    Terminating,
    /// Terminating, held by a lifecycle hook until its action is completed
    /// or times out (AWS `Terminating:Wait`): still running, no longer
    /// counted in the desired capacity.
    TerminatingWait,
    Terminated,
    /// Leaving the group without being terminated (AWS `Detaching`/`Detached`).
    Detaching,
    Other(String),
}

impl Lifecycle {
    /// The group still counts the instance in its desired capacity: no
    /// terminate of it landed, and a scale-in may still pick it.
    pub fn counted(&self) -> bool {
        matches!(
            self,
            Lifecycle::Pending | Lifecycle::InService | Lifecycle::Standby
        )
    }

    /// The instance is on its way out (or gone) and terminating it again must
    /// not happen.
    pub fn is_terminating(&self) -> bool {
        matches!(
            self,
            Lifecycle::Terminating | Lifecycle::TerminatingWait | Lifecycle::Terminated
        )
    }
}

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lifecycle::Pending => "Pending",
            Lifecycle::InService => "InService",
            Lifecycle::Standby => "Standby",
            Lifecycle::Terminating => "Terminating",
            Lifecycle::TerminatingWait => "Terminating:Wait",
            Lifecycle::Terminated => "Terminated",
            Lifecycle::Detaching => "Detaching",
            Lifecycle::Other(s) => s,
        })
    }
}

/// What [`CloudProvider::terminate_instance`] did.
///
/// Only `Terminated` means this call changed the group (and, if asked, lowered
/// its desired capacity). The other two mean nothing was done; re-read the
/// group to learn its current desired capacity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminateOutcome {
    Terminated,
    /// Already terminating or terminated, e.g. by this controller before a
    /// restart, by a scale-in, or by a person.
    AlreadyTerminating,
    /// The instance does not exist, belongs to another group, or is being
    /// detached from this one.
    NotInGroup,
}

/// A failed cloud API call, classified by what the reconciler should do next.
///
/// Messages come from the cloud and are scrubbed of anything that looks like
/// a credential before they are stored here (see [`scrub_message`]); they end
/// up in status conditions and logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("instance group {group} does not exist")]
    GroupNotFound { group: String },
    #[error("cloud API throttled the request: {message}")]
    Throttled { message: String },
    #[error("cloud API rejected the credentials or their permissions: {message}")]
    Unauthorized { message: String },
    /// The request is invalid for the group as configured; retrying will not
    /// help until a person changes something.
    #[error("cloud API refused the request: {message}")]
    Refused { message: String },
    #[error("cloud API unreachable: {message}")]
    Unreachable { message: String },
    #[error("cloud API error {code}: {message}")]
    Api { code: String, message: String },
}

/// Error codes that mean "not now": the request was not carried out and the
/// same request can succeed later. `HTTP5xx` codes are how providers report a
/// server error whose body had no error code.
const RETRYABLE_API_CODES: &[&str] = &[
    "ScalingActivityInProgress",
    "ResourceContention",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
];

impl ProviderError {
    /// Whether the same call may succeed later without anyone changing the
    /// group, its configuration or the credentials.
    pub fn is_retryable(&self) -> bool {
        match self {
            ProviderError::Throttled { .. } | ProviderError::Unreachable { .. } => true,
            ProviderError::Api { code, .. } => {
                RETRYABLE_API_CODES.contains(&code.as_str()) || code.starts_with("HTTP5")
            }
            ProviderError::GroupNotFound { .. }
            | ProviderError::Unauthorized { .. }
            | ProviderError::Refused { .. } => false,
        }
    }
}

/// Longest message kept from a cloud error. Emulators answer some errors with
/// whole HTML pages, which do not belong in a status condition.
const MAX_MESSAGE_CHARS: usize = 400;

/// Make a cloud error message safe to store: replace every `secrets` value and
/// anything shaped like an AWS access key ID, collapse whitespace, and cap the
/// length.
///
/// Cloud APIs do not normally echo credentials, but signature errors from
/// some endpoints quote the canonical request and credential scope, and a
/// status condition is readable by anyone who can read the pool.
pub fn scrub_message(message: &str, secrets: &[&str]) -> String {
    let mut out = message.to_owned();
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, "[redacted]");
    }
    let out = redact_access_key_ids(&out);
    let mut collapsed = String::with_capacity(out.len().min(MAX_MESSAGE_CHARS + 3));
    for word in out.split_whitespace() {
        if !collapsed.is_empty() {
            collapsed.push(' ');
        }
        collapsed.push_str(word);
    }
    if collapsed.chars().count() > MAX_MESSAGE_CHARS {
        collapsed = collapsed.chars().take(MAX_MESSAGE_CHARS).collect();
        collapsed.push('…');
    }
    collapsed
}

/// AWS access key IDs are a four-letter prefix and 16 upper-case letters or
/// digits (AKIA... long-term, ASIA... temporary). Keep the prefix so the kind
/// of key stays visible.
fn redact_access_key_ids(s: &str) -> String {
    const PREFIXES: &[&str] = &["AKIA", "ASIA", "AIDA", "AROA", "ABIA", "ACCA"];
    const ID_LEN: usize = 20;
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut copied_up_to = 0;
    while i + ID_LEN <= bytes.len() {
        let candidate = &bytes[i..i + ID_LEN];
        let at_word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        let at_word_end = bytes
            .get(i + ID_LEN)
            .is_none_or(|b| !b.is_ascii_alphanumeric());
        if at_word_start
            && at_word_end
            && PREFIXES.iter().any(|p| candidate.starts_with(p.as_bytes()))
            && candidate[4..]
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            out.push_str(&s[copied_up_to..i + 4]);
            out.push_str("[redacted]");
            i += ID_LEN;
            copied_up_to = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&s[copied_up_to..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_errors_are_the_transient_ones() {
        let retryable = [
            ProviderError::Throttled {
                message: "Rate exceeded".into(),
            },
            ProviderError::Unreachable {
                message: "connection refused".into(),
            },
            ProviderError::Api {
                code: "ScalingActivityInProgress".into(),
                message: "busy".into(),
            },
            ProviderError::Api {
                code: "ResourceContention".into(),
                message: "busy".into(),
            },
            ProviderError::Api {
                code: "HTTP500".into(),
                message: "Internal Server Error".into(),
            },
        ];
        for e in retryable {
            assert!(e.is_retryable(), "{e:?} must be retryable");
        }
        let permanent = [
            ProviderError::GroupNotFound { group: "ci".into() },
            ProviderError::Unauthorized {
                message: "AccessDenied".into(),
            },
            ProviderError::Refused {
                message: "min size".into(),
            },
            ProviderError::Api {
                code: "LimitExceeded".into(),
                message: "too many groups".into(),
            },
            ProviderError::Api {
                code: "HTTP404".into(),
                message: "no such path".into(),
            },
        ];
        for e in permanent {
            assert!(!e.is_retryable(), "{e:?} must not be retryable");
        }
    }

    #[test]
    fn scrub_removes_known_secrets_and_access_key_ids() {
        let msg = "Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1 secret wJalrXUtnFEMI/K7MDENG token=FQoGZXIvYXdzEJr";
        let out = scrub_message(msg, &["wJalrXUtnFEMI/K7MDENG", "FQoGZXIvYXdzEJr"]);
        assert!(!out.contains("IOSFODNN7EXAMPLE"), "{out}");
        assert!(!out.contains("wJalrXUtnFEMI"), "{out}");
        assert!(!out.contains("FQoGZXIvYXdzEJr"), "{out}");
        assert!(
            out.starts_with("Credential=AKIA[redacted]/20260101"),
            "{out}"
        );
    }

    #[test]
    fn scrub_leaves_instance_and_group_names_alone() {
        let msg = "Instance i-0123456789abcdef0 in group ASIA-PACIFIC-CLIENTS-2026";
        assert_eq!(scrub_message(msg, &[]), msg);
        // Too short to be a credential, too likely to appear in ordinary text.
        assert_eq!(scrub_message("abc", &["a"]), "abc");
    }

    #[test]
    fn scrub_collapses_and_caps_html_bodies() {
        let html = format!(
            "<!doctype html>\n<html>\n  <title>500</title>\n{}</html>",
            "x".repeat(2000)
        );
        let out = scrub_message(&html, &[]);
        assert!(out.chars().count() <= MAX_MESSAGE_CHARS + 1);
        assert!(out.starts_with("<!doctype html> <html> <title>500</title>"));
        assert!(out.ends_with('…'));
    }

    #[test]
    fn lifecycle_terminating_covers_terminated() {
        assert!(Lifecycle::Terminating.is_terminating());
        assert!(Lifecycle::Terminated.is_terminating());
        assert!(Lifecycle::TerminatingWait.is_terminating());
        assert!(!Lifecycle::Detaching.is_terminating());
        assert!(!Lifecycle::Other("Warmed:Running".into()).is_terminating());
        assert_eq!(
            Lifecycle::Other("Warmed:Running".into()).to_string(),
            "Warmed:Running"
        );
    }
}
