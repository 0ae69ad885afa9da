//! The log subscriber: `NPO_LOG` chooses what is logged, except where that
//! would print credentials.
//!
//! The AWS SDK logs the resolved credentials (access key ID) at `debug` and
//! the canonical request it signs (with `x-amz-security-token`) at `trace`,
//! under targets such as `aws_smithy_runtime::client::orchestrator::endpoints`
//! and `aws_sigv4::http_request::sign`. An env filter cannot hold those down:
//! a user's more specific directive (`aws_sigv4::http_request::sign=trace`)
//! beats any cap written into it. So a second, fixed filter caps every
//! target that starts with `aws` at `info`, and an event must pass both.
//! Nomad's token travels in a header marked sensitive, which hyper and
//! reqwest never print; `tests/log_secrets.rs` checks both at `trace`.

use tracing::Subscriber;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, Targets};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// Targets that log credentials above this level, by prefix (`aws` covers
/// `aws_config`, `aws_sigv4`, `aws_smithy_*`, `aws_sdk_*`, `aws_runtime`,
/// `aws_credential_types`), and the most they may log.
pub const CREDENTIAL_TARGETS: &[(&str, LevelFilter)] = &[("aws", LevelFilter::INFO)];

/// `NPO_LOG` (default `info`), never more than [`CREDENTIAL_TARGETS`] allow.
pub fn filter<S>(npo_log: Option<&str>) -> impl Filter<S> + use<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let requested = npo_log
        .and_then(|d| EnvFilter::try_new(d).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let cap = CREDENTIAL_TARGETS.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, (target, level)| t.with_target(*target, *level),
    );
    requested.and(cap)
}

/// Install the process's subscriber: text (coloured on a terminal) or JSON
/// lines, to stderr.
pub fn init(json: bool) {
    let npo_log = std::env::var("NPO_LOG").ok();
    // Colour only on a terminal: escape codes in a log file or pipeline are noise.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    if json {
        use tracing_subscriber::Layer;
        registry
            .with(fmt.json().with_filter(filter(npo_log.as_deref())))
            .init();
    } else {
        use tracing_subscriber::Layer;
        registry
            .with(fmt.with_filter(filter(npo_log.as_deref())))
            .init();
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::Layer;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What a subscriber built with `NPO_LOG=npo_log` writes for one event
    /// per (target, level) that the SDK is known to use.
    fn logged(npo_log: &str) -> String {
        let out = Captured::default();
        let writer = out.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .with_filter(filter(Some(npo_log)));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator::endpoints", "KEYID-debug");
            tracing::trace!(target: "aws_sigv4::http_request::sign", "SESSION-trace");
            tracing::trace!(target: "aws_config::default_provider", "CONFIG-trace");
            tracing::info!(target: "aws_smithy_runtime::client::retries", "SDK-info");
            tracing::trace!(target: "nomad_pool_operator::controller", "OWN-trace");
            tracing::debug!(target: "hyper_util::client::legacy::pool", "HYPER-debug");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn no_npo_log_setting_lets_the_sdk_log_below_info() {
        for npo_log in [
            "trace",
            "aws_sigv4=trace",
            "aws_sigv4::http_request::sign=trace,aws_smithy_runtime::client::orchestrator::endpoints=debug",
            "info,aws=trace,aws_config=trace",
            "[{x}]=trace,trace",
        ] {
            let out = logged(npo_log);
            for hidden in ["KEYID-debug", "SESSION-trace", "CONFIG-trace"] {
                assert!(
                    !out.contains(hidden),
                    "NPO_LOG={npo_log} logged {hidden}:\n{out}"
                );
            }
        }
    }

    #[test]
    fn everything_else_follows_npo_log() {
        let out = logged("trace");
        for shown in ["SDK-info", "OWN-trace", "HYPER-debug"] {
            assert!(out.contains(shown), "NPO_LOG=trace hid {shown}:\n{out}");
        }
        let out = logged("warn,nomad_pool_operator=trace");
        assert!(out.contains("OWN-trace"));
        assert!(
            !out.contains("SDK-info") && !out.contains("HYPER-debug"),
            "{out}"
        );
        // Unset or unparsable: info.
        let out = logged("not a filter=[");
        assert!(
            out.contains("SDK-info") && !out.contains("OWN-trace"),
            "{out}"
        );
    }
}
