//! Auto Scaling groups in moto, as the harness creates and reads them, and
//! the ownership tag: the operator drives a group only for the pool its
//! `nomadpool.dev/pool` tag names, so the harness tags each group for the pool
//! that will drive it, as the group's owner does in a real account.

use aws_sdk_autoscaling::Client as AsgClient;
use aws_sdk_autoscaling::config::{BehaviorVersion, Credentials, Region};

use crate::env::env_var;

/// The tag on a group naming the one pool that may drive it.
pub const OWNER_TAG: &str = "nomadpool.dev/pool";

/// The environment's shared moto.
pub fn moto_endpoint() -> String {
    env_var("NPO_MOTO_ENDPOINT")
}

/// A client of the environment's shared moto.
/// The operator's AWS provider for `group` on the environment's moto, with
/// moto's static credentials: what the provider tests call directly.
pub async fn moto_provider(group: &str) -> nomad_pool_operator::provider::AwsAutoScalingGroup {
    moto_provider_with(group, None).await
}

/// [`moto_provider`] with `batch` (`batchTerminations`) set as given.
pub async fn moto_provider_with(
    group: &str,
    batch: Option<nomad_pool_operator::provider::BatchTerminations>,
) -> nomad_pool_operator::provider::AwsAutoScalingGroup {
    use nomad_pool_operator::provider::{AwsAsgConfig, AwsAutoScalingGroup};
    AwsAutoScalingGroup::new(AwsAsgConfig {
        batch,
        ..moto_config(group)
    })
    .await
    .expect("the AWS provider on moto")
}

/// [`moto_provider`] with batches on, every call of it through `endpoint`
/// (a counting or faulting proxy in front of moto).
pub async fn batching_provider_via(
    group: &str,
    endpoint: &str,
) -> nomad_pool_operator::provider::AwsAutoScalingGroup {
    use nomad_pool_operator::provider::{AwsAsgConfig, AwsAutoScalingGroup, BatchTerminations};
    AwsAutoScalingGroup::new(AwsAsgConfig {
        endpoint: Some(endpoint.to_owned()),
        batch: Some(BatchTerminations { own_hook: None }),
        ..moto_config(group)
    })
    .await
    .expect("the AWS provider through the proxy")
}

/// Terminate `ids` all at once through `p` (first calls, with the
/// decrement), as a reconcile's burst does; each must answer `Terminated`.
pub async fn terminate_all_at_once(
    p: &nomad_pool_operator::provider::AwsAutoScalingGroup,
    ids: &[String],
) {
    use nomad_pool_operator::provider::{CloudProvider, TerminateOutcome};
    let calls = ids.iter().map(|id| p.terminate_new_instance(id, true));
    let answers = futures::future::join_all(calls).await;
    assert!(
        (answers.iter()).all(|a| *a == Ok(TerminateOutcome::Terminated)),
        "{answers:?}"
    );
}

/// The provider's configuration for `group` on the environment's moto, with
/// moto's static credentials (for a test that points it elsewhere, e.g. a
/// proxy in front of moto).
pub fn moto_config(group: &str) -> nomad_pool_operator::provider::AwsAsgConfig {
    use nomad_pool_operator::provider::{AwsAsgConfig, AwsCredentials};
    AwsAsgConfig {
        group_name: group.to_owned(),
        region: "us-east-1".into(),
        endpoint: Some(moto_endpoint()),
        credentials: AwsCredentials::Static {
            access_key_id: "testing".into(),
            secret_access_key: "testing".into(),
            session_token: None,
        },
        batch: None,
    }
}

pub fn asg_client() -> AsgClient {
    asg_client_at(&moto_endpoint())
}

/// A client of the moto (or proxy in front of one) at `endpoint`.
pub fn asg_client_at(endpoint: &str) -> AsgClient {
    let config = aws_sdk_autoscaling::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "npo-tests",
        ))
        .build();
    AsgClient::from_conf(config)
}

/// An SQS client of the environment's shared moto (a lifecycle hook's queue).
pub fn sqs_client() -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .endpoint_url(moto_endpoint())
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "npo-tests",
        ))
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

/// A standard queue named `name`: its URL and ARN.
pub async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> (String, String) {
    let url = (sqs.create_queue().queue_name(name).send().await)
        .expect("CreateQueue")
        .queue_url
        .expect("QueueUrl");
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("GetQueueAttributes");
    let arn = (attrs.attributes())
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .expect("QueueArn")
        .clone();
    (url, arn)
}

/// A launch configuration and a group of the same name, in one zone.
pub async fn create_group(asg: &AsgClient, name: &str, min: i32, max: i32, desired: i32) {
    asg.create_launch_configuration()
        .launch_configuration_name(name)
        .image_id("ami-12c6146b")
        .instance_type("t3.micro")
        .send()
        .await
        .expect("creating a launch configuration in moto");
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_configuration_name(name)
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("creating an Auto Scaling group in moto");
}

/// An EC2 client of the environment's shared moto (launch templates).
pub fn ec2_client() -> aws_sdk_ec2::Client {
    ec2_client_at(&moto_endpoint())
}

/// An EC2 client of the moto at `endpoint`.
pub fn ec2_client_at(endpoint: &str) -> aws_sdk_ec2::Client {
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "npo-tests",
        ))
        .build();
    aws_sdk_ec2::Client::from_conf(config)
}

/// A launch template (version 1) and a group of the same name launching
/// from its `$Default` version, in one zone. `$Default` rather than
/// `$Latest`: moto 5.2 launches every instance of a group from the
/// template's default version whatever version the group names, so a
/// test changes what the group launches by changing the default
/// (`set_template_default`), which AWS honours the same way.
pub async fn create_template_group(asg: &AsgClient, name: &str, min: i32, max: i32, desired: i32) {
    use aws_sdk_ec2::types::RequestLaunchTemplateData;
    let data = RequestLaunchTemplateData::builder()
        .image_id("ami-12c6146b")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
        .build();
    let template = ec2_client()
        .create_launch_template()
        .launch_template_name(name)
        .launch_template_data(data)
        .send()
        .await
        .expect("creating a launch template in moto");
    let id = (template.launch_template())
        .and_then(|t| t.launch_template_id())
        .expect("the new template's ID")
        .to_owned();
    let spec = aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
        .launch_template_id(id)
        .version("$Default")
        .build();
    asg.create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .launch_template(spec)
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .availability_zones("us-east-1a")
        .send()
        .await
        .expect("creating an Auto Scaling group in moto");
}

/// A new version of the template `name` made its default: the group
/// (`$Default`) launches from it from now on. Returns the version number.
pub async fn new_default_template_version(name: &str) -> i64 {
    use aws_sdk_ec2::types::RequestLaunchTemplateData;
    let ec2 = ec2_client();
    let data = RequestLaunchTemplateData::builder()
        .image_id("ami-12c6146b")
        .instance_type(aws_sdk_ec2::types::InstanceType::T3Small)
        .build();
    let out = ec2
        .create_launch_template_version()
        .launch_template_name(name)
        .launch_template_data(data)
        .send()
        .await
        .expect("creating a launch template version in moto");
    let version = (out.launch_template_version())
        .and_then(|v| v.version_number())
        .expect("the new version's number");
    ec2.modify_launch_template()
        .launch_template_name(name)
        .default_version(version.to_string())
        .send()
        .await
        .expect("making the new version the default");
    version
}

/// EC2's view of `instances`, by ID; those EC2 does not know are left out.
pub async fn ec2_instances(
    instances: &[String],
) -> std::collections::BTreeMap<String, aws_sdk_ec2::types::Instance> {
    use aws_sdk_ec2::types::Filter;
    let filter = Filter::builder()
        .name("instance-id")
        .set_values(Some(instances.to_vec()))
        .build();
    let out = ec2_client()
        .describe_instances()
        .filters(filter)
        .send()
        .await
        .expect("describing instances in moto");
    (out.reservations().iter())
        .flat_map(|r| r.instances())
        .filter_map(|i| Some((i.instance_id()?.to_owned(), i.clone())))
        .collect()
}

/// The launch template version each of `instances` was launched from, as
/// EC2 tags it (`aws:ec2launchtemplate:version`); instances EC2 does not
/// know or that carry no such tag are left out.
pub async fn template_versions(instances: &[String]) -> std::collections::BTreeMap<String, String> {
    (ec2_instances(instances).await.into_values())
        .filter_map(|i| {
            let version = (i.tags().iter())
                .find(|t| t.key() == Some("aws:ec2launchtemplate:version"))?
                .value()?;
            Some((i.instance_id()?.to_owned(), version.to_owned()))
        })
        .collect()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub lifecycle: String,
    pub protected: bool,
}

#[derive(Clone, Debug)]
pub struct Group {
    pub desired: i32,
    pub min: i32,
    pub instances: Vec<Instance>,
}

pub async fn describe_group(asg: &AsgClient, name: &str) -> Group {
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .expect("describing the group in moto");
    let g = out
        .auto_scaling_groups()
        .first()
        .expect("group exists")
        .clone();
    Group {
        desired: g.desired_capacity().unwrap_or_default(),
        min: g.min_size().unwrap_or_default(),
        instances: g
            .instances()
            .iter()
            .map(|i| Instance {
                id: i.instance_id().unwrap_or_default().to_string(),
                lifecycle: i
                    .lifecycle_state()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                protected: i.protected_from_scale_in().unwrap_or(false),
            })
            .collect(),
    }
}

/// Put a terminating lifecycle hook named `hook` on `group` (someone
/// else's: the operator neither completes nor heartbeats it).
pub async fn put_terminating_hook(asg: &AsgClient, group: &str, hook: &str) {
    (asg.put_lifecycle_hook())
        .auto_scaling_group_name(group)
        .lifecycle_hook_name(hook)
        .lifecycle_transition("autoscaling:EC2_INSTANCE_TERMINATING")
        .heartbeat_timeout(300)
        .send()
        .await
        .expect("PutLifecycleHook");
}

/// Tag `group` for the pool `owner` (`<namespace>/<name>`), as the group's
/// owner does in the cloud account: the operator drives a group only for the
/// pool its tag names.
pub async fn tag_group(asg: &AsgClient, group: &str, owner: &str) {
    let tag = aws_sdk_autoscaling::types::Tag::builder()
        .resource_id(group)
        .resource_type("auto-scaling-group")
        .key(OWNER_TAG)
        .value(owner)
        .propagate_at_launch(false)
        .build();
    asg.create_or_update_tags()
        .tags(tag)
        .send()
        .await
        .expect("tagging the group in moto");
}
