//! Go's duration syntax, as `drain.deadline` and `drain.forceTerminateAfter`
//! are written (the syntax Nomad users know from job specs).

use jiff::SignedDuration;

/// Parse a Go duration (`1h30m`, `90s`, `1.5h`, `250ms`).
pub fn parse_go_duration(s: &str) -> Option<SignedDuration> {
    let mut total_nanos: f64 = 0.0;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let (unit, len) = [
            ("ns", 1.0),
            ("us", 1e3),
            ("µs", 1e3),
            ("ms", 1e6),
            ("s", 1e9),
            ("m", 60e9),
            ("h", 3600e9),
        ]
        .iter()
        .find(|(u, _)| rest.starts_with(u))
        .map(|(u, f)| (*f, u.len()))?;
        total_nanos += value * unit;
        rest = &rest[len..];
    }
    Some(SignedDuration::from_nanos(total_nanos as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_like_go() {
        assert_eq!(
            parse_go_duration("90s"),
            Some(SignedDuration::from_secs(90))
        );
        assert_eq!(
            parse_go_duration("1h30m"),
            Some(SignedDuration::from_secs(5400))
        );
        assert_eq!(
            parse_go_duration("1.5h"),
            Some(SignedDuration::from_secs(5400))
        );
        assert_eq!(
            parse_go_duration("250ms"),
            Some(SignedDuration::from_millis(250))
        );
        assert_eq!(parse_go_duration("10"), None, "a unit is required");
        assert_eq!(parse_go_duration(""), None);
        assert_eq!(parse_go_duration("5d"), None);
    }
}
