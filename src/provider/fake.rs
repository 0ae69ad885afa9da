//! An in-memory [`CloudProvider`] shared by the unit tests and the
//! reconcile tests (as Karpenter's fake cloud provider is): a group whose
//! state the test sets, that records every call and answers as the trait's
//! contract says a cloud does, no more leniently.
//!
//! What it does like a cloud: terminating an instance already on its way
//! out, or not in the group, does nothing and says so; a decrement below the
//! group's minimum and a desired capacity outside min..=max are refused;
//! suspended terminations are refused. What it does not do: launch
//! instances (a raised desired capacity stays a number until the test adds
//! instances with [`FakeProvider::launch`]), or finish a termination by
//! itself ([`FakeProvider::settle`]).
//!
//! Lifecycle hooks (`hooks`) are as strict as AWS's: a terminating hook
//! holds every instance the group removes in `Terminating:Wait` until each
//! of its hooks' actions is completed (or the test times it out), and a
//! completion or heartbeat with no pending action is answered `NotActive`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::{
    CloudProvider, Connector, GroupState, InstanceState, LaunchFacts, Lifecycle, LifecycleAction,
    LifecycleActionOutcome, LifecycleHook, ProviderConfig, ProviderError, TerminateOutcome,
};

mod hand_made;
mod hooks;
pub use hand_made::{group_of, vm};
pub use hooks::FakeHooks;

/// The Nomad attribute the fake's instance IDs are found under: the one
/// `nomad-sim` fingerprints its VMs with.
pub const INSTANCE_ID_ATTRIBUTE: &str = "unique.platform.aws.instance-id";

/// One call the provider received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Describe,
    Terminate {
        instance_id: String,
        decrement: bool,
    },
    SetDesiredCapacity(u32),
    DescribeLifecycleHook(String),
    PutLifecycleHook {
        hook: String,
        heartbeat_timeout: u32,
    },
    CompleteLifecycleAction {
        hook: String,
        instance_id: String,
        token: Option<String>,
    },
    RecordLifecycleActionHeartbeat {
        hook: String,
        instance_id: String,
        token: Option<String>,
    },
}

/// Which call an injected failure answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    Describe,
    Terminate,
    SetDesiredCapacity,
    DescribeLifecycleHook,
    PutLifecycleHook,
    CompleteLifecycleAction,
    RecordLifecycleActionHeartbeat,
}

#[derive(Debug)]
pub struct FakeProvider {
    state: Mutex<FakeState>,
}

#[derive(Debug)]
struct FakeState {
    group: GroupState,
    calls: Vec<Call>,
    failures: HashMap<Operation, ProviderError>,
    /// How long a terminate call takes (a real one takes tens to hundreds
    /// of milliseconds), and the most seen in flight at once.
    terminate_takes: std::time::Duration,
    terminates_in_flight: usize,
    most_terminates_in_flight: usize,
    /// The group's lifecycle hooks and the actions pending under them.
    hooks: FakeHooks,
    /// The launch facts a describe answers with (the others read `None`,
    /// as a cloud's describe does when they are not asked for).
    launch_facts: LaunchFacts,
}

impl FakeProvider {
    /// A group named `name` with these instances in service, desired = their
    /// number, min 0, max 1,000, untagged.
    pub fn new(name: &str, instances: &[&str]) -> Arc<Self> {
        let group = GroupState {
            name: name.into(),
            min_size: 0,
            max_size: 1_000,
            desired_capacity: instances.len() as u32,
            terminate_suspended: false,
            suspended_processes: vec![],
            instances: instances.iter().map(|id| in_service(id)).collect(),
            owner_tag: None,
            launch_specs: vec![],
            reads_launch_times: true,
        };
        Arc::new(FakeProvider {
            state: Mutex::new(FakeState {
                group,
                calls: vec![],
                failures: HashMap::new(),
                terminate_takes: std::time::Duration::ZERO,
                terminates_in_flight: 0,
                most_terminates_in_flight: 0,
                hooks: FakeHooks::default(),
                launch_facts: LaunchFacts::default(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake provider lock")
    }

    /// Change the group as a person or the cloud would.
    pub fn update(&self, change: impl FnOnce(&mut GroupState)) {
        change(&mut self.lock().group);
    }

    /// The group as the cloud holds it now.
    pub fn group_state(&self) -> GroupState {
        self.lock().group.clone()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    /// The next call of `operation` fails with `error`.
    pub fn fail_next(&self, operation: Operation, error: ProviderError) {
        self.lock().failures.insert(operation, error);
    }

    /// Terminate calls take `takes` from now on.
    pub fn terminates_take(&self, takes: std::time::Duration) {
        self.lock().terminate_takes = takes;
    }

    /// The most terminate calls that were in flight at once.
    pub fn most_terminates_in_flight(&self) -> usize {
        self.lock().most_terminates_in_flight
    }

    /// The group's hooks and pending actions, as a test sets or reads them.
    pub fn hooks<R>(&self, f: impl FnOnce(&mut FakeHooks, &mut GroupState) -> R) -> R {
        let mut st = self.lock();
        let st = &mut *st;
        f(&mut st.hooks, &mut st.group)
    }

    /// Add an instance in service, as the cloud does after a scale-out.
    pub fn launch(&self, instance_id: &str) {
        self.lock().group.instances.push(in_service(instance_id));
    }

    /// Terminations finish: terminating instances leave the group, except
    /// those a lifecycle hook holds.
    pub fn settle(&self) {
        self.lock()
            .group
            .instances
            .retain(|i| !i.lifecycle.is_terminating() || i.lifecycle == Lifecycle::TerminatingWait);
    }

    /// Someone else lowers the desired capacity by `by` (a scaling policy,
    /// the console): the group picks its first unprotected instances in
    /// service, as the cloud's termination policy would.
    pub fn scale_in_outside(&self, by: u32) -> Vec<String> {
        let mut st = self.lock();
        let st = &mut *st;
        st.group.desired_capacity = st.group.desired_capacity.saturating_sub(by);
        let victims: Vec<String> = (st.group.instances.iter())
            .filter(|i| i.lifecycle == Lifecycle::InService && !i.protected_from_scale_in)
            .take(by as usize)
            .map(|i| i.id.clone())
            .collect();
        for id in &victims {
            st.hooks.begin_terminating(&mut st.group, id);
        }
        victims
    }

    fn call(&self, call: Call, operation: Operation) -> Result<(), ProviderError> {
        let mut st = self.lock();
        st.calls.push(call);
        match st.failures.remove(&operation) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn terminate(
        &self,
        instance_id: &str,
        decrement: bool,
    ) -> Result<TerminateOutcome, ProviderError> {
        let call = Call::Terminate {
            instance_id: instance_id.into(),
            decrement,
        };
        self.call(call, Operation::Terminate)?;
        let mut st = self.lock();
        let st = &mut *st;
        let group = &mut st.group;
        if group.terminate_suspended {
            return Err(refused("the Terminate process is suspended"));
        }
        let Some(at) = group.instances.iter().position(|i| i.id == instance_id) else {
            return Ok(TerminateOutcome::NotInGroup);
        };
        match group.instances[at].lifecycle {
            Lifecycle::Terminating | Lifecycle::TerminatingWait | Lifecycle::Terminated => {
                return Ok(TerminateOutcome::AlreadyTerminating);
            }
            Lifecycle::Detaching => return Ok(TerminateOutcome::NotInGroup),
            _ => {}
        }
        if decrement {
            if group.desired_capacity <= group.min_size {
                return Err(refused(&format!(
                    "Currently, desiredSize equals minSize ({}). Terminating instance without replacement will violate group's min size constraint.",
                    group.min_size
                )));
            }
            group.desired_capacity -= 1;
        }
        st.hooks.begin_terminating(&mut st.group, instance_id);
        Ok(TerminateOutcome::Terminated)
    }
}

fn in_service(id: &str) -> InstanceState {
    InstanceState {
        id: id.into(),
        lifecycle: Lifecycle::InService,
        protected_from_scale_in: false,
        zone: Some("zone-a".into()),
        healthy: true,
        launched_at: None,
        launch_spec: None,
    }
}

fn refused(message: &str) -> ProviderError {
    ProviderError::Refused {
        message: message.into(),
    }
}

impl CloudProvider for FakeProvider {
    fn kind(&self) -> &'static str {
        "fake"
    }

    fn group(&self) -> String {
        format!("fake/{}", self.lock().group.name)
    }

    fn describe_group(&self) -> BoxFuture<'_, Result<GroupState, ProviderError>> {
        let result = self.call(Call::Describe, Operation::Describe).map(|()| {
            let wanted = self.lock().launch_facts;
            let mut group = self.group_state();
            for i in &mut group.instances {
                i.launched_at = i.launched_at.filter(|_| wanted.launch_time);
                i.launch_spec = i.launch_spec.take().filter(|_| wanted.launch_spec);
            }
            if !wanted.launch_spec {
                group.launch_specs.clear();
            }
            group
        });
        futures::future::ready(result).boxed()
    }

    fn read_launch_facts(&self, facts: LaunchFacts) {
        self.lock().launch_facts = facts;
    }

    fn terminate_instance<'a>(
        &'a self,
        instance_id: &'a str,
        decrement: bool,
    ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>> {
        let takes = self.lock().terminate_takes;
        if takes.is_zero() {
            return futures::future::ready(self.terminate(instance_id, decrement)).boxed();
        }
        async move {
            {
                let mut st = self.lock();
                st.terminates_in_flight += 1;
                st.most_terminates_in_flight =
                    (st.most_terminates_in_flight).max(st.terminates_in_flight);
            }
            tokio::time::sleep(takes).await;
            let outcome = self.terminate(instance_id, decrement);
            self.lock().terminates_in_flight -= 1;
            outcome
        }
        .boxed()
    }

    fn set_desired_capacity(&self, desired: u32) -> BoxFuture<'_, Result<(), ProviderError>> {
        let result = self
            .call(Call::SetDesiredCapacity(desired), Operation::SetDesiredCapacity)
            .and_then(|()| {
                let mut st = self.lock();
                let g = &mut st.group;
                if desired < g.min_size || desired > g.max_size {
                    return Err(refused(&format!(
                        "New SetDesiredCapacity value {desired} is outside min {} and max {} for the group",
                        g.min_size, g.max_size
                    )));
                }
                g.desired_capacity = desired;
                Ok(())
            });
        futures::future::ready(result).boxed()
    }

    fn instance_id_attribute(&self) -> &'static str {
        INSTANCE_ID_ATTRIBUTE
    }

    fn describe_lifecycle_hook<'a>(
        &'a self,
        hook: &'a str,
    ) -> BoxFuture<'a, Result<Option<LifecycleHook>, ProviderError>> {
        let call = Call::DescribeLifecycleHook(hook.into());
        let result = (self.call(call, Operation::DescribeLifecycleHook))
            .map(|()| self.lock().hooks.hook(hook).cloned());
        futures::future::ready(result).boxed()
    }

    fn put_lifecycle_hook<'a>(
        &'a self,
        hook: &'a str,
        heartbeat_timeout: u32,
    ) -> BoxFuture<'a, Result<(), ProviderError>> {
        let call = Call::PutLifecycleHook {
            hook: hook.into(),
            heartbeat_timeout,
        };
        let result = (self.call(call, Operation::PutLifecycleHook))
            .and_then(|()| self.lock().hooks.put(hook, heartbeat_timeout));
        futures::future::ready(result).boxed()
    }

    fn complete_lifecycle_action<'a>(
        &'a self,
        action: &'a LifecycleAction,
    ) -> BoxFuture<'a, Result<LifecycleActionOutcome, ProviderError>> {
        let call = Call::CompleteLifecycleAction {
            hook: action.hook.clone(),
            instance_id: action.instance_id.clone(),
            token: action.token.clone(),
        };
        let result = self
            .call(call, Operation::CompleteLifecycleAction)
            .map(|()| {
                let mut st = self.lock();
                let st = &mut *st;
                st.hooks.complete(&mut st.group, action)
            });
        futures::future::ready(result).boxed()
    }

    fn record_lifecycle_action_heartbeat<'a>(
        &'a self,
        action: &'a LifecycleAction,
    ) -> BoxFuture<'a, Result<LifecycleActionOutcome, ProviderError>> {
        let call = Call::RecordLifecycleActionHeartbeat {
            hook: action.hook.clone(),
            instance_id: action.instance_id.clone(),
            token: action.token.clone(),
        };
        let result = (self.call(call, Operation::RecordLifecycleActionHeartbeat))
            .map(|()| self.lock().hooks.heartbeat(action));
        futures::future::ready(result).boxed()
    }
}

/// A [`Connector`] that hands out fake groups by the name a pool's spec
/// gives its group; a name it does not hold is a group that does not exist.
#[derive(Debug, Default)]
pub struct FakeCloud(Mutex<HashMap<String, Arc<FakeProvider>>>);

impl FakeCloud {
    pub fn add(&self, group: Arc<FakeProvider>) {
        let name = group.group_state().name;
        self.0.lock().expect("fake cloud lock").insert(name, group);
    }
}

impl Connector for FakeCloud {
    fn connect(
        &self,
        config: ProviderConfig,
    ) -> BoxFuture<'static, Result<Arc<dyn CloudProvider>, ProviderError>> {
        let name = config.group_name().to_owned();
        let found = self.0.lock().expect("fake cloud lock").get(&name).cloned();
        let result = match found {
            Some(group) => Ok(group as Arc<dyn CloudProvider>),
            None => Err(ProviderError::GroupNotFound { group: name }),
        };
        futures::future::ready(result).boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn terminations_follow_the_trait_contract() {
        let fake = FakeProvider::new("g", &["i-1", "i-2", "i-3"]);
        fake.update(|g| g.min_size = 1);
        let t = |id: &'static str, dec| {
            let fake = fake.clone();
            async move { fake.terminate_instance(id, dec).await }
        };
        assert_eq!(t("i-1", true).await, Ok(TerminateOutcome::Terminated));
        assert_eq!(
            t("i-1", true).await,
            Ok(TerminateOutcome::AlreadyTerminating)
        );
        assert_eq!(t("i-9", true).await, Ok(TerminateOutcome::NotInGroup));
        assert_eq!(fake.group_state().desired_capacity, 2, "one decrement only");
        assert_eq!(t("i-2", true).await, Ok(TerminateOutcome::Terminated));
        assert!(
            matches!(t("i-3", true).await, Err(ProviderError::Refused { .. })),
            "below the minimum"
        );
        assert_eq!(t("i-3", false).await, Ok(TerminateOutcome::Terminated));
        fake.settle();
        assert!(fake.group_state().instances.is_empty());
        fake.fail_next(
            Operation::Describe,
            ProviderError::Throttled {
                message: "Rate exceeded".into(),
            },
        );
        assert!(fake.describe_group().await.is_err());
        assert!(fake.describe_group().await.is_ok(), "one failure only");
        assert!(fake.set_desired_capacity(1_001).await.is_err());
    }

    /// ref §1.1, §2.3, §2.4: a hook holds what the group removes; the
    /// action completes once, then it is gone (`NotActive`, not an error).
    #[tokio::test]
    async fn a_terminating_hook_holds_instances_until_completed() {
        let fake = FakeProvider::new("g", &["i-1", "i-2", "i-3"]);
        assert_eq!(fake.describe_lifecycle_hook("drain").await, Ok(None));
        assert!(fake.put_lifecycle_hook("drain", 29).await.is_err());
        fake.put_lifecycle_hook("drain", 30).await.unwrap();
        let hook = fake
            .describe_lifecycle_hook("drain")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (hook.heartbeat_timeout, hook.global_timeout),
            (30, Some(3000))
        );

        assert_eq!(fake.scale_in_outside(1), vec!["i-1".to_string()]);
        let g = fake.group_state();
        assert_eq!(g.desired_capacity, 2);
        assert_eq!(g.instances[0].lifecycle, Lifecycle::TerminatingWait);
        assert_eq!(
            fake.terminate_instance("i-1", false).await,
            Ok(TerminateOutcome::AlreadyTerminating)
        );
        fake.settle();
        assert_eq!(fake.group_state().instances.len(), 3, "held, not gone");

        let action = |id: &str, hook: &str| LifecycleAction {
            hook: hook.into(),
            instance_id: id.into(),
            token: None,
        };
        let other_hook = action("i-1", "other");
        assert_eq!(
            fake.complete_lifecycle_action(&other_hook).await,
            Ok(LifecycleActionOutcome::NotActive)
        );
        let a = action("i-1", "drain");
        let wrong_token = LifecycleAction {
            token: Some("00000000-0000-4000-8000-999999999999".into()),
            ..a.clone()
        };
        assert_eq!(
            fake.record_lifecycle_action_heartbeat(&wrong_token).await,
            Ok(LifecycleActionOutcome::NotActive)
        );
        assert_eq!(
            fake.record_lifecycle_action_heartbeat(&a).await,
            Ok(LifecycleActionOutcome::Applied)
        );
        assert_eq!(fake.hooks(|h, _| h.heartbeats("i-1")), 1);
        assert_eq!(
            fake.complete_lifecycle_action(&a).await,
            Ok(LifecycleActionOutcome::Applied)
        );
        assert_eq!(
            fake.complete_lifecycle_action(&a).await,
            Ok(LifecycleActionOutcome::NotActive),
            "a second completion finds nothing pending"
        );
        assert_eq!(
            fake.group_state().instances[0].lifecycle,
            Lifecycle::Terminating
        );

        // The operator's own terminate goes through the hook too.
        assert_eq!(
            fake.terminate_instance("i-2", true).await,
            Ok(TerminateOutcome::Terminated)
        );
        assert_eq!(
            fake.group_state().instances[1].lifecycle,
            Lifecycle::TerminatingWait
        );
        fake.hooks(|h, g| h.time_out(g, "i-2"));
        assert_eq!(
            fake.group_state().instances[1].lifecycle,
            Lifecycle::Terminating
        );
        fake.settle();
        assert_eq!(fake.group_state().instances.len(), 1);
    }

    #[tokio::test]
    async fn without_hooks_the_provider_default_refuses() {
        #[derive(Debug)]
        struct NoHooks(Arc<FakeProvider>);
        impl CloudProvider for NoHooks {
            fn kind(&self) -> &'static str {
                "nohooks"
            }
            fn group(&self) -> String {
                self.0.group()
            }
            fn describe_group(&self) -> BoxFuture<'_, Result<GroupState, ProviderError>> {
                self.0.describe_group()
            }
            fn terminate_instance<'a>(
                &'a self,
                id: &'a str,
                decrement: bool,
            ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>> {
                self.0.terminate_instance(id, decrement)
            }
            fn set_desired_capacity(&self, d: u32) -> BoxFuture<'_, Result<(), ProviderError>> {
                self.0.set_desired_capacity(d)
            }
            fn instance_id_attribute(&self) -> &'static str {
                INSTANCE_ID_ATTRIBUTE
            }
        }
        let p = NoHooks(FakeProvider::new("g", &["i-1"]));
        assert!(matches!(
            p.describe_lifecycle_hook("drain").await,
            Err(ProviderError::Refused { .. })
        ));
    }
}
