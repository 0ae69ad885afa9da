//! The `nomad-sim` binary prints one `nomad-sim listening on URL` line on
//! stdout when ready and loads a scenario file.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[tokio::test]
async fn binary_starts_with_a_scenario() {
    let dir = std::env::temp_dir().join(format!("nomad-sim-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("scenario.json");
    std::fs::write(
        &scenario,
        r#"{"nodes": [{"count": 3, "node_pool": "batch", "meta": {"team": "a"}}],
            "allocations": [{"type": "service", "job_id": "web", "count": 2, "node_pool": "batch"}],
            "workloads": [{"node_pool": "batch", "rate_per_minute": 6, "duration_min_s": 10, "duration_max_s": 20}]}"#,
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_nomad-sim"))
        .args(["--listen", "127.0.0.1:0", "--seed", "1", "--scenario"])
        .arg(&scenario)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("nomad-sim listening on ")
        .expect("ready line")
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"));
    let nodes: serde_json::Value = reqwest::get(format!("{url}/v1/nodes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(nodes.as_array().unwrap().len(), 3);
    let allocs: serde_json::Value = reqwest::get(format!("{url}/v1/allocations"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(allocs.as_array().unwrap().len(), 2);
    child.kill().unwrap();
    let _ = child.wait();
}
