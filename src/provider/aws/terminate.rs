//! The one-VM terminate and the reads around it: the instance read back
//! before a terminate that may repeat one (`terminate_needed`), a VM
//! outside the group (with batches, ended when this operator detached it:
//! `batch::Batcher::finish_detached`), and the detach a batch sends.
//!
//! `TerminateInstanceInAutoScalingGroup` with a decrement and
//! `DetachInstances` are not idempotent, so both are retried only when AWS
//! answered that it did not carry the request out
//! (`errors::RetryOnlyUnexecuted`); any other failure is resolved by
//! reading the instance back.

use super::*;

impl AwsAutoScalingGroup {
    /// Read the instance from AWS now. `Some` is the answer to give without
    /// terminating; `None` means it is in this group and may be terminated.
    async fn terminate_needed(
        &self,
        instance_id: &str,
    ) -> Result<Option<TerminateOutcome>, ProviderError> {
        let out = self
            .client
            .describe_auto_scaling_instances()
            .instance_ids(instance_id)
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        let Some(details) = out
            .auto_scaling_instances()
            .iter()
            .find(|d| d.instance_id() == Some(instance_id))
        else {
            return self.outside_group(instance_id).await.map(Some);
        };
        if details.auto_scaling_group_name() != Some(self.group_name.as_str()) {
            warn!(
                instance_id,
                group = %self.group_name,
                other_group = details.auto_scaling_group_name().unwrap_or(""),
                "instance belongs to another Auto Scaling group; not terminating it"
            );
            return Ok(Some(TerminateOutcome::NotInGroup));
        }
        let lifecycle = lifecycle_from_aws(details.lifecycle_state().unwrap_or(""));
        Ok(match lifecycle {
            l if l.is_terminating() => Some(TerminateOutcome::AlreadyTerminating),
            Lifecycle::Detaching => Some(self.outside_group(instance_id).await?),
            _ => None,
        })
    }

    /// An instance leaving or outside the group: with batches, one this
    /// operator detached to terminate is terminated now (`batch` module).
    async fn outside_group(&self, instance_id: &str) -> Result<TerminateOutcome, ProviderError> {
        let Some(batch) = &self.batch else {
            return Ok(TerminateOutcome::NotInGroup);
        };
        let ours = batch.finish_detached(self, instance_id).await?;
        Ok(ours.unwrap_or(TerminateOutcome::NotInGroup))
    }

    /// `DetachInstances` of `ids` (at most 20), lowering the desired
    /// capacity by as many when `decrement`.
    pub(super) async fn detach(
        &self,
        ids: &[String],
        decrement: bool,
    ) -> Result<(), ProviderError> {
        (self.client.detach_instances())
            .auto_scaling_group_name(&self.group_name)
            .set_instance_ids(Some(ids.to_vec()))
            .should_decrement_desired_capacity(decrement)
            .customize()
            .config_override(
                aws_sdk_autoscaling::config::Builder::default()
                    .retry_classifier(RetryOnlyUnexecuted::<DetachInstancesError>::new()),
            )
            .send()
            .await
            .map_err(|e| self.classify(e))?;
        Ok(())
    }

    /// Terminate one instance with its own call (`read_first`: read it
    /// back from AWS before, see [`CloudProvider::terminate_new_instance`]).
    pub(super) async fn terminate_one(
        &self,
        instance_id: &str,
        decrement: bool,
        read_first: bool,
    ) -> Result<TerminateOutcome, ProviderError> {
        if instance_id.trim().is_empty() {
            return Err(ProviderError::Refused {
                message: "cannot terminate an instance with an empty ID".into(),
            });
        }
        if read_first && let Some(outcome) = self.terminate_needed(instance_id).await? {
            info!(instance_id, group = %self.group_name, ?outcome, "not terminating: instance already leaving the group");
            return Ok(outcome);
        }
        let result = self
            .client
            .terminate_instance_in_auto_scaling_group()
            .instance_id(instance_id)
            .should_decrement_desired_capacity(decrement)
            .customize()
            .config_override(
                aws_sdk_autoscaling::config::Builder::default().retry_classifier(
                    RetryOnlyUnexecuted::<TerminateInstanceInAutoScalingGroupError>::new(),
                ),
            )
            .send()
            .await;
        let err = match result {
            Ok(_) => {
                info!(instance_id, group = %self.group_name, decrement, "terminating instance");
                return Ok(TerminateOutcome::Terminated);
            }
            Err(err) => self.classify(err),
        };
        if matches!(
            err,
            ProviderError::Throttled { .. } | ProviderError::Unauthorized { .. }
        ) {
            return Err(err);
        }
        // A timeout or server error may hide a termination that happened,
        // and "instance not found" may mean it left meanwhile. Report what
        // AWS shows now; the caller never needs to call terminate again for
        // an instance that is already leaving.
        match self.terminate_needed(instance_id).await {
            Ok(Some(outcome)) => {
                warn!(instance_id, group = %self.group_name, error = %err, ?outcome, "terminate failed but the instance is leaving the group");
                Ok(outcome)
            }
            Ok(None) | Err(_) => Err(err),
        }
    }
}
