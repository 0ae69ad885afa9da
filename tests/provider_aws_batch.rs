//! `batchTerminations` in the AWS provider against the environment's moto
//! (with the project's DetachInstances corrections, `tests/moto_detach.rs`):
//! VMs go tagged, detached and terminated in shared calls; one detached but
//! not yet terminated (a crash between the calls) is ended on the retry,
//! one detached by someone else is left alone; and a group with a
//! terminating hook that is not the pool's keeps the one-VM call.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{InstanceStateName, Tag};
use npo_testkit::{asg_client, ec2_client, unique};

use nomad_pool_operator::provider::{
    AwsAutoScalingGroup, BatchTerminations, Batching, CloudProvider, DETACHED_TAG,
    FEWEST_PER_BATCH, GroupState, Lifecycle, TerminateOutcome,
};
use npo_testkit::proxy::aws_faults::{AwsFaults, FaultProxy};

async fn create_group(test: &str, min: i32, max: i32, desired: i32) -> String {
    let name = unique(&format!("npo-{test}"));
    npo_testkit::create_group(&asg_client(), &name, min, max, desired).await;
    name
}

async fn batching(group: &str, own_hook: Option<&str>) -> AwsAutoScalingGroup {
    let wanted = BatchTerminations {
        own_hook: own_hook.map(str::to_owned),
    };
    npo_testkit::aws::moto_provider_with(group, Some(wanted)).await
}

async fn describe(p: &AwsAutoScalingGroup) -> GroupState {
    p.describe_group().await.expect("describe group")
}

fn in_service(g: &GroupState) -> Vec<String> {
    (g.instances.iter())
        .filter(|i| i.lifecycle == Lifecycle::InService)
        .map(|i| i.id.clone())
        .collect()
}

/// EC2's state of each instance and whether it carries the detach tag
/// naming `group`.
async fn ec2_view(ids: &[String], group: &str) -> BTreeMap<String, (InstanceStateName, bool)> {
    (npo_testkit::aws::ec2_instances(ids).await.into_iter())
        .map(|(id, i)| {
            let tagged = (i.tags().iter())
                .any(|t| t.key() == Some(DETACHED_TAG) && t.value() == Some(group));
            let state = i.state().and_then(|s| s.name()).cloned().unwrap();
            (id, (state, tagged))
        })
        .collect()
}

fn ended(state: &InstanceStateName) -> bool {
    matches!(
        state,
        InstanceStateName::ShuttingDown | InstanceStateName::Terminated
    )
}

#[tokio::test]
async fn twenty_five_vms_at_once_end_tagged_and_lower_desired_once_each() {
    let name = create_group("batch", 0, 40, 30).await;
    let p = batching(&name, None).await;
    assert_eq!(p.terminations_per_call(), 20);
    let victims: Vec<String> = in_service(&describe(&p).await)[..25].to_vec();

    npo_testkit::aws::terminate_all_at_once(&p, &victims).await;
    let g = describe(&p).await;
    assert_eq!(g.desired_capacity, 5, "one decrement per VM, no more");
    assert_eq!(in_service(&g).len(), 5, "no replacement launched: {g:?}");
    assert!(victims.iter().all(|v| g.instance(v).is_none()), "{g:?}");
    let view = ec2_view(&victims, &name).await;
    assert_eq!(view.len(), 25);
    for (id, (state, tagged)) in &view {
        assert!(ended(state), "{id} is {state:?}");
        assert!(tagged, "{id} went through a batch, which tags first");
    }
    // A restart's retry of any of them changes nothing.
    let again = p.terminate_instance(&victims[0], true).await;
    assert_eq!(again, Ok(TerminateOutcome::AlreadyTerminating));
    assert_eq!(describe(&p).await.desired_capacity, 5);
}

/// The batches that start together read the group's hooks once: each
/// sending its own `DescribeLifecycleHooks` was ten calls at once, on an
/// API AWS throttles per account.
#[tokio::test]
async fn batches_that_start_together_read_the_groups_hooks_once() {
    let name = create_group("batch-hooks-once", 0, 30, 25).await;
    let proxy = FaultProxy::start(&npo_testkit::moto_endpoint(), 1).await;
    let p = npo_testkit::aws::batching_provider_via(&name, &proxy.url).await;
    let victims: Vec<String> = in_service(&describe(&p).await)[..20].to_vec();
    npo_testkit::aws::terminate_all_at_once(&p, &victims).await;
    let stats = proxy.stats();
    let reads = stats.get("DescribeLifecycleHooks").map(|s| s.requests);
    assert_eq!(reads, Some(1), "{stats:?}");
    // And the burst is one batch: three calls for twenty VMs. Before
    // batches waited for company, the first ten went alone, three calls
    // each.
    let calls = |action: &str| stats.get(action).map_or(0, |s| s.requests);
    for action in ["CreateTags", "DetachInstances", "TerminateInstances"] {
        assert_eq!(calls(action), 1, "{action}: {stats:?}");
    }
    assert_eq!(calls("TerminateInstanceInAutoScalingGroup"), 0, "{stats:?}");
}

/// A lone VM goes the one-VM way: one call where a batch costs three, and
/// nothing to tag or sweep. Two at once share a batch.
#[tokio::test]
async fn a_lone_vm_goes_in_one_call_and_two_share_a_batch() {
    let name = create_group("batch-few", 0, 10, 8).await;
    let proxy = FaultProxy::start(&npo_testkit::moto_endpoint(), 1).await;
    let p = npo_testkit::aws::batching_provider_via(&name, &proxy.url).await;
    let members = in_service(&describe(&p).await);
    let lone = members[0].clone();
    assert_eq!(
        p.terminate_new_instance(&lone, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    let calls = |action: &str| proxy.stats().get(action).map_or(0, |s| s.requests);
    assert_eq!(calls("TerminateInstanceInAutoScalingGroup"), 1);
    assert_eq!(calls("CreateTags") + calls("DetachInstances"), 0);

    let pair = members[1..=FEWEST_PER_BATCH].to_vec();
    npo_testkit::aws::terminate_all_at_once(&p, &pair).await;
    assert_eq!(calls("TerminateInstanceInAutoScalingGroup"), 1);
    assert_eq!((calls("CreateTags"), calls("DetachInstances")), (1, 1));
    let view = ec2_view(&members[..=FEWEST_PER_BATCH], &name).await;
    for (id, (state, tagged)) in view {
        assert!(ended(&state), "{id}: {state:?}");
        assert_eq!(tagged, id != lone, "{id}: only a batch tags");
    }
    assert_eq!(describe(&p).await.desired_capacity, 5);
}

#[tokio::test]
async fn a_vm_detached_but_not_yet_terminated_is_ended_on_the_retry() {
    let name = create_group("batch-crash", 0, 5, 3).await;
    let p = batching(&name, None).await;
    let victim = in_service(&describe(&p).await)[0].clone();
    // The first two calls of a batch landed and the operator died.
    (ec2_client().create_tags())
        .resources(&victim)
        .tags(Tag::builder().key(DETACHED_TAG).value(&name).build())
        .send()
        .await
        .expect("CreateTags");
    (asg_client().detach_instances())
        .auto_scaling_group_name(&name)
        .instance_ids(&victim)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("DetachInstances");
    let running = ec2_view(std::slice::from_ref(&victim), &name).await;
    assert_eq!(running[&victim].0, InstanceStateName::Running);

    let restarted = batching(&name, None).await;
    assert_eq!(
        restarted.terminate_instance(&victim, true).await,
        Ok(TerminateOutcome::AlreadyTerminating),
        "the detach changed the group; this call only ends the VM"
    );
    let view = ec2_view(std::slice::from_ref(&victim), &name).await;
    assert!(ended(&view[&victim].0), "{view:?}");
    assert_eq!(describe(&p).await.desired_capacity, 2, "one decrement only");
}

/// A VM whose retirement is gone too (or that no terminate is called for
/// again: the group no longer counts it) is ended by the restarted
/// process's first read of the group; an untagged one beside it is not.
#[tokio::test]
async fn the_first_read_after_a_restart_ends_the_vms_a_batch_left_detached() {
    let name = create_group("batch-sweep", 0, 5, 4).await;
    let p = batching(&name, None).await;
    let members = in_service(&describe(&p).await);
    let (ours, theirs, tagged_in_service) = (&members[0], &members[1], &members[2]);
    // Two batches' tags landed; one detach landed and the process died.
    (ec2_client().create_tags())
        .resources(ours)
        .resources(tagged_in_service)
        .tags(Tag::builder().key(DETACHED_TAG).value(&name).build())
        .send()
        .await
        .expect("CreateTags");
    for id in [ours, theirs] {
        (asg_client().detach_instances())
            .auto_scaling_group_name(&name)
            .instance_ids(id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .expect("DetachInstances");
    }

    let restarted = batching(&name, None).await;
    let g = describe(&restarted).await;
    assert_eq!(g.desired_capacity, 2, "the sweep changes no capacity");
    let ids = [ours.clone(), theirs.clone(), tagged_in_service.clone()];
    let view = ec2_view(&ids, &name).await;
    assert!(ended(&view[ours].0), "ours is ended: {view:?}");
    assert_eq!(view[theirs].0, InstanceStateName::Running, "{view:?}");
    assert_eq!(
        view[tagged_in_service].0,
        InstanceStateName::Running,
        "still in the group: {view:?}"
    );
}

#[tokio::test]
async fn a_vm_someone_else_detached_is_left_running() {
    let name = create_group("batch-foreign", 0, 5, 3).await;
    let p = batching(&name, None).await;
    let kept = in_service(&describe(&p).await)[0].clone();
    (asg_client().detach_instances())
        .auto_scaling_group_name(&name)
        .instance_ids(&kept)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .expect("DetachInstances");

    assert_eq!(
        p.terminate_instance(&kept, true).await,
        Ok(TerminateOutcome::NotInGroup)
    );
    assert_eq!(
        p.terminate_new_instance(&kept, true).await,
        Ok(TerminateOutcome::NotInGroup),
        "the one-VM call refused for it falls back to reading it"
    );
    let view = ec2_view(std::slice::from_ref(&kept), &name).await;
    assert_eq!(view[&kept], (InstanceStateName::Running, false));
}

#[tokio::test]
async fn a_terminating_hook_not_the_pools_keeps_one_call_per_vm() {
    let name = create_group("batch-hook", 0, 8, 6).await;
    npo_testkit::put_terminating_hook(&asg_client(), &name, "log-shipper").await;

    let p = batching(&name, Some("drain")).await;
    assert_eq!(p.batching(), None, "nothing read yet");
    let victim = in_service(&describe(&p).await)[0].clone();
    // The group's read says so before any batch is due (the pool's
    // `BatchTerminations` condition).
    assert_eq!(
        p.batching(),
        Some(Batching::OtherHooks(vec!["log-shipper".into()]))
    );
    assert_eq!(
        p.terminate_new_instance(&victim, true).await,
        Ok(TerminateOutcome::Terminated)
    );
    let g = describe(&p).await;
    let held = g.instance(&victim).map(|i| i.lifecycle.clone());
    assert_eq!(held, Some(Lifecycle::TerminatingWait), "the hook holds it");
    let view = ec2_view(std::slice::from_ref(&victim), &name).await;
    assert_eq!(view[&victim], (InstanceStateName::Running, false));

    // The same hook named as the pool's own: the operator completes it
    // itself, so skipping it loses nothing and VMs go in batches.
    let own = batching(&name, Some("log-shipper")).await;
    describe(&own).await;
    assert_eq!(own.batching(), Some(Batching::On));
    let next = in_service(&g)[..FEWEST_PER_BATCH].to_vec();
    npo_testkit::aws::terminate_all_at_once(&own, &next).await;
    for (id, (state, tagged)) in ec2_view(&next, &name).await {
        assert!(ended(&state) && tagged, "{id}: {state:?}, tagged {tagged}");
    }
}

/// While another hook keeps VMs one by one, a burst spreads over the
/// group's slots as without batches. Before, the first batch took the whole
/// burst into one slot and sent its VMs one call after the other.
#[tokio::test]
async fn a_burst_under_another_hook_goes_one_vm_per_slot() {
    let name = create_group("batch-hook-burst", 0, 12, 10).await;
    npo_testkit::put_terminating_hook(&asg_client(), &name, "log-shipper").await;
    let victims = in_service(&describe(&batching(&name, None).await).await);
    assert_eq!(victims.len(), 10);

    let proxy = FaultProxy::start(&npo_testkit::moto_endpoint(), 1).await;
    let terminate = "TerminateInstanceInAutoScalingGroup";
    proxy.set_faults(AwsFaults {
        only_actions: vec![terminate.into()],
        latency: std::time::Duration::from_millis(300),
        ..AwsFaults::default()
    });
    // The burst comes before this provider has read the group's hooks.
    let p = npo_testkit::aws::batching_provider_via(&name, &proxy.url).await;
    npo_testkit::aws::terminate_all_at_once(&p, &victims).await;
    let stats = proxy.stats();
    let calls = |action: &str| stats.get(action).cloned().unwrap_or_default();
    assert_eq!(calls(terminate).requests, 10, "{stats:?}");
    // Ten slots, ten VMs each 300 ms on the wire: one after the other
    // would never be two at once.
    assert!(calls(terminate).most_at_once >= 5, "{stats:?}");
    assert_eq!(
        calls("CreateTags").requests + calls("DetachInstances").requests,
        0
    );
    assert_eq!(calls("DescribeLifecycleHooks").requests, 1, "{stats:?}");
}
