//! `limits.http_max_conns_per_client`, against Nomad's own code:
//! `nomad/structs/config/limits.go` (`DefaultLimits`: 100),
//! `command/agent/http.go` (`NewHTTPServers`, `makeConnState`,
//! `connLimiter`: 0 means no limit; a connection over the limit gets a fixed
//! 429 with `Connection: close` and is closed before any request is read)
//! and `hashicorp/go-connlimit` `Limiter.Accept` (per remote IP, refused when
//! the IP already holds `limit` open connections, idle ones included; freed
//! when the connection closes).

mod common;

use std::time::Duration;

use nomad_sim::Config;
use nomad_sim::connlimit::{DEFAULT_HTTP_MAX_CONNS_PER_CLIENT, TOO_MANY_CONNS_MESSAGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(limit: usize) -> common::T {
    common::start_with(
        Config {
            http_max_conns_per_client: limit,
            ..Config::default()
        },
        vec![],
    )
    .await
}

/// One request on `s` (kept open), and the status line of the answer.
async fn get_leader(s: &mut TcpStream) -> String {
    s.write_all(b"GET /v1/status/leader HTTP/1.1\r\nHost: nomad\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

/// Everything the server sends on `s` until it closes, without a request.
async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn the_default_is_nomads() {
    assert_eq!(DEFAULT_HTTP_MAX_CONNS_PER_CLIENT, 100);
    assert_eq!(Config::default().http_max_conns_per_client, 100);
}

#[tokio::test]
async fn a_connection_over_the_limit_gets_nomads_429_and_is_closed_unserved() {
    let t = start(3).await;
    let addr = t.sim.addr();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Served, then left idle: still counted.
        assert_eq!(get_leader(&mut s).await, "HTTP/1.1 200 OK");
        held.push(s);
    }
    let mut over = TcpStream::connect(addr).await.unwrap();
    let answer = read_to_close(&mut over).await;
    assert_eq!(
        answer,
        format!(
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{TOO_MANY_CONNS_MESSAGE}",
            TOO_MANY_CONNS_MESSAGE.len()
        )
    );
    let stats = t.sim.app().conns.stats();
    assert_eq!((stats.refused, stats.refused_with_429), (1, 1));
    assert_eq!(stats.peak_per_client, 3);

    // Closing one frees its place: the next connection is served.
    drop(held.pop());
    let mut next = None;
    for _ in 0..100 {
        if t.sim.app().conns.stats().open < 3 {
            next = Some(TcpStream::connect(addr).await.unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut next = next.expect("the closed connection is no longer counted");
    assert_eq!(get_leader(&mut next).await, "HTTP/1.1 200 OK");

    // The operator's HTTP client sees the refusal as Nomad's 429 (or, when
    // the close overtakes its request, as a connection error): never served.
    let status = t
        .http
        .get(format!("{}/v1/status/leader", t.url))
        .send()
        .await
        .map(|r| r.status().as_u16());
    assert!(matches!(status, Ok(429) | Err(_)), "{status:?}");
    // The control surface shares the listener, so its connections count too.
    let stats: serde_json::Value = {
        drop(next);
        tokio::time::sleep(Duration::from_millis(100)).await;
        t.http
            .get(format!("{}/sim/stats", t.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    };
    assert_eq!(stats["connections"]["limit"], 3);
    assert!(stats["connections"]["refused"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn zero_means_no_limit() {
    let t = start(0).await;
    let addr = t.sim.addr();
    let mut held = Vec::new();
    for _ in 0..150 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(get_leader(&mut s).await, "HTTP/1.1 200 OK");
        held.push(s);
    }
    let stats = t.sim.app().conns.stats();
    assert_eq!((stats.refused, stats.peak_per_client), (0, 150));
}

#[tokio::test]
async fn the_limit_counts_connections_not_requests() {
    let t = start(2).await;
    let addr = t.sim.addr();
    // Many requests, one after the other on one keep-alive connection.
    let mut s = TcpStream::connect(addr).await.unwrap();
    for _ in 0..20 {
        assert_eq!(get_leader(&mut s).await, "HTTP/1.1 200 OK");
    }
    // A parked blocking query holds its connection for as long as it waits.
    let mut parked = TcpStream::connect(addr).await.unwrap();
    parked
        .write_all(b"GET /v1/nodes?index=1000&wait=30s HTTP/1.1\r\nHost: nomad\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = TcpStream::connect(addr).await.unwrap();
    assert!(read_to_close(&mut over).await.starts_with("HTTP/1.1 429 "));
    assert_eq!(t.sim.app().conns.stats().peak_per_client, 2);
}
