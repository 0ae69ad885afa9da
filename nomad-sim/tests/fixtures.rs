//! Pins the simulator's JSON encoding to the JSON examples in Nomad's own
//! docs (`tests/fixtures/nomad/`, see its README for sources).
//!
//! The operator's Nomad client is pinned to the same files by its own tests.
//! That duplication is deliberate: nomad-sim has its own encoding of the wire
//! format (`src/wire.rs`) and does not reuse the operator's types, so two
//! independent encodings checked against one source catch a misspelled field
//! or a wrong JSON type on either side.
//!
//! The comparison is on shape, not values: same keys and the same JSON type,
//! recursively. Deviations are listed explicitly below, each with its reason:
//! * EXTRA: fields that Nomad's current code sends but the (older) docs
//!   samples do not show (see shared/reference/nomad-api.md §1.2, §1.3, §7);
//! * NULLABLE: Go maps, slices and pointers that the docs sample happens to
//!   fill and a simulated node leaves unset (`null`), or vice versa.

mod common;

use common::*;
use serde_json::{Value, json};

fn fixture(name: &str) -> Value {
    let p = format!(
        "{}/../tests/fixtures/nomad/{name}",
        std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")
    );
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    let first = text.lines().next().unwrap();
    if name.ends_with(".ndjson") {
        serde_json::from_str(first).unwrap()
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

/// Object fields that are Go maps: their keys are data, so only the shape of
/// their values is compared.
const MAPS: &[&str] = &[
    "Attributes",
    "Meta",
    "Links",
    "Drivers",
    "HostVolumes",
    "HostNetworks",
    "TaskStates",
    "TaskResources",
    "Details",
    "NodesAvailable",
    "Scores",
];
/// Opaque driver configuration: free-form in Nomad.
const OPAQUE: &[&str] = &["Config"];

fn ty(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

struct Rules<'a> {
    extra: &'a [&'a str],
    nullable: &'a [&'a str],
}

fn compare(fx: &Value, sim: &Value, path: &str, field: &str, r: &Rules, out: &mut Vec<String>) {
    if OPAQUE.contains(&field) {
        return;
    }
    if ty(fx) != ty(sim) {
        let null_ok = (fx.is_null() || sim.is_null()) && r.nullable.contains(&path);
        if !null_ok {
            out.push(format!("{path}: docs {} vs sim {}", ty(fx), ty(sim)));
        }
        return;
    }
    match (fx, sim) {
        (Value::Object(a), Value::Object(b)) if MAPS.contains(&field) => {
            if let (Some(x), Some(y)) = (a.values().next(), b.values().next()) {
                compare(x, y, &format!("{path}.*"), "", r, out);
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(w) => compare(v, w, &p, k, r, out),
                    None => out.push(format!("{p}: missing in sim")),
                }
            }
            for k in b.keys() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if !a.contains_key(k) && !r.extra.contains(&p.as_str()) {
                    out.push(format!("{p}: extra in sim (not in docs, not allow-listed)"));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if let (Some(x), Some(y)) = (a.first(), b.first()) {
                compare(x, y, &format!("{path}[]"), field, r, out);
            }
        }
        _ => {}
    }
}

fn assert_shape(name: &str, fx: &Value, sim: &Value, r: Rules) {
    let mut out = Vec::new();
    compare(fx, sim, "", "", &r, &mut out);
    assert!(
        out.is_empty(),
        "{name}: shape differs from the docs:\n  {}\n sim: {sim:#}",
        out.join("\n  ")
    );
}

/// Fields of `structs.Node` in the code that the docs sample does not show.
const NODE_EXTRA: &[&str] = &[
    "CgroupParent",
    "CSIControllerPlugins",
    "CSINodePlugins",
    "GCVolumesOnNodeGC",
    "NodeMaxAllocs",
    "IdentitySigningKeyID",
    "LastMissedHeartbeatIndex",
    "LastAllocUpdateIndex",
    "NodeResources.Cpu.TotalCpuCores",
    "NodeResources.Cpu.ReservableCpuCores",
    "NodeResources.MinDynamicPort",
    "NodeResources.MaxDynamicPort",
    "NodeResources.NodeNetworks[].Speed",
    "NodeResources.Networks[].DNS",
    "ReservedResources.Cpu.ReservedCpuCores",
];
const NODE_NULLABLE: &[&str] = &[
    "HostVolumes",
    "HostNetworks",
    "Links",
    "NodeResources.Devices",
    "NodeResources.NodeNetworks[].Addresses",
];

#[tokio::test]
async fn node_read_matches_docs_shape() {
    let t = start().await;
    let n = t
        .nodes(json!({"count": 1, "meta": {"connect.log_level": "info"}}))
        .await;
    t.drain(
        &n[0],
        json!({"DrainSpec": {"Deadline": HOUR_NS}, "Meta": {"message": "node maintenance"}}),
    )
    .await;
    t.advance(0.0).await;
    let sim = t.node(&n[0]).await;
    assert_shape(
        "node-read.json",
        &fixture("node-read.json"),
        &sim,
        Rules {
            extra: NODE_EXTRA,
            nullable: NODE_NULLABLE,
        },
    );
}

#[tokio::test]
async fn node_list_stub_matches_docs_shape() {
    let t = start().await;
    t.nodes(json!({"count": 1})).await;
    let sim = t.get_json("/v1/nodes?os=true").await;
    assert_shape(
        "node-list.json",
        &fixture("node-list.json"),
        &sim,
        // HostVolumes is in the server's NodeListStub (reference §1.1).
        Rules {
            extra: &["[].HostVolumes"],
            nullable: &[],
        },
    );
}

const ALLOC_EXTRA: &[&str] = &[
    "[].NodeName",
    "[].PreemptedAllocations",
    "[].PreemptedByAllocation",
    "[].DeploymentStatus.Canary",
    "[].DeploymentStatus.Timestamp",
    "[].DesiredTransition.Reschedule",
    "[].DesiredTransition.ForceReschedule",
    "[].DesiredTransition.NoShutdownDelay",
    "[].DesiredTransition.MigrateDisablePlacement",
    "[].Job.NodePool",
    // structs.TaskGroup fields newer than the sample (nomad/structs/group.go,
    // structs.go at v1.11.1): the canonical `disconnect` block (null when the
    // group sets none) and the deprecated `max_client_disconnect` pointer.
    "[].Job.TaskGroups[].Disconnect",
    "[].Job.TaskGroups[].MaxClientDisconnect",
    "[].TaskStates.*.TaskHandle",
];
const ALLOC_NULLABLE: &[&str] = &[
    "[].Resources.Networks",
    "[].TaskResources.*.Networks",
    "[].Job.TaskGroups[].Tasks[].Resources.Networks",
    "[].Job.TaskGroups[].Tasks[].Services",
    "[].Metrics.NodesAvailable",
    "[].Metrics.Scores",
    // Zero times: the 2018 sample shows "0001-01-01T00:00:00Z", the 2021
    // allocations sample shows null; the simulator sends null.
    "[].TaskStates.*.FinishedAt",
    "[].TaskStates.*.LastRestart",
];

async fn running_service(t: &T) -> String {
    let n = t.nodes(json!({"count": 1})).await;
    t.allocs(json!({"type": "service", "job_id": "webapp", "node_id": n[0]}))
        .await;
    t.advance(1.0).await;
    n[0].clone()
}

#[tokio::test]
async fn node_allocations_match_docs_shape() {
    let t = start().await;
    let n = running_service(&t).await;
    let sim = t.get_json(&format!("/v1/node/{n}/allocations")).await;
    assert_shape(
        "node-allocations.json",
        &fixture("node-allocations.json"),
        &sim,
        Rules {
            extra: ALLOC_EXTRA,
            nullable: ALLOC_NULLABLE,
        },
    );
    // /v1/allocation/:id has the same encoding.
    let id = sim[0]["ID"].as_str().unwrap();
    let one = t.alloc(id).await;
    assert_shape(
        "node-allocations.json[0]",
        &fixture("node-allocations.json"),
        &json!([one]),
        Rules {
            extra: ALLOC_EXTRA,
            nullable: ALLOC_NULLABLE,
        },
    );
}

#[tokio::test]
async fn allocations_list_matches_docs_shape() {
    let t = start().await;
    running_service(&t).await;
    let sim = t.get_json("/v1/allocations").await;
    assert_shape(
        "allocations-list.json",
        &fixture("allocations-list.json"),
        &sim,
        Rules {
            extra: &[
                "[].NextAllocation",
                "[].DesiredTransition.NoShutdownDelay",
                "[].DesiredTransition.MigrateDisablePlacement",
            ],
            nullable: &[],
        },
    );
}

#[tokio::test]
async fn write_responses_match_docs_shape() {
    let t = start().await;
    let n = running_service(&t).await;
    let n2 = t.nodes(json!({"count": 1})).await;
    // The docs' own sample payloads are accepted as they are.
    let r = t
        .post(
            &format!("/v1/node/{n}/drain"),
            fixture("node-drain-request.json"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let sim: Value = r.json().await.unwrap();
    assert_shape(
        "node-drain-response.json",
        &fixture("node-drain-response.json"),
        &sim,
        Rules {
            extra: &[],
            nullable: &[],
        },
    );
    let r = t
        .post(
            &format!("/v1/node/{}/eligibility", n2[0]),
            fixture("node-eligibility-request.json"),
        )
        .await;
    assert_eq!(r.status(), 200);
    let sim: Value = r.json().await.unwrap();
    assert_shape(
        "node-eligibility-response.json",
        &fixture("node-eligibility-response.json"),
        &sim,
        Rules {
            extra: &[],
            nullable: &[],
        },
    );
    let sim = t.post_ok(&format!("/v1/node/{n}/purge"), json!({})).await;
    assert_shape(
        "node-purge-response.json",
        &fixture("node-purge-response.json"),
        &sim,
        Rules {
            extra: &[],
            nullable: &[],
        },
    );
}

#[tokio::test]
async fn event_matches_docs_shape() {
    let t = start().await;
    let r = t.get("/v1/event/stream?topic=Node").await;
    let n = t.nodes(json!({"count": 1})).await;
    let mut r = r;
    let mut buf = Vec::new();
    let line = loop {
        let c = r.chunk().await.unwrap().unwrap();
        buf.extend_from_slice(&c);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(l) = text.lines().find(|l| l.contains("NodeRegistration")) {
            break l.to_string();
        }
    };
    let sim: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(sim["Events"][0]["Key"], n[0].as_str());
    let prefixed = |v: &[&str]| -> Vec<String> {
        v.iter()
            .map(|f| format!("Events[].Payload.Node.{f}"))
            .collect()
    };
    // The 2020 docs sample predates NodePool, LastDrain, HostNetworks and
    // sends neither SecretID nor CgroupParent; the code sends all of them.
    let mut extra = prefixed(NODE_EXTRA);
    extra.extend(prefixed(&[
        "NodePool",
        "LastDrain",
        "HostNetworks",
        "SecretID",
    ]));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let nullable = prefixed(NODE_NULLABLE);
    let nullable: Vec<&str> = nullable.iter().map(String::as_str).collect();
    assert_shape(
        "event-node-registration.ndjson",
        &fixture("event-node-registration.ndjson"),
        &sim,
        Rules {
            extra: &extra,
            nullable: &nullable,
        },
    );
}

/// The comparison itself catches what it is for.
#[test]
fn shape_comparison_catches_misspellings_and_type_changes() {
    let fx = fixture("node-drain-response.json");
    let none = || Rules {
        extra: &[],
        nullable: &[],
    };
    let mut out = Vec::new();
    compare(
        &fx,
        &json!({"EvalCreateIndex": 0, "EvalIds": null, "Index": 1, "NodeModifyIndex": 1}),
        "",
        "",
        &none(),
        &mut out,
    );
    assert_eq!(out.len(), 2, "{out:?}"); // EvalIDs missing, EvalIds extra
    let mut out = Vec::new();
    compare(
        &fx,
        &json!({"EvalCreateIndex": 0, "EvalIDs": null, "Index": "1", "NodeModifyIndex": 1}),
        "",
        "",
        &none(),
        &mut out,
    );
    assert_eq!(out, vec!["Index: docs number vs sim string".to_string()]);
    let mut out = Vec::new();
    compare(
        &fixture("node-read.json"),
        &json!({}),
        "",
        "",
        &none(),
        &mut out,
    );
    assert!(out.len() > 20);
}
