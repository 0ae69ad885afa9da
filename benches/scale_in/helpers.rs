//! Small helpers: percentiles, rounding, where results go, the build measured.

use super::*;

// ---------------------------------------------------------------------------
// Small helpers

/// A recording proxy's call upstream: the answer's status, headers and
/// body, or a 502 naming what failed (as a proxy in front of the cloud
/// would answer).
pub async fn forward(
    http: &reqwest::Client,
    method: axum::http::Method,
    url: String,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> (
    axum::http::StatusCode,
    axum::http::HeaderMap,
    axum::body::Bytes,
) {
    match http
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status();
            let h = r.headers().clone();
            (status, h, r.bytes().await.unwrap_or_default())
        }
        Err(e) => (
            axum::http::StatusCode::BAD_GATEWAY,
            Default::default(),
            format!("proxy: {e}").into(),
        ),
    }
}

pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

pub fn summary(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    json!({
        "p50": round(pct(&v, 0.5), 1),
        "p99": round(pct(&v, 0.99), 1),
        "max": round(v.last().copied().unwrap_or(f64::NAN), 1),
        "n": v.len(),
    })
}

pub fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

pub fn bench_dir() -> PathBuf {
    support::repo_root().join("target/bench")
}

pub fn busy_pct(before: (u64, u64), after: (u64, u64)) -> f64 {
    let busy = after.0.saturating_sub(before.0) as f64;
    let total = after.1.saturating_sub(before.1).max(1) as f64;
    round(busy / total * 100.0, 0)
}

/// What was built and measured: the commit, and whether the operator's
/// sources differed from it (other engineers edit the tree concurrently).
pub fn build_info() -> Value {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(support::repo_root())
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    let dirty: Vec<String> = git(&["status", "--porcelain", "--", "src", "Cargo.lock"])
        .lines()
        .map(str::to_owned)
        .collect();
    let built = std::fs::metadata(operator_binary())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| t.to_string());
    json!({
        "commit": git(&["rev-parse", "--short", "HEAD"]),
        "commit_subject": git(&["log", "-1", "--format=%s"]),
        "uncommitted_operator_changes": dirty,
        "operator_binary_built": built,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
    })
}

pub fn parse_ts_ns(s: &str) -> Option<i64> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond() as i64)
}
