//! A second etcd + kube-apiserver + moto, started by `tests/env/up.sh` in a
//! private directory, for a test that breaks its control plane (kills the
//! API server) without disturbing the tests on the shared one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::{Api, Client};

use crate::cluster::client_from;
use crate::env::{read_env_file, repo_root, wait_for};

/// A second etcd + kube-apiserver + moto started by `tests/env/up.sh` in a
/// private directory; stopped (down.sh) when dropped, even on failure.
pub struct PrivateEnv {
    dir: PathBuf,
    vars: HashMap<String, String>,
}

impl PrivateEnv {
    pub fn up(name: &str) -> PrivateEnv {
        let dir = repo_root().join(format!(
            "target/testenv-{name}-{}-{:04x}",
            std::process::id(),
            rand::random::<u16>()
        ));
        let out = std::process::Command::new("bash")
            .arg(repo_root().join("tests/env/up.sh"))
            .env("NPO_TESTENV_DIR", &dir)
            .stdin(Stdio::null())
            .output()
            .expect("running tests/env/up.sh");
        // From here on the guard stops whatever up.sh started, even if it failed.
        let mut env = PrivateEnv {
            dir: dir.clone(),
            vars: HashMap::new(),
        };
        assert!(
            out.status.success(),
            "private tests/env/up.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let vars = read_env_file(&dir.join("env"));
        env.vars = vars;
        env
    }

    pub fn kubeconfig(&self) -> String {
        self.vars["KUBECONFIG"].clone()
    }

    pub async fn client(&self) -> Client {
        client_from(std::path::Path::new(&self.kubeconfig())).await
    }

    /// The apiserver's pid, trusted only if its command line carries the
    /// marker up.sh recorded (as lib.sh's pid_alive does).
    pub fn apiserver_pid(&self) -> (u32, Vec<String>) {
        let run = self.dir.join("run");
        let pid: u32 = std::fs::read_to_string(run.join("kube-apiserver.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let marker = std::fs::read_to_string(run.join("kube-apiserver.marker")).unwrap();
        let cmdline: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect();
        assert!(
            cmdline.join(" ").contains(marker.trim()),
            "pid {pid} is not our kube-apiserver: {cmdline:?}"
        );
        (pid, cmdline)
    }

    /// SIGKILL the apiserver (only it: etcd keeps running with its data);
    /// returns its command line for `start_apiserver`.
    pub async fn kill_apiserver(&self) -> Vec<String> {
        let (pid, cmdline) = self.apiserver_pid();
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        wait_for(
            "kube-apiserver to exit",
            Duration::from_secs(20),
            || async {
                let alive = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| !c.is_empty())
                    .unwrap_or(false);
                (!alive).then_some(())
            },
        )
        .await;
        cmdline
    }

    /// Start the apiserver again with the same command line (same port,
    /// certificates and etcd), detached like up.sh does, and record its pid
    /// so down.sh stops it.
    pub async fn start_apiserver(&self, cmdline: &[String], client: &Client) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("logs/kube-apiserver.log"))
            .unwrap();
        let pidfile = self.dir.join("run/kube-apiserver.pid");
        let _ = std::fs::remove_file(&pidfile);
        let mut child = std::process::Command::new("setsid")
            .arg("bash")
            .arg("-c")
            .arg(r#"echo $$ >"$0"; exec "$@""#)
            .arg(&pidfile)
            .args(cmdline)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("restarting kube-apiserver");
        // Reap it whenever it exits (down.sh stops it).
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        let ns: Api<Namespace> = Api::all(client.clone());
        wait_for(
            "the restarted kube-apiserver to serve",
            Duration::from_secs(120),
            || async { ns.get("default").await.ok().map(drop) },
        )
        .await;
    }
}

impl Drop for PrivateEnv {
    fn drop(&mut self) {
        let out = std::process::Command::new("bash")
            .arg(repo_root().join("tests/env/down.sh"))
            .env("NPO_TESTENV_DIR", &self.dir)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {
                if std::thread::panicking() {
                    eprintln!("private control plane logs kept in {}", self.dir.display());
                } else {
                    let _ = std::fs::remove_dir_all(&self.dir);
                }
            }
            other => eprintln!(
                "stopping the private control plane in {} failed: {other:?}",
                self.dir.display()
            ),
        }
    }
}
