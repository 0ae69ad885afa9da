//! The AWS provider's four hook calls against the hook-enforcing moto: the
//! typed outcomes the controller relies on (ref §2.1-§2.4, §5.1).

use nomad_pool_operator::provider::{
    AwsAutoScalingGroup, CloudProvider, Lifecycle, LifecycleAction, LifecycleActionOutcome,
    ProviderError,
};
use npo_testkit::*;

use super::{WAIT, set_desired};

async fn provider(group: &str) -> AwsAutoScalingGroup {
    npo_testkit::aws::moto_provider(group).await
}

#[tokio::test]
async fn hook_calls_answer_with_the_outcomes_the_controller_needs() {
    let asg = asg_client();
    let group = unique("hook-provider");
    create_group(&asg, &group, 0, 10, 3).await;
    let p = provider(&group).await;

    assert_eq!(p.describe_lifecycle_hook("drain").await, Ok(None));
    // AWS's range (ref §2.1): refused, not stored.
    let refused = p.put_lifecycle_hook("drain", 29).await;
    assert!(
        matches!(refused, Err(ProviderError::Refused { .. })),
        "{refused:?}"
    );
    p.put_lifecycle_hook("drain", 45).await.expect("put");
    let hook = p.describe_lifecycle_hook("drain").await.unwrap().unwrap();
    assert!(hook.is_terminating());
    assert_eq!(
        (
            hook.heartbeat_timeout,
            hook.global_timeout,
            hook.default_result.as_str()
        ),
        (45, Some(4500), "CONTINUE")
    );

    set_desired(&asg, &group, 2).await;
    let g = p.describe_group().await.unwrap();
    let held: Vec<&str> = (g.instances.iter())
        .filter(|i| i.lifecycle == Lifecycle::TerminatingWait)
        .map(|i| i.id.as_str())
        .collect();
    assert_eq!(held.len(), 1, "{g:?}");
    assert_eq!(
        g.instances
            .iter()
            .find(|i| i.id == held[0])
            .unwrap()
            .lifecycle
            .to_string(),
        WAIT
    );
    let action = LifecycleAction {
        hook: "drain".into(),
        instance_id: held[0].into(),
        token: None,
    };
    let other = LifecycleAction {
        hook: "someone-elses".into(),
        ..action.clone()
    };
    assert_eq!(
        p.record_lifecycle_action_heartbeat(&action).await,
        Ok(LifecycleActionOutcome::Applied)
    );
    assert_eq!(
        p.complete_lifecycle_action(&other).await,
        Ok(LifecycleActionOutcome::NotActive)
    );
    assert_eq!(
        p.complete_lifecycle_action(&action).await,
        Ok(LifecycleActionOutcome::Applied)
    );
    // Completed before (a restart): AWS's ValidationError is an outcome.
    assert_eq!(
        p.complete_lifecycle_action(&action).await,
        Ok(LifecycleActionOutcome::NotActive)
    );
    assert_eq!(
        p.record_lifecycle_action_heartbeat(&action).await,
        Ok(LifecycleActionOutcome::NotActive)
    );
}
