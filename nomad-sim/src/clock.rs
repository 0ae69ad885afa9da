//! Simulated time.
//!
//! Simulated time runs `scale` times faster than real time and can also be
//! jumped forward from the control surface, so tests can cover hour-long drain
//! deadlines in milliseconds. All times inside the simulator are Unix
//! nanoseconds of simulated time. Blocking-query `wait` and the event-stream
//! heartbeat stay in real time, because they are about the HTTP connection,
//! not about the cluster.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

#[derive(Debug)]
struct ClockInner {
    base_real: Instant,
    base_sim: i64,
    scale: f64,
}

/// Simulated wall clock (Unix nanoseconds).
#[derive(Debug)]
pub struct Clock {
    inner: Mutex<ClockInner>,
}

impl Clock {
    /// Starts at `start_ns` (Unix ns). With `None` the simulation starts at the
    /// real current time, so timestamps look like real ones.
    pub fn new(start_ns: Option<i64>, scale: f64) -> Clock {
        let start = start_ns.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0)
        });
        Clock {
            inner: Mutex::new(ClockInner {
                base_real: Instant::now(),
                base_sim: start,
                scale,
            }),
        }
    }

    pub fn now(&self) -> i64 {
        let g = self.inner.lock().unwrap();
        let real = g.base_real.elapsed().as_nanos() as f64;
        g.base_sim + (real * g.scale) as i64
    }

    pub fn scale(&self) -> f64 {
        self.inner.lock().unwrap().scale
    }

    /// Changes the rate without making simulated time jump.
    pub fn set_scale(&self, scale: f64) {
        let mut g = self.inner.lock().unwrap();
        let real = g.base_real.elapsed().as_nanos() as f64;
        g.base_sim += (real * g.scale) as i64;
        g.base_real = Instant::now();
        g.scale = scale;
    }

    /// Jumps simulated time forward by `ns`.
    pub fn advance(&self, ns: i64) {
        let mut g = self.inner.lock().unwrap();
        g.base_sim += ns.max(0);
    }

    /// Real time until simulated time reaches `sim_ns` (None: never, scale 0).
    pub fn real_until(&self, sim_ns: i64) -> Option<Duration> {
        let now = self.now();
        let scale = self.scale();
        if sim_ns <= now {
            return Some(Duration::ZERO);
        }
        if scale <= 0.0 {
            return None;
        }
        Some(Duration::from_nanos(((sim_ns - now) as f64 / scale) as u64))
    }
}

/// Formats Unix nanoseconds as RFC 3339 in UTC the way Go's `time.Time`
/// marshals: fractional seconds with trailing zeros removed, `Z` suffix.
pub fn rfc3339(ns: i64) -> String {
    format_time(ns, true)
}

/// RFC 3339 truncated to whole seconds (Nomad's `LastDrain` timestamps are
/// `time.Unix(sec, 0)`).
pub fn rfc3339_secs(ns: i64) -> String {
    format_time(ns - ns.rem_euclid(NANOS_PER_SEC), false)
}

/// Go's zero `time.Time`.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn format_time(ns: i64, frac: bool) -> String {
    let secs = ns.div_euclid(NANOS_PER_SEC);
    let nanos = ns.rem_euclid(NANOS_PER_SEC);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        y,
        m,
        d,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    );
    if frac && nanos != 0 {
        let f = format!("{nanos:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses a Go `time.ParseDuration` string ("30s", "5m", "1m30s", "300ms",
/// "1.5h"). Like Go, a bare number other than "0" is an error.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s;
    let mut neg = false;
    if let Some(r) = rest.strip_prefix('-') {
        neg = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let num: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_end];
        rest = &rest[unit_end..];
        let mult = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += num * mult;
    }
    if neg {
        // Negative waits are meaningless here; Go accepts them and Nomad then
        // uses the default, which is what a zero duration does below.
        return Some(Duration::ZERO);
    }
    Some(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            rfc3339(1_617_192_740_213_412_000),
            "2021-03-31T12:12:20.213412Z"
        );
        assert_eq!(
            rfc3339_secs(1_617_192_740_213_412_000),
            "2021-03-31T12:12:20Z"
        );
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(parse_go_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_go_duration("300ms"), Some(Duration::from_millis(300)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("10"), None);
        assert_eq!(parse_go_duration("abc"), None);
    }
}
