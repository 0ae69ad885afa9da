//! Contract test of the moto correction in `tests/env/moto/asg_detach_checks.py`:
//! a DetachInstances that AWS refuses is refused with AWS's status, code
//! and message (sources in tests/env/README.md), through the AWS SDK the
//! operator uses, and changes nothing; moto alone detaches what it can and
//! lowers the desired capacity by the number of IDs named.

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use npo_testkit::*;

async fn detach(
    asg: &Client,
    group: &str,
    ids: &[String],
    decrement: bool,
) -> Result<(), (u16, String, String)> {
    let sent = (asg.detach_instances())
        .auto_scaling_group_name(group)
        .set_instance_ids(Some(ids.to_vec()))
        .should_decrement_desired_capacity(decrement)
        .send()
        .await;
    sent.map(|_| ()).map_err(|err| {
        let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
        let code = err.code().unwrap_or_default().to_string();
        (status, code, err.message().unwrap_or_default().to_string())
    })
}

fn refused(message: String) -> Result<(), (u16, String, String)> {
    Err((400, "ValidationError".into(), message))
}

/// The group's desired capacity and its instance IDs.
async fn group(asg: &Client, name: &str) -> (i32, Vec<String>) {
    let g = describe_group(asg, name).await;
    (g.desired, g.instances.into_iter().map(|i| i.id).collect())
}

#[tokio::test]
async fn a_detach_aws_refuses_is_refused_as_aws_refuses_it_and_changes_nothing() {
    let asg = asg_client();
    let name = unique("detach");
    create_group(&asg, &name, 2, 30, 22).await;
    let (_, ids) = group(&asg, &name).await;

    let too_many = detach(&asg, &name, &ids[..21], false).await;
    let text = "List exceeds the maximum number of instances to detach. \
                Please retry your request with fewer instances.";
    assert_eq!(too_many, refused(text.into()));

    let stranger = "i-0123456789abcdef0".to_string();
    let mixed = [ids[0].clone(), stranger.clone()];
    assert_eq!(
        detach(&asg, &name, &mixed, true).await,
        refused(format!(
            "The instance {stranger} is not part of Auto Scaling group {name}."
        ))
    );
    assert_eq!(
        group(&asg, &name).await,
        (22, ids.clone()),
        "nothing changed"
    );

    // Twenty with the decrement would leave 2, the minimum: allowed. One
    // more would not be.
    assert_eq!(detach(&asg, &name, &ids[..20], true).await, Ok(()));
    let (desired, left) = group(&asg, &name).await;
    assert_eq!((desired, left.len()), (2, 2));
    assert_eq!(
        detach(&asg, &name, &left[..1], true).await,
        refused(format!(
            "AutoScalingGroup {name} has min-size=2, max-size=30, and desired-size=2. \
             To detach 1 instance, please update the AutoScalingGroup sizes appropriately."
        ))
    );
    // An instance detached once is no longer the group's.
    assert_eq!(
        detach(&asg, &name, &ids[..1], false).await,
        refused(format!(
            "The instance {} is not part of Auto Scaling group {name}.",
            ids[0]
        ))
    );
    assert_eq!(group(&asg, &name).await, (2, left), "nothing changed");
}

#[tokio::test]
async fn an_instance_on_standby_detaches_and_one_leaving_does_not() {
    let asg = asg_client();
    let name = unique("detach-state");
    create_group(&asg, &name, 0, 5, 3).await;
    let (_, ids) = group(&asg, &name).await;
    (asg.enter_standby())
        .auto_scaling_group_name(&name)
        .instance_ids(&ids[0])
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .expect("EnterStandby");
    assert_eq!(detach(&asg, &name, &ids[..1], false).await, Ok(()));

    (asg.put_lifecycle_hook())
        .auto_scaling_group_name(&name)
        .lifecycle_hook_name("hold")
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(300)
        .send()
        .await
        .expect("PutLifecycleHook");
    (asg.terminate_instance_in_auto_scaling_group())
        .instance_id(&ids[1])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("a terminate the hook holds");
    assert_eq!(
        detach(&asg, &name, &ids[1..2], false).await,
        refused(format!(
            "The instance {} is not in InService or Standby.",
            ids[1]
        ))
    );
}
