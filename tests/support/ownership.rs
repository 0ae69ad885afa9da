//! The ownership tag on test groups: the operator drives a group only for the
//! pool its `nomadpool.dev/pool` tag names, so the harness tags each group for
//! the pool that will drive it, as the group's owner does in a real account.

use aws_sdk_autoscaling::Client as AsgClient;

/// The tag on a group naming the one pool that may drive it.
pub const OWNER_TAG: &str = "nomadpool.dev/pool";

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
