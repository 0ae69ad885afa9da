//! Simulated time: runs `scale` times real time and can be moved forward
//! from the control surface, so tests can freeze it (`scale` 0) and step
//! through operation and instance timers. Times are Unix nanoseconds.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

#[derive(Debug)]
struct Base {
    real: Instant,
    sim: i64,
    scale: f64,
}

#[derive(Debug)]
pub struct Clock {
    base: Mutex<Base>,
}

impl Clock {
    /// Starts at `start_ns`, or at the real current time.
    pub fn new(start_ns: Option<i64>, scale: f64) -> Clock {
        let sim = start_ns.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or(0)
        });
        Clock {
            base: Mutex::new(Base {
                real: Instant::now(),
                sim,
                scale,
            }),
        }
    }

    fn at(b: &Base) -> i64 {
        b.sim + (b.real.elapsed().as_nanos() as f64 * b.scale) as i64
    }

    pub fn now(&self) -> i64 {
        Self::at(&self.base.lock().unwrap())
    }

    pub fn scale(&self) -> f64 {
        self.base.lock().unwrap().scale
    }

    /// Changes the rate without a jump.
    pub fn set_scale(&self, scale: f64) {
        let mut b = self.base.lock().unwrap();
        b.sim = Self::at(&b);
        b.real = Instant::now();
        b.scale = scale;
    }

    pub fn advance(&self, ns: i64) {
        let mut b = self.base.lock().unwrap();
        b.sim = Self::at(&b) + ns.max(0);
        b.real = Instant::now();
    }
}

/// Seconds to nanoseconds.
pub fn secs(s: f64) -> i64 {
    (s * NANOS_PER_SEC as f64) as i64
}

/// Compute's timestamp form: RFC 3339 with milliseconds in US Pacific
/// standard time, e.g. `2026-01-01T00:00:00.000-08:00` (the API reports
/// times with the `-08:00`/`-07:00` offset; a fixed `-08:00` keeps a client
/// from assuming `Z`).
pub fn timestamp(ns: i64) -> String {
    let local = ns - 8 * 3600 * NANOS_PER_SEC;
    let secs = local.div_euclid(NANOS_PER_SEC);
    let ms = local.rem_euclid(NANOS_PER_SEC) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}-08:00",
        tod / 3600,
        (tod / 60) % 60,
        tod % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_pacific_with_milliseconds() {
        // 2026-01-01T00:00:00.250Z
        let ns = 1_767_225_600_250_000_000;
        assert_eq!(timestamp(ns), "2025-12-31T16:00:00.250-08:00");
        assert_eq!(timestamp(0), "1969-12-31T16:00:00.000-08:00");
        // 2024-02-29T12:00:00Z
        assert_eq!(
            timestamp(1_709_208_000 * NANOS_PER_SEC),
            "2024-02-29T04:00:00.000-08:00"
        );
    }
}
