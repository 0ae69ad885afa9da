//! What the pool's lifecycle hook adds to the status of a retirement with
//! reason `LifecycleHook`: the record of the action that holds its VM (the
//! hook, the action's token, when it was completed) and the
//! `LifecycleGlobalTimeout` condition. Pure.
//!
//! The token and the completion are known to the process that received
//! the notification or made the call; recorded here, they outlive it: a
//! restarted operator completes the action with its token (before the
//! queue gives the message again), and does not complete it a second time.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{GLOBAL_TIMEOUT, lifecycle_global_timeout};
use crate::api::{
    DrainPolicy, LifecycleActionRecord, NomadClientRetirement, NomadClientRetirementStatus,
    RetirePhase, RetireReason, RetiringNode,
};
use crate::controller::hooks::global_cap;

/// AWS's tokens are UUIDs (ref §2.3: exactly 36 characters); anything else
/// the status would refuse, and AWS too.
const TOKEN_LEN: usize = 36;

/// What this reconcile knows of the pool's hook and its actions.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HoldFacts {
    /// The hook confirmed this reconcile, and its heartbeat timeout; unset,
    /// the statuses keep what they said.
    pub hook: Option<(String, u32)>,
    /// Tokens the hook's queue gave, by instance ID.
    pub tokens: HashMap<String, String>,
    /// When this process completed each action, by instance ID.
    pub completed: HashMap<String, Timestamp>,
}

/// Update `status` (built by `records::status_of`, which kept the previous
/// record and condition) for the hook: the record, and the condition under
/// `own`, the client's drain as its retirement or the pool sets it (not
/// the one the global timeout capped).
pub fn apply(
    status: &mut NomadClientRetirementStatus,
    e: &RetiringNode,
    facts: &HoldFacts,
    own: &DrainPolicy,
    now: Timestamp,
) {
    if e.reason != RetireReason::LifecycleHook {
        return;
    }
    let Some(instance) = e.instance_id.as_deref() else {
        return;
    };
    status.lifecycle_action = record(status.lifecycle_action.take(), instance, facts);
    let Some((_, heartbeat_timeout)) = &facts.hook else {
        return;
    };
    // Decided when the drain was sent: a drain deadline edited later does
    // not change the drain Nomad runs.
    let decided = status.conditions.iter().any(|c| c.type_ == GLOBAL_TIMEOUT);
    if decided && e.phase >= RetirePhase::Draining {
        return;
    }
    let Some(cap) = global_cap(*heartbeat_timeout, e, own, now) else {
        return;
    };
    let condition =
        lifecycle_global_timeout(&status.conditions, status.observed_generation, &cap, now);
    match (status.conditions.iter_mut()).find(|c| c.type_ == GLOBAL_TIMEOUT) {
        Some(c) => *c = condition,
        None => status.conditions.push(condition),
    }
}

/// A finished retirement's record, with what this process learnt since its
/// last write (a completion whose record had not landed yet).
pub fn finish(status: &mut NomadClientRetirementStatus, facts: &HoldFacts) {
    let Some(instance) = status.instance_id.clone() else {
        return;
    };
    if status.lifecycle_action.is_some() {
        status.lifecycle_action = record(status.lifecycle_action.take(), &instance, facts);
    }
}

/// The previous record with what this process learnt added; a token or a
/// completion once recorded stays.
fn record(
    previous: Option<LifecycleActionRecord>,
    instance: &str,
    facts: &HoldFacts,
) -> Option<LifecycleActionRecord> {
    let hook = (previous.as_ref().map(|p| p.hook.clone()))
        .or_else(|| facts.hook.as_ref().map(|(name, _)| name.clone()))?;
    let previous = previous.unwrap_or_default();
    let token = previous.token.or_else(|| {
        (facts.tokens.get(instance))
            .filter(|t| t.len() == TOKEN_LEN)
            .cloned()
    });
    let completed_at =
        (previous.completed_at).or_else(|| facts.completed.get(instance).map(|t| Time(*t)));
    Some(LifecycleActionRecord {
        hook,
        token,
        completed_at,
    })
}

/// The drain a retirement's client gets, before the global timeout's cap.
pub fn own_drain(r: Option<&NomadClientRetirement>, pool: &DrainPolicy) -> DrainPolicy {
    (r.and_then(|r| r.spec.drain.as_ref()))
        .map(|d| d.over(pool))
        .unwrap_or_else(|| pool.clone())
}

/// The actions the pool's retirements record as completed, by instance ID.
pub fn completed(retirements: &[std::sync::Arc<NomadClientRetirement>]) -> Vec<String> {
    (retirements.iter())
        .filter_map(|r| r.status.as_ref())
        .filter(|st| (st.lifecycle_action.as_ref()).is_some_and(|a| a.completed_at.is_some()))
        .filter_map(|st| st.instance_id.clone())
        .collect()
}

/// The tokens the pool's retirements record, by instance ID.
pub fn tokens(retirements: &[std::sync::Arc<NomadClientRetirement>]) -> HashMap<String, String> {
    (retirements.iter())
        .filter_map(|r| r.status.as_ref())
        .filter_map(|st| {
            let token = st.lifecycle_action.as_ref()?.token.clone()?;
            Some((st.instance_id.clone()?, token))
        })
        .collect()
}

#[cfg(test)]
mod tests;
