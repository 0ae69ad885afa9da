//! Unit tests for the AWS provider: pure mappings, and the retry and
//! re-check rules of `terminate_instance` against a scripted in-process HTTP
//! server (moto cannot throttle or fail on cue).
//!
//! The rooms: this file (mappings and error classification), `fake_asg`
//! (the scripted endpoint), `scripted` (calls against it).

mod fake_asg;
mod scripted;

use super::*;

#[test]
fn every_aws_lifecycle_state_maps() {
    use Lifecycle::*;
    let cases: &[(&str, Lifecycle)] = &[
        ("Pending", Pending),
        ("Pending:Wait", Pending),
        ("Pending:Proceed", Pending),
        ("InService", InService),
        ("EnteringStandby", Standby),
        ("Standby", Standby),
        ("Terminating", Terminating),
        ("Terminating:Wait", TerminatingWait),
        ("Terminating:Proceed", Terminating),
        ("Terminated", Terminated),
        ("Detaching", Detaching),
        ("Detached", Detaching),
        ("Warmed:Terminating", Terminating),
        ("Warmed:Terminating:Wait", Terminating),
        ("Warmed:Terminating:Proceed", Terminating),
        ("Warmed:Terminated", Terminated),
        ("Warmed:Pending", Other("Warmed:Pending".into())),
        ("Warmed:Pending:Wait", Other("Warmed:Pending:Wait".into())),
        (
            "Warmed:Pending:Proceed",
            Other("Warmed:Pending:Proceed".into()),
        ),
        ("Warmed:Running", Other("Warmed:Running".into())),
        ("Warmed:Stopped", Other("Warmed:Stopped".into())),
        ("Warmed:Hibernated", Other("Warmed:Hibernated".into())),
        ("Quarantined", Other("Quarantined".into())),
        ("SomethingNew", Other("SomethingNew".into())),
    ];
    for (aws, want) in cases {
        assert_eq!(&lifecycle_from_aws(aws), want, "{aws}");
    }
    // Every state the SDK knows must be covered by the table above.
    for known in aws_sdk_autoscaling::types::LifecycleState::values() {
        assert!(
            cases.iter().any(|(aws, _)| aws == known),
            "LifecycleState {known} has no mapping test"
        );
    }
}

fn classify(code: Option<&str>, message: &str, status: u16) -> ProviderError {
    classify_response(code, message, Some(status), "ci-clients", &[])
}

#[test]
fn throttling_codes_are_throttled() {
    for code in ["Throttling", "ThrottlingException", "RequestLimitExceeded"] {
        let e = classify(Some(code), "Rate exceeded", 400);
        assert_eq!(
            e,
            ProviderError::Throttled {
                message: "Rate exceeded".into()
            }
        );
        assert!(e.is_retryable());
    }
    assert!(matches!(
        classify(None, "", 429),
        ProviderError::Throttled { .. }
    ));
}

#[test]
fn credential_and_permission_codes_are_unauthorized() {
    for code in [
        "AccessDenied",
        "UnrecognizedClient",
        "InvalidClientTokenId",
        "ExpiredToken",
        "SignatureDoesNotMatch",
    ] {
        let e = classify(Some(code), "nope", 403);
        assert!(
            matches!(e, ProviderError::Unauthorized { .. }),
            "{code}: {e:?}"
        );
        assert!(e.to_string().contains(code), "{e}");
        assert!(!e.is_retryable());
    }
    assert!(matches!(
        classify(None, "Forbidden", 403),
        ProviderError::Unauthorized { .. }
    ));
}

#[test]
fn unauthorized_message_never_carries_the_key() {
    let e = classify_response(
        Some("SignatureDoesNotMatch"),
        "Credential=AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/autoscaling/aws4_request secret=s3cr3tValue",
        Some(403),
        "ci-clients",
        &["s3cr3tValue"],
    );
    let text = format!("{e} {e:?}");
    assert!(!text.contains("IOSFODNN7EXAMPLE"), "{text}");
    assert!(!text.contains("s3cr3tValue"), "{text}");
}

#[test]
fn validation_errors_split_into_missing_group_and_refusals() {
    for msg in [
        "AutoScalingGroup name not found - AutoScaling group not found",
        "AutoScalingGroup name not found - null",
        "Group ci-clients not found",
    ] {
        assert_eq!(
            classify(Some("ValidationError"), msg, 400),
            ProviderError::GroupNotFound {
                group: "ci-clients".into()
            },
            "{msg}"
        );
    }
    for msg in [
        "Currently, desiredSize equals minSize (1). Terminating instance without replacement will violate group's min size constraint. Either set shouldDecrementDesiredCapacity flag to false or lower group's min size.",
        "New SetDesiredCapacity value 9 is above max value 5 for the AutoScalingGroup.",
        "Instance Id not found - No managed instance found for instance ID: i-0123456789abcdef0",
    ] {
        let e = classify(Some("ValidationError"), msg, 400);
        assert_eq!(
            e,
            ProviderError::Refused {
                message: msg.into()
            }
        );
        assert!(!e.is_retryable());
    }
}

#[test]
fn busy_group_is_a_retryable_api_error() {
    for code in ["ScalingActivityInProgress", "ResourceContention"] {
        let e = classify(Some(code), "busy", 400);
        assert_eq!(
            e,
            ProviderError::Api {
                code: code.into(),
                message: "busy".into()
            }
        );
        assert!(e.is_retryable());
    }
}

#[test]
fn server_errors_without_a_code_keep_the_status() {
    let e = classify(
        None,
        "<!doctype html><title>500 Internal Server Error</title>",
        500,
    );
    assert!(
        matches!(&e, ProviderError::Api { code, .. } if code == "HTTP500"),
        "{e:?}"
    );
    assert!(e.is_retryable());
}

#[test]
fn missing_credentials_are_unauthorized_and_network_failures_unreachable() {
    for text in [
        "dispatch failure: other: the credential provider was not enabled",
        "dispatch failure: other: an error occurred while loading credentials: no providers in chain provided credentials",
        "dispatch failure: other: credentials provider timed out after 5 seconds",
    ] {
        assert!(
            matches!(
                classify_dispatch_failure(text, &[]),
                ProviderError::Unauthorized { .. }
            ),
            "{text}"
        );
    }
    let e = classify_dispatch_failure(
        "dispatch failure: io error: error trying to connect: tcp connect error: Connection refused (os error 111)",
        &[],
    );
    assert!(matches!(e, ProviderError::Unreachable { .. }), "{e:?}");
    assert!(e.is_retryable());
}

#[test]
fn static_credentials_debug_is_redacted() {
    let creds = AwsCredentials::Static {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI".into(),
        session_token: Some("FwoGZXIvYXdzE".into()),
    };
    let cfg = AwsAsgConfig {
        group_name: "ci".into(),
        region: "us-east-1".into(),
        endpoint: None,
        credentials: creds,
        batch: None,
    };
    let text = format!("{cfg:?} {cfg:#?}");
    assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
    assert!(!text.contains("FwoGZXIvYXdzE"), "{text}");
    assert!(text.contains("AKIDEXAMPLE"), "{text}");
}

#[tokio::test]
async fn provider_debug_shows_no_secret_and_constructor_validates() {
    let p = AwsAutoScalingGroup::new(config("http://127.0.0.1:9".into()))
        .await
        .unwrap();
    let text = format!("{p:?}");
    assert!(!text.contains("fake-secret"), "{text}");
    assert_eq!(p.group(), "asg/ci-clients (us-east-1)");
    assert_eq!(p.kind(), "aws-asg");
    assert_eq!(p.instance_id_attribute(), "unique.platform.aws.instance-id");

    let mut empty = config("http://127.0.0.1:9".into());
    empty.group_name = " ".into();
    assert!(matches!(
        AwsAutoScalingGroup::new(empty).await,
        Err(ProviderError::Refused { .. })
    ));
}

fn config(endpoint: String) -> AwsAsgConfig {
    AwsAsgConfig {
        group_name: "ci-clients".into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint),
        credentials: AwsCredentials::Static {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: "fake-secret".into(),
            session_token: None,
        },
        batch: None,
    }
}
