//! The metrics decorator: every provider is wrapped in it once, by
//! [`super::connect`], so each cloud call is timed and counted by operation
//! and outcome wherever it is made (the group view's describes, the
//! reconciler's terminates) and whichever cloud answers it.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;

use super::{
    CloudProvider, GroupState, Lifecycle, LifecycleAction, LifecycleActionOutcome, LifecycleHook,
    LifecycleQueue, ProviderError, QueueError, TerminateOutcome,
};
use crate::metrics::metrics;

/// The operation names of `nomadpool_cloud_requests_total{endpoint=…}`.
pub const DESCRIBE: &str = "DescribeGroup";
pub const TERMINATE: &str = "TerminateInstance";
pub const SET_DESIRED: &str = "SetDesiredCapacity";
pub const DESCRIBE_HOOK: &str = "DescribeLifecycleHook";
pub const PUT_HOOK: &str = "PutLifecycleHook";
pub const COMPLETE_ACTION: &str = "CompleteLifecycleAction";
pub const HEARTBEAT: &str = "RecordLifecycleActionHeartbeat";
pub const DESCRIBE_INSTANCES: &str = "DescribeInstances";

/// A [`CloudProvider`] whose calls are recorded in the operator's metrics.
#[derive(Debug)]
pub struct Metered(Arc<dyn CloudProvider>);

impl Metered {
    pub fn new(inner: Arc<dyn CloudProvider>) -> Self {
        Metered(inner)
    }
}

async fn timed<T>(
    operation: &'static str,
    call: BoxFuture<'_, Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    let started = Instant::now();
    let result = call.await;
    metrics().cloud_request(operation, result.is_ok(), started.elapsed());
    result
}

impl CloudProvider for Metered {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }

    fn group(&self) -> String {
        self.0.group()
    }

    fn describe_group(&self) -> BoxFuture<'_, Result<GroupState, ProviderError>> {
        Box::pin(timed(DESCRIBE, self.0.describe_group()))
    }

    fn terminate_instance<'a>(
        &'a self,
        instance_id: &'a str,
        decrement: bool,
    ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>> {
        Box::pin(timed(
            TERMINATE,
            self.0.terminate_instance(instance_id, decrement),
        ))
    }

    fn terminate_new_instance<'a>(
        &'a self,
        instance_id: &'a str,
        decrement: bool,
    ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>> {
        Box::pin(timed(
            TERMINATE,
            self.0.terminate_new_instance(instance_id, decrement),
        ))
    }

    fn terminations_per_call(&self) -> usize {
        self.0.terminations_per_call()
    }

    fn batching(&self) -> Option<super::Batching> {
        self.0.batching()
    }

    fn set_desired_capacity(&self, desired: u32) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(timed(SET_DESIRED, self.0.set_desired_capacity(desired)))
    }

    fn instance_id_attribute(&self) -> &'static str {
        self.0.instance_id_attribute()
    }

    fn describe_lifecycle_hook<'a>(
        &'a self,
        hook: &'a str,
    ) -> BoxFuture<'a, Result<Option<LifecycleHook>, ProviderError>> {
        Box::pin(timed(DESCRIBE_HOOK, self.0.describe_lifecycle_hook(hook)))
    }

    fn put_lifecycle_hook<'a>(
        &'a self,
        hook: &'a str,
        heartbeat_timeout: u32,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(timed(
            PUT_HOOK,
            self.0.put_lifecycle_hook(hook, heartbeat_timeout),
        ))
    }

    fn complete_lifecycle_action<'a>(
        &'a self,
        action: &'a LifecycleAction,
    ) -> BoxFuture<'a, Result<LifecycleActionOutcome, ProviderError>> {
        Box::pin(timed(
            COMPLETE_ACTION,
            self.0.complete_lifecycle_action(action),
        ))
    }

    fn record_lifecycle_action_heartbeat<'a>(
        &'a self,
        action: &'a LifecycleAction,
    ) -> BoxFuture<'a, Result<LifecycleActionOutcome, ProviderError>> {
        Box::pin(timed(
            HEARTBEAT,
            self.0.record_lifecycle_action_heartbeat(action),
        ))
    }

    fn instance_lifecycles<'a>(
        &'a self,
        instance_ids: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<(String, Lifecycle)>, ProviderError>> {
        Box::pin(timed(
            DESCRIBE_INSTANCES,
            self.0.instance_lifecycles(instance_ids),
        ))
    }

    fn read_launch_facts(&self, facts: super::LaunchFacts) {
        self.0.read_launch_facts(facts);
    }

    // The queue's calls are its own (a long poll's duration says nothing of
    // the cloud's health); its trouble shows in the pool's condition.
    fn lifecycle_queue(&self, queue_url: &str) -> Result<Arc<dyn LifecycleQueue>, QueueError> {
        self.0.lifecycle_queue(queue_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::fake::FakeProvider;

    #[tokio::test]
    async fn each_call_is_counted_under_its_operation_and_outcome() {
        let fake = FakeProvider::new("metered-test", &["i-1", "i-2"]);
        let metered = Metered::new(fake.clone());
        let count = |op: &str, code: &str| {
            let needle =
                format!("nomadpool_cloud_requests_total{{endpoint=\"{op}\",code=\"{code}\"}} ");
            let text = metrics().encode();
            text.lines()
                .find(|l| l.starts_with(&needle))
                .map(|l| l[needle.len()..].parse::<u64>().unwrap())
                .unwrap_or(0)
        };
        let before = (
            count(DESCRIBE, "ok"),
            count(TERMINATE, "ok"),
            count(SET_DESIRED, "error"),
        );
        metered.describe_group().await.unwrap();
        metered.terminate_new_instance("i-1", true).await.unwrap();
        metered.set_desired_capacity(1_001).await.unwrap_err();
        assert_eq!(count(DESCRIBE, "ok"), before.0 + 1);
        assert_eq!(count(TERMINATE, "ok"), before.1 + 1);
        assert_eq!(count(SET_DESIRED, "error"), before.2 + 1);
        assert_eq!(fake.calls().len(), 3, "every call reaches the provider");
    }
}
