//! The operator binary as a child process of a test, a benchmark or the
//! demo: its command line (`OperatorCmd`), and the running process
//! (`Operator`) with its log, its metrics and its CPU and memory.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;

use tokio::process::{Child, Command};

use crate::env::{env_var, log_dir};
use crate::procstat;

/// `$NPO_OPERATOR_BIN`; else `target/<profile>/nomad-pool-operator` beside the
/// `target/<profile>/{deps,examples}/` directory the caller runs from (Cargo
/// builds the binary there for integration tests and benches; the demo's
/// Makefile target builds it first).
pub fn operator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NPO_OPERATOR_BIN") {
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

/// How to start the operator: arguments, environment and log file.
#[derive(Clone, Debug)]
pub struct OperatorCmd {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Start from an empty environment (PATH kept), as a pod does.
    pub clean_env: bool,
    /// A program (and its arguments) the binary runs under, e.g. a profiler.
    pub wrapper: Vec<String>,
    pub log: PathBuf,
    /// Start the log afresh instead of appending to it.
    pub truncate_log: bool,
}

impl OperatorCmd {
    /// `nomad-pool-operator run` scoped to `namespace`, electing itself on a
    /// lease in that namespace (so parallel tests never wait on each other),
    /// metrics on any free port, as the environment's admin.
    pub fn run(namespace: &str, log: PathBuf) -> OperatorCmd {
        OperatorCmd::with_args(
            [
                "run",
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--metrics-addr",
                "127.0.0.1:0",
            ],
            log,
        )
        .env("KUBECONFIG", env_var("KUBECONFIG"))
        .env("NPO_LOG", "info,nomad_pool_operator=debug")
    }

    /// The binary with exactly these arguments and no environment of its own.
    pub fn with_args<S: Into<String>>(args: impl IntoIterator<Item = S>, log: PathBuf) -> Self {
        OperatorCmd {
            args: args.into_iter().map(Into::into).collect(),
            env: vec![],
            clean_env: false,
            wrapper: vec![],
            log,
            truncate_log: false,
        }
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Serve metrics (and health) on `addr` instead of any free port.
    pub fn metrics_addr(mut self, addr: &str) -> Self {
        match self.args.iter().position(|a| a == "--metrics-addr") {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = addr.to_string(),
            _ => self
                .args
                .extend(["--metrics-addr".to_string(), addr.to_string()]),
        }
        self
    }

    /// Set (or, when set before, override) an environment variable.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn spawn(&self) -> Child {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(!self.truncate_log)
            .truncate(self.truncate_log)
            .open(&self.log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.log.display()));
        let mut cmd = match self.wrapper.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(operator_bin());
                c
            }
            None => Command::new(operator_bin()),
        };
        if self.clean_env {
            cmd.env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default());
        }
        cmd.args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .expect("starting the operator binary")
    }
}

/// A running operator (or one killed and not yet started again).
pub struct Operator {
    child: Mutex<Option<Child>>,
    cmd: OperatorCmd,
    pub log: PathBuf,
    /// Processes started so far.
    pub starts: u32,
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
        let log = log_dir().join(format!("operator-{test}-{namespace}-{instance}.log"));
        let mut cmd = OperatorCmd::run(namespace, log)
            .args(extra.iter().copied())
            .env("POD_NAME", instance);
        for (k, v) in env {
            cmd = cmd.env(*k, *v);
        }
        Operator::spawn(cmd)
    }

    /// Start the process `cmd` describes.
    pub fn spawn(cmd: OperatorCmd) -> Operator {
        let child = cmd.spawn();
        Operator {
            child: Mutex::new(Some(child)),
            log: cmd.log.clone(),
            cmd,
            starts: 1,
        }
    }

    /// Start the same command again after `kill` (a restarted pod).
    pub fn restart(&mut self) {
        let mut child = self.child.lock().unwrap();
        assert!(child.is_none(), "operator already running");
        *child = Some(self.cmd.spawn());
        self.starts += 1;
    }

    /// The process ID while it runs (for `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().and_then(|c| c.id())
    }

    /// SIGKILL and reap: no cleanup code runs, as when a node dies.
    pub async fn kill(&self) {
        let child = self.child.lock().unwrap().take();
        if let Some(mut c) = child {
            let _ = c.kill().await;
        }
    }

    /// SIGKILL without waiting (from code that cannot await).
    pub fn kill_now(&self) {
        if let Some(c) = self.child.lock().unwrap().as_mut() {
            let _ = c.start_kill();
        }
    }

    /// `Some` if the process ended by itself.
    pub fn exited(&self) -> Option<ExitStatus> {
        self.child
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log's last 40 lines.
    pub fn log_tail(&self) -> String {
        self.log_tail_n(40)
    }

    pub fn log_tail_n(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// The metrics address the current process logged.
    pub fn metrics_addr(&self) -> Option<String> {
        let text = self.log_text();
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains("serving /metrics"))?;
        let rest = &line[line.find("bound=")? + "bound=".len()..];
        Some(rest.split_whitespace().next()?.to_string())
    }

    /// `nomadpool_reconciles_total`, summed over pools and results.
    pub async fn reconciles(&self) -> Option<u64> {
        let addr = self.metrics_addr()?;
        let text = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        Some(
            text.lines()
                .filter(|l| l.starts_with("nomadpool_reconciles_total"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>() as u64,
        )
    }

    /// CPU seconds the process has used (0 once it is gone).
    pub fn cpu_seconds(&self) -> f64 {
        self.pid().map_or(0.0, procstat::cpu_seconds)
    }

    pub fn rss_mib(&self) -> f64 {
        self.pid()
            .map_or(f64::NAN, |p| procstat::status_mib(p, "VmRSS:"))
    }

    pub fn peak_rss_mib(&self) -> f64 {
        self.pid()
            .map_or(f64::NAN, |p| procstat::status_mib(p, "VmHWM:"))
    }
}
