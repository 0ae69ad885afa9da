//! The alerting rules (`deploy/monitoring/`) with the real promtool:
//! `promtool check rules` and `promtool test rules` pass; every alert has a
//! unit test that fails when the alert stops firing and one that fails when
//! it fires where it must not; the PrometheusRule holds the plain file's
//! groups; every alert's runbook_url points at a section of
//! docs/runbooks.md. That the rules read only metrics the operator exports
//! is `tests/monitoring.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use npo_testkit::env::{repo_root, unique};
use npo_testkit::tools::{promtool_output, read_value, said};
use serde_json::Value;

const RULES: &str = "deploy/monitoring/nomad-pool-operator.rules.yaml";
const RULES_FILE: &str = "nomad-pool-operator.rules.yaml";
const TESTS: &str = "deploy/monitoring/rules.test.yaml";
const RUNBOOKS: &str = "docs/runbooks.md";
const RUNBOOK_BASE: &str =
    "https://github.com/nomadpool/nomad-pool-operator/blob/main/docs/runbooks.md#";

fn alerts(rules: &Value) -> Vec<&Value> {
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

fn alert_names(rules: &Value) -> Vec<String> {
    alerts(rules)
        .iter()
        .map(|r| r["alert"].as_str().unwrap().to_string())
        .collect()
}

/// A directory of its own under the environment's temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(unique("npo-alerts"));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `promtool test rules` on the committed tests against `rules`.
fn test_rules(dir: &Path, rules: &Value) -> std::process::Output {
    std::fs::write(dir.join(RULES_FILE), serde_yaml::to_string(rules).unwrap()).unwrap();
    std::fs::copy(repo_root().join(TESTS), dir.join("rules.test.yaml")).unwrap();
    let tests = dir.join("rules.test.yaml");
    promtool_output(&["test", "rules", tests.to_str().unwrap()])
}

#[test]
fn promtool_checks_the_rules_and_their_unit_tests_pass() {
    let out = promtool_output(&["check", "rules", RULES]);
    let text = said(&out);
    assert!(out.status.success(), "promtool check rules:\n{text}");
    let n = alerts(&read_value(RULES)).len();
    assert!(
        text.contains(&format!("SUCCESS: {n} rules found")),
        "{text}"
    );

    let out = promtool_output(&["test", "rules", TESTS]);
    assert!(out.status.success(), "promtool test rules:\n{}", said(&out));
}

/// Each alert is tested both ways: made never to fire, its tests fail; made
/// to fire always and at once, a test expecting no alert fails.
#[test]
fn every_alert_has_a_test_that_fires_and_one_that_does_not() {
    let rules = read_value(RULES);
    let tests = read_value(TESTS);
    let scratch = Scratch::new();
    for name in alert_names(&rules) {
        // Structurally: an evaluation expecting it, and one expecting none.
        let evals: Vec<&Value> = (tests["tests"].as_array().unwrap().iter())
            .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
            .filter(|e| e["alertname"] == name.as_str())
            .collect();
        let expecting = |any: bool| {
            evals.iter().any(|e| {
                e["exp_alerts"]
                    .as_array()
                    .is_some_and(|a| a.is_empty() != any)
            })
        };
        assert!(expecting(true), "no test of {name} expects it to fire");
        assert!(expecting(false), "no test of {name} expects it silent");

        let mutate = |expr: &str, for_: &str| {
            let mut m = rules.clone();
            for g in m["groups"].as_array_mut().unwrap() {
                for r in g["rules"].as_array_mut().unwrap() {
                    if r["alert"] == name.as_str() {
                        r["expr"] = expr.into();
                        r["for"] = for_.into();
                    }
                }
            }
            m
        };
        let out = test_rules(&scratch.0, &mutate("vector(1) > 2", "0s"));
        let text = said(&out);
        assert!(
            !out.status.success() && text.contains(&format!("alertname: {name},")),
            "{name} never firing passes its tests:\n{text}"
        );
        let out = test_rules(&scratch.0, &mutate("vector(1)", "0s"));
        let text = said(&out);
        assert!(
            !out.status.success() && text.contains("exp:[],"),
            "{name} always firing passes every test that expects it silent:\n{text}"
        );
    }
}

/// The PrometheusRule in deploy/ is the plain file's groups, as a manifest
/// for the Prometheus Operator.
#[test]
fn prometheus_rule_holds_the_plain_rules() {
    let plain = read_value(RULES);
    let rule = read_value("deploy/monitoring/prometheusrule.yaml");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["spec"]["groups"], plain["groups"]);
}

/// GitHub's anchor of a Markdown heading.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn every_alert_has_a_runbook_section_its_url_points_at() {
    let text = std::fs::read_to_string(repo_root().join(RUNBOOKS)).unwrap();
    let sections: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    let rules = read_value(RULES);
    for alert in alerts(&rules) {
        let name = alert["alert"].as_str().unwrap();
        let url = alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let target = url
            .strip_prefix(RUNBOOK_BASE)
            .unwrap_or_else(|| panic!("{name}'s runbook_url {url} is not in {RUNBOOKS}"));
        assert_eq!(target, anchor(name), "{name}'s runbook is its own section");
        assert!(
            sections.contains(target),
            "{RUNBOOKS} has no section {name}"
        );
        for key in ["summary", "description"] {
            assert!(
                alert["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name} has no {key}"
            );
        }
        assert!(
            ["warning", "critical"].contains(&alert["labels"]["severity"].as_str().unwrap_or("")),
            "{name}'s severity"
        );
    }
    // And no runbook without an alert: a renamed alert leaves none behind.
    let names: BTreeSet<String> = alert_names(&rules).iter().map(|n| anchor(n)).collect();
    assert_eq!(sections, names, "{RUNBOOKS} sections and alerts differ");
}
