//! The `gce-sim` binary prints one `gce-sim listening on URL` line on
//! stdout when ready and serves the control surface and the API.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

#[tokio::test]
async fn binary_starts_and_serves_a_group() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gce-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--seed",
            "1",
            "--operation-polls",
            "0",
        ])
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
        .strip_prefix("gce-sim listening on ")
        .expect("ready line")
        .to_string();
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{url}/sim/groups"))
        .json(&json!({"project": "p", "zone": "europe-west1-b", "name": "g", "target_size": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let g: Value = http
        .get(format!(
            "{url}/compute/v1/projects/p/zones/europe-west1-b/instanceGroupManagers/g"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(g["targetSize"], 2);
    child.kill().unwrap();
    let _ = child.wait();
}
