//! The Auto Scaling group's terminating lifecycle hook: describe and put
//! the hook, complete an instance's action, record a heartbeat, and read
//! the lifecycle states of a few instances (to confirm what a queued
//! notification says) (`/work/shared/reference/aws-lifecycle-hooks.md` §2,
//! §5.1, §5.4).
//!
//! All four are safe to send again: a put sets the same values, and a
//! completion or heartbeat whose action is no longer pending is answered
//! with AWS's `ValidationError` "No active Lifecycle Action found ...",
//! which is [`LifecycleActionOutcome::NotActive`] here, so the SDK's own
//! retries apply to them.

use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};
use tracing::info;

use super::{AwsAutoScalingGroup, lifecycle_from_aws};
use crate::provider::lifecycle::TERMINATING_TRANSITION;
use crate::provider::{
    Lifecycle, LifecycleAction, LifecycleActionOutcome, LifecycleHook, ProviderError,
};

/// AWS's answer to a completion or heartbeat with no pending action (ref
/// §2.3: "No active Lifecycle Action found with token ..." / "... with
/// instance ID ..."): the action was completed, timed out or never began.
pub(super) fn no_active_action(code: Option<&str>, message: Option<&str>) -> bool {
    code == Some("ValidationError")
        && message.is_some_and(|m| m.starts_with("No active Lifecycle Action found"))
}

fn outcome<O, E>(
    group: &AwsAutoScalingGroup,
    result: Result<O, SdkError<E, aws_sdk_autoscaling::config::http::HttpResponse>>,
) -> Result<LifecycleActionOutcome, ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(LifecycleActionOutcome::Applied),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| no_active_action(e.code(), e.message())) =>
        {
            Ok(LifecycleActionOutcome::NotActive)
        }
        Err(err) => Err(group.classify(err)),
    }
}

impl AwsAutoScalingGroup {
    pub(super) async fn describe_hook(
        &self,
        hook: &str,
    ) -> Result<Option<LifecycleHook>, ProviderError> {
        let out = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(&self.group_name)
            .lifecycle_hook_names(hook)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let found = out
            .lifecycle_hooks()
            .iter()
            .find(|h| h.lifecycle_hook_name() == Some(hook));
        Ok(found.map(|h| LifecycleHook {
            name: hook.to_owned(),
            transition: h.lifecycle_transition().unwrap_or_default().to_owned(),
            // AWS's default when a hook was put without one (ref §2.1).
            heartbeat_timeout: h
                .heartbeat_timeout()
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(3600),
            global_timeout: h.global_timeout().and_then(|t| u32::try_from(t).ok()),
            default_result: h.default_result().unwrap_or("ABANDON").to_owned(),
        }))
    }

    /// Names of the group's terminating lifecycle hooks (a batch's detach
    /// would skip them).
    pub(super) async fn terminating_hooks(&self) -> Result<Vec<String>, ProviderError> {
        let out = self
            .client
            .describe_lifecycle_hooks()
            .auto_scaling_group_name(&self.group_name)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(out
            .lifecycle_hooks()
            .iter()
            .filter(|h| h.lifecycle_transition() == Some("autoscaling:EC2_INSTANCE_TERMINATING"))
            .filter_map(|h| h.lifecycle_hook_name().map(str::to_owned))
            .collect())
    }

    pub(super) async fn put_hook(
        &self,
        hook: &str,
        heartbeat_timeout: u32,
    ) -> Result<(), ProviderError> {
        let timeout = i32::try_from(heartbeat_timeout).map_err(|_| ProviderError::Refused {
            message: format!("heartbeat timeout {heartbeat_timeout} is out of range"),
        })?;
        self.client
            .put_lifecycle_hook()
            .auto_scaling_group_name(&self.group_name)
            .lifecycle_hook_name(hook)
            .lifecycle_transition(TERMINATING_TRANSITION)
            .heartbeat_timeout(timeout)
            .default_result("CONTINUE")
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        info!(group = %self.group_name, hook, heartbeat_timeout, "lifecycle hook put");
        Ok(())
    }

    pub(super) async fn complete_action(
        &self,
        action: &LifecycleAction,
    ) -> Result<LifecycleActionOutcome, ProviderError> {
        let result = self
            .client
            .complete_lifecycle_action()
            .auto_scaling_group_name(&self.group_name)
            .lifecycle_hook_name(&action.hook)
            .instance_id(&action.instance_id)
            .set_lifecycle_action_token(action.token.clone())
            .lifecycle_action_result("CONTINUE")
            .send()
            .await;
        let outcome = outcome(self, result)?;
        info!(group = %self.group_name, hook = %action.hook, instance_id = %action.instance_id, ?outcome, "lifecycle action completed");
        Ok(outcome)
    }

    /// The lifecycle state of each of these instances that is in this
    /// group now (DescribeAutoScalingInstances takes up to 50 IDs a call).
    pub(super) async fn lifecycles(
        &self,
        instance_ids: &[String],
    ) -> Result<Vec<(String, Lifecycle)>, ProviderError> {
        let mut found = Vec::new();
        for chunk in instance_ids.chunks(50) {
            let out = self
                .client
                .describe_auto_scaling_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| self.classify(e))?;
            found.extend(
                (out.auto_scaling_instances().iter())
                    .filter(|d| d.auto_scaling_group_name() == Some(self.group_name.as_str()))
                    .filter_map(|d| {
                        let id = d.instance_id()?.to_owned();
                        Some((id, lifecycle_from_aws(d.lifecycle_state().unwrap_or(""))))
                    }),
            );
        }
        Ok(found)
    }

    pub(super) async fn heartbeat(
        &self,
        action: &LifecycleAction,
    ) -> Result<LifecycleActionOutcome, ProviderError> {
        let result = self
            .client
            .record_lifecycle_action_heartbeat()
            .auto_scaling_group_name(&self.group_name)
            .lifecycle_hook_name(&action.hook)
            .instance_id(&action.instance_id)
            .set_lifecycle_action_token(action.token.clone())
            .send()
            .await;
        outcome(self, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ref §2.3, §5.4: both of AWS's texts, and nothing else.
    #[test]
    fn only_the_no_active_action_validation_error_means_done() {
        let token =
            "No active Lifecycle Action found with token f66c3d47-e602-4af0-8edd-d4e4d2fe4620";
        let instance = "No active Lifecycle Action found with instance ID i-09c7205a117f0d09a";
        assert!(no_active_action(Some("ValidationError"), Some(token)));
        assert!(no_active_action(Some("ValidationError"), Some(instance)));
        assert!(!no_active_action(Some("ResourceContention"), Some(token)));
        assert!(!no_active_action(
            Some("ValidationError"),
            Some("AutoScalingGroup name not found")
        ));
        assert!(!no_active_action(Some("ValidationError"), None));
    }
}
