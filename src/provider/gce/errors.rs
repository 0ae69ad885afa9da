//! What a Compute API failure means for the operator. The SDK reports HTTP
//! errors with `http_status_code()` and the body's `errors[].reason` as an
//! `ErrorInfo` detail (§4.6); a failed Operation only shows in its own
//! `error` fields (§4.4). Both become a [`GceError`], which converts into the
//! trait's [`ProviderError`]. Sections (§N) refer to
//! `shared/reference/gce-mig.md`.

use google_cloud_gax::error::Error as SdkError;
use google_cloud_gax::error::rpc::StatusDetails;

use super::super::{ProviderError, scrub_message};

/// A failed GCE call, named by what failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GceError {
    #[error("managed instance group {group} does not exist")]
    GroupNotFound { group: String },
    /// `403 rateLimitExceeded` (Compute's rate quotas, §1.7) or a 429. The
    /// SDK never retries the 403 (§4.5).
    #[error("Compute API rate limit ({reason}): {message}")]
    RateLimited { reason: String, message: String },
    /// 401, or a 403 that is not a rate limit: IAM or the credentials.
    #[error("Compute API refused the credentials or their permissions (HTTP {status}): {message}")]
    Forbidden { status: u16, message: String },
    /// The client could not get a token (no Workload Identity binding, a bad key).
    #[error("could not obtain Google credentials: {message}")]
    Credentials { message: String },
    /// A 4xx that a retry will not fix (400 invalid, 412 …).
    #[error("Compute API rejected the request (HTTP {status} {reason}): {message}")]
    Rejected {
        status: u16,
        reason: String,
        message: String,
    },
    /// 409 and 5xx: the request was not carried out, or may have been.
    #[error("Compute API error (HTTP {status} {reason}): {message}")]
    Server {
        status: u16,
        reason: String,
        message: String,
    },
    /// No answer: connect, I/O or timeout. The request may have been carried out.
    #[error("Compute API unreachable: {message}")]
    Unreachable { message: String },
    /// The Operation ended `DONE` with an `error` (§1.6, §4.4).
    #[error("operation {operation} failed ({code}, HTTP {http_status}): {message}")]
    OperationFailed {
        operation: String,
        code: String,
        http_status: i32,
        message: String,
    },
    /// The Operation was not `DONE` within the provider's patience.
    #[error("operation {operation} did not finish in time")]
    OperationTimedOut { operation: String },
    /// The Operation finished but a re-read shows the instance unchanged.
    #[error("{verb} of instance {instance} finished but the group still shows it {state}")]
    NotApplied {
        verb: &'static str,
        instance: String,
        state: String,
    },
    /// An autoscaler in mode `ON` sets the group's size itself, and would
    /// undo every resize and shrink the pool makes for `replicas`.
    #[error(
        "managed instance group {group} has autoscaler {autoscaler} in mode ON, which resizes the group itself \
         and would fight the pool: set its mode to OFF or ONLY_SCALE_OUT \
         (`gcloud compute instance-groups managed update-autoscaling {group} --mode=off`), or delete it"
    )]
    AutoscalerOn { group: String, autoscaler: String },
    /// The provider's own settings are unusable (empty names, a bad key).
    #[error("GCE provider configuration: {message}")]
    Config { message: String },
    /// Anything else the SDK reported (a body it could not parse, …).
    #[error("Compute API client error: {message}")]
    Client { message: String },
}

impl GceError {
    /// Whether a read may be repeated at once (after a pause) with a fair
    /// chance of success: rate limits, 5xx and lost connections.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GceError::RateLimited { .. } | GceError::Unreachable { .. }
        ) || matches!(self, GceError::Server { status, .. } if *status >= 500)
    }
}

impl From<GceError> for ProviderError {
    fn from(e: GceError) -> Self {
        let message = e.to_string();
        match e {
            GceError::GroupNotFound { group } => ProviderError::GroupNotFound { group },
            GceError::RateLimited { .. } => ProviderError::Throttled { message },
            GceError::Forbidden { .. } | GceError::Credentials { .. } => {
                ProviderError::Unauthorized { message }
            }
            GceError::Rejected { .. } | GceError::AutoscalerOn { .. } | GceError::Config { .. } => {
                ProviderError::Refused { message }
            }
            GceError::Server { status, .. } => ProviderError::Api {
                code: format!("HTTP{status}"),
                message,
            },
            GceError::Unreachable { .. } => ProviderError::Unreachable { message },
            GceError::OperationFailed {
                code, http_status, ..
            } => ProviderError::Api {
                // A 5xx (or a quota) inside the Operation is as transient as
                // one on the call itself.
                code: if http_status >= 500 {
                    format!("HTTP{http_status}")
                } else {
                    code
                },
                message,
            },
            GceError::OperationTimedOut { .. } => ProviderError::Unreachable { message },
            GceError::NotApplied { .. } => ProviderError::Api {
                code: "NotApplied".into(),
                message,
            },
            GceError::Client { .. } => ProviderError::Api {
                code: "ClientError".into(),
                message,
            },
        }
    }
}

/// Classify an SDK error. `group` names the group for `GroupNotFound`;
/// `secrets` are scrubbed from every message.
pub fn classify(err: &SdkError, group: &str, secrets: &[&str]) -> GceError {
    let scrub = |m: &str| scrub_message(m, secrets);
    if err.is_authentication() {
        return GceError::Credentials {
            message: scrub(&err.to_string()),
        };
    }
    if let Some(status) = err.http_status_code() {
        let (message, reason) = match err.status() {
            Some(s) => (s.message.clone(), first_reason(&s.details)),
            None => (err.to_string(), None),
        };
        return classify_http(status, reason.as_deref(), &scrub(&message), group);
    }
    if err.is_timeout() || err.is_io() || err.is_connect() || err.is_transport() {
        return GceError::Unreachable {
            message: scrub(&err.to_string()),
        };
    }
    GceError::Client {
        message: scrub(&err.to_string()),
    }
}

fn first_reason(details: &[StatusDetails]) -> Option<String> {
    details.iter().find_map(|d| match d {
        StatusDetails::ErrorInfo(info) if !info.reason.is_empty() => Some(info.reason.clone()),
        _ => None,
    })
}

/// Classify an HTTP error by status and the first `errors[].reason` (§1.7).
/// Pure, so the table is unit-tested.
pub fn classify_http(status: u16, reason: Option<&str>, message: &str, group: &str) -> GceError {
    let reason_s = reason.unwrap_or("").to_owned();
    let message = message.to_owned();
    match (status, reason) {
        (403, Some("rateLimitExceeded" | "userRateLimitExceeded")) | (429, _) => {
            GceError::RateLimited {
                reason: if reason_s.is_empty() {
                    "HTTP429".into()
                } else {
                    reason_s
                },
                message,
            }
        }
        // Google names the missing resource in the message ("The resource
        // 'projects/…/instanceGroupManagers/ci' was not found"); a missing
        // instance or operation is not a missing group.
        (404, _) if message.contains("/instanceGroupManagers/") => GceError::GroupNotFound {
            group: group.to_owned(),
        },
        (401 | 403, _) => GceError::Forbidden { status, message },
        (409, _) | (500.., _) => GceError::Server {
            status,
            reason: reason_s,
            message,
        },
        _ => GceError::Rejected {
            status,
            reason: reason_s,
            message,
        },
    }
}

/// The error a `DONE` Operation carries, if any (what `to_result()` checks, §4.4).
pub fn operation_error(
    op: &google_cloud_compute_v1::model::Operation,
    secrets: &[&str],
) -> Option<GceError> {
    let first = op.error.as_ref().and_then(|e| e.errors.first());
    if first.is_none() && op.http_error_status_code.is_none() && op.http_error_message.is_none() {
        return None;
    }
    let code = first
        .and_then(|e| e.code.clone())
        .unwrap_or_else(|| "UNKNOWN".into());
    let message = first
        .and_then(|e| e.message.clone())
        .or_else(|| op.http_error_message.clone())
        .unwrap_or_default();
    Some(GceError::OperationFailed {
        operation: op.name.clone().unwrap_or_default(),
        code,
        http_status: op.http_error_status_code.unwrap_or(0),
        message: scrub_message(&message, secrets),
    })
}
