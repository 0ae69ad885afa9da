//! What an AWS error means for the operator: retryable or not, missing
//! group, unauthorized, and whether a terminate may be sent again. Pure
//! where it can be, so the mapping is unit-tested (`aws/tests.rs`).

use super::*;

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
];

const UNAUTHORIZED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClient",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidAccessKeyId",
    "ExpiredToken",
    "ExpiredTokenException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "AuthFailure",
    "OptInRequired",
];

/// Codes with which AWS says it did not carry out a mutating request, so
/// sending it again cannot apply it twice.
const NOT_EXECUTED_CODES: &[&str] = &["ScalingActivityInProgress", "ResourceContention"];

/// Classify an AWS error response. Pure, so the mapping is unit-tested.
pub(super) fn classify_response(
    code: Option<&str>,
    message: &str,
    http_status: Option<u16>,
    group: &str,
    secrets: &[&str],
) -> ProviderError {
    let message = scrub_message(message, secrets);
    match code {
        Some(c) if THROTTLING_CODES.contains(&c) => ProviderError::Throttled { message },
        Some(c) if UNAUTHORIZED_CODES.contains(&c) => ProviderError::Unauthorized {
            message: format!("{c}: {message}"),
        },
        Some("ValidationError") if names_missing_group(&message) => ProviderError::GroupNotFound {
            group: group.to_owned(),
        },
        Some("ValidationError") => ProviderError::Refused { message },
        Some(c) if !c.is_empty() => ProviderError::Api {
            code: c.to_owned(),
            message,
        },
        _ => match http_status {
            Some(401 | 403) => ProviderError::Unauthorized {
                message: format!("HTTP {}: {message}", http_status.unwrap_or_default()),
            },
            Some(429) => ProviderError::Throttled { message },
            Some(status) => ProviderError::Api {
                code: format!("HTTP{status}"),
                message,
            },
            None => ProviderError::Api {
                code: "Unknown".into(),
                message,
            },
        },
    }
}

/// AWS reports a missing group as a ValidationError, e.g. "AutoScalingGroup
/// name not found - AutoScaling group not found" or "Group ci not found".
pub(super) fn names_missing_group(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("group")
        && !m.contains("instance")
        && (m.contains("not found") || m.contains("does not exist"))
}

pub(super) fn classify_sdk_error<E>(
    err: &SdkError<E, HttpResponse>,
    group: &str,
    secrets: &[&str],
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let full_text = || DisplayErrorContext(err).to_string();
    match err {
        SdkError::ServiceError(e) => {
            let text = e.err().message().map_or_else(full_text, str::to_owned);
            classify_response(
                e.err().code(),
                &text,
                Some(e.raw().status().as_u16()),
                group,
                secrets,
            )
        }
        SdkError::ResponseError(e) => classify_response(
            None,
            &full_text(),
            Some(e.raw().status().as_u16()),
            group,
            secrets,
        ),
        SdkError::TimeoutError(_) => ProviderError::Unreachable {
            message: scrub_message(&format!("timed out: {}", full_text()), secrets),
        },
        SdkError::DispatchFailure(_) => classify_dispatch_failure(&full_text(), secrets),
        _ => ProviderError::Api {
            code: "SdkError".into(),
            message: scrub_message(&full_text(), secrets),
        },
    }
}

/// The SDK resolves credentials while dispatching, so an empty or broken
/// credential chain (no IRSA token, no environment keys) fails here rather
/// than as a response. `CredentialsError` is not re-exported by the SDK
/// crates this project depends on, hence matching its wording.
pub(super) fn classify_dispatch_failure(text: &str, secrets: &[&str]) -> ProviderError {
    let message = scrub_message(text, secrets);
    if message.to_ascii_lowercase().contains("credential") {
        ProviderError::Unauthorized { message }
    } else {
        ProviderError::Unreachable { message }
    }
}

/// Retry classifier for a mutating call that must not be repeated once it
/// may have landed (`TerminateInstanceInAutoScalingGroup`,
/// `DetachInstances`; `E` is the operation's error): allow a retry only
/// when AWS rejected the request without carrying it out. A timeout or
/// server error may hide a call that took effect: a terminate with
/// decrement repeated could lower desired capacity twice, and a detach
/// repeated would answer "not part of Auto Scaling group" for instances it
/// did detach, which the batch reads as "this detach did nothing".
pub(super) struct RetryOnlyUnexecuted<E>(std::marker::PhantomData<fn() -> E>);

impl<E> RetryOnlyUnexecuted<E> {
    pub(super) fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<E> std::fmt::Debug for RetryOnlyUnexecuted<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryOnlyUnexecuted")
    }
}

impl<E> ClassifyRetry for RetryOnlyUnexecuted<E>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(Err(err)) = ctx.output_or_error() else {
            return RetryAction::NoActionIndicated;
        };
        let code = err
            .as_operation_error()
            .and_then(|e| e.downcast_ref::<E>())
            .and_then(ProvideErrorMetadata::code);
        match code {
            Some(c) if THROTTLING_CODES.contains(&c) => RetryAction::throttling_error(),
            Some(c) if NOT_EXECUTED_CODES.contains(&c) => RetryAction::transient_error(),
            // Forbidden wins over every other classifier's verdict.
            _ => {
                debug!(code, "not retrying a call that may have landed");
                RetryAction::RetryForbidden
            }
        }
    }

    fn name(&self) -> &'static str {
        "retry only when AWS did not carry the call out"
    }
}
