//! AWS EC2 Auto Scaling groups, through the Auto Scaling API only.
//!
//! Everything pre-flight needs (sizes, suspended processes, lifecycle states,
//! scale-in protection) comes from one `DescribeAutoScalingGroups` call, so
//! the operator needs no EC2 permissions unless the pool sets
//! `maxNodeAge` or `replaceDrifted` (`ec2:DescribeInstances`,
//! `ec2:DescribeLaunchTemplates`: see `launch`).
//!
//! Retries and back-off are the SDK's (standard mode): reads and
//! `SetDesiredCapacity` are idempotent and retried on throttling and server
//! errors. `TerminateInstanceInAutoScalingGroup` with a decrement is not
//! idempotent, so it is retried only when AWS answered that it did not carry
//! the request out (throttling, a scaling activity in progress); any other
//! failure is resolved by reading the instance back instead.

use std::fmt;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::config::http::HttpResponse;
use aws_sdk_autoscaling::config::interceptors::InterceptorContext;
use aws_sdk_autoscaling::config::retry::{ClassifyRetry, RetryAction, RetryConfig};
use aws_sdk_autoscaling::config::timeout::TimeoutConfig;
use aws_sdk_autoscaling::config::{Credentials, Region};
use aws_sdk_autoscaling::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_autoscaling::operation::detach_instances::DetachInstancesError;
use aws_sdk_autoscaling::operation::terminate_instance_in_auto_scaling_group::TerminateInstanceInAutoScalingGroupError;
pub use batch::{BatchTerminations, Batching, DETACHED_TAG, FEWEST_PER_BATCH, MOST_PER_BATCH};
use futures::FutureExt;
use futures::future::BoxFuture;
use tracing::{debug, info, warn};

use super::lifecycle::{LifecycleQueue, QueueError};
use super::{
    CloudProvider, GroupState, InstanceState, Lifecycle, LifecycleAction, LifecycleActionOutcome,
    LifecycleHook, ProviderError, TerminateOutcome, scrub_message,
};

pub const KIND: &str = "aws-asg";

/// The Nomad client fingerprints the EC2 instance ID under this attribute.
pub const INSTANCE_ID_ATTRIBUTE: &str = "unique.platform.aws.instance-id";

/// Where an [`AwsAutoScalingGroup`] finds its group and credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsAsgConfig {
    pub group_name: String,
    pub region: String,
    /// Auto Scaling API endpoint override (emulators in tests, VPC endpoints).
    pub endpoint: Option<String>,
    pub credentials: AwsCredentials,
    /// Terminate in batches (`batchTerminations`); `None`: one VM per call.
    pub batch: Option<BatchTerminations>,
}

#[derive(Clone, PartialEq, Eq, Default)]
pub enum AwsCredentials {
    /// The standard AWS chain: environment, web identity (IRSA), shared
    /// profile, ECS and EC2 instance metadata. SSO profiles are not supported
    /// (the SDK's `sso` feature is off to keep the build small).
    #[default]
    DefaultChain,
    /// Keys read from a Kubernetes Secret.
    Static {
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
    },
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AwsCredentials::DefaultChain => f.write_str("DefaultChain"),
            // The key ID identifies a key without granting anything (AWS
            // shows it in CloudTrail), which helps tell two Secrets apart.
            AwsCredentials::Static {
                access_key_id,
                session_token,
                ..
            } => f
                .debug_struct("Static")
                .field("access_key_id", access_key_id)
                .field("secret_access_key", &"** redacted **")
                .field(
                    "session_token",
                    &session_token.as_ref().map(|_| "** redacted **"),
                )
                .finish(),
        }
    }
}

/// How hard the SDK tries before a call fails back to the reconciler.
#[derive(Clone, Debug)]
pub(crate) struct SdkSettings {
    pub retry: RetryConfig,
    pub timeout: TimeoutConfig,
}

impl Default for SdkSettings {
    fn default() -> Self {
        Self {
            // Four attempts with jittered exponential back-off (up to ~0.5 s,
            // 1 s, 2 s) ride out a burst of throttling; longer outages are the
            // reconciler's to retry on its own schedule.
            retry: RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(500))
                .with_max_backoff(Duration::from_secs(20)),
            timeout: TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(20))
                .operation_attempt_timeout(Duration::from_secs(30))
                .operation_timeout(Duration::from_secs(90))
                .build(),
        }
    }
}

/// An EC2 Auto Scaling group as a [`CloudProvider`].
#[derive(Clone)]
pub struct AwsAutoScalingGroup {
    client: Client,
    group_name: String,
    region: String,
    endpoint: Option<String>,
    /// Values scrubbed from every error message this provider produces.
    secrets: Vec<String>,
    /// Region, credentials and retries, for the lifecycle queue's client.
    sdk_config: aws_config::SdkConfig,
    /// EC2 reads of the launch facts a pool feature wants (none by default).
    launch: std::sync::Arc<launch::LaunchReader>,
    /// With `batchTerminations`: the batches of VMs to terminate.
    batch: Option<std::sync::Arc<batch::Batcher>>,
}

impl fmt::Debug for AwsAutoScalingGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsAutoScalingGroup")
            .field("group_name", &self.group_name)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl AwsAutoScalingGroup {
    /// Build the client. Makes no API call: credentials from the default
    /// chain are resolved on first use, so a missing IRSA role shows up as
    /// [`ProviderError::Unauthorized`] from the first describe.
    pub async fn new(cfg: AwsAsgConfig) -> Result<Self, ProviderError> {
        Self::with_settings(cfg, SdkSettings::default()).await
    }

    pub(crate) async fn with_settings(
        cfg: AwsAsgConfig,
        settings: SdkSettings,
    ) -> Result<Self, ProviderError> {
        if cfg.group_name.trim().is_empty() {
            return Err(ProviderError::Refused {
                message: "Auto Scaling group name is empty".into(),
            });
        }
        if cfg.region.trim().is_empty() {
            return Err(ProviderError::Refused {
                message: format!(
                    "no AWS region given for Auto Scaling group {}",
                    cfg.group_name
                ),
            });
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(cfg.region.clone()))
            .retry_config(settings.retry)
            .timeout_config(settings.timeout);
        let mut secrets = Vec::new();
        if let AwsCredentials::Static {
            access_key_id,
            secret_access_key,
            session_token,
        } = &cfg.credentials
        {
            if access_key_id.is_empty() || secret_access_key.is_empty() {
                return Err(ProviderError::Refused {
                    message:
                        "AWS credentials Secret has an empty access key ID or secret access key"
                            .into(),
                });
            }
            secrets.push(secret_access_key.clone());
            secrets.extend(session_token.iter().cloned());
            loader = loader.credentials_provider(Credentials::new(
                access_key_id,
                secret_access_key,
                session_token.clone(),
                None,
                "kubernetes-secret",
            ));
        }
        let sdk_config = loader.load().await;
        // The override goes on this client only: set on the shared loader it
        // would also redirect the STS calls that IRSA makes for credentials.
        let mut client_config = aws_sdk_autoscaling::config::Builder::from(&sdk_config)
            .interceptor(requests::CountRequests);
        if let Some(endpoint) = &cfg.endpoint {
            client_config = client_config.endpoint_url(endpoint);
        }
        let launch = launch::LaunchReader::new(&sdk_config, cfg.endpoint.as_deref());
        let batch = (cfg.batch).map(|wanted| {
            std::sync::Arc::new(batch::Batcher::new(
                &sdk_config,
                cfg.endpoint.as_deref(),
                wanted,
            ))
        });
        Ok(Self {
            launch: std::sync::Arc::new(launch),
            batch,
            client: Client::from_conf(client_config.build()),
            group_name: cfg.group_name,
            region: cfg.region,
            endpoint: cfg.endpoint,
            secrets,
            sdk_config,
        })
    }

    pub fn group_name(&self) -> &str {
        &self.group_name
    }

    fn classify<E>(&self, err: SdkError<E, HttpResponse>) -> ProviderError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        classify_sdk_error(&err, &self.group_name, &secrets)
    }

    async fn describe(&self) -> Result<GroupState, ProviderError> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.group_name)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let group = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(self.group_name.as_str()))
            .ok_or_else(|| ProviderError::GroupNotFound {
                group: self.group_name.clone(),
            })?;
        let suspended_processes: Vec<String> = group
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().map(str::to_owned))
            .collect();
        let instances = group
            .instances()
            .iter()
            .filter_map(|i| {
                Some(InstanceState {
                    id: i.instance_id()?.to_owned(),
                    lifecycle: i
                        .lifecycle_state()
                        .map_or(Lifecycle::Other("Unknown".into()), |s| {
                            lifecycle_from_aws(s.as_str())
                        }),
                    protected_from_scale_in: i.protected_from_scale_in().unwrap_or(false),
                    zone: i.availability_zone().map(str::to_owned),
                    healthy: i
                        .health_status()
                        .is_some_and(|h| h.eq_ignore_ascii_case("Healthy")),
                    launched_at: None,
                    launch_spec: None,
                })
            })
            .collect();
        let mut state = GroupState {
            name: self.group_name.clone(),
            min_size: size(group.min_size()),
            max_size: size(group.max_size()),
            desired_capacity: size(group.desired_capacity()),
            terminate_suspended: suspended_processes.iter().any(|p| p == "Terminate"),
            suspended_processes,
            instances,
            owner_tag: group
                .tags()
                .iter()
                .find(|t| t.key() == Some(super::OWNER_TAG))
                .map(|t| t.value().unwrap_or_default().to_owned()),
            launch_specs: Vec::new(),
            reads_launch_times: true,
        };
        self.launch.fill(group, &mut state, self).await?;
        Ok(state)
    }

    async fn set_desired(&self, desired: u32) -> Result<(), ProviderError> {
        let desired_i32 = i32::try_from(desired).map_err(|_| ProviderError::Refused {
            message: format!("desired capacity {desired} is out of range"),
        })?;
        let result = self
            .client
            .set_desired_capacity()
            .auto_scaling_group_name(&self.group_name)
            .desired_capacity(desired_i32)
            // Cooldowns pace reactive scaling policies; an explicit resize
            // from the operator must not wait behind them.
            .honor_cooldown(false)
            .send()
            .await;
        let err = match result {
            Ok(_) => {
                info!(group = %self.group_name, desired, "set desired capacity");
                return Ok(());
            }
            Err(err) => self.classify(err),
        };
        // AWS names a missing group in a ValidationError; emulators answer
        // with a bare server error. Asking tells the two apart.
        if matches!(err, ProviderError::Api { .. })
            && let Err(e @ ProviderError::GroupNotFound { .. }) = self.describe().await
        {
            return Err(e);
        }
        Err(err)
    }
}

impl CloudProvider for AwsAutoScalingGroup {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn group(&self) -> String {
        format!("asg/{} ({})", self.group_name, self.region)
    }

    fn describe_group(&self) -> BoxFuture<'_, Result<GroupState, ProviderError>> {
        async move {
            let group = self.describe().await?;
            if let Some(batch) = &self.batch {
                batch.sweep.maybe(self, &group).await;
                // Read (at most once a minute) so that the pool can say
                // whether its batches run before the first one is due.
                batch.hooks_allow_batches(self).await;
            }
            Ok(group)
        }
        .boxed()
    }

    fn terminate_instance<'a>(
        &'a self,
        instance_id: &'a str,
        decrement: bool,
    ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>> {
        self.terminate_one(instance_id, decrement, true).boxed()
    }

    fn terminate_new_instance<'a>(
        &'a self,
        instance_id: &'a str,
        decrement: bool,
    ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>> {
        // AWS refuses (ValidationError "... is not in InService or Standby")
        // an instance already leaving, so this cannot decrement twice; the
        // failure path re-reads the instance and reports what AWS shows.
        // A batch's detach names its instances: the same holds.
        async move {
            match &self.batch {
                Some(batch) if !instance_id.trim().is_empty() => {
                    batch.terminate(self, instance_id, decrement).await
                }
                _ => self.terminate_one(instance_id, decrement, false).await,
            }
        }
        .boxed()
    }

    fn batching(&self) -> Option<super::Batching> {
        self.batch.as_ref()?.batching()
    }

    fn terminations_per_call(&self) -> usize {
        if self.batch.is_some() {
            MOST_PER_BATCH
        } else {
            1
        }
    }

    fn set_desired_capacity(&self, desired: u32) -> BoxFuture<'_, Result<(), ProviderError>> {
        self.set_desired(desired).boxed()
    }

    fn instance_id_attribute(&self) -> &'static str {
        INSTANCE_ID_ATTRIBUTE
    }

    fn read_launch_facts(&self, facts: super::LaunchFacts) {
        self.launch.want(facts);
    }

    fn describe_lifecycle_hook<'a>(
        &'a self,
        hook: &'a str,
    ) -> BoxFuture<'a, Result<Option<LifecycleHook>, ProviderError>> {
        self.describe_hook(hook).boxed()
    }

    fn put_lifecycle_hook<'a>(
        &'a self,
        hook: &'a str,
        heartbeat_timeout: u32,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        self.put_hook(hook, heartbeat_timeout).boxed()
    }

    fn complete_lifecycle_action<'a>(
        &'a self,
        action: &'a LifecycleAction,
    ) -> BoxFuture<'a, Result<LifecycleActionOutcome, ProviderError>> {
        self.complete_action(action).boxed()
    }

    fn record_lifecycle_action_heartbeat<'a>(
        &'a self,
        action: &'a LifecycleAction,
    ) -> BoxFuture<'a, Result<LifecycleActionOutcome, ProviderError>> {
        self.heartbeat(action).boxed()
    }

    fn instance_lifecycles<'a>(
        &'a self,
        instance_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Lifecycle)>, ProviderError>> {
        self.lifecycles(instance_ids).boxed()
    }

    fn lifecycle_queue(
        &self,
        queue_url: &str,
    ) -> Result<std::sync::Arc<dyn LifecycleQueue>, QueueError> {
        let queue = queue::SqsQueue::new(
            &self.sdk_config,
            queue_url,
            &self.region,
            &self.group_name,
            self.secrets.clone(),
        )?;
        Ok(std::sync::Arc::new(queue))
    }
}

fn size(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// Fold every AWS `LifecycleState` into [`Lifecycle`].
///
/// Warm-pool instances are not part of the group's capacity, so they stay
/// [`Lifecycle::Other`] except when terminating, which must still stop a
/// second terminate.
pub fn lifecycle_from_aws(state: &str) -> Lifecycle {
    match state {
        "Pending" | "Pending:Wait" | "Pending:Proceed" => Lifecycle::Pending,
        "InService" => Lifecycle::InService,
        "Standby" | "EnteringStandby" => Lifecycle::Standby,
        // The one state where the group waits for someone: the operator
        // completes the hook's action once the client is drained.
        "Terminating:Wait" => Lifecycle::TerminatingWait,
        "Terminating"
        | "Terminating:Proceed"
        | "Warmed:Terminating"
        | "Warmed:Terminating:Wait"
        | "Warmed:Terminating:Proceed" => Lifecycle::Terminating,
        "Terminated" | "Warmed:Terminated" => Lifecycle::Terminated,
        "Detaching" | "Detached" => Lifecycle::Detaching,
        other => Lifecycle::Other(other.to_owned()),
    }
}

mod batch;
mod errors;
mod hooks;
mod launch;
mod notice;
mod queue;
mod requests;
mod sweep;
mod terminate;

use errors::{RetryOnlyUnexecuted, classify_sdk_error};
#[cfg(test)]
use errors::{classify_dispatch_failure, classify_response};

#[cfg(test)]
mod tests;
