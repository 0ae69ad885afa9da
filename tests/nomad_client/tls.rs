//! TLS: the configured server name is what the client presents and
//! verifies, while the connection still goes to the configured address.

use nomad_pool_operator::nomad::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use super::TOKEN;

// Throwaway test PKI (P-256), generated for this test only.
const TEST_CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBhjCCAS2gAwIBAgIUXQ0YfZ8c5A5icdC/5z5TrkCWnPwwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNVGVzdCBOb21hZCBDQTAgFw0yNjExMjYxNjQ3MjFaGA8yMTI2
MTEwMjE2NDcyMVowGDEWMBQGA1UEAwwNVGVzdCBOb21hZCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABBmFC/59T26XjxSgRsbuPW6y4ypTgfuSLb/l1mlfwT+p
ruzZjp5k/HfNeVdmw1w4yF2J3gNM0OqhdcjUxs9FX4+jUzBRMB0GA1UdDgQWBBTP
xZ2tqzIDJU04lewhfdPnyVPHZDAfBgNVHSMEGDAWgBTPxZ2tqzIDJU04lewhfdPn
yVPHZDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0cAMEQCIHvRCXmGful4
0BzsMYGJZ7Wpp+s6Ke2jxmVa+eWX3NAiAiAvz8cRm07RE3cjhMDezh3c7JT5Kq12
MDOog4xBNhHY5A==
-----END CERTIFICATE-----
";
const TEST_CLIENT_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBtzCCAVygAwIBAgIUZ8cbvFyBqLbN0g5Nu49R/4h7VBwwCgYIKoZIzj0EAwIw
GDEWMBQGA1UEAwwNVGVzdCBOb21hZCBDQTAgFw0yNjExMjYxNjQ4MzRaGA8yMTI2
MTEwMjE2NDgzNFowGzEZMBcGA1UEAwwQY2xpLmdsb2JhbC5ub21hZDBZMBMGByqG
SM49AgEGCCqGSM49AwEHA0IABKDxAlx+BsdmWhtfW71uUl/OyG4oXOtiElRUd7vu
tnhXF2dY/ahZM+fTnrJaFOlLuv9DKCVVMuELxOKwX6uiOyKjfzB9MAkGA1UdEwQC
MAAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwGwYDVR0RBBQwEoIQY2xpLmdsb2JhbC5u
b21hZDAdBgNVHQ4EFgQUCpq5jY6nsLHWDHfG3DTL8gCQTQMwHwYDVR0jBBgwFoAU
z8WdrasyAyVNOJXsIX3T58lTx2QwCgYIKoZIzj0EAwIDSQAwRgIhANmFGiG7i1m+
qJ+phmJaiLAt0huxOhZiYRAYRzQNoHrsAiEAm1hpfoazeeW+63FaAJoeVL0sqSDV
p85bWfPXkViUo/w=
-----END CERTIFICATE-----
";
const TEST_CLIENT_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgYDz7CDxCubJOvr4c
n4ljz6wfqKw6YZaUcZRw4jT0eEehRANCAASg8QJcfgbHZlobX1u9blJfzshuKFzr
YhJUVHe77rZ4VxdnWP2oWTPn056yWhTpS7r/QyglVTLhC8TisF+rojsi
-----END PRIVATE KEY-----
";

/// With `server_name` set, the TLS connection goes to the configured address
/// but presents (and so verifies) the server name, like
/// `NOMAD_TLS_SERVER_NAME`. Checked on the wire by reading the ClientHello.
#[tokio::test]
async fn tls_server_name_overrides_sni_but_not_destination() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hello = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 5];
        sock.read_exact(&mut buf).await.unwrap();
        let len = u16::from_be_bytes([buf[3], buf[4]]) as usize;
        buf.resize(5 + len, 0);
        sock.read_exact(&mut buf[5..]).await.unwrap();
        buf
    });

    let c = NomadClient::new(NomadConfig {
        address: format!("https://{addr}"),
        token: Some(SecretToken::new(TOKEN)),
        tls: NomadTlsConfig {
            ca_pem: Some(TEST_CA_PEM.into()),
            client_cert_pem: Some(TEST_CLIENT_CERT_PEM.into()),
            client_key_pem: Some(TEST_CLIENT_KEY_PEM.into()),
            server_name: Some("server.global.nomad".into()),
            insecure_skip_verify: false,
        },
        ..Default::default()
    })
    .unwrap();
    let err = c.leader().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");

    let record = hello.await.unwrap();
    assert_eq!(sni(&record).as_deref(), Some("server.global.nomad"));
}

/// The `server_name` extension of a TLS ClientHello record.
fn sni(record: &[u8]) -> Option<String> {
    let hs = record.get(5..)?;
    assert_eq!(hs[0], 1, "ClientHello");
    let mut p = 4 + 2 + 32; // handshake header, version, random
    p += 1 + *hs.get(p)? as usize; // session id
    p += 2 + u16::from_be_bytes([hs[p], hs[p + 1]]) as usize; // cipher suites
    p += 1 + *hs.get(p)? as usize; // compression methods
    let end = p + 2 + u16::from_be_bytes([hs[p], hs[p + 1]]) as usize;
    p += 2;
    while p + 4 <= end {
        let kind = u16::from_be_bytes([hs[p], hs[p + 1]]);
        let len = u16::from_be_bytes([hs[p + 2], hs[p + 3]]) as usize;
        let data = hs.get(p + 4..p + 4 + len)?;
        if kind == 0 {
            // list length (2), name type (1), name length (2), name
            let n = u16::from_be_bytes([data[3], data[4]]) as usize;
            return String::from_utf8(data[5..5 + n].to_vec()).ok();
        }
        p += 4 + len;
    }
    None
}
