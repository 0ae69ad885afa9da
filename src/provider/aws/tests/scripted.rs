//! The retry and re-check rules of the provider's calls against the
//! scripted endpoint: throttling retried, server errors and timeouts not
//! retried but resolved by reading the instance back, refusals and missing
//! groups told apart, credentials never echoed.

use std::sync::Arc;

use super::fake_asg::{
    FakeAsg, Reply, aws_error, instance_details, no_groups, no_instances, set_desired_ok,
    terminated_ok,
};
use super::*;

const HTML_500: &str = "<!doctype html><html><title>500 Internal Server Error</title></html>";

const I: &str = "i-0123456789abcdef0";

#[tokio::test]
async fn terminate_retries_throttling_then_succeeds_once() {
    let fake = FakeAsg::start().await;
    fake.on(
        "DescribeAutoScalingInstances",
        vec![instance_details(I, "ci-clients", "InService")],
    );
    let throttled = Reply::Error(400, aws_error("Throttling", "Rate exceeded"));
    fake.on(
        "TerminateInstanceInAutoScalingGroup",
        vec![throttled.clone(), throttled, terminated_ok()],
    );
    let p = fake.provider().await;
    assert_eq!(
        p.terminate_instance(I, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    assert_eq!(fake.calls("TerminateInstanceInAutoScalingGroup"), 3);
}

#[tokio::test]
async fn terminate_gives_up_on_persistent_throttling_as_throttled() {
    let fake = FakeAsg::start().await;
    fake.on(
        "DescribeAutoScalingInstances",
        vec![instance_details(I, "ci-clients", "InService")],
    );
    fake.on(
        "TerminateInstanceInAutoScalingGroup",
        vec![Reply::Error(400, aws_error("Throttling", "Rate exceeded"))],
    );
    let p = fake.provider().await;
    let err = p.terminate_instance(I, true).await.unwrap_err();
    assert!(matches!(err, ProviderError::Throttled { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(fake.calls("TerminateInstanceInAutoScalingGroup"), 4);
}

#[tokio::test]
async fn terminate_server_error_is_not_retried_and_resolved_by_reading_back() {
    let fake = FakeAsg::start().await;
    // The 500 hid a termination that happened: the read-back shows it.
    fake.on(
        "DescribeAutoScalingInstances",
        vec![
            instance_details(I, "ci-clients", "InService"),
            instance_details(I, "ci-clients", "Terminating"),
        ],
    );
    fake.on(
        "TerminateInstanceInAutoScalingGroup",
        vec![Reply::Error(500, HTML_500.into()), terminated_ok()],
    );
    let p = fake.provider().await;
    assert_eq!(
        p.terminate_instance(I, true).await,
        Ok(TerminateOutcome::AlreadyTerminating)
    );
    assert_eq!(fake.calls("TerminateInstanceInAutoScalingGroup"), 1);
}

#[tokio::test]
async fn terminate_server_error_with_instance_still_in_service_is_an_error() {
    let fake = FakeAsg::start().await;
    fake.on(
        "DescribeAutoScalingInstances",
        vec![instance_details(I, "ci-clients", "InService")],
    );
    fake.on(
        "TerminateInstanceInAutoScalingGroup",
        vec![Reply::Error(500, HTML_500.into()), terminated_ok()],
    );
    let p = fake.provider().await;
    let err = p.terminate_instance(I, true).await.unwrap_err();
    assert!(
        matches!(&err, ProviderError::Api { code, .. } if code == "HTTP500"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("<html>"), "{err}");
    assert_eq!(fake.calls("TerminateInstanceInAutoScalingGroup"), 1);
    assert_eq!(fake.calls("DescribeAutoScalingInstances"), 2);
}

#[tokio::test]
async fn terminate_timeout_is_not_retried() {
    let fake = FakeAsg::start().await;
    fake.on(
        "DescribeAutoScalingInstances",
        vec![instance_details(I, "ci-clients", "InService")],
    );
    fake.on(
        "TerminateInstanceInAutoScalingGroup",
        vec![Reply::Hang, terminated_ok()],
    );
    let p = fake.provider().await;
    let err = p.terminate_instance(I, true).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
    assert_eq!(fake.calls("TerminateInstanceInAutoScalingGroup"), 1);
}

#[tokio::test]
async fn terminate_skips_instances_already_leaving_or_elsewhere() {
    let cases = [
        (
            instance_details(I, "ci-clients", "Terminating:Wait"),
            TerminateOutcome::AlreadyTerminating,
        ),
        (
            instance_details(I, "ci-clients", "Terminated"),
            TerminateOutcome::AlreadyTerminating,
        ),
        (
            instance_details(I, "ci-clients", "Detaching"),
            TerminateOutcome::NotInGroup,
        ),
        (
            instance_details(I, "someone-elses-group", "InService"),
            TerminateOutcome::NotInGroup,
        ),
        (no_instances(), TerminateOutcome::NotInGroup),
    ];
    for (describe, want) in cases {
        let fake = FakeAsg::start().await;
        fake.on("DescribeAutoScalingInstances", vec![describe]);
        fake.on("TerminateInstanceInAutoScalingGroup", vec![terminated_ok()]);
        let p = fake.provider().await;
        assert_eq!(p.terminate_instance(I, true).await, Ok(want));
        assert_eq!(fake.calls("TerminateInstanceInAutoScalingGroup"), 0);
    }
}

#[tokio::test]
async fn terminate_refusal_at_min_size_is_refused() {
    let fake = FakeAsg::start().await;
    fake.on(
        "DescribeAutoScalingInstances",
        vec![instance_details(I, "ci-clients", "InService")],
    );
    fake.on(
        "TerminateInstanceInAutoScalingGroup",
        vec![Reply::Error(
            400,
            aws_error(
                "ValidationError",
                "Currently, desiredSize equals minSize (1). Terminating instance without replacement will violate group&apos;s min size constraint.",
            ),
        )],
    );
    let p = fake.provider().await;
    let err = p.terminate_instance(I, true).await.unwrap_err();
    assert!(matches!(err, ProviderError::Refused { .. }), "{err:?}");
    assert!(err.to_string().contains("min size"), "{err}");
}

#[tokio::test]
async fn set_desired_capacity_retries_throttling() {
    let fake = FakeAsg::start().await;
    let throttled = Reply::Error(400, aws_error("Throttling", "Rate exceeded"));
    fake.on(
        "SetDesiredCapacity",
        vec![throttled.clone(), throttled, set_desired_ok()],
    );
    let p = fake.provider().await;
    assert_eq!(p.set_desired_capacity(4).await, Ok(()));
    assert_eq!(fake.calls("SetDesiredCapacity"), 3);
}

#[tokio::test]
async fn set_desired_capacity_on_missing_group_behind_a_500_is_group_not_found() {
    let fake = FakeAsg::start().await;
    fake.on(
        "SetDesiredCapacity",
        vec![Reply::Error(500, HTML_500.into())],
    );
    fake.on("DescribeAutoScalingGroups", vec![no_groups()]);
    let p = fake.provider().await;
    assert_eq!(
        p.set_desired_capacity(4).await,
        Err(ProviderError::GroupNotFound {
            group: "ci-clients".into()
        })
    );
}

#[tokio::test]
async fn invalid_token_is_unauthorized_without_the_key_id() {
    let fake = FakeAsg::start().await;
    fake.on(
        "DescribeAutoScalingGroups",
        vec![Reply::Error(
            403,
            aws_error(
                "InvalidClientTokenId",
                "The security token included in the request is invalid. Key AKIAIOSFODNN7EXAMPLE",
            ),
        )],
    );
    let p = fake.provider().await;
    let err = p.describe_group().await.unwrap_err();
    assert!(matches!(err, ProviderError::Unauthorized { .. }), "{err:?}");
    assert!(!err.to_string().contains("IOSFODNN7EXAMPLE"), "{err}");
    assert_eq!(fake.calls("DescribeAutoScalingGroups"), 1, "not retried");
}

#[tokio::test]
async fn unreachable_endpoint_is_unreachable() {
    // Bind then drop, so the port is (almost certainly) closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let fake = FakeAsg {
        endpoint: format!("http://127.0.0.1:{port}"),
        script: Arc::default(),
    };
    let p = fake.provider().await;
    let err = p.describe_group().await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
}
