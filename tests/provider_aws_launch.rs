//! The AWS provider's launch facts (`maxNodeAge`, `replaceDrifted`) against
//! moto: none read unless asked; launch times from EC2; a template
//! group's `$Default` resolved to its number and each VM's version read
//! from the tags EC2 puts on it (not from the Auto Scaling listing, where
//! moto reports the template's current default for every VM); a launch
//! configuration group compared by configuration name.

use nomad_pool_operator::provider::{
    AwsAutoScalingGroup, CloudProvider, GroupState, LaunchFacts, LaunchSpec,
};
use npo_testkit::aws::new_default_template_version;
use npo_testkit::{asg_client, create_group, create_template_group, unique};

async fn provider(group: &str) -> AwsAutoScalingGroup {
    npo_testkit::aws::moto_provider(group).await
}

async fn describe(p: &AwsAutoScalingGroup) -> GroupState {
    p.describe_group().await.expect("describe group")
}

const ALL: LaunchFacts = LaunchFacts {
    launch_time: true,
    launch_spec: true,
};

#[tokio::test]
async fn nothing_is_read_unless_asked() {
    let name = unique("npo-facts-off");
    create_template_group(&asg_client(), &name, 0, 5, 2).await;
    let g = describe(&provider(&name).await).await;
    assert!(g.launch_specs.is_empty());
    assert!(
        g.instances
            .iter()
            .all(|i| i.launched_at.is_none() && i.launch_spec.is_none()),
        "{g:?}"
    );
    assert!(g.reads_launch_times);
}

#[tokio::test]
async fn template_versions_are_resolved_and_read_per_vm() {
    let name = unique("npo-facts-lt");
    let before = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(60);
    create_template_group(&asg_client(), &name, 0, 5, 2).await;
    let p = provider(&name).await;
    p.read_launch_facts(ALL);
    let g = describe(&p).await;
    let [LaunchSpec::LaunchTemplate { id, version }] = g.launch_specs.as_slice() else {
        panic!("one current template expected: {:?}", g.launch_specs);
    };
    assert!(id.starts_with("lt-"), "{id}");
    assert_eq!(version, "1", "$Default resolved to its number");
    for i in &g.instances {
        let at = i.launched_at.expect("a launch time");
        assert!(at > before && at <= jiff::Timestamp::now(), "{at}");
        assert_eq!(i.launch_spec.as_ref(), g.launch_specs.first());
        assert_eq!(g.drifted(i), None);
    }

    // A new default: the group launches version 2, its VMs still run 1.
    assert_eq!(new_default_template_version(&name).await, 2);
    let g = describe(&p).await;
    let current = LaunchSpec::LaunchTemplate {
        id: id.clone(),
        version: "2".into(),
    };
    assert_eq!(g.launch_specs, [current]);
    for i in &g.instances {
        let old = LaunchSpec::LaunchTemplate {
            id: id.clone(),
            version: "1".into(),
        };
        assert_eq!(g.drifted(i), Some(&old), "{i:?}");
    }
}

#[tokio::test]
async fn launch_configuration_groups_compare_by_name() {
    let name = unique("npo-facts-lc");
    create_group(&asg_client(), &name, 0, 5, 2).await;
    let p = provider(&name).await;
    p.read_launch_facts(LaunchFacts {
        launch_time: false,
        launch_spec: true,
    });
    let g = describe(&p).await;
    assert_eq!(
        g.launch_specs,
        [LaunchSpec::LaunchConfiguration(name.clone())]
    );
    for i in &g.instances {
        assert_eq!(i.launch_spec.as_ref(), g.launch_specs.first(), "{i:?}");
        assert_eq!(i.launched_at, None, "launch times were not asked for");
    }
}
