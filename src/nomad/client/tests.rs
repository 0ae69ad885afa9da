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
