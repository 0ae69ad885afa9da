//! The test environment started by `tests/env/up.sh` (etcd, kube-apiserver,
//! moto on loopback) as the harness sees it: its env file, and the small
//! helpers every test uses to name things and to wait.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository's root: the checkout whose test, bench or demo runs.
///
/// Cargo's runtime `CARGO_MANIFEST_DIR` (the running package's directory:
/// the root, `testkit/` or a simulator's) comes first. The path baked in at
/// compile time names the checkout this crate was last compiled in, and
/// checkouts share the build cache (`.ci/run`): a fresh clone reused a
/// testkit built in another clone and ran that clone's `tests/env/up.sh`,
/// or failed when it was gone.
pub fn repo_root() -> PathBuf {
    let running = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    let compiled = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf);
    running
        .iter()
        .flat_map(|dir| [Some(dir.clone()), dir.parent().map(Path::to_path_buf)])
        .chain([compiled])
        .flatten()
        .find(|dir| dir.join("tests/env/up.sh").is_file())
        .expect("no checkout with tests/env/up.sh around CARGO_MANIFEST_DIR")
}

/// The `export KEY=VALUE` lines of an env file written by `tests/env/up.sh`.
pub fn read_env_file(path: &Path) -> HashMap<String, String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("tests/env/up.sh wrote no env file {}: {e}", path.display()));
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches('\'').trim_matches('"').to_string(),
            )
        })
        .collect()
}

/// The environment file written by `tests/env/up.sh`, read once per test binary.
pub fn env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let root = repo_root();
        // up.sh is idempotent and takes about a second when everything runs;
        // a lock inside it serialises test binaries that start together.
        let out = std::process::Command::new("bash")
            .arg(root.join("tests/env/up.sh"))
            .stdin(Stdio::null())
            .output()
            .expect("running tests/env/up.sh");
        assert!(
            out.status.success(),
            "tests/env/up.sh failed; the test environment is required:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = std::env::var("NPO_TESTENV_DIR")
            .unwrap_or_else(|_| root.join("target/testenv").display().to_string());
        read_env_file(&Path::new(&dir).join("env"))
    })
}

pub fn env_var(key: &str) -> String {
    env()
        .get(key)
        .cloned()
        .unwrap_or_else(|| panic!("{key} missing from the test environment file"))
}

/// The environment's log directory (operator logs go there), created.
pub fn log_dir() -> PathBuf {
    let dir = PathBuf::from(env_var("NPO_TESTENV_DIR")).join("logs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn unique(prefix: &str) -> String {
    let n: u32 = rand::random();
    format!("{prefix}-{n:08x}")
}

/// A port free at the moment of asking, for a child process to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `check` until it returns Some, or fail the test after `timeout`.
/// (Polling is fine here: this is the test observing, not the operator.)
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
