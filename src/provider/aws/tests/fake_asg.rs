//! A scripted Auto Scaling endpoint: answers each `Action` from a script
//! (the last entry repeats), can hang to provoke timeouts, and counts the
//! calls, so that retries and re-checks are observable. moto cannot
//! throttle or fail on cue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// What the fake endpoint answers. `Hang` never answers, to provoke timeouts.
#[derive(Clone)]
pub(super) enum Reply {
    Ok(String),
    Error(u16, String),
    Hang,
}

/// Answers each `Action` from a script; the last entry repeats.
#[derive(Default)]
pub(super) struct Script {
    replies: HashMap<&'static str, Vec<Reply>>,
    calls: HashMap<String, usize>,
}

#[derive(Clone)]
pub(super) struct FakeAsg {
    pub(super) endpoint: String,
    pub(super) script: Arc<Mutex<Script>>,
}

impl FakeAsg {
    pub(super) async fn start() -> Self {
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

    pub(super) fn on(&self, action: &'static str, replies: Vec<Reply>) {
        self.script.lock().unwrap().replies.insert(action, replies);
    }

    pub(super) fn calls(&self, action: &str) -> usize {
        self.script
            .lock()
            .unwrap()
            .calls
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    pub(super) async fn provider(&self) -> AwsAutoScalingGroup {
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

pub(super) fn aws_error(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"#
    )
}

pub(super) fn instance_details(id: &str, group: &str, state: &str) -> Reply {
    Reply::Ok(format!(
        r#"<DescribeAutoScalingInstancesResponse xmlns="{NS}"><DescribeAutoScalingInstancesResult><AutoScalingInstances><member><InstanceId>{id}</InstanceId><InstanceType>t3.micro</InstanceType><AutoScalingGroupName>{group}</AutoScalingGroupName><AvailabilityZone>us-east-1a</AvailabilityZone><LifecycleState>{state}</LifecycleState><HealthStatus>HEALTHY</HealthStatus><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member></AutoScalingInstances></DescribeAutoScalingInstancesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingInstancesResponse>"#
    ))
}

pub(super) fn no_instances() -> Reply {
    Reply::Ok(format!(
        r#"<DescribeAutoScalingInstancesResponse xmlns="{NS}"><DescribeAutoScalingInstancesResult><AutoScalingInstances/></DescribeAutoScalingInstancesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingInstancesResponse>"#
    ))
}

pub(super) fn terminated_ok() -> Reply {
    Reply::Ok(format!(
        r#"<TerminateInstanceInAutoScalingGroupResponse xmlns="{NS}"><TerminateInstanceInAutoScalingGroupResult/><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></TerminateInstanceInAutoScalingGroupResponse>"#
    ))
}

pub(super) fn set_desired_ok() -> Reply {
    Reply::Ok(format!(
        r#"<SetDesiredCapacityResponse xmlns="{NS}"><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></SetDesiredCapacityResponse>"#
    ))
}

pub(super) fn no_groups() -> Reply {
    Reply::Ok(format!(
        r#"<DescribeAutoScalingGroupsResponse xmlns="{NS}"><DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeAutoScalingGroupsResponse>"#
    ))
}
