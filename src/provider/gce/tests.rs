//! The pure parts of the GCE provider: lifecycle folding, request IDs, the
//! owner word, error classification. Sections (§N) refer to
//! `shared/reference/gce-mig.md`.

use super::errors::{GceError, classify_http, operation_error};
use super::mapping::{
    Intent, lifecycle, owner_from_description, request_id, request_id_attempt, zone_of,
};
use super::*;
use crate::provider::ProviderError;

#[test]
fn only_running_with_no_action_is_in_service() {
    assert_eq!(lifecycle("NONE", "RUNNING"), Lifecycle::InService);
    for (action, status, want) in [
        ("DELETING", "STOPPING", Lifecycle::Terminating),
        ("DELETING", "", Lifecycle::Terminating),
        ("RECREATING", "STOPPING", Lifecycle::Terminating),
        ("ABANDONING", "RUNNING", Lifecycle::Detaching),
        ("CREATING", "PROVISIONING", Lifecycle::Pending),
        ("CREATING", "", Lifecycle::Pending),
        ("CREATING_WITHOUT_RETRIES", "STAGING", Lifecycle::Pending),
        ("VERIFYING", "RUNNING", Lifecycle::Pending),
        ("NONE", "STAGING", Lifecycle::Pending),
        ("NONE", "STOPPED", Lifecycle::Standby),
        ("NONE", "SUSPENDED", Lifecycle::Standby),
        (
            "RESTARTING",
            "RUNNING",
            Lifecycle::Other("RESTARTING/RUNNING".into()),
        ),
        (
            "NONE",
            "REPAIRING",
            Lifecycle::Other("NONE/REPAIRING".into()),
        ),
    ] {
        assert_eq!(lifecycle(action, status), want, "{action}/{status}");
    }
    assert!(lifecycle("RECREATING", "RUNNING").is_terminating());
}

#[test]
fn request_ids_are_stable_uuids_per_vm_and_intent() {
    let g = "projects/p/zones/us-central1-a/instanceGroupManagers/ci";
    let a = request_id(g, "123", Intent::Shrink);
    assert_eq!(a, request_id(g, "123", Intent::Shrink), "deterministic");
    // A retry after a failed Operation: a new ID per attempt, attempt 0 the
    // ID earlier builds sent.
    assert_eq!(a, request_id_attempt(g, "123", Intent::Shrink, 0));
    let a1 = request_id_attempt(g, "123", Intent::Shrink, 1);
    assert_ne!(a, a1);
    assert_ne!(a1, request_id_attempt(g, "123", Intent::Shrink, 2));
    assert_eq!(a1, request_id_attempt(g, "123", Intent::Shrink, 1));
    assert_ne!(a, request_id(g, "123", Intent::Replace));
    assert_ne!(a, request_id(g, "124", Intent::Shrink));
    assert_ne!(
        a,
        request_id(
            "projects/p/zones/us-central1-b/instanceGroupManagers/ci",
            "123",
            Intent::Shrink
        )
    );
    // 8-4-4-4-12 lower-case hex, version 8, RFC variant, not all-zero (§1.4).
    let parts: Vec<&str> = a.split('-').collect();
    assert_eq!(
        parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
        [8, 4, 4, 4, 12],
        "{a}"
    );
    assert!(
        a.chars()
            .all(|c| c == '-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert!(parts[2].starts_with('8'), "{a}");
    assert!(matches!(&parts[3][..1], "8" | "9" | "a" | "b"), "{a}");
    // Pinned: a change here would re-send a completed call under a new ID
    // after an upgrade.
    assert_eq!(a, request_id(g, "123", Intent::Shrink));
    assert_eq!(a.len(), 36);
}

#[test]
fn the_owner_is_one_word_of_the_description() {
    assert_eq!(
        owner_from_description("CI clients. nomadpool.dev/pool=ci/linux managed by ops"),
        Some("ci/linux".into())
    );
    assert_eq!(owner_from_description("CI clients"), None);
    assert_eq!(owner_from_description("nomadpool.dev/poolx=ci/a"), None);
    assert_eq!(
        owner_from_description("nomadpool.dev/pool="),
        Some(String::new())
    );
}

#[test]
fn zones_come_from_instance_urls() {
    assert_eq!(
        zone_of(
            "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-b/instances/ci-x"
        ),
        Some("us-central1-b".into())
    );
    assert_eq!(zone_of("ci-x"), None);
}

#[test]
fn http_errors_are_classified_by_status_and_reason() {
    let g = "ci";
    assert!(matches!(
        classify_http(403, Some("rateLimitExceeded"), "Quota exceeded", g),
        GceError::RateLimited { .. }
    ));
    assert!(matches!(
        classify_http(429, None, "Too many", g),
        GceError::RateLimited { .. }
    ));
    assert!(matches!(
        classify_http(
            403,
            Some("forbidden"),
            "Required 'compute.instanceGroupManagers.update'",
            g
        ),
        GceError::Forbidden { status: 403, .. }
    ));
    assert_eq!(
        classify_http(
            404,
            Some("notFound"),
            "The resource 'projects/p/zones/z/instanceGroupManagers/ci' was not found",
            g
        ),
        GceError::GroupNotFound { group: "ci".into() }
    );
    assert!(matches!(
        classify_http(
            404,
            Some("notFound"),
            "The resource 'projects/p/zones/z/operations/op' was not found",
            g
        ),
        GceError::Rejected { status: 404, .. }
    ));
    assert!(matches!(
        classify_http(503, Some("backendError"), "Backend Error", g),
        GceError::Server { status: 503, .. }
    ));
    assert!(classify_http(503, None, "x", g).is_transient());
    assert!(classify_http(403, Some("rateLimitExceeded"), "x", g).is_transient());
    assert!(!classify_http(400, Some("invalid"), "x", g).is_transient());
    assert!(!classify_http(409, Some("conflict"), "x", g).is_transient());
}

#[test]
fn gce_errors_map_onto_the_traits_retry_classes() {
    let p = |e: GceError| ProviderError::from(e);
    assert!(p(classify_http(403, Some("rateLimitExceeded"), "q", "ci")).is_retryable());
    assert!(p(classify_http(503, None, "b", "ci")).is_retryable());
    assert!(matches!(
        p(GceError::AutoscalerOn {
            group: "ci".into(),
            autoscaler: "ci-as".into()
        }),
        ProviderError::Refused { ref message } if message.contains("mode ON") && message.contains("ci-as")
    ));
    assert!(!p(classify_http(403, Some("forbidden"), "iam", "ci")).is_retryable());
    let failed = |status| GceError::OperationFailed {
        operation: "op".into(),
        code: "CONDITION_NOT_MET".into(),
        http_status: status,
        message: "m".into(),
    };
    assert!(!p(failed(412)).is_retryable());
    assert!(p(failed(503)).is_retryable());
}

#[test]
fn a_done_operation_with_an_error_is_a_failure() {
    use google_cloud_compute_v1::model::Operation;
    use google_cloud_compute_v1::model::operation::{Error, error::Errors};
    let ok = Operation::new().set_name("op-1");
    assert_eq!(operation_error(&ok, &[]), None);
    let failed = Operation::new()
        .set_name("op-2")
        .set_http_error_status_code(412)
        .set_http_error_message("PRECONDITION FAILED")
        .set_error(
            Error::new().set_errors([Errors::new()
                .set_code("CONDITION_NOT_MET")
                .set_message("not a member")]),
        );
    assert_eq!(
        operation_error(&failed, &[]),
        Some(GceError::OperationFailed {
            operation: "op-2".into(),
            code: "CONDITION_NOT_MET".into(),
            http_status: 412,
            message: "not a member".into(),
        })
    );
}

#[test]
fn service_account_keys_never_show_in_debug_output() {
    let key = r#"{"type":"service_account","client_email":"npo@p.iam.gserviceaccount.com","private_key_id":"abcdef0123456789","private_key":"-----BEGIN PRIVATE KEY-----\nMIIEvQ\n-----END PRIVATE KEY-----\n"}"#;
    let c = GceCredentials::ServiceAccountKey(key.into());
    let out = format!("{c:?}");
    assert!(out.contains("npo@p.iam.gserviceaccount.com"), "{out}");
    assert!(!out.contains("MIIEvQ"), "{out}");
    assert!(!out.contains("abcdef0123456789"), "{out}");
    let secrets = c.secrets();
    assert!(secrets.iter().any(|s| s.contains("MIIEvQ")));
    assert!(secrets.iter().any(|s| s == "abcdef0123456789"));
}

/// One template read through another host name, or as a relative path,
/// is the same launch spec: a host difference must never read as drift.
#[test]
fn instance_templates_compare_by_their_path() {
    use super::super::LaunchSpec;
    let path = "projects/p/global/instanceTemplates/ci-v2";
    for url in [
        format!("https://www.googleapis.com/compute/v1/{path}"),
        format!("https://compute.googleapis.com/compute/v1/{path}"),
        path.to_owned(),
    ] {
        assert_eq!(
            mapping::instance_template(&url),
            LaunchSpec::InstanceTemplate(path.into())
        );
    }
    assert_ne!(
        mapping::instance_template("projects/p/global/instanceTemplates/ci-v1"),
        mapping::instance_template(path)
    );
}
