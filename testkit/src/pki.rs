//! Throw-away certificates for TLS tests, made with the `openssl` CLI: a CA,
//! a server certificate and a client certificate, all EC P-256, valid for a
//! day, as PEM files in a fresh directory.

use std::path::{Path, PathBuf};
use std::process::Command;

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

/// What the certificates say.
pub struct PkiNames<'a> {
    /// The CA's common name.
    pub ca: &'a str,
    /// The server certificate's subjectAltName, e.g. `IP:127.0.0.1,DNS:localhost`.
    pub server_san: &'a str,
    /// The common name of both leaf certificates.
    pub leaf: &'a str,
}

/// `ca.pem`/`ca.key`, `server.pem`/`server.key` (for `server_san`, usage
/// serverAuth) and `client.pem`/`client.key` (clientAuth) in
/// `<tmp>/<dir_name>-<pid>`, made afresh.
pub fn make_pki(dir_name: &str, names: &PkiNames) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{dir_name}-{}", std::process::id()));
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
    a.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj"]);
    let subj = format!("/CN={}", names.ca);
    a.push(&subj);
    openssl(&dir, &a);
    let server_san = format!("subjectAltName={}\n", names.server_san);
    let leaf_subj = format!("/CN={}", names.leaf);
    for (name, eku, san) in [
        ("server", "serverAuth", server_san.as_str()),
        ("client", "clientAuth", ""),
    ] {
        let (key, csr, pem, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        std::fs::write(
            dir.join(&ext),
            format!("{san}basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage={eku}\n"),
        )
        .unwrap();
        let mut a = vec!["req"];
        a.extend(ec);
        a.extend(["-keyout", &key, "-out", &csr, "-subj", &leaf_subj]);
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

/// A PEM file of a directory made by `make_pki`.
pub fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
}
