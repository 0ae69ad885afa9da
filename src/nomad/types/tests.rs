use super::*;
use serde_json::json;

#[test]
fn unknown_enum_values_are_kept() {
    let s: NodeStatus = serde_json::from_value(json!("hibernating")).unwrap();
    assert_eq!(s, NodeStatus::Other("hibernating".into()));
    assert_eq!(s.to_string(), "hibernating");
    let c: ClientStatus = serde_json::from_value(json!("unknown")).unwrap();
    assert_eq!(c, ClientStatus::Unknown);
    assert!(!c.is_pending_or_running() && !c.is_terminal());
    assert!(c.is_live(), "an unknown allocation may still run");
    let lost: ClientStatus = serde_json::from_value(json!("lost")).unwrap();
    assert!(!lost.is_live());
}

#[test]
fn a_zero_time_reads_as_absent_whether_go_writes_it_as_a_date_or_null() {
    for zero in [json!("0001-01-01T00:00:00Z"), json!(null)] {
        let s: DrainStrategy = serde_json::from_value(json!({
            "Deadline": 0, "ForceDeadline": zero, "IgnoreSystemJobs": false,
            "StartedAt": "2026-01-01T00:00:00Z"
        }))
        .unwrap();
        assert_eq!(s.force_deadline, None);
        assert!(s.started_at.is_some());
    }
}

#[test]
fn drain_strategy_zero_force_deadline_is_none() {
    let s: DrainStrategy = serde_json::from_value(json!({
        "Deadline": -1_000_000_000i64,
        "IgnoreSystemJobs": false,
        "ForceDeadline": "0001-01-01T00:00:00Z",
        "StartedAt": "2021-03-31T12:12:20.213412Z",
    }))
    .unwrap();
    assert!(s.deadline.is_negative());
    assert_eq!(s.force_deadline, None);
    assert_eq!(
        s.started_at,
        Some("2021-03-31T12:12:20.213412Z".parse().unwrap())
    );
}

#[test]
fn null_maps_and_transitions_decode_empty() {
    let m: DrainMetadata = serde_json::from_value(json!({
        "StartedAt": null, "UpdatedAt": "2021-03-31T12:12:20+02:00",
        "Status": "canceled", "AccessorID": "token:x", "Meta": null,
    }))
    .unwrap();
    assert_eq!(m.status, DrainStatus::Canceled);
    assert!(m.meta.is_empty() && m.started_at.is_none());
    assert_eq!(m.updated_at, Some("2021-03-31T10:12:20Z".parse().unwrap()));
}

#[test]
fn drain_request_spec_constructors() {
    assert_eq!(
        DrainSpec::with_deadline(std::time::Duration::from_secs(3600), true).deadline,
        SignedDuration::from_hours(1)
    );
    assert_eq!(
        DrainSpec::with_deadline(std::time::Duration::ZERO, false).deadline,
        SignedDuration::from_nanos(1)
    );
    assert!(DrainSpec::force(false).deadline.is_negative());
    assert!(DrainSpec::no_deadline(false).deadline.is_zero());
}

#[test]
fn gce_instance_from_hostname() {
    let node = Node {
        attributes: BTreeMap::from([
            (ATTR_GCE_ZONE.into(), "us-central1-f".into()),
            (ATTR_GCE_HOSTNAME.into(), "ci-1.c.proj.internal".into()),
            (ATTR_GCE_ID.into(), "123".into()),
        ]),
        ..serde_json::from_value(json!({
            "ID": "n", "Name": "n", "Datacenter": "dc1",
            "SchedulingEligibility": "eligible", "Status": "ready",
            "CreateIndex": 1, "ModifyIndex": 1,
        }))
        .unwrap()
    };
    let gce = node.gce_instance().unwrap();
    assert_eq!(gce.path(), "zones/us-central1-f/instances/ci-1");
    assert_eq!(gce.id.as_deref(), Some("123"));
    assert_eq!(node.aws_instance_id(), None);
}
