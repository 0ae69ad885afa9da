//! Lifecycle notifications as they arrive in an SQS queue, read with the
//! operator's own wire types (`/work/shared/reference/aws-lifecycle-hooks.md`
//! §3): the EventBridge envelope of an `EC2 Instance-terminate Lifecycle
//! Action` event (fields under `detail`, §3.1), the hook's own flat JSON
//! message (§3.2), the same flat message inside an SNS envelope's `Message`
//! string (as aws-node-termination-handler accepts, §3.3), and the
//! `autoscaling:TEST_NOTIFICATION` a new target receives.
//!
//! Only the fields the operator acts on are read; `NotificationMetadata`,
//! `Origin`, `Destination` and the rest are ignored, so a field AWS adds
//! later changes nothing.

use serde::Deserialize;

use crate::provider::lifecycle::{Notice, TERMINATING_TRANSITION, TEST_NOTIFICATION};

/// EventBridge's `detail-type` of a terminating hook's action (ref §3.1).
const TERMINATE_DETAIL_TYPE: &str = "EC2 Instance-terminate Lifecycle Action";
const AUTOSCALING_SOURCE: &str = "aws.autoscaling";

/// The lifecycle fields, in the flat message or under `detail`.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "PascalCase")]
struct Fields {
    lifecycle_action_token: Option<String>,
    auto_scaling_group_name: Option<String>,
    lifecycle_hook_name: Option<String>,
    #[serde(rename = "EC2InstanceId")]
    ec2_instance_id: Option<String>,
    lifecycle_transition: Option<String>,
    /// Only in the test message (`autoscaling:TEST_NOTIFICATION`).
    event: Option<String>,
}

/// Any of the three shapes; which one is told by the keys present.
#[derive(Deserialize, Default, Debug)]
struct Wire {
    #[serde(rename = "detail-type")]
    detail_type: Option<String>,
    source: Option<String>,
    detail: Option<Fields>,
    /// SNS envelope: `Type: Notification` and the message as a string.
    #[serde(rename = "Type")]
    sns_type: Option<String>,
    #[serde(rename = "Message")]
    sns_message: Option<String>,
    #[serde(flatten)]
    flat: Fields,
}

/// What a message body says. Never fails: a body that is not a lifecycle
/// notification is [`Notice::Other`], left for whoever it is meant for.
pub fn parse(body: &str) -> Notice {
    let Ok(wire) = serde_json::from_str::<Wire>(body) else {
        return Notice::Other {
            why: "not a JSON object",
        };
    };
    if let Some(detail_type) = wire.detail_type.as_deref() {
        if detail_type != TERMINATE_DETAIL_TYPE
            || wire.source.as_deref() != Some(AUTOSCALING_SOURCE)
        {
            return Notice::Other {
                why: "an EventBridge event other than a terminate lifecycle action",
            };
        }
        return match wire.detail {
            Some(detail) => from_fields(detail),
            None => Notice::Other {
                why: "an EventBridge event without detail",
            },
        };
    }
    if wire.sns_type.as_deref() == Some("Notification")
        && let Some(inner) = wire.sns_message.as_deref()
    {
        // One level only: a notification inside the SNS envelope.
        return match serde_json::from_str::<Fields>(inner) {
            Ok(fields) => from_fields(fields),
            Err(_) => Notice::Other {
                why: "an SNS notification whose Message is not a lifecycle notification",
            },
        };
    }
    from_fields(wire.flat)
}

fn from_fields(f: Fields) -> Notice {
    if f.event.as_deref() == Some(TEST_NOTIFICATION)
        || f.lifecycle_transition.as_deref() == Some(TEST_NOTIFICATION)
    {
        return Notice::Test {
            group: f.auto_scaling_group_name,
        };
    }
    if f.lifecycle_transition.as_deref() != Some(TERMINATING_TRANSITION) {
        return Notice::Other {
            why: "not a terminating lifecycle action",
        };
    }
    match (
        f.auto_scaling_group_name,
        f.lifecycle_hook_name,
        f.ec2_instance_id,
    ) {
        (Some(group), Some(hook), Some(instance_id)) if !instance_id.is_empty() => {
            Notice::Terminating {
                group,
                hook,
                instance_id,
                token: f.lifecycle_action_token.filter(|t| !t.is_empty()),
            }
        }
        _ => Notice::Other {
            why: "a terminating lifecycle action without group, hook or instance",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminating(group: &str, hook: &str, instance: &str, token: &str) -> Notice {
        Notice::Terminating {
            group: group.into(),
            hook: hook.into(),
            instance_id: instance.into(),
            token: Some(token.into()),
        }
    }

    /// ref §3.1: the documented EventBridge example, transition TERMINATING.
    #[test]
    fn the_eventbridge_envelope() {
        let body = r#"{ "version": "0", "id": "12345678-1234-1234-1234-123456789012",
  "detail-type": "EC2 Instance-terminate Lifecycle Action", "source": "aws.autoscaling",
  "account": "123456789012", "time": "yyyy-mm-ddThh:mm:ssZ", "region": "us-west-2",
  "resources": ["auto-scaling-group-arn"],
  "detail": { "LifecycleActionToken": "87654321-4321-4321-4321-210987654321",
    "AutoScalingGroupName": "my-asg", "LifecycleHookName": "my-lifecycle-hook",
    "EC2InstanceId": "i-1234567890abcdef0",
    "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
    "NotificationMetadata": "additional-info",
    "Origin": "AutoScalingGroup", "Destination": "EC2" } }"#;
        assert_eq!(
            parse(body),
            terminating(
                "my-asg",
                "my-lifecycle-hook",
                "i-1234567890abcdef0",
                "87654321-4321-4321-4321-210987654321"
            )
        );
    }

    /// A notice's Debug output (what a log line shows) leaves the token out.
    #[test]
    fn a_logged_notice_does_not_show_its_token() {
        let token = "87654321-4321-4321-4321-210987654321";
        let shown = format!("{:?}", terminating("g", "h", "i-1", token));
        assert!(!shown.contains(token), "{shown}");
        assert!(
            shown.contains("i-1") && shown.contains("(not shown)"),
            "{shown}"
        );
    }

    /// ref §3.2: the hook's own flat message to an SQS target.
    #[test]
    fn the_plain_hook_notification() {
        let body = r#"{"Origin":"AutoScalingGroup","Destination":"EC2","Service":"AWS Auto Scaling",
 "Time":"2021-01-19T00:36:26.533Z","RequestId":"18b2ec17-3e9b-4c15-8024-ff2e8ce8786a",
 "LifecycleActionToken":"71514b9d-6a40-4b26-8523-05e7ee35fa40","AccountId":"123456789012",
 "AutoScalingGroupName":"my-asg","LifecycleHookName":"my-hook","EC2InstanceId":"i-0598c7d356eba48d7",
 "LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING","NotificationMetadata":"hook message metadata"}"#;
        assert_eq!(
            parse(body),
            terminating(
                "my-asg",
                "my-hook",
                "i-0598c7d356eba48d7",
                "71514b9d-6a40-4b26-8523-05e7ee35fa40"
            )
        );
    }

    /// ref §3.2: the test message has `Event`, no transition, no token.
    #[test]
    fn the_test_notification() {
        let body = r#"{"Service":"AWS Auto Scaling","Time":"2021-01-19T00:35:52.359Z","RequestId":"4b6f3a8e-6a40-4b26-8523-05e7ee35fa40","Event":"autoscaling:TEST_NOTIFICATION","AccountId":"123456789012","AutoScalingGroupName":"my-asg","AutoScalingGroupARN":"arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:042cba90-ad2e-4fd6-8b3a-3a87f5d5d1c2:autoScalingGroupName/my-asg"}"#;
        assert_eq!(
            parse(body),
            Notice::Test {
                group: Some("my-asg".into())
            }
        );
    }

    /// ref §3.3: the flat message inside an SNS envelope's `Message` string.
    #[test]
    fn the_flat_message_inside_sns() {
        let inner = r#"{"LifecycleActionToken":"71514b9d-6a40-4b26-8523-05e7ee35fa40","AutoScalingGroupName":"my-asg","LifecycleHookName":"my-hook","EC2InstanceId":"i-0598c7d356eba48d7","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING"}"#;
        let body = serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": inner})
            .to_string();
        assert_eq!(
            parse(&body),
            terminating(
                "my-asg",
                "my-hook",
                "i-0598c7d356eba48d7",
                "71514b9d-6a40-4b26-8523-05e7ee35fa40"
            )
        );
    }

    #[test]
    fn anything_else_is_not_ours_to_judge() {
        let launch = r#"{"detail-type":"EC2 Instance-launch Lifecycle Action","source":"aws.autoscaling","detail":{"AutoScalingGroupName":"my-asg","LifecycleHookName":"h","EC2InstanceId":"i-1","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING"}}"#;
        let launching_flat = r#"{"AutoScalingGroupName":"my-asg","LifecycleHookName":"h","EC2InstanceId":"i-1","LifecycleTransition":"autoscaling:EC2_INSTANCE_LAUNCHING"}"#;
        let spot = r#"{"detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2","detail":{"instance-id":"i-1"}}"#;
        let no_instance = r#"{"AutoScalingGroupName":"my-asg","LifecycleHookName":"h","LifecycleTransition":"autoscaling:EC2_INSTANCE_TERMINATING"}"#;
        for body in [
            launch,
            launching_flat,
            spot,
            no_instance,
            "hello",
            "[1,2]",
            "",
        ] {
            assert!(
                matches!(parse(body), Notice::Other { .. }),
                "{body}: {:?}",
                parse(body)
            );
        }
    }
}
