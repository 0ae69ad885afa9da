//! The SQS queue a lifecycle hook's notifications reach, directly (the
//! hook's notification target) or through an EventBridge rule
//! (`/work/shared/reference/aws-lifecycle-hooks.md` §3, §5.2).
//!
//! The client shares the Auto Scaling client's region, credentials, retries
//! and connect timeout; only its read timeout is longer, because a long poll
//! holds the response for up to 20 s (SQS-LP: the HTTP response timeout must
//! exceed `WaitTimeSeconds`). Where it sends requests follows the queue URL:
//! a regional `sqs.<region>.amazonaws.com` URL uses the SDK's own endpoint
//! for the group's region (and must name that region: a hook's target is in
//! its group's region, ref §2.1); any other host (a VPC endpoint, an
//! emulator) is used as the endpoint itself.

use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::errors::classify_sdk_error;
use super::notice;
use crate::provider::ProviderError;
use crate::provider::lifecycle::{LifecycleQueue, QueueError, QueuedNotice};

/// SQS's longest long poll (SQS-LP).
const WAIT_SECONDS: i32 = 20;
/// SQS's most messages per receive.
const MAX_MESSAGES: i32 = 10;
/// How long a received message stays hidden. The operator keeps what it
/// received in memory, so it only needs the message again after a restart:
/// short, so a restarted operator sees it within half a minute.
pub const VISIBILITY_SECONDS: i32 = 30;

/// Codes with which SQS says the queue does not exist (JSON and query
/// protocol spellings).
const NOT_FOUND_CODES: &[&str] = &[
    "QueueDoesNotExist",
    "AWS.SimpleQueueService.NonExistentQueue",
];

#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    group: String,
    secrets: Vec<String>,
}

impl std::fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsQueue")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Where the SQS client sends requests for `url`: `None` for the SDK's
/// endpoint of `region`, else the URL's origin. Pure, so it is tested.
pub(super) fn endpoint_for(url: &str, region: &str) -> Result<Option<String>, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "it is not an http(s) URL".to_owned())?;
    if scheme != "https" && scheme != "http" {
        return Err(format!("its scheme is {scheme}, not https"));
    }
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    if host.is_empty() || parts.len() != 2 {
        return Err("it does not end in /<account>/<queue name>".into());
    }
    if parts[1].ends_with(".fifo") {
        return Err("FIFO queues are not compatible with lifecycle hooks".into());
    }
    let hostname = host.split(':').next().unwrap_or(host);
    if let Some(queue_region) = hostname
        .strip_prefix("sqs.")
        .and_then(|h| h.strip_suffix(".amazonaws.com"))
    {
        if queue_region != region {
            return Err(format!(
                "the queue is in region {queue_region}, the group in {region}"
            ));
        }
        return Ok(None);
    }
    Ok(Some(format!("{scheme}://{host}")))
}

impl SqsQueue {
    pub(super) fn new(
        sdk_config: &aws_config::SdkConfig,
        url: &str,
        region: &str,
        group: &str,
        secrets: Vec<String>,
    ) -> Result<Self, QueueError> {
        let endpoint = endpoint_for(url, region).map_err(|reason| QueueError::BadUrl {
            url: url.to_owned(),
            reason,
        })?;
        let timeout = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            .read_timeout(Duration::from_secs(WAIT_SECONDS as u64 + 10))
            .operation_attempt_timeout(Duration::from_secs(WAIT_SECONDS as u64 + 15))
            .operation_timeout(Duration::from_secs(90))
            .build();
        let mut config = aws_sdk_sqs::config::Builder::from(sdk_config)
            .timeout_config(timeout)
            .interceptor(super::requests::CountRequests);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Self {
            client: aws_sdk_sqs::Client::from_conf(config.build()),
            url: url.to_owned(),
            group: group.to_owned(),
            secrets,
        })
    }

    fn error<E>(&self, err: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>) -> QueueError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let url = self.url.clone();
        let code = err.as_service_error().and_then(|e| e.code());
        if code.is_some_and(|c| NOT_FOUND_CODES.contains(&c)) {
            return QueueError::NotFound { url };
        }
        let kms = code.is_some_and(|c| c.starts_with("Kms") || c.starts_with("KMS."));
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        match classify_sdk_error(&err, &self.group, &secrets) {
            source @ ProviderError::Unauthorized { .. } => QueueError::Denied { url, source },
            source if kms => QueueError::Denied { url, source },
            source => QueueError::Failed { url, source },
        }
    }

    async fn receive_now(&self) -> Result<Vec<QueuedNotice>, QueueError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(MAX_MESSAGES)
            .wait_time_seconds(WAIT_SECONDS)
            .visibility_timeout(VISIBILITY_SECONDS)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(QueuedNotice {
                    message_id: m.message_id().unwrap_or_default().to_owned(),
                    receipt_handle: m.receipt_handle()?.to_owned(),
                    notice: notice::parse(m.body().unwrap_or_default()),
                })
            })
            .collect())
    }

    async fn delete_now(&self, receipt_handle: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }
}

impl LifecycleQueue for SqsQueue {
    fn url(&self) -> &str {
        &self.url
    }

    fn receive(&self) -> BoxFuture<'_, Result<Vec<QueuedNotice>, QueueError>> {
        self.receive_now().boxed()
    }

    fn delete<'a>(&'a self, receipt_handle: &'a str) -> BoxFuture<'a, Result<(), QueueError>> {
        self.delete_now(receipt_handle).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regional_urls_use_the_sdk_endpoint_others_their_own_origin() {
        let r = "us-east-1";
        assert_eq!(
            endpoint_for("https://sqs.us-east-1.amazonaws.com/123456789012/hooks", r),
            Ok(None)
        );
        assert_eq!(
            endpoint_for("http://127.0.0.1:5000/123456789012/hooks", r),
            Ok(Some("http://127.0.0.1:5000".into()))
        );
        assert_eq!(
            endpoint_for(
                "https://vpce-0a1b.sqs.us-east-1.vpce.amazonaws.com/123456789012/hooks",
                r
            ),
            Ok(Some(
                "https://vpce-0a1b.sqs.us-east-1.vpce.amazonaws.com".into()
            ))
        );
    }

    #[test]
    fn urls_a_hook_cannot_use_are_refused_with_the_reason() {
        let r = "us-east-1";
        let err = |u| endpoint_for(u, r).unwrap_err();
        assert!(err("https://sqs.eu-west-1.amazonaws.com/1/q").contains("region eu-west-1"));
        assert!(err("https://sqs.us-east-1.amazonaws.com/1/q.fifo").contains("FIFO"));
        assert!(err("https://sqs.us-east-1.amazonaws.com/q").contains("/<account>/<queue name>"));
        assert!(err("ftp://x/1/q").contains("scheme"));
        assert!(err("sqs.us-east-1.amazonaws.com/1/q").contains("not an http"));
    }
}
