//! The fake group's terminating lifecycle hooks, as AWS runs them
//! (`/work/shared/reference/aws-lifecycle-hooks.md` §1.1, §2): an instance
//! the group removes waits in `Terminating:Wait` with one pending action
//! per terminating hook; it proceeds (`Terminating`) once every action is
//! completed, or at once when one times out (the test says when, with
//! [`FakeHooks::time_out`]). A completion or heartbeat that finds no
//! pending action is `NotActive`, AWS's "No active Lifecycle Action found".

use std::collections::HashMap;

use crate::provider::lifecycle::TERMINATING_TRANSITION;
use crate::provider::{
    GroupState, Lifecycle, LifecycleAction, LifecycleActionOutcome, LifecycleHook, ProviderError,
};

#[derive(Clone, Debug, PartialEq, Eq)]
struct Pending {
    hook: String,
    instance_id: String,
    token: String,
}

#[derive(Debug, Default)]
pub struct FakeHooks {
    hooks: Vec<LifecycleHook>,
    pending: Vec<Pending>,
    /// Heartbeats applied, by instance ID.
    heartbeats: HashMap<String, u32>,
    tokens: u32,
}

impl FakeHooks {
    pub fn hook(&self, name: &str) -> Option<&LifecycleHook> {
        self.hooks.iter().find(|h| h.name == name)
    }

    /// PutLifecycleHook of a terminating hook: AWS refuses a heartbeat
    /// timeout outside 30..=7200 (ref §2.1).
    pub fn put(&mut self, name: &str, heartbeat_timeout: u32) -> Result<(), ProviderError> {
        if !(30..=7200).contains(&heartbeat_timeout) {
            return Err(ProviderError::Refused {
                message: format!(
                    "HeartbeatTimeout {heartbeat_timeout} is outside the range 30 to 7200"
                ),
            });
        }
        let hook = LifecycleHook {
            name: name.into(),
            transition: TERMINATING_TRANSITION.into(),
            heartbeat_timeout,
            global_timeout: Some((100 * heartbeat_timeout).min(172_800)),
            default_result: "CONTINUE".into(),
        };
        self.hooks.retain(|h| h.name != name);
        self.hooks.push(hook);
        Ok(())
    }

    /// The instance starts terminating: it waits under every terminating
    /// hook, or proceeds at once when there is none.
    pub fn begin_terminating(&mut self, group: &mut GroupState, instance_id: &str) {
        let names: Vec<String> = (self.hooks.iter())
            .filter(|h| h.is_terminating())
            .map(|h| h.name.clone())
            .collect();
        for hook in &names {
            self.tokens += 1;
            self.pending.push(Pending {
                hook: hook.clone(),
                instance_id: instance_id.into(),
                token: format!("00000000-0000-4000-8000-{:012}", self.tokens),
            });
        }
        let lifecycle = if names.is_empty() {
            Lifecycle::Terminating
        } else {
            Lifecycle::TerminatingWait
        };
        if let Some(i) = group.instances.iter_mut().find(|i| i.id == instance_id) {
            i.lifecycle = lifecycle;
        }
    }

    fn find(&self, a: &LifecycleAction) -> Option<usize> {
        self.pending.iter().position(|p| {
            p.hook == a.hook
                && p.instance_id == a.instance_id
                && a.token.as_ref().is_none_or(|t| *t == p.token)
        })
    }

    /// CompleteLifecycleAction with CONTINUE.
    pub fn complete(
        &mut self,
        group: &mut GroupState,
        a: &LifecycleAction,
    ) -> LifecycleActionOutcome {
        let Some(at) = self.find(a) else {
            return LifecycleActionOutcome::NotActive;
        };
        self.pending.remove(at);
        self.proceed_if_done(group, &a.instance_id);
        LifecycleActionOutcome::Applied
    }

    pub fn heartbeat(&mut self, a: &LifecycleAction) -> LifecycleActionOutcome {
        if self.find(a).is_none() {
            return LifecycleActionOutcome::NotActive;
        }
        *self.heartbeats.entry(a.instance_id.clone()).or_default() += 1;
        LifecycleActionOutcome::Applied
    }

    /// Every action of the instance times out (its hook's default result,
    /// CONTINUE or ABANDON: either way a terminating instance goes).
    pub fn time_out(&mut self, group: &mut GroupState, instance_id: &str) {
        self.pending.retain(|p| p.instance_id != instance_id);
        self.proceed_if_done(group, instance_id);
    }

    /// The token of the instance's pending action under `hook`, as the
    /// hook's notification would give it.
    pub fn token(&self, hook: &str, instance_id: &str) -> Option<String> {
        (self.pending.iter())
            .find(|p| p.hook == hook && p.instance_id == instance_id)
            .map(|p| p.token.clone())
    }

    pub fn heartbeats(&self, instance_id: &str) -> u32 {
        self.heartbeats.get(instance_id).copied().unwrap_or(0)
    }

    /// Instances with an action pending.
    pub fn waiting(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.pending.iter().map(|p| p.instance_id.clone()).collect();
        ids.dedup();
        ids
    }

    fn proceed_if_done(&mut self, group: &mut GroupState, instance_id: &str) {
        if self.pending.iter().any(|p| p.instance_id == instance_id) {
            return;
        }
        if let Some(i) = group
            .instances
            .iter_mut()
            .find(|i| i.id == instance_id && i.lifecycle == Lifecycle::TerminatingWait)
        {
            i.lifecycle = Lifecycle::Terminating;
        }
    }
}
