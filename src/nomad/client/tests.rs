use super::config::override_server_name;
use super::*;

#[test]
fn token_is_redacted() {
    let t = SecretToken::new("s3cr3t");
    assert_eq!(format!("{t} {t:?}"), "<redacted> <redacted>");
    let cfg = NomadConfig {
        address: "http://x".into(),
        token: Some(t),
        tls: NomadTlsConfig {
            client_key_pem: Some(b"KEY".to_vec()),
            ..Default::default()
        },
        ..Default::default()
    };
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("s3cr3t") && !dbg.contains("KEY") && !dbg.contains("75, 69"));
}

#[test]
fn next_index_resets_when_backwards_and_never_zero() {
    assert_eq!(next_blocking_index(0, 17), 17);
    assert_eq!(next_blocking_index(17, 17), 17);
    assert_eq!(next_blocking_index(17, 20), 20);
    assert_eq!(next_blocking_index(17, 5), 0);
    assert_eq!(next_blocking_index(0, 0), 1);
}

#[test]
fn timeout_covers_wait_and_jitter() {
    let t = Timeouts::default();
    assert_eq!(request_timeout(&QueryOptions::default(), &t), t.request);
    let q = QueryOptions::blocking(5, Duration::from_secs(160));
    assert_eq!(
        request_timeout(&q, &t),
        Duration::from_secs(160 + 10) + t.blocking_margin
    );
    // Blocking without wait: Nomad's 5-minute default applies.
    let q = QueryOptions {
        index: 5,
        ..Default::default()
    };
    assert_eq!(
        request_timeout(&q, &t),
        DEFAULT_BLOCKING_WAIT + DEFAULT_BLOCKING_WAIT / 16 + t.blocking_margin
    );
    // Short waits never get less than the plain request timeout.
    let q = QueryOptions::blocking(5, Duration::from_millis(10));
    assert_eq!(request_timeout(&q, &t), t.request);
}

#[test]
fn address_validation() {
    for bad in [
        "127.0.0.1:4646",
        "ftp://x",
        "http://u:p@x:4646",
        "http://x/?a=b",
        "",
    ] {
        assert!(
            matches!(parse_address(bad), Err(NomadError::InvalidAddress(_))),
            "{bad}"
        );
    }
    assert!(parse_address("https://nomad.example:4646/prefix/").is_ok());
}

#[test]
fn urls_keep_prefix_encode_ids_and_add_region() {
    let client = NomadClient::new(NomadConfig {
        address: "http://nomad:4646/proxy/".into(),
        region: Some("eu west".into()),
        ..Default::default()
    })
    .unwrap();
    let (url, label) = client.url(&Method::POST, &["node", "a/b?c", "drain"], vec![]);
    assert_eq!(
        url.as_str(),
        "http://nomad:4646/proxy/v1/node/a%2Fb%3Fc/drain?region=eu+west"
    );
    assert_eq!(label, "POST /proxy/v1/node/a%2Fb%3Fc/drain");
}

#[test]
fn server_name_rewrites_https_host_only() {
    let mut base = Url::parse("https://10.0.0.5:4646").unwrap();
    let _ =
        override_server_name(reqwest::Client::builder(), "server.global.nomad", &mut base).unwrap();
    assert_eq!(base.as_str(), "https://server.global.nomad:4646/");

    let mut base = Url::parse("http://10.0.0.5:4646").unwrap();
    let _ =
        override_server_name(reqwest::Client::builder(), "server.global.nomad", &mut base).unwrap();
    assert_eq!(base.host_str(), Some("10.0.0.5"));

    let mut base = Url::parse("https://nomad:4646").unwrap();
    assert!(matches!(
        override_server_name(reqwest::Client::builder(), "10.0.0.9", &mut base),
        Err(NomadError::InvalidTls(_))
    ));
}

#[test]
fn tls_config_errors() {
    let cfg = |tls| NomadConfig {
        address: "https://nomad:4646".into(),
        tls,
        ..Default::default()
    };
    let err = NomadClient::new(cfg(NomadTlsConfig {
        client_cert_pem: Some(b"x".to_vec()),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(matches!(err, NomadError::InvalidTls(_)), "{err}");

    let err = NomadClient::new(cfg(NomadTlsConfig {
        ca_pem: Some(b"not a pem".to_vec()),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(matches!(err, NomadError::InvalidTls(_)), "{err}");

    let err = NomadClient::new(cfg(NomadTlsConfig {
        ca_pem: Some(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec()),
        ..Default::default()
    }))
    .unwrap_err();
    assert!(matches!(err, NomadError::InvalidTls(_)), "{err}");
}

#[test]
fn invalid_token_is_not_echoed() {
    let err = NomadClient::new(NomadConfig {
        address: "http://nomad:4646".into(),
        token: Some(SecretToken::new("line\nbreak")),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(err, NomadError::InvalidToken));
    assert!(!format!("{err} {err:?}").contains("break"));
}

#[test]
fn status_mapping() {
    let node = NodeScope::Node("n1");
    let e = |status: u16, body: &str, scope| {
        status_error(
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
            "GET /x".into(),
            scope,
        )
    };
    assert!(
        matches!(e(404, "node not found", node), NomadError::NodeNotFound { node_id } if node_id == "n1")
    );
    assert!(matches!(
        e(500, "node not found\n", node),
        NomadError::NodeNotFound { .. }
    ));
    assert!(matches!(
        e(404, "Not Found", node),
        NomadError::Api { status: 404, .. }
    ));
    assert!(matches!(
        e(404, "node not found", NodeScope::None),
        NomadError::Api { status: 404, .. }
    ));
    assert!(matches!(
        e(403, "Permission denied", node),
        NomadError::PermissionDenied { message, .. } if message == "Permission denied"
    ));
    let err = e(500, "No cluster leader", NodeScope::None);
    assert!(err.is_retryable());
    assert!(!e(400, "Invalid wait time", NodeScope::None).is_retryable());
    let long = "é".repeat(1000);
    let NomadError::Api { message, .. } = e(502, &long, NodeScope::None) else {
        panic!()
    };
    assert!(message.len() <= MAX_ERROR_BODY + '…'.len_utf8());
}

/// A server that answers every request with `head`, then `first`, then
/// `chunk` forever (chunked), until the client hangs up.
async fn endless_server(head: &'static str, first: &'static [u8], chunk: &'static [u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                if conn.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let frame =
                    |c: &[u8]| [format!("{:x}\r\n", c.len()).as_bytes(), c, b"\r\n"].concat();
                if !first.is_empty() && conn.write_all(&frame(first)).await.is_err() {
                    return;
                }
                // Large writes keep a debug-build test quick.
                let framed = frame(&chunk.repeat(64 * 1024 / chunk.len()));
                while conn.write_all(&framed).await.is_ok() {}
            });
        }
    });
    url
}

fn client_for(url: String) -> NomadClient {
    NomadClient::new(NomadConfig {
        address: url,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test]
async fn an_endless_list_is_cut_off_at_the_endpoints_limit() {
    let url = endless_server(
        "HTTP/1.1 200 OK\r\nX-Nomad-Index: 5\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"[",
        br#"{"ID":"a","Name":"a","Datacenter":"dc1","SchedulingEligibility":"eligible","Status":"ready","CreateIndex":1,"ModifyIndex":1},"#,
    )
    .await;
    let err = client_for(url)
        .list_nodes(None, &QueryOptions::default())
        .await
        .unwrap_err();
    match &err {
        NomadError::BodyTooLarge { endpoint, limit } => {
            assert_eq!(endpoint, "GET /v1/nodes");
            assert_eq!(*limit, body::NODE_LIST_LIMIT);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "Nomad's answer on GET /v1/nodes is larger than its limit of 40 MiB"
    );
}

#[tokio::test]
async fn an_announced_oversized_body_is_refused_before_it_is_read() {
    let url = endless_server(
        "HTTP/1.1 200 OK\r\nX-Nomad-Index: 5\r\nContent-Length: 999999999999\r\n\r\n",
        b"",
        b"x",
    )
    .await;
    let started = Instant::now();
    let err = client_for(url)
        .node(
            "00000000-0000-4000-8000-000000000000",
            &QueryOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, NomadError::BodyTooLarge { limit, .. } if limit == body::NODE_LIMIT));
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_event_frame_that_never_ends_is_cut_off() {
    let url = endless_server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"{}\n{\"Index\":1,\"Events\":[",
        b"{\"Topic\":\"Node\"},",
    )
    .await;
    let mut stream = client_for(url).node_events(1).await.unwrap();
    assert!(
        stream.next().await.unwrap().is_some(),
        "the opening heartbeat"
    );
    let err = stream.next().await.unwrap_err();
    assert!(
        matches!(err, NomadError::BodyTooLarge { limit, .. } if limit == body::EVENT_FRAME_LIMIT),
        "{err:?}"
    );
}
