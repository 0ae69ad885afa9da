//! The operator binary as a child process of a test, with its log in the
//! test environment's log directory.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

use super::env_var;

/// `$NPO_OPERATOR_BIN`; else Cargo's binary for integration tests; else, for
/// examples and benches, `target/<profile>/nomad-pool-operator` beside the
/// `target/<profile>/{examples,deps}/` directory the caller runs from.
pub fn operator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NPO_OPERATOR_BIN") {
        return p.into();
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_nomad-pool-operator") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("locating the running executable");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("running from target/<profile>/<dir>/")
        .join(format!(
            "nomad-pool-operator{}",
            std::env::consts::EXE_SUFFIX
        ))
}

pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    /// Start `nomad-pool-operator run` scoped to `namespace`, as the admin user.
    pub async fn start(namespace: &str, test: &str) -> Operator {
        Self::start_with(namespace, test, "nomad-pool-operator", &[]).await
    }

    /// Like `start`, as replica `instance` (its pod name), with extra flags.
    pub async fn start_with(
        namespace: &str,
        test: &str,
        instance: &str,
        extra: &[&str],
    ) -> Operator {
        Self::start_with_env(namespace, test, instance, extra, &[]).await
    }

    /// Like `start_with`, with extra environment variables (settings given
    /// this way are ignored by a build that does not know them, so a test
    /// can run against an older operator).
    pub async fn start_with_env(
        namespace: &str,
        test: &str,
        instance: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Operator {
        let dir = PathBuf::from(env_var("NPO_TESTENV_DIR")).join("logs");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!("operator-{test}-{namespace}-{instance}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(operator_bin())
            // Each test's operator elects itself on a lease in its own
            // namespace, so parallel tests never wait on each other.
            .args([
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("KUBECONFIG", env_var("KUBECONFIG"))
            .env("POD_NAME", instance)
            .env("NPO_LOG", "info,nomad_pool_operator=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting the operator binary");
        Operator { child, log }
    }

    /// The process ID while it runs (for `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL: no cleanup code runs, as when a node dies.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}
