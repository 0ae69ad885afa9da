//! The Compute API's HTTP errors (reference §1.7): every failure a route can
//! answer, as one enum, turned into Google's
//! `{"error":{"code","message","errors":[{"message","domain","reason"}],"status"}}`
//! body. `status` can be switched off (`Timing::error_status`), since the
//! reference could not confirm Compute always sends it.

use hyper::StatusCode;
use serde::{Deserialize, Serialize};

use crate::http::{Resp, html, json};
use crate::wire::{ErrorBody, ErrorItem, ErrorStatus};

/// A fully specified HTTP error, as injected through `/sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    pub code: u16,
    pub reason: String,
    pub message: String,
    #[serde(default)]
    pub domain: Option<String>,
    /// The canonical `error.status`; absent = derived from `code`.
    #[serde(default)]
    pub status: Option<String>,
}

impl ErrorSpec {
    /// The error named `reason`, with Compute's code for it (§1.7: notFound
    /// 404, rateLimitExceeded 403, invalid 400, quotaExceeded 403,
    /// insufficientCapacity 503; backendError 503 and rateLimitExceeded's
    /// 429 form are the generic Google API forms, not confirmed for
    /// Compute).
    pub fn preset(reason: &str) -> Option<ErrorSpec> {
        let (code, domain, message) = match reason {
            "rateLimitExceeded" => (
                403,
                "usageLimits",
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of service 'compute.googleapis.com'.",
            ),
            "quotaExceeded" => (403, "usageLimits", "Quota exceeded."),
            "notFound" => (404, "global", "The resource was not found"),
            "invalid" => (400, "global", "Invalid value."),
            "backendError" => (503, "global", "Internal error. Please try again."),
            "insufficientCapacity" => (
                503,
                "global",
                "The zone does not have enough resources available to fulfill the request.",
            ),
            "tooManyRequests" => (429, "global", "Too many requests."),
            "conflict" => (409, "global", "The resource is not ready"),
            _ => return None,
        };
        Some(ErrorSpec {
            code,
            reason: reason.into(),
            message: message.into(),
            domain: Some(domain.into()),
            status: None,
        })
    }
}

/// What failed, named by the failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GceError {
    /// The resource path names nothing (§1.7, GDA's message).
    #[error("The resource '{0}' was not found")]
    NotFound(String),
    /// A field or parameter value is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The JSON body is not JSON, or has a field the request message lacks.
    #[error("Invalid JSON payload received. {0}")]
    InvalidJson(String),
    /// A query parameter the method does not have.
    #[error(
        "Invalid JSON payload received. Unknown name \"{0}\": Cannot bind query parameter. Field '{0}' could not be found in request message."
    )]
    UnknownParameter(String),
    /// A path and method the API does not serve: Google's front end answers
    /// with an HTML 404, not JSON.
    #[error("The requested URL {0} was not found on this server.")]
    NoSuchMethod(String),
    /// Injected through `/sim/faults`.
    #[error("{}", .0.message)]
    Injected(ErrorSpec),
}

/// The canonical status name Google uses for an HTTP code.
fn canonical(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        412 => "FAILED_PRECONDITION",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

impl GceError {
    fn spec(&self) -> ErrorSpec {
        let message = self.to_string();
        let (code, reason, domain) = match self {
            GceError::NotFound(_) => (404, "notFound", Some("global")),
            GceError::Invalid(_) => (400, "invalid", Some("global")),
            // Google's JSON-transcoding errors carry no domain.
            GceError::InvalidJson(_) | GceError::UnknownParameter(_) => (400, "invalid", None),
            GceError::NoSuchMethod(_) => (404, "notFound", None),
            GceError::Injected(s) => return s.clone(),
        };
        ErrorSpec {
            code,
            reason: reason.into(),
            message,
            domain: domain.map(str::to_string),
            status: None,
        }
    }

    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.spec().code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The HTTP answer; `with_status` adds `error.status`.
    pub fn response(&self, with_status: bool) -> Resp {
        if let GceError::NoSuchMethod(path) = self {
            return html(
                StatusCode::NOT_FOUND,
                format!(
                    "<!DOCTYPE html>\n<html lang=en>\n<title>Error 404 (Not Found)!!1</title>\n\
                     <p><b>404.</b> <ins>That's an error.</ins>\n\
                     <p>The requested URL <code>{path}</code> was not found on this server.  \
                     <ins>That's all we know.</ins>\n"
                ),
            );
        }
        let s = self.spec();
        let status = with_status.then(|| {
            s.status
                .clone()
                .unwrap_or_else(|| canonical(s.code).to_string())
        });
        let body = ErrorBody {
            error: ErrorStatus {
                code: s.code,
                message: s.message.clone(),
                errors: vec![ErrorItem {
                    message: s.message,
                    domain: s.domain,
                    reason: s.reason,
                    location: None,
                    location_type: None,
                }],
                status,
            },
        };
        json(self.status_code(), &body)
    }
}
