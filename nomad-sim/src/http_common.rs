//! The HTTP pieces every surface of the simulator shares: the Nomad API
//! (`api`), the control surface (`control`) and fault injection (`faults`)
//! answer with the same handler error and Nomad-style responses, and decode
//! query strings the same way. Kept apart so that none of them imports
//! another for these.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Response, StatusCode};

pub type Body = BoxBody<Bytes, Infallible>;
pub type Resp = Response<Body>;

/// Errors a handler can return; each maps to one status and a plain-text body.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Permission denied")]
    PermissionDenied,
    #[error("{0}")]
    NotFound(String),
    #[error("Invalid method")]
    InvalidMethod,
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::PermissionDenied => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidMethod => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crate::state::StateError> for ApiError {
    fn from(e: crate::state::StateError) -> Self {
        use crate::state::StateError as S;
        match e {
            // Nomad's write RPCs return plain errors, which the HTTP layer
            // maps to 500 (not 404) for an unknown node.
            S::NodeNotFound | S::InvalidEligibility(_) | S::EligibleWhileDraining => {
                ApiError::Internal(e.to_string())
            }
            S::AllocNotFound => ApiError::NotFound(e.to_string()),
            S::InvalidNamespaceName { .. } | S::UnknownVmAction { .. } => {
                ApiError::BadRequest(e.to_string())
            }
        }
    }
}

/// The ACL store's refusals are the control surface's 400s.
impl From<crate::acl::AclError> for ApiError {
    fn from(e: crate::acl::AclError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

pub fn text(status: StatusCode, body: impl Into<String>) -> Resp {
    let mut r = Response::new(full(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "text/plain; charset=utf-8".parse().unwrap());
    r
}

pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Resp {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// Adds Nomad's query-meta headers (`setMeta`).
pub fn set_meta(r: &mut Resp, index: u64, known_leader: bool) {
    let h = r.headers_mut();
    h.insert("x-nomad-index", index.to_string().parse().unwrap());
    h.insert("x-nomad-lastcontact", "0".parse().unwrap());
    h.insert(
        "x-nomad-knownleader",
        if known_leader { "true" } else { "false" }.parse().unwrap(),
    );
}

/// The plain-text response for `e`, with its status.
pub fn err_resp(e: &ApiError) -> Resp {
    text(e.status(), e.to_string())
}

/// Decodes a query-string component (`+` and `%XX`).
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query string's key-value pairs, decoded, in order.
pub fn parse_pairs(q: Option<&str>) -> Vec<(String, String)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k), percent_decode(v)),
            None => (percent_decode(p), String::new()),
        })
        .collect()
}

/// Serializes `v` (pretty with `?pretty`).
pub fn to_json<T: serde::Serialize>(v: &T, pretty: bool) -> Vec<u8> {
    if pretty {
        serde_json::to_vec_pretty(v).unwrap()
    } else {
        serde_json::to_vec(v).unwrap()
    }
}
