use thiserror::Error;

/// Everything that can go wrong talking to Nomad, named by what failed.
///
/// No variant ever holds the ACL token: it travels only in a request header,
/// reqwest errors are stripped of their URL, and Nomad's error bodies are
/// fixed messages such as `Permission denied`.
#[derive(Debug, Error)]
pub enum NomadError {
    #[error("invalid Nomad address: {0}")]
    InvalidAddress(String),

    /// The value is deliberately not shown.
    #[error("invalid Nomad ACL token: not a valid HTTP header value")]
    InvalidToken,

    #[error("invalid Nomad TLS configuration: {0}")]
    InvalidTls(String),

    #[error("permission denied by Nomad on {endpoint}: {message}")]
    PermissionDenied { endpoint: String, message: String },

    #[error("Nomad node {node_id:?} not found")]
    NodeNotFound { node_id: String },

    #[error("Nomad returned HTTP {status} on {endpoint}: {message}")]
    Api {
        status: u16,
        message: String,
        endpoint: String,
    },

    /// Connecting failed or the request timed out: Nomad may be down, or a
    /// blocking query outlived its timeout.
    #[error("Nomad unreachable on {endpoint}")]
    Unreachable {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },

    /// Any other transport failure, e.g. the connection dropped mid-body.
    #[error("HTTP transport error on {endpoint}")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },

    #[error("cannot decode Nomad response from {endpoint}")]
    Decode {
        endpoint: String,
        #[source]
        source: serde_json::Error,
    },

    /// The answer was larger than the endpoint's limit (see
    /// `client/body.rs` for the limits and why): cut off rather than read
    /// into memory.
    #[error("Nomad's answer on {endpoint} is larger than its limit of {}", super::client::show_size(*limit))]
    BodyTooLarge { endpoint: String, limit: usize },

    /// The connection is open but nothing came for `waited`: no headers or
    /// first frame of the event stream, or no frame (not even a heartbeat)
    /// since the last one.
    #[error("Nomad sent nothing on {endpoint} for {}s ({stage})", waited.as_secs())]
    Stalled {
        endpoint: String,
        stage: StallStage,
        waited: std::time::Duration,
    },

    /// A response header needed for blocking queries is missing or malformed,
    /// typically because a proxy stripped it.
    #[error("Nomad response from {endpoint} has an invalid {header} header: {value:?}")]
    InvalidHeader {
        endpoint: String,
        header: &'static str,
        value: Option<String>,
    },
}

impl NomadError {
    /// Whether retrying the same request later (with backoff) may succeed.
    ///
    /// Nomad answers most RPC failures, including `No cluster leader`, with
    /// 500, so every 5xx counts. 4xx, a missing node and undecodable responses
    /// will not fix themselves.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unreachable { .. } | Self::Transport { .. } | Self::Stalled { .. } => true,
            Self::Api { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    pub(crate) fn from_reqwest(endpoint: &str, err: reqwest::Error) -> Self {
        // The URL carries no token, but dropping it keeps query strings
        // (filters, regions) out of logs and leaves the endpoint as the one
        // place that names the request.
        let source = err.without_url();
        let endpoint = endpoint.to_owned();
        if source.is_connect() || source.is_timeout() {
            Self::Unreachable { endpoint, source }
        } else {
            Self::Transport { endpoint, source }
        }
    }
}

/// Where a stalled event stream stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallStage {
    /// No response headers, or no first frame after them.
    Opening,
    /// Frames came, then nothing for three heartbeats.
    Frames,
}

impl std::fmt::Display for StallStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Opening => "no headers or first frame",
            Self::Frames => "no frame since the last one",
        })
    }
}

/// An error with its causes ("… : invalid peer certificate: UnknownIssuer"):
/// the cause is what the on-call engineer needs. Sources carry no secrets:
/// tokens travel in headers and URLs are stripped from transport errors.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
