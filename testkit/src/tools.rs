//! The chart and alerting tools the suite runs: helm (built from Go modules
//! by `tests/env/up.sh`, `$NPO_HELM`) and promtool (Debian's prometheus
//! package, `$NPO_PROMTOOL`), and the YAML they read and write.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

use crate::env::{env_var, repo_root};

/// The Helm chart, relative to the repository.
pub const CHART: &str = "deploy/helm/nomad-pool-operator";
/// The release name the chart tests render with (the chart's object names do
/// not depend on it).
pub const RELEASE: &str = "nomad-pool-operator";

/// Every document of a YAML stream, empty ones left out.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).expect("the tool's output is YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

/// A YAML or JSON file of the repository as one value.
pub fn read_value(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

fn run(tool: &str, args: &[&str]) -> Output {
    let program = env_var(tool);
    Command::new(&program)
        .args(args)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program} (${tool}): {e}"))
}

/// `helm <args>` in the repository, whatever its exit status.
pub fn helm_output(args: &[&str]) -> Output {
    run("NPO_HELM", args)
}

/// `helm template` of the chart with `--include-crds` and `extra` (e.g.
/// `--set`), one value per object.
pub fn helm_template(extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["template", RELEASE, CHART, "--include-crds"];
    args.extend_from_slice(extra);
    let out = helm_output(&args);
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    yaml_docs(&String::from_utf8(out.stdout).unwrap())
}

/// `promtool <args>` in the repository, whatever its exit status.
pub fn promtool_output(args: &[&str]) -> Output {
    run("NPO_PROMTOOL", args)
}

/// Both streams of a finished tool, for assertion messages.
pub fn said(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The names of the `.yaml` files in a directory of the repository.
pub fn yaml_files(dir: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo_root().join(dir))
        .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| Path::new(n).extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    names
}
