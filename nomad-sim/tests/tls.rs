//! TLS, with and without client-certificate verification, over reqwest with
//! rustls (the operator's client). Certificates are generated at test time
//! with the `openssl` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;

use nomad_sim::{Config, TlsConfig, serve};
use reqwest::{Certificate, Client, Identity};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CA, server cert for 127.0.0.1, client cert; all EC P-256.
fn make_certs(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nomad-sim-tls-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut a = vec!["req", "-x509"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=nomad-sim test CA",
    ]);
    openssl(&dir, &a);
    for (name, eku, san) in [
        (
            "server",
            "serverAuth",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        ),
        ("client", "clientAuth", ""),
    ] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let pem = format!("{name}.pem");
        let ext = format!("{name}.ext");
        std::fs::write(
            dir.join(&ext),
            format!("{san}basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={eku}\n"),
        )
        .unwrap();
        let mut a = vec!["req"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=nomad-sim-test"]);
        openssl(&dir, &a);
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &ext,
            ],
        );
    }
    dir
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
