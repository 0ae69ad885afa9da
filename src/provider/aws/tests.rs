//! Unit tests for the AWS provider: pure mappings, and the retry and
//! re-check rules of `terminate_instance` against a scripted in-process HTTP
//! server (moto cannot throttle or fail on cue).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

// ---- scripted Auto Scaling endpoint ----

/// What the fake endpoint answers. `Hang` never answers, to provoke timeouts.
#[derive(Clone)]
enum Reply {
    Ok(String),
    Error(u16, String),
    Hang,
}

/// Answers each `Action` from a script; the last entry repeats.
#[derive(Default)]
struct Script {
    replies: HashMap<&'static str, Vec<Reply>>,
    calls: HashMap<String, usize>,
}

#[derive(Clone)]
struct FakeAsg {
    endpoint: String,
    script: Arc<Mutex<Script>>,
}

impl FakeAsg {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let fake = FakeAsg {
            endpoint,
            script: Arc::default(),
        };
        let script = fake.script.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve_connection(sock, script.clone()));
            }
        });
        fake
    }

    fn on(&self, action: &'static str, replies: Vec<Reply>) {
        self.script.lock().unwrap().replies.insert(action, replies);
    }

    fn calls(&self, action: &str) -> usize {
        self.script
            .lock()
            .unwrap()
            .calls
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    async fn provider(&self) -> AwsAutoScalingGroup {
        let settings = SdkSettings {
            retry: RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(5))
                .with_max_backoff(Duration::from_millis(20)),
            timeout: TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_millis(500))
                .operation_timeout(Duration::from_secs(5))
                .build(),
        };
        AwsAutoScalingGroup::with_settings(config(self.endpoint.clone()), settings)
            .await
            .unwrap()
    }
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
    }
}

async fn serve_connection(mut sock: TcpStream, script: Arc<Mutex<Script>>) {
    let mut buf = Vec::new();
    loop {
        let header_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let headers = String::from_utf8_lossy(&buf[..header_end]).to_ascii_lowercase();
        let len: usize = headers
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < header_end + len {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = String::from_utf8_lossy(&buf[header_end..header_end + len]).into_owned();
        buf.drain(..header_end + len);
        let action = body
            .split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("")
            .to_owned();
        let reply = {
            let mut s = script.lock().unwrap();
            let n = s.calls.entry(action.clone()).or_default();
            let i = *n;
            *n += 1;
            s.replies
                .get(action.as_str())
                .and_then(|r| r.get(i.min(r.len().saturating_sub(1))).cloned())
                .unwrap_or_else(|| Reply::Error(500, format!("unscripted action {action}")))
        };
        let (status, text) = match reply {
            Reply::Ok(xml) => (200, xml),
            Reply::Error(status, xml) => (status, xml),
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                return;
            }
        };
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: text/xml\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if sock.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

const NS: &str = "https://autoscaling.amazonaws.com/doc/2011-01-01/";

fn aws_error(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
    )
}

fn instance_details(id: &str, group: &str, state: &str) -> Reply {
    Reply::Ok(format!(
        r#"<DescribeAutoScalingInstancesResponse xmlns="{NS}"><DescribeAutoScalingInstancesResult><AutoScalingInstances><member><InstanceId>{id}</InstanceId><InstanceType>t3.micro</InstanceType><AutoScalingGroupName>{group}</AutoScalingGroupName><AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>{state}</LifecycleState><HealthStatus>HEALTHY</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member></AutoScalingInstances></DescribeAutoScalingInstancesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingInstancesResponse>"#
    ))
}

fn no_instances() -> Reply {
    Reply::Ok(format!(
        r#"<DescribeAutoScalingInstancesResponse xmlns="{NS}"><DescribeAutoScalingInstancesResult><AutoScalingInstances/></DescribeAutoScalingInstancesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingInstancesResponse>"#
    ))
}

fn terminated_ok() -> Reply {
    Reply::Ok(format!(
        r#"<TerminateInstanceInAutoScalingGroupResponse xmlns="{NS}"><TerminateInstanceInAutoScalingGroupResult/><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></TerminateInstanceInAutoScalingGroupResponse>"#
    ))
}

fn set_desired_ok() -> Reply {
    Reply::Ok(format!(
        r#"<SetDesiredCapacityResponse xmlns="{NS}"><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></SetDesiredCapacityResponse>"#
    ))
}

fn no_groups() -> Reply {
    Reply::Ok(format!(
        r#"<DescribeAutoScalingGroupsResponse xmlns="{NS}"><DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>"#
    ))
}

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
