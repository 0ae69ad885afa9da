//! The AWS Auto Scaling provider against a real moto server.
//!
//! The environment's moto (`tests/env/up.sh`, started by the harness if it
//! is not up). Each test makes its own launch configuration and group with a
//! unique name, so tests run in parallel against one moto and repeated runs do
//! not collide.

use aws_sdk_autoscaling::Client;
use npo_testkit::{asg_client, unique};

use nomad_pool_operator::provider::{
    AwsAutoScalingGroup, CloudProvider, GroupState, Lifecycle, OWNER_TAG, PreflightRefusal,
    ProviderError, TerminateOutcome, preflight,
};

/// A client for setting up fixtures that the provider itself never does
/// (creating groups, protecting instances, suspending processes).
fn admin() -> Client {
    asg_client()
}

/// A fresh group named for `test`, so parallel and repeated runs never collide.
async fn create_group(test: &str, min: i32, max: i32, desired: i32) -> String {
    let name = unique(&format!("npo-{test}"));
    npo_testkit::create_group(&admin(), &name, min, max, desired).await;
    name
}

async fn provider(group: &str) -> AwsAutoScalingGroup {
    npo_testkit::aws::moto_provider(group).await
}

async fn describe(p: &AwsAutoScalingGroup) -> GroupState {
    p.describe_group().await.expect("describe group")
}

fn in_service_ids(g: &GroupState) -> Vec<String> {
    g.instances
        .iter()
        .filter(|i| i.lifecycle == Lifecycle::InService)
        .map(|i| i.id.clone())
        .collect()
}

#[tokio::test]
async fn describe_shows_sizes_and_in_service_instances() {
    let name = create_group("describe", 1, 5, 3).await;
    let p = provider(&name).await;
    assert_eq!(p.group(), format!("asg/{name} (us-east-1)"));

    let g = describe(&p).await;
    assert_eq!(g.name, name);
    assert_eq!((g.min_size, g.max_size, g.desired_capacity), (1, 5, 3));
    assert!(!g.terminate_suspended);
    assert!(g.suspended_processes.is_empty());
    assert_eq!(g.owner_tag, None, "an untagged group names no owner");
    assert_eq!(g.instances.len(), 3);
    for i in &g.instances {
        assert_eq!(i.lifecycle, Lifecycle::InService, "{i:?}");
        assert!(i.healthy, "{i:?}");
        assert!(!i.protected_from_scale_in, "{i:?}");
        assert_eq!(i.zone.as_deref(), Some("us-east-1a"));
        assert!(i.id.starts_with("i-"), "{i:?}");
        assert_eq!(preflight(&g, &i.id, 0), Ok(()));
    }
}

#[tokio::test]
async fn terminate_with_decrement_lowers_desired_exactly_once() {
    let name = create_group("decrement", 1, 5, 3).await;
    let p = provider(&name).await;
    let before = describe(&p).await;
    let victim = in_service_ids(&before)[0].clone();

    assert_eq!(
        p.terminate_instance(&victim, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    let after = describe(&p).await;
    assert_eq!(after.desired_capacity, 2);
    assert!(
        after
            .instance(&victim)
            .is_none_or(|i| i.lifecycle.is_terminating()),
        "{after:?}"
    );

    // A controller restarted after the first call retries the same step with
    // a fresh provider and no memory of it.
    let restarted = provider(&name).await;
    let again = restarted.terminate_instance(&victim, true).await.unwrap();
    assert!(
        matches!(
            again,
            TerminateOutcome::AlreadyTerminating | TerminateOutcome::NotInGroup
        ),
        "{again:?}"
    );
    assert_eq!(
        p.terminate_instance(&victim, true).await.unwrap(),
        again,
        "a third call answers the same"
    );
    let last = describe(&p).await;
    assert_eq!(last.desired_capacity, 2, "desired must not drop twice");
    assert_eq!(in_service_ids(&last).len(), 2);
}

#[tokio::test]
async fn terminate_without_decrement_is_replaced() {
    let name = create_group("replace", 1, 5, 2).await;
    let p = provider(&name).await;
    let victim = in_service_ids(&describe(&p).await)[0].clone();

    assert_eq!(
        p.terminate_instance(&victim, false).await,
        Ok(TerminateOutcome::Terminated)
    );
    let g = describe(&p).await;
    assert_eq!(g.desired_capacity, 2);
    let ids = in_service_ids(&g);
    assert_eq!(ids.len(), 2, "{g:?}");
    assert!(!ids.contains(&victim));
    assert!(matches!(
        p.terminate_instance(&victim, false).await,
        Ok(TerminateOutcome::AlreadyTerminating | TerminateOutcome::NotInGroup)
    ));
}

/// The ownership tag as DescribeAutoScalingGroups returns it (`Tags`, a list
/// of TagDescription): set at creation, changed and removed later, among
/// other tags that mean nothing to the operator.
#[tokio::test]
async fn describe_reads_the_ownership_tag_among_others() {
    let tag = |key: &str, value: &str, name: &str| {
        aws_sdk_autoscaling::types::Tag::builder()
            .resource_id(name)
            .resource_type("auto-scaling-group")
            .key(key)
            .value(value)
            .propagate_at_launch(true)
            .build()
    };
    let name = unique("npo-owner-tag");
    let admin = admin();
    admin
        .create_launch_configuration()
        .launch_configuration_name(&name)
        .image_id("ami-12c6146b")
        .instance_type("t2.micro")
        .send()
        .await
        .expect("create launch configuration");
    admin
        .create_auto_scaling_group()
        .auto_scaling_group_name(&name)
        .launch_configuration_name(&name)
        .min_size(0)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .tags(tag("team", "b", &name))
        .tags(tag(OWNER_TAG, "team-b/ci", &name))
        .tags(tag("nomadpool.dev/pool-uid", "team-a/ci", &name))
        .send()
        .await
        .expect("create Auto Scaling group");
    let p = provider(&name).await;
    assert_eq!(describe(&p).await.owner_tag.as_deref(), Some("team-b/ci"));

    admin
        .create_or_update_tags()
        .tags(tag(OWNER_TAG, "team-a/ci", &name))
        .send()
        .await
        .expect("retag");
    assert_eq!(describe(&p).await.owner_tag.as_deref(), Some("team-a/ci"));

    admin
        .delete_tags()
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(&name)
                .resource_type("auto-scaling-group")
                .key(OWNER_TAG)
                .build(),
        )
        .send()
        .await
        .expect("untag");
    assert_eq!(describe(&p).await.owner_tag, None);
}

#[tokio::test]
async fn unknown_instance_is_not_in_group() {
    let name = create_group("unknown-instance", 0, 3, 1).await;
    let p = provider(&name).await;
    assert_eq!(
        p.terminate_instance("i-0000000000000dead", true).await,
        Ok(TerminateOutcome::NotInGroup)
    );
    assert_eq!(describe(&p).await.desired_capacity, 1);
}

#[tokio::test]
async fn instance_of_another_group_is_never_terminated() {
    let mine = create_group("mine", 0, 3, 1).await;
    let theirs = create_group("theirs", 0, 3, 2).await;
    let p = provider(&mine).await;
    let other = provider(&theirs).await;
    let their_instance = in_service_ids(&describe(&other).await)[0].clone();

    assert_eq!(
        p.terminate_instance(&their_instance, true).await,
        Ok(TerminateOutcome::NotInGroup)
    );
    let g = describe(&other).await;
    assert_eq!(g.desired_capacity, 2);
    assert!(in_service_ids(&g).contains(&their_instance));
}

#[tokio::test]
async fn scale_in_protection_shows_and_preflight_refuses() {
    let name = create_group("protected", 0, 5, 2).await;
    let p = provider(&name).await;
    let ids = in_service_ids(&describe(&p).await);
    admin()
        .set_instance_protection()
        .auto_scaling_group_name(&name)
        .instance_ids(&ids[0])
        .protected_from_scale_in(true)
        .send()
        .await
        .expect("protect instance");

    let g = describe(&p).await;
    assert!(g.instance(&ids[0]).unwrap().protected_from_scale_in);
    assert!(!g.instance(&ids[1]).unwrap().protected_from_scale_in);
    assert_eq!(
        preflight(&g, &ids[0], 0),
        Err(PreflightRefusal::ProtectedFromScaleIn {
            group: name.clone(),
            instance_id: ids[0].clone()
        })
    );
    assert_eq!(preflight(&g, &ids[1], 0), Ok(()));
}

#[tokio::test]
async fn suspended_terminate_shows_and_preflight_refuses() {
    let name = create_group("suspended", 0, 5, 2).await;
    let p = provider(&name).await;
    let admin = admin();
    admin
        .suspend_processes()
        .auto_scaling_group_name(&name)
        .scaling_processes("Terminate")
        .scaling_processes("AZRebalance")
        .send()
        .await
        .expect("suspend processes");

    let g = describe(&p).await;
    assert!(g.terminate_suspended);
    let mut suspended = g.suspended_processes.clone();
    suspended.sort();
    assert_eq!(suspended, ["AZRebalance", "Terminate"]);
    let refusal = preflight(&g, &in_service_ids(&g)[0], 0).unwrap_err();
    assert_eq!(
        refusal,
        PreflightRefusal::TerminateSuspended {
            group: name.clone()
        }
    );
    assert!(refusal.to_string().contains("resume-processes"));

    admin
        .resume_processes()
        .auto_scaling_group_name(&name)
        .scaling_processes("Terminate")
        .send()
        .await
        .expect("resume Terminate");
    let g = describe(&p).await;
    assert!(!g.terminate_suspended);
    assert_eq!(g.suspended_processes, ["AZRebalance"]);
    assert_eq!(preflight(&g, &in_service_ids(&g)[0], 0), Ok(()));
}

#[tokio::test]
async fn standby_instance_is_not_in_service() {
    let name = create_group("standby", 0, 5, 2).await;
    let p = provider(&name).await;
    let ids = in_service_ids(&describe(&p).await);
    admin()
        .enter_standby()
        .auto_scaling_group_name(&name)
        .instance_ids(&ids[0])
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .expect("enter standby");

    let g = describe(&p).await;
    assert_eq!(g.instance(&ids[0]).unwrap().lifecycle, Lifecycle::Standby);
    assert!(matches!(
        preflight(&g, &ids[0], 0),
        Err(PreflightRefusal::InstanceNotInService {
            state: Lifecycle::Standby,
            ..
        })
    ));
}

#[tokio::test]
async fn preflight_counts_room_above_min_size() {
    let name = create_group("min-size", 2, 5, 3).await;
    let p = provider(&name).await;
    let g = describe(&p).await;
    let id = in_service_ids(&g)[0].clone();
    assert_eq!(preflight(&g, &id, 0), Ok(()));
    assert_eq!(
        preflight(&g, &id, 1),
        Err(PreflightRefusal::AtMinSize {
            group: name.clone(),
            desired: 3,
            min: 2,
            in_flight: 1
        })
    );
}

#[tokio::test]
async fn set_desired_capacity_scales_up() {
    let name = create_group("scale-up", 1, 5, 1).await;
    let p = provider(&name).await;
    p.set_desired_capacity(3).await.expect("scale up");
    let g = describe(&p).await;
    assert_eq!(g.desired_capacity, 3);
    assert_eq!(in_service_ids(&g).len(), 3, "{g:?}");
    // Absolute, so repeating it after a crash changes nothing.
    p.set_desired_capacity(3).await.expect("repeat");
    assert_eq!(describe(&p).await.desired_capacity, 3);
}

#[tokio::test]
async fn unknown_group_is_group_not_found() {
    let name = unique("npo-missing");
    let p = provider(&name).await;
    let want = ProviderError::GroupNotFound {
        group: name.clone(),
    };
    assert_eq!(p.describe_group().await, Err(want.clone()));
    assert_eq!(p.set_desired_capacity(2).await, Err(want));
}
