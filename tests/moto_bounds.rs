//! Contract test of the moto correction in `tests/env/moto/asg_capacity_bounds.py`:
//! a desired capacity outside the group's MinSize..MaxSize is refused with
//! AWS's status, code and message (sources in tests/env/README.md), through
//! the AWS SDK the operator uses. moto alone accepts all three requests.

use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use npo_testkit::*;

/// The HTTP status, error code and message of a refused request.
fn refusal<E: ProvideErrorMetadata, R: std::fmt::Debug>(
    result: Result<
        R,
        aws_sdk_autoscaling::error::SdkError<E, aws_sdk_autoscaling::config::http::HttpResponse>,
    >,
) -> (u16, String, String) {
    let err = result.expect_err("AWS refuses this request");
    let status = err.raw_response().map(|r| r.status().as_u16()).unwrap_or(0);
    (
        status,
        err.code().unwrap_or_default().to_string(),
        err.message().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn a_desired_capacity_outside_the_groups_bounds_is_refused_as_aws_refuses_it() {
    let asg = asg_client();
    let name = unique("bounds");
    create_group(&asg, &name, 1, 3, 2).await;

    let above = asg
        .set_desired_capacity()
        .auto_scaling_group_name(&name)
        .desired_capacity(4)
        .send()
        .await;
    assert_eq!(
        refusal(above),
        (
            400,
            "ValidationError".into(),
            "New SetDesiredCapacity value 4 is above max value 3 for the AutoScalingGroup.".into()
        )
    );
    let below = asg
        .set_desired_capacity()
        .auto_scaling_group_name(&name)
        .desired_capacity(0)
        .send()
        .await;
    assert_eq!(
        refusal(below),
        (
            400,
            "ValidationError".into(),
            "New SetDesiredCapacity value 0 is below min value 1 for the AutoScalingGroup.".into()
        )
    );
    let update = asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .desired_capacity(9)
        .send()
        .await;
    assert_eq!(
        refusal(update),
        (
            400,
            "ValidationError".into(),
            "Desired capacity:9 must be between the specified min size:1 and max size:3".into()
        )
    );
    // Against the new bounds of the same request.
    let update = asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .min_size(0)
        .max_size(1)
        .desired_capacity(2)
        .send()
        .await;
    assert_eq!(
        refusal(update).2,
        "Desired capacity:2 must be between the specified min size:0 and max size:1"
    );
    assert_eq!(
        describe_group(&asg, &name).await.desired,
        2,
        "nothing changed"
    );

    // Within the bounds: carried out as before.
    asg.set_desired_capacity()
        .auto_scaling_group_name(&name)
        .desired_capacity(3)
        .send()
        .await
        .expect("at MaxSize");
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .max_size(5)
        .desired_capacity(5)
        .send()
        .await
        .expect("within the new MaxSize");
    assert_eq!(describe_group(&asg, &name).await.desired, 5);
    // Without a DesiredCapacity, a lower MaxSize moves it (AWS and moto).
    asg.update_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .max_size(2)
        .send()
        .await
        .expect("MaxSize alone");
    assert_eq!(describe_group(&asg, &name).await.desired, 2);
}
