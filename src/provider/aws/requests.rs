//! Every request the AWS SDK sends, counted where it leaves: the metrics
//! decorator counts the provider's operations (one `TerminateInstance` per
//! VM, one `DescribeGroup` per read), but a batch's `CreateTags`,
//! `DetachInstances` and `TerminateInstances`, the sweep's
//! `DescribeInstances`, the hook reads and the SDK's retries happen inside
//! the provider, and the budget AWS throttles is counted in requests.

use aws_sdk_autoscaling::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_autoscaling::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

use crate::metrics::metrics;

/// The interceptor every AWS client of the provider carries: one count per
/// attempt in `nomadpool_aws_requests_total{service,operation,code}`.
#[derive(Debug)]
pub(super) struct CountRequests;

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "nomadpool::CountRequests"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Every generated operation stores its metadata; a request without
        // it is not one of ours to name.
        if let Some(op) = cfg.load::<Metadata>() {
            let status = context.response().map(|r| r.status().as_u16());
            metrics().aws_request(op.service(), op.name(), status);
        }
        Ok(())
    }
}
