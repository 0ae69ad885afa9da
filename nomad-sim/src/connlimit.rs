//! The agent's limit on concurrent HTTP connections per client IP
//! (`limits.http_max_conns_per_client`), as Nomad applies it:
//!
//! - Default 100; 0 means no limit (`nomad/structs/config/limits.go`
//!   `DefaultLimits`; `command/agent/http.go` `NewHTTPServers` refuses a
//!   negative value, which `usize` cannot hold here).
//! - Counted per remote IP (any port), for every open connection, idle
//!   keep-alive ones included, from accept (`http.StateNew`) until the
//!   connection is closed (`StateClosed`); `hashicorp/go-connlimit`
//!   `Limiter.Accept` refuses when `len(conns) >= MaxConnsPerClientIP`.
//! - A refused connection is never served: `connLimiter` in
//!   `command/agent/http.go` writes a fixed `429 Too Many Requests` with
//!   `Connection: close` (10 ms write deadline, after the TLS handshake on
//!   an HTTPS listener) when a global rate limiter (10 a second, bursts of
//!   100) allows it, and closes the connection either way, before reading
//!   any request.
//!
//! Every connection to the listener counts, the control surface's too (one
//! listener, as in Nomad, where the limit applies before the path is known).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Nomad's default `http_max_conns_per_client`.
pub const DEFAULT_HTTP_MAX_CONNS_PER_CLIENT: usize = 100;

/// The message of Nomad's refusal (`connLimiter`).
pub const TOO_MANY_CONNS_MESSAGE: &str =
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n";

/// How long the refusal may take to write.
pub const REFUSAL_WRITE_DEADLINE: Duration = Duration::from_millis(10);

/// The bytes written on a refused connection.
pub fn too_many_requests_response() -> Vec<u8> {
    format!(
        "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        TOO_MANY_CONNS_MESSAGE.len(),
        TOO_MANY_CONNS_MESSAGE
    )
    .into_bytes()
}

/// Counters for `/sim/stats` and tests.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ConnStats {
    /// The configured limit (0: none).
    pub limit: usize,
    /// Connections open now, all clients.
    pub open: usize,
    /// The most connections one client IP held at once.
    pub peak_per_client: usize,
    /// Connections refused over the limit.
    pub refused: u64,
    /// Of those, how many got the 429 answer (the rest were just closed).
    pub refused_with_429: u64,
}

#[derive(Debug)]
struct Inner {
    open: HashMap<IpAddr, usize>,
    stats: ConnStats,
    /// Tokens of the refusal-answer rate limiter and when it was filled.
    tokens: f64,
    filled: Instant,
}

/// The per-IP connection counter of one listener.
#[derive(Debug)]
pub struct ConnLimiter {
    limit: usize,
    inner: Mutex<Inner>,
}

/// What to do with a connection over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Write [`too_many_requests_response`], then close.
    Answer429,
    /// The answer's rate limit is spent: close at once.
    Close,
}

/// An accepted connection's place in the count, given back when dropped
/// (the connection closed).
#[derive(Debug)]
pub struct ConnGuard {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut inner = self.limiter.inner.lock().unwrap();
        inner.stats.open -= 1;
        if let Some(n) = inner.open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                inner.open.remove(&self.ip);
            }
        }
    }
}

/// Refusal answers a second, and the burst (`rate.NewLimiter(10, 100)`).
const ANSWERS_PER_SECOND: f64 = 10.0;
const ANSWER_BURST: f64 = 100.0;

impl ConnLimiter {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            inner: Mutex::new(Inner {
                open: HashMap::new(),
                stats: ConnStats {
                    limit,
                    ..Default::default()
                },
                tokens: ANSWER_BURST,
                filled: Instant::now(),
            }),
        })
    }

    /// Counts a connection just accepted from `ip`, or refuses it.
    pub fn accept(self: &Arc<Self>, ip: IpAddr) -> Result<ConnGuard, Refused> {
        let mut inner = self.inner.lock().unwrap();
        let n = inner.open.get(&ip).copied().unwrap_or(0);
        if self.limit > 0 && n >= self.limit {
            inner.stats.refused += 1;
            let now = Instant::now();
            let refill = now.duration_since(inner.filled).as_secs_f64() * ANSWERS_PER_SECOND;
            inner.tokens = (inner.tokens + refill).min(ANSWER_BURST);
            inner.filled = now;
            if inner.tokens >= 1.0 {
                inner.tokens -= 1.0;
                inner.stats.refused_with_429 += 1;
                return Err(Refused::Answer429);
            }
            return Err(Refused::Close);
        }
        inner.open.insert(ip, n + 1);
        inner.stats.open += 1;
        inner.stats.peak_per_client = inner.stats.peak_per_client.max(n + 1);
        Ok(ConnGuard {
            limiter: self.clone(),
            ip,
        })
    }

    pub fn stats(&self) -> ConnStats {
        self.inner.lock().unwrap().stats.clone()
    }

    /// Connections open now from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.inner
            .lock()
            .unwrap()
            .open
            .get(&ip)
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_ip_refuses_at_the_limit_and_frees_on_close() {
        let l = ConnLimiter::new(2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = l.accept(a).unwrap();
        let _a2 = l.accept(a).unwrap();
        assert_eq!(l.accept(a).unwrap_err(), Refused::Answer429);
        // Another IP has its own count.
        let _b1 = l.accept(b).unwrap();
        drop(a1);
        assert_eq!(l.open_from(a), 1);
        let _a3 = l.accept(a).unwrap();
        let s = l.stats();
        assert_eq!((s.open, s.peak_per_client, s.refused), (3, 2, 1));
    }

    #[test]
    fn zero_means_no_limit() {
        let l = ConnLimiter::new(0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let held: Vec<_> = (0..1000).map(|_| l.accept(ip).unwrap()).collect();
        assert_eq!(l.open_from(ip), held.len());
    }

    #[test]
    fn refusal_answers_are_rate_limited_then_connections_are_just_closed() {
        let l = ConnLimiter::new(1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let _held = l.accept(ip).unwrap();
        let answers: Vec<Refused> = (0..150).map(|_| l.accept(ip).unwrap_err()).collect();
        let answered = answers.iter().filter(|r| **r == Refused::Answer429).count();
        // The burst, plus what refilled while the loop ran (well under one).
        assert_eq!(answered, 100);
        assert_eq!(answers[149], Refused::Close);
        let s = l.stats();
        assert_eq!((s.refused, s.refused_with_429), (150, 100));
    }

    #[test]
    fn the_refusal_is_nomads_fixed_answer() {
        let r = String::from_utf8(too_many_requests_response()).unwrap();
        assert!(r.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(r.contains("\r\nContent-Length: 81\r\n"));
        assert!(r.contains("\r\nConnection: close\r\n\r\nYour IP is issuing"));
    }
}
