//! The alerting rules and the Grafana dashboard read only what the operator
//! exports: the operator binary retires two clients (one asked by the spec,
//! its first cordon refused by Nomad; one by a hand-made retirement) while
//! its `/metrics` is scraped, and every metric, every label a selector
//! matches on and every label grouped by in the rules and the dashboard
//! must appear in what it served. The same run checks the figures the alerts
//! rest on (each retirement started counted once by reason, the failed
//! action, the conditions, the drain gauges, the reconcile clock) and that
//! no label carries a client's node ID, name or instance ID. The dashboard's
//! queries must also parse (`promtool check rules`).

use std::collections::BTreeSet;
use std::time::Duration;

use kube::api::PostParams;
use nomad_pool_operator::api::NomadClientRetirement;
use npo_testkit::env::unique;
use npo_testkit::promql::{Exposition, refs};
use npo_testkit::tools::{promtool_output, read_value, said};
use npo_testkit::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const PREFIX: &str = "nomadpool_";
const RULES: &str = "deploy/monitoring/nomad-pool-operator.rules.yaml";
const DASHBOARD: &str = "deploy/monitoring/grafana-dashboard.json";

/// Every `(where, expression)` of the alerting rules.
fn rule_exprs() -> Vec<(String, String)> {
    let rules = read_value(RULES);
    let mut out = vec![];
    for g in rules["groups"].as_array().unwrap() {
        for r in g["rules"].as_array().unwrap() {
            let name = r["alert"].as_str().or(r["record"].as_str()).unwrap();
            out.push((
                format!("rule {name}"),
                r["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    out
}

/// Every panel query of the dashboard (rows' nested panels too), and the
/// `label_values(metric, label)` of its variables as `metric{label=""}`.
fn dashboard_exprs() -> Vec<(String, String)> {
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            for t in p["targets"].as_array().into_iter().flatten() {
                let title = p["title"].as_str().unwrap_or("?");
                out.push((
                    format!("panel {title}"),
                    t["expr"].as_str().unwrap().to_string(),
                ));
            }
            panels(&p["panels"], out);
        }
    }
    let d = read_value(DASHBOARD);
    let mut out = vec![];
    panels(&d["panels"], &mut out);
    for v in d["templating"]["list"].as_array().unwrap() {
        if let Some(q) = v["definition"].as_str() {
            let args = q
                .strip_prefix("label_values(")
                .and_then(|a| a.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable query {q} is not label_values(metric, label)"));
            let (metric, label) = args.split_once(',').unwrap();
            out.push((
                format!("variable {}", v["name"]),
                format!("{}{{{}=\"\"}}", metric.trim(), label.trim()),
            ));
        }
    }
    assert!(out.len() > 10, "the dashboard has its queries: {out:?}");
    out
}

/// Grafana's own variables, as a query of the range the panel shows.
fn as_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$pool", ".*")
}

#[test]
fn dashboard_queries_parse() {
    let rules = json!({"groups": [{
        "name": "dashboard",
        "rules": dashboard_exprs().iter().enumerate()
            .filter(|(_, (what, _))| what.starts_with("panel"))
            .map(|(i, (_, e))| json!({"record": format!("dashboard_query_{i}"), "expr": as_promql(e)}))
            .collect::<Vec<_>>(),
    }]});
    let path = std::env::temp_dir().join(format!("{}.yaml", unique("npo-dashboard")));
    std::fs::write(&path, serde_yaml::to_string(&rules).unwrap()).unwrap();
    let out = promtool_output(&["check", "rules", path.to_str().unwrap()]);
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "a dashboard query does not parse:\n{}",
        said(&out)
    );
}

async fn scrape(w: &World) -> String {
    let op = w.operator.as_ref().unwrap();
    let addr = wait_for("the operator to serve /metrics", T, || async {
        op.metrics_addr()
    })
    .await;
    reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Scrape until `ready` holds for one scrape; every scrape is kept.
async fn scrape_until(
    w: &World,
    seen: &mut Exposition,
    what: &str,
    ready: impl Fn(&Exposition) -> bool,
) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let mut one = Exposition::default();
        let text = scrape(w).await;
        one.add(&text);
        seen.add(&text);
        if ready(&one) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/metrics never showed {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_and_dashboard_read_only_what_the_operator_exports() {
    let w = setup("metrics", 3).await;
    let jobs = w.busy_everywhere().await;
    let victim = w.ready_nodes().await[0].clone();
    let node_id = victim["id"].as_str().unwrap().to_string();
    let instance = victim["instance_id"].as_str().unwrap().to_string();
    let (_, alloc) = jobs.iter().find(|(n, _)| *n == node_id).unwrap().clone();
    let pool = format!("{}/pool", w.namespace);
    let p = pool.as_str();
    // Nomad refuses the drain (the first call: it cordons the client too):
    // a failed action. (A retire entry replaces the VM unless it says
    // `replace: false`: reason Replace.)
    w.sim
        .post(
            "/sim/faults",
            json!({"path_prefix": format!("/v1/node/{node_id}/drain"), "error_rate": 1.0}),
        )
        .await;
    w.apply_pool(&w.pool_manifest("pool", json!({"retire": [{"instanceID": instance}]})))
        .await;

    let mut seen = Exposition::default();
    scrape_until(&w, &mut seen, "the refused drain", |e| {
        e.values(
            "nomadpool_action_failures_total",
            &[("pool", p), ("action", "nomad")],
        )
        .iter()
        .any(|v| *v >= 1.0)
    })
    .await;
    w.sim
        .control(reqwest::Method::DELETE, "/sim/faults", None)
        .await;
    // The job holds the drain: the drain gauges have one in flight.
    scrape_until(&w, &mut seen, "the drain in flight", |e| {
        e.values(
            "nomadpool_drain_oldest_age_seconds",
            &[("pool", p), ("deadline", "false")],
        )
        .iter()
        .any(|v| *v > 0.0)
    })
    .await;
    w.sim.finish(&alloc).await;
    w.wait_status("pool", "the client retired", T, |s| s.retired_total == 1)
        .await;
    let last = |e: &Exposition| {
        e.values("nomadpool_retire_duration_seconds_count", &[("pool", p)]) == [1.0]
            && e.values(
                "nomadpool_pool_condition",
                &[("pool", p), ("condition", "Ready"), ("status", "True")],
            ) == [1.0]
    };
    scrape_until(&w, &mut seen, "the retirement finished, Ready", last).await;

    // A retirement made by hand is counted when the pool takes it on.
    let second = w
        .ready_nodes()
        .await
        .into_iter()
        .find(|n| n["id"] != node_id.as_str() && jobs.iter().any(|(j, _)| n["id"] == j.as_str()))
        .expect("a second client with a job");
    let second_name = second["name"].as_str().unwrap().to_string();
    let by_hand: NomadClientRetirement = serde_json::from_value(json!({
        "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
        "metadata": {"name": "by-hand", "namespace": w.namespace},
        "spec": {"pool": "pool", "target": {"nodeName": second_name}, "reason": "Requested"},
    }))
    .unwrap();
    w.retirements_api()
        .create(&PostParams::default(), &by_hand)
        .await
        .unwrap();
    let (_, second_alloc) = jobs
        .iter()
        .find(|(n, _)| n == &second["id"])
        .unwrap()
        .clone();
    scrape_until(&w, &mut seen, "the hand-made retirement started", |e| {
        !e.values(
            "nomadpool_retirements_started_total",
            &[("pool", p), ("reason", "Requested")],
        )
        .is_empty()
    })
    .await;
    w.sim.finish(&second_alloc).await;
    w.wait_status("pool", "both clients retired", T, |s| s.retired_total == 2)
        .await;
    let mut end = Exposition::default();
    end.add(&scrape(&w).await);

    // What the alerts rest on, as it happened.
    assert_eq!(
        end.values(
            "nomadpool_retirements_started_total",
            &[("pool", p), ("reason", "Replace")]
        ),
        [1.0],
        "one retirement started, counted once though its first drain failed"
    );
    assert_eq!(
        end.values(
            "nomadpool_retirements_started_total",
            &[("pool", p), ("reason", "Requested")]
        ),
        [1.0],
        "the hand-made retirement, counted once"
    );
    assert_eq!(
        end.values("nomadpool_drains_past_deadline", &[("pool", p)]),
        [0.0]
    );
    assert_eq!(
        end.values("nomadpool_drain_oldest_age_seconds", &[("pool", p)]),
        [0.0, 0.0],
        "no drain in flight once retired"
    );
    assert_eq!(end.values("nomadpool_leader", &[]), [1.0]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let reconciled = end.values("nomadpool_last_reconcile_timestamp_seconds", &[("pool", p)]);
    assert!(
        reconciled.len() == 1 && (now - reconciled[0]).abs() < 120.0,
        "last reconcile {reconciled:?}, now {now}"
    );

    // No label names the client.
    let name = victim["name"].as_str().unwrap();
    let second_id = second["id"].as_str().unwrap();
    let names = [
        node_id.as_str(),
        &node_id[..8],
        name,
        instance.as_str(),
        second_id,
        &second_name,
    ];
    for (series, labels, _) in &seen.samples {
        for v in labels.values() {
            for id in names {
                assert!(
                    !v.contains(id),
                    "{series} has label value {v} naming the client"
                );
            }
        }
    }

    assert_exports(&seen, &rule_exprs());
    assert_exports(&seen, &dashboard_exprs());
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// Each expression names only exported series, with labels they carry.
fn assert_exports(seen: &Exposition, exprs: &[(String, String)]) {
    let exported = seen.series_names();
    for (what, expr) in exprs {
        let r = refs(expr, PREFIX);
        assert!(
            !r.metrics.is_empty(),
            "{what} reads no operator metric: {expr}"
        );
        let mut carried: BTreeSet<String> = BTreeSet::from(["le".to_string()]);
        for (metric, matched) in &r.metrics {
            assert!(
                exported.contains(metric),
                "{what} reads {metric}, which the operator does not export"
            );
            let labels = seen.labels.get(metric).unwrap_or_else(|| {
                panic!("{what} reads {metric}, which had no sample in this run")
            });
            for l in matched {
                assert!(
                    labels.contains(l),
                    "{what} matches {metric} on {l}; its labels are {labels:?}"
                );
            }
            carried.extend(labels.iter().cloned());
        }
        for l in &r.grouping {
            assert!(
                carried.contains(l),
                "{what} groups by {l}, which none of {:?} carries",
                r.metrics.keys()
            );
        }
    }
}
