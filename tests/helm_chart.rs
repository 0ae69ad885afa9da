//! The Helm chart (`deploy/helm/nomad-pool-operator/`): at its default values
//! it renders the very objects of the kustomize base (`deploy/`), with
//! `watchNamespaces` those of `deploy/namespaced/`; its values change what
//! they name and nothing else; `helm lint --strict` passes; its CRDs, rules
//! and dashboard are the committed ones. Objects are compared parsed, not as
//! text. (What the base's objects grant and run is `tests/deploy.rs` and
//! `tests/deploy_namespaced.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use npo_testkit::deploy::{SA, SYSTEM_NS, deployment_args, find, render};
use npo_testkit::env::repo_root;
use npo_testkit::tools::*;
use serde_json::{Value, json};

type Id = (String, String, String);

fn id(o: &Value) -> Id {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    (
        s(&o["kind"]),
        s(&o["metadata"]["namespace"]),
        s(&o["metadata"]["name"]),
    )
}

fn by_id(objects: &[Value]) -> BTreeMap<Id, &Value> {
    let map: BTreeMap<Id, &Value> = objects.iter().map(|o| (id(o), o)).collect();
    assert_eq!(map.len(), objects.len(), "an object is rendered twice");
    map
}

/// The same objects, field for field. CRDs are compared by spec: kustomize
/// labels them `part-of` and writes the files' `minimum: 0.0` as `0`, while
/// helm installs the files of the chart's `crds/` untouched (and those are
/// the committed ones, `chart_files_are_the_committed_ones`).
fn assert_same_objects(kustomize: &[Value], helm: &[Value]) {
    let (k, h) = (by_id(kustomize), by_id(helm));
    let only_k: Vec<_> = k.keys().filter(|i| !h.contains_key(*i)).collect();
    let only_h: Vec<_> = h.keys().filter(|i| !k.contains_key(*i)).collect();
    assert!(
        only_k.is_empty() && only_h.is_empty(),
        "only in kustomize: {only_k:?}; only in helm: {only_h:?}"
    );
    for (i, want) in &k {
        let got = h[i];
        if i.0 == "CustomResourceDefinition" {
            let typed = |v: &Value| -> CustomResourceDefinition {
                serde_json::from_value(v.clone()).unwrap()
            };
            assert!(typed(want).spec == typed(got).spec, "{i:?}: specs differ");
            continue;
        }
        assert_eq!(
            got,
            *want,
            "{i:?} differs:\nhelm:\n{}\nkustomize:\n{}",
            serde_yaml::to_string(got).unwrap(),
            serde_yaml::to_string(want).unwrap()
        );
    }
}

#[test]
fn default_values_render_the_kustomize_base() {
    let helm = helm_template(&[]);
    assert_same_objects(&render("deploy"), &helm);
    // Nothing optional is on by default.
    for kind in ["ServiceMonitor", "PrometheusRule", "ConfigMap"] {
        assert!(
            !helm.iter().any(|o| o["kind"] == kind),
            "a default install renders a {kind}"
        );
    }
}

#[test]
fn watch_namespaces_render_the_namespaced_variant() {
    let helm = helm_template(&["--set", "watchNamespaces={ci,batch}"]);
    assert_same_objects(&render("deploy/namespaced"), &helm);
    assert!(
        !helm
            .iter()
            .any(|o| o["kind"].as_str().unwrap().starts_with("Cluster")),
        "no cluster-wide grant when namespaces are listed"
    );
}

#[test]
fn values_change_what_they_name() {
    let objects = helm_template(&[
        "--set",
        "image.repository=registry.example.com/npo,image.tag=1.2.3,replicas=3",
        "--set",
        "resources.limits.memory=512Mi,ambientCredentialsNamespaces=ci",
        "--set",
        "watchNamespaces={ci},extraArgs={--nomad-max-connections=32}",
        "--set",
        "serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::111122223333:role/npo",
    ]);
    let d = find(&objects, "Deployment", SA);
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example.com/npo:1.2.3");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(c["resources"]["requests"]["memory"], "64Mi", "{c}");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "NPO_AMBIENT_CREDENTIALS_NAMESPACES", "value": "ci"}))
    );
    assert_eq!(
        deployment_args(&objects),
        [
            "run",
            "--log-json",
            "--namespace=ci",
            "--nomad-max-connections=32"
        ]
    );
    assert_eq!(
        find(&objects, "ServiceAccount", SA)["metadata"]["annotations"],
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/npo"})
    );

    let pinned = helm_template(&["--set", "image.digest=sha256:0123abcd"]);
    let c = &find(&pinned, "Deployment", SA)["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"],
        "ghcr.io/nomadpool/nomad-pool-operator@sha256:0123abcd"
    );

    // Into a namespace made by `helm install --create-namespace`.
    let elsewhere = helm_template(&["--set", "namespace.name=ops,namespace.create=false"]);
    assert!(!elsewhere.iter().any(|o| o["kind"] == "Namespace"));
    for o in &elsewhere {
        let (kind, ns, _) = id(o);
        if !kind.starts_with("Cluster") && kind != "CustomResourceDefinition" {
            assert_eq!(ns, "ops", "{o}");
        }
    }
    let binding = find(&elsewhere, "ClusterRoleBinding", SA);
    assert_eq!(binding["subjects"][0]["namespace"], "ops");
}

/// The ServiceMonitor scrapes the metrics Service's port, selecting it by
/// the Service's own labels (a ServiceMonitor matches Services, not pods).
#[test]
fn service_monitor_scrapes_the_metrics_service() {
    let objects = helm_template(&[
        "--set",
        "serviceMonitor.enabled=true,serviceMonitor.labels.release=prom",
    ]);
    let sm = find(&objects, "ServiceMonitor", SA);
    let svc = find(&objects, "Service", "nomad-pool-operator-metrics");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["namespace"], SYSTEM_NS);
    assert_eq!(sm["metadata"]["labels"]["release"], "prom");
    let selector = sm["spec"]["selector"]["matchLabels"].as_object().unwrap();
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(&svc["metadata"]["labels"][k], v, "Service lacks label {k}");
    }
    let endpoints = sm["spec"]["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], svc["spec"]["ports"][0]["name"]);
    assert_eq!(endpoints[0]["path"], "/metrics");
}

/// The PrometheusRule holds the plain rules file's groups, and the dashboard
/// ConfigMap the dashboard JSON, each as `deploy/monitoring/` has them.
#[test]
fn rules_and_dashboard_are_the_committed_ones() {
    let objects = helm_template(&[
        "--set",
        "prometheusRule.enabled=true,prometheusRule.labels.release=prom",
        "--set",
        "grafanaDashboard.enabled=true",
    ]);
    let rule = find(&objects, "PrometheusRule", SA);
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["metadata"]["labels"]["release"], "prom");
    let plain = read_value("deploy/monitoring/nomad-pool-operator.rules.yaml");
    assert_eq!(rule["spec"]["groups"], plain["groups"]);
    assert_eq!(
        rule["spec"].as_object().unwrap().len(),
        1,
        "spec is groups only"
    );

    let cm = find(&objects, "ConfigMap", "nomad-pool-operator-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(cm["data"]["nomad-pool-operator.json"].as_str().unwrap()).unwrap();
    assert_eq!(json, read_value("deploy/monitoring/grafana-dashboard.json"));
}

/// Helm reads only files inside the chart, so its CRDs, rules and dashboard
/// are copies: each must be byte for byte the committed file.
#[test]
fn chart_files_are_the_committed_ones() {
    let crds: BTreeSet<String> = yaml_files("crds")
        .into_iter()
        .filter(|n| n != "kustomization.yaml")
        .collect();
    let chart_crds: BTreeSet<String> = yaml_files(&format!("{CHART}/crds")).into_iter().collect();
    assert_eq!(
        chart_crds, crds,
        "the chart's crds/ holds exactly crds/'s CRDs"
    );
    let mut pairs: Vec<(String, String)> = crds
        .iter()
        .map(|n| (format!("crds/{n}"), format!("{CHART}/crds/{n}")))
        .collect();
    for f in ["nomad-pool-operator.rules.yaml", "grafana-dashboard.json"] {
        pairs.push((
            format!("deploy/monitoring/{f}"),
            format!("{CHART}/files/{f}"),
        ));
    }
    for (committed, copy) in pairs {
        let read = |p: &str| {
            std::fs::read(repo_root().join(p)).unwrap_or_else(|e| panic!("reading {p}: {e}"))
        };
        assert!(
            read(&committed) == read(&copy),
            "{copy} differs from {committed}; copy it: cp {committed} {copy}"
        );
    }
}

#[test]
fn helm_lint_passes_with_default_and_all_optional_values() {
    for set in [
        None,
        Some(
            "watchNamespaces={ci,batch},serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,extraArgs={--log-json}",
        ),
    ] {
        let mut args = vec!["lint", "--strict", CHART];
        if let Some(set) = set {
            args.extend(["--set", set]);
        }
        let out = helm_output(&args);
        let text = said(&out);
        assert!(out.status.success(), "helm {args:?}:\n{text}");
        assert!(
            text.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{text}"
        );
    }
}

/// `kubectl apply -k deploy/monitoring/` installs what the chart's
/// prometheusRule and grafanaDashboard values do.
#[test]
fn monitoring_kustomization_matches_the_charts_optional_objects() {
    let kustomize = render("deploy/monitoring");
    let helm: Vec<Value> = helm_template(&[
        "--set",
        "prometheusRule.enabled=true,grafanaDashboard.enabled=true",
    ])
    .into_iter()
    .filter(|o| o["kind"] == "PrometheusRule" || o["kind"] == "ConfigMap")
    .collect();
    // The dashboard compared as JSON: helm's block scalar drops the file's
    // last newline, kustomize keeps it.
    let parsed = |objects: &[Value]| -> Vec<Value> {
        objects
            .iter()
            .map(|o| {
                let mut o = o.clone();
                if o["kind"] == "ConfigMap" {
                    let key = "nomad-pool-operator.json";
                    let json: Value =
                        serde_json::from_str(o["data"][key].as_str().unwrap()).unwrap();
                    o["data"][key] = json;
                }
                o
            })
            .collect()
    };
    assert_same_objects(&parsed(&kustomize), &parsed(&helm));
}

/// values.schema.json: a misspelt key or a wrong type fails the render
/// (and so the install) instead of being ignored.
#[test]
fn misspelt_or_mistyped_values_are_refused() {
    for set in [
        "replica=3",
        "serviceMonitor.enable=true",
        "image.digest=latest",
        "watchNamespaces[0]=Not_A_Namespace",
    ] {
        let out = helm_output(&["template", RELEASE, CHART, "--set", set]);
        let text = said(&out);
        assert!(!out.status.success(), "--set {set} was accepted:\n{text}");
        assert!(text.contains("schema"), "--set {set}:\n{text}");
    }
}
