//! The operator's calls to the cloud in a fault test, on either cloud: how
//! they are faulted and counted, and the check that no instance was
//! terminated twice. On AWS a fault proxy stands in front of moto (which
//! never fails by itself); on GCE the world's gce-sim injects the faults
//! (seeded rules with a probability) and its request log says which calls
//! it carried out.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::cloud::{GroupHistory, assert_cloud_invariants, assert_group_invariants, aws_counts};
use crate::aws::moto_endpoint;
use crate::proxy::aws_faults::{AwsFaults, FaultProxy};
use crate::world::World;

/// The cloud side of a fault test.
pub enum CloudCalls {
    /// A fault proxy in front of moto; the pool reaches moto through it.
    Aws(FaultProxy),
    /// The world's gce-sim (its control URL): its fault rules and request log.
    Gce { url: String, http: reqwest::Client },
}

/// Calls so far, all kinds together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CallTotals {
    pub requests: u64,
    /// Carried out by the cloud (AWS: forwarded to moto, whatever the
    /// caller was answered; GCE: `carried_out` in gce-sim's log).
    pub carried_out: u64,
}

/// The deleteInstances calls gce-sim carried out, per VM name: the
/// distinct `requestId`s they carried (a repeated ID is one call to Compute).
pub fn carried_out_deletes(log: &[Value]) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in log.iter().filter(|r| is_verb(r, "deleteInstances")) {
        if r["carried_out"] != true {
            continue;
        }
        for vm in body_instances(r) {
            out.entry(vm)
                .or_default()
                .insert(request_id(r).unwrap_or_default());
        }
    }
    out
}

fn is_verb(r: &Value, verb: &str) -> bool {
    r["method"] == "POST"
        && r["path"]
            .as_str()
            .is_some_and(|p| p.ends_with(&format!("/{verb}")))
}

/// The VM names a logged call's body lists (`instances`, by URL).
pub fn body_instances(r: &Value) -> Vec<String> {
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap_or("{}")).unwrap_or_default();
    body["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.as_str()?.rsplit('/').next().map(str::to_owned))
        .collect()
}

/// A logged call's `requestId` query parameter.
pub fn request_id(r: &Value) -> Option<String> {
    r["query"]
        .as_array()?
        .iter()
        .find(|kv| kv[0] == "requestId")
        .and_then(|kv| kv[1].as_str().map(str::to_owned))
}

/// A short name for a logged Compute call: the verb or the collection read.
fn call_kind(r: &Value) -> String {
    let path = r["path"].as_str().unwrap_or_default();
    let mut segs = path.rsplit('/');
    let last = segs.next().unwrap_or_default();
    let kind = match (r["method"].as_str(), segs.next()) {
        (Some("GET"), Some(collection)) => collection,
        _ => last,
    };
    format!("{} {kind}", r["method"].as_str().unwrap_or_default())
}

impl CloudCalls {
    /// Counting only, no faults yet. `seed` drives the AWS proxy's dice.
    pub async fn start(w: &World, seed: u64) -> CloudCalls {
        match &w.gce {
            None => CloudCalls::Aws(FaultProxy::start(&moto_endpoint(), seed).await),
            Some(gce) => CloudCalls::Gce {
                url: gce.url.clone(),
                http: reqwest::Client::new(),
            },
        }
    }

    /// The endpoint the pool must name to go through the faults (`None`:
    /// the world's pool manifest already names it).
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            CloudCalls::Aws(proxy) => Some(&proxy.url),
            CloudCalls::Gce { .. } => None,
        }
    }

    async fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let CloudCalls::Gce { url, http } = self else {
            unreachable!("gce-sim control on an AWS world")
        };
        crate::sim::control_call(http, "gce-sim", url, method, path, body).await
    }

    /// gce-sim's request log (empty on AWS).
    pub async fn log(&self) -> Vec<Value> {
        match self {
            CloudCalls::Aws(_) => Vec::new(),
            CloudCalls::Gce { .. } => self
                .control(reqwest::Method::GET, "/sim/requests", None)
                .await["requests"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        }
    }

    /// A storm: every call refused as throttled (AWS `Throttling`, GCE
    /// `403 rateLimitExceeded`), none carried out.
    pub async fn refuse_everything(&self) {
        match self {
            CloudCalls::Aws(proxy) => proxy.set_faults(AwsFaults {
                throttle_rate: 1.0,
                ..Default::default()
            }),
            CloudCalls::Gce { .. } => {
                self.replace_rules(vec![
                    json!({"times": 0, "action": {"error_preset": "rateLimitExceeded"}}),
                ])
                .await
            }
        }
    }

    /// The mixed weather a pool must still settle in, from `seed`. AWS: 30 %
    /// throttled, 10 % 5xx, 15 % carried out and then answered 500. GCE:
    /// half those rates (throttled, 5xx, connection dropped after the
    /// work) and the first and then 10 % of the deleteInstances Operations
    /// failing (`DONE` with an error). Halved because one GCE terminate is
    /// 4-6 Compute calls (listing, deleteInstances, its polls, listing),
    /// each of which the dice hit and a refused POST waits for the next
    /// reconcile, against 1-2 calls on AWS: at AWS's rates a single GCE
    /// retirement took up to 2 minutes of reconcile back-off (measured).
    pub async fn mixed(&self, seed: u64) {
        match self {
            CloudCalls::Aws(proxy) => proxy.set_faults(AwsFaults {
                throttle_rate: 0.3,
                error_rate: 0.1,
                error_after_forward_rate: 0.15,
                ..Default::default()
            }),
            CloudCalls::Gce { .. } => {
                let failure = json!({"code": "RESOURCE_NOT_READY",
                    "message": "The resource is not ready", "http_status": 400,
                    "http_message": "BAD REQUEST"});
                self.replace_rules(vec![
                    // The first for certain, whatever the dice say after.
                    json!({"path_contains": "/deleteInstances",
                           "action": {"fail_operation": failure.clone()}}),
                    json!({"path_contains": "/deleteInstances", "times": 0, "probability": 0.1,
                           "seed": seed ^ 1, "action": {"fail_operation": failure}}),
                    json!({"times": 0, "probability": 0.15, "seed": seed ^ 2,
                           "action": {"error_preset": "rateLimitExceeded"}}),
                    json!({"times": 0, "probability": 0.05, "seed": seed ^ 3,
                           "action": {"error_preset": "backendError"}}),
                    json!({"times": 0, "probability": 0.075, "seed": seed ^ 4, "after": true,
                           "action": "drop"}),
                ])
                .await
            }
        }
    }

    async fn replace_rules(&self, rules: Vec<Value>) {
        self.control(reqwest::Method::DELETE, "/sim/faults", None)
            .await;
        for rule in rules {
            self.control(reqwest::Method::POST, "/sim/faults", Some(rule))
                .await;
        }
    }

    pub async fn totals(&self) -> CallTotals {
        match self {
            CloudCalls::Aws(proxy) => {
                let t = proxy.total();
                CallTotals {
                    requests: t.requests,
                    carried_out: t.forwarded,
                }
            }
            CloudCalls::Gce { .. } => {
                let log = self.log().await;
                CallTotals {
                    requests: log.len() as u64,
                    carried_out: log.iter().filter(|r| r["carried_out"] == true).count() as u64,
                }
            }
        }
    }

    /// Counts per kind of call: AWS `Action requests(throttled/5xx/500-after)`,
    /// GCE `METHOD kind requests(faulted/carried out)` and per fault rule
    /// its firings out of the matching requests its dice were thrown for.
    pub async fn counts(&self) -> String {
        match self {
            CloudCalls::Aws(proxy) => aws_counts(proxy),
            CloudCalls::Gce { .. } => {
                let mut by: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
                for r in self.log().await {
                    let e = by.entry(call_kind(&r)).or_default();
                    e.0 += 1;
                    e.1 += u64::from(!r["fault"].is_null());
                    e.2 += u64::from(r["carried_out"] == true);
                }
                let parts: Vec<String> = by
                    .iter()
                    .map(|(k, (n, f, c))| format!("{k} {n}({f}/{c})"))
                    .collect();
                // And each rule's firings out of the requests it matched.
                let rules = self
                    .control(reqwest::Method::GET, "/sim/faults", None)
                    .await;
                let fired: Vec<String> = rules["rules"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| {
                        let action = match &r["action"] {
                            Value::String(a) => a.clone(),
                            a => a
                                .as_object()
                                .and_then(|o| o.keys().next().cloned())
                                .unwrap_or_default(),
                        };
                        format!("{action} fired {}/{}", r["fired"], r["rolled"])
                    })
                    .collect();
                format!("{}; rules: {}", parts.join(", "), fired.join(", "))
            }
        }
    }

    /// Every terminating call: AWS `instance:moto status->answered`, GCE
    /// `vm:requestId prefix:status(+ carried out)`.
    pub async fn terminate_log(&self) -> String {
        match self {
            CloudCalls::Aws(proxy) => super::cloud::terminate_log(proxy),
            CloudCalls::Gce { .. } => {
                let log = self.log().await;
                let parts: Vec<String> = log
                    .iter()
                    .filter(|r| is_verb(r, "deleteInstances"))
                    .map(|r| {
                        let rid = request_id(r).unwrap_or_default();
                        format!(
                            "{}:{}:{}{}",
                            body_instances(r).join("+"),
                            rid.get(..8).unwrap_or(&rid),
                            r["status"].as_u64().map_or("-".into(), |s| s.to_string()),
                            if r["carried_out"] == true { "+" } else { "" }
                        )
                    })
                    .collect();
                parts.join(" ")
            }
        }
    }

    /// The cloud-side invariants of a scale-in from `from` to `to`: the
    /// group's ([`assert_group_invariants`]), and exactly one terminate
    /// carried out per instance gone, shrinking the group. On GCE: the
    /// carried-out deleteInstances calls name exactly the VMs gone, each
    /// under one `requestId`, and nothing was recreated, abandoned or resized.
    pub async fn assert_invariants(&self, h: &GroupHistory, from: i32, to: i32) {
        match self {
            CloudCalls::Aws(proxy) => assert_cloud_invariants(h, proxy, from, to),
            CloudCalls::Gce { .. } => {
                assert_group_invariants(h, from, to);
                let log = self.log().await;
                let gone: BTreeSet<String> =
                    h.gone().iter().map(|id| h.names[id].clone()).collect();
                let executed = carried_out_deletes(&log);
                let calls = self.terminate_log().await;
                assert_eq!(
                    executed.keys().cloned().collect::<BTreeSet<_>>(),
                    gone,
                    "deletes carried out by gce-sim vs VMs gone; calls: {calls}"
                );
                assert!(
                    executed.values().all(|ids| ids.len() == 1),
                    "a VM was deleted twice: {executed:?}; calls: {calls}"
                );
                let others: Vec<&Value> = log
                    .iter()
                    .filter(|r| r["carried_out"] == true)
                    .filter(|r| {
                        ["recreateInstances", "abandonInstances", "resize"]
                            .iter()
                            .any(|v| is_verb(r, v))
                    })
                    .collect();
                assert!(others.is_empty(), "a scale-in only deletes: {others:#?}");
            }
        }
    }
}
