//! A private moto server: the project's wrapper (`tests/env/moto/
//! npo_moto_server.py`, moto with its corrections) in the environment's moto
//! virtualenv, as `tests/env/up.sh` starts the shared one, on a port of its
//! own. For runs that must neither disturb nor be disturbed by the tests on
//! the shared moto (the benchmark's worlds).

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::Client as AsgClient;
use tokio::process::{Child, Command};

use crate::aws::asg_client_at;
use crate::env::{env_var, free_port, repo_root};

pub struct MotoServer {
    child: Child,
    pub endpoint: String,
}

impl MotoServer {
    /// Start one with its output in `log`, and wait until it answers.
    pub async fn start(log: &Path) -> MotoServer {
        let python = env_var("NPO_MOTO_PYTHON");
        let wrapper = repo_root().join("tests/env/moto/npo_moto_server.py");
        let port = free_port();
        let file = std::fs::File::create(log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let child = Command::new(&python)
            .arg(&wrapper)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {python} {}: {e}", wrapper.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if http
                .get(format!("{endpoint}/moto-api/"))
                .send()
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto did not start; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        MotoServer { child, endpoint }
    }

    pub fn client(&self) -> AsgClient {
        asg_client_at(&self.endpoint)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
