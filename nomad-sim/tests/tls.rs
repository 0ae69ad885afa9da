//! TLS, with and without client-certificate verification, over reqwest with
//! rustls (the operator's client). Certificates are generated at test time
//! with the `openssl` CLI (`npo_testkit::pki`).

use std::path::{Path, PathBuf};

use nomad_sim::{Config, TlsConfig, serve};
use npo_testkit::pki::{PkiNames, make_pki};
use reqwest::{Certificate, Client, Identity};

/// CA, server cert for 127.0.0.1, client cert.
fn make_certs(tag: &str) -> PathBuf {
    make_pki(
        &format!("nomad-sim-tls-{tag}"),
        &PkiNames {
            ca: "nomad-sim test CA",
            server_san: "IP:127.0.0.1,DNS:localhost",
            leaf: "nomad-sim-test",
        },
    )
}

fn client(dir: &Path, with_identity: bool) -> Client {
    let ca = Certificate::from_pem(&std::fs::read(dir.join("ca.pem")).unwrap()).unwrap();
    let mut b = Client::builder().tls_certs_only([ca]);
    if with_identity {
        let mut pem = std::fs::read(dir.join("client.pem")).unwrap();
        pem.extend(std::fs::read(dir.join("client.key")).unwrap());
        b = b.identity(Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

#[tokio::test]
async fn https_without_client_auth() {
    let dir = make_certs("plain");
    let sim = serve(Config {
        tls: Some(TlsConfig {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: None,
        }),
        ..Config::default()
    })
    .await
    .unwrap();
    assert!(sim.url().starts_with("https://127.0.0.1:"));
    let r = client(&dir, false)
        .get(format!("{}/v1/agent/self", sim.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Plain HTTP to a TLS port does not get an answer.
    let plain = Client::new()
        .get(format!("http://{}/v1/agent/self", sim.addr()))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn https_requires_a_client_certificate() {
    let dir = make_certs("mtls");
    let sim = serve(Config {
        tls: Some(TlsConfig {
            cert: dir.join("server.pem"),
            key: dir.join("server.key"),
            client_ca: Some(dir.join("ca.pem")),
        }),
        ..Config::default()
    })
    .await
    .unwrap();
    let url = format!("{}/v1/nodes", sim.url());
    let r = client(&dir, true).get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "[]");
    assert!(
        client(&dir, false).get(&url).send().await.is_err(),
        "no client cert: handshake fails"
    );
    sim.shutdown().await;
}

/// A certificate file that does not load stops the start, naming the
/// file; a key that is not the certificate's is rustls's refusal.
#[tokio::test]
async fn bad_tls_files_are_named() {
    use nomad_sim::ServeError;
    let dir = make_certs("bad");
    let start = |cert: PathBuf, key: PathBuf| {
        serve(Config {
            tls: Some(TlsConfig {
                cert,
                key,
                client_ca: None,
            }),
            ..Config::default()
        })
    };
    let missing = dir.join("missing.pem");
    let Err(e) = start(missing.clone(), dir.join("server.key")).await else {
        panic!("a missing certificate starts");
    };
    assert!(
        matches!(&e, ServeError::TlsPem { path, .. } if *path == missing),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("TLS configuration: {}: ", missing.display())),
        "{text}"
    );
    let Err(e) = start(dir.join("server.pem"), dir.join("client.key")).await else {
        panic!("a certificate with another's key starts");
    };
    assert!(matches!(&e, ServeError::TlsConfig(_)), "{e:?}");
}
