//! Discovery through the hook's notification queue (`lifecycleHook.queueURL`):
//! a long-polling receiver per pool finds a VM entering `Terminating:Wait`
//! within about a second, where the group reads (every ~5 s) take up to ten.
//!
//! A message is believed only after the group confirms it: its instance is
//! read (`instance_lifecycles`) and must be in this group in
//! `Terminating:Wait`. A confirmed VM is handed to the pool (its trigger
//! fires) and shown held in the next reconcile's view of the group
//! ([`overlay`]), which the planner turns into a `LifecycleHook` retirement
//! as it would from a group read. Group reads go on as the safety net.
//!
//! Messages (ref §3, §5.4):
//! - `autoscaling:TEST_NOTIFICATION` of this group: deleted;
//! - another group's, another hook's, another transition's, or anything
//!   that is not a lifecycle notification: left alone (not deleted), for
//!   whoever shares the queue;
//! - this hook's: kept until the instance's action is over (the group no
//!   longer shows it waiting: completed, or timed out), and only then
//!   deleted, so an operator restarted before that receives it again.
//!
//! Memory is bounded: at most [`MAX_HELD`] VMs are remembered (more are
//! left in the queue for a later receive, and the group reads find them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::super::trigger::Trigger;
use crate::provider::{CloudProvider, GroupState, Lifecycle, LifecycleQueue, Notice, QueueError};

/// Held VMs remembered at once; a group of 10,000 scaled in at once fits.
pub const MAX_HELD: usize = 10_000;
/// How often the remembered VMs are read, to delete the messages of those
/// whose action is over.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Back-off after a failed receive, doubled up to the cap.
const RETRY_FIRST: Duration = Duration::from_secs(2);
const RETRY_CAP: Duration = Duration::from_secs(60);

/// What a received message asks of the receiver. Pure.
#[derive(Debug, PartialEq, Eq)]
pub enum Triage {
    Delete,
    Leave,
    Ours {
        instance_id: String,
        token: Option<String>,
    },
}

pub fn triage(notice: &Notice, group: &str, hook: &str) -> Triage {
    match notice {
        // A test message names the group it was sent for; one without a
        // name can only be ours (its queue was named to this group's hook).
        Notice::Test { group: g } if g.as_deref().is_none_or(|g| g == group) => Triage::Delete,
        Notice::Terminating {
            group: g,
            hook: h,
            instance_id,
            token,
        } if g == group && h == hook => Triage::Ours {
            instance_id: instance_id.clone(),
            token: token.clone(),
        },
        _ => Triage::Leave,
    }
}

/// A VM the group confirmed held, and its message.
#[derive(Clone, Debug)]
struct Held {
    token: Option<String>,
    /// The latest receipt handle: SQS may not delete with an older one.
    receipt_handle: String,
}

/// What the receiver shares with the reconciles.
#[derive(Default)]
struct Shared {
    held: Mutex<HashMap<String, Held>>,
    /// The queue's trouble; `None` while it reads.
    problem: Mutex<Option<QueueError>>,
}

/// The running receiver of one pool. Dropped, it stops.
pub struct QueueWatch {
    pub url: String,
    pub hook: String,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for QueueWatch {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Everything a receiver needs.
pub struct QueueParts {
    pub queue: Result<Arc<dyn LifecycleQueue>, QueueError>,
    pub provider: Arc<dyn CloudProvider>,
    pub group: String,
    pub hook: String,
    pub trigger: Trigger,
}

impl QueueWatch {
    pub fn start(url: &str, parts: QueueParts) -> Self {
        let shared = Arc::new(Shared::default());
        let hook = parts.hook.clone();
        let queue = match parts.queue {
            Ok(q) => q,
            Err(e) => {
                // Nothing to read: the condition says what to fix.
                *shared.problem.lock().expect("queue lock") = Some(e);
                return Self {
                    url: url.to_owned(),
                    hook,
                    shared,
                    tasks: Vec::new(),
                };
            }
        };
        let receiver = Receiver {
            queue,
            provider: parts.provider,
            group: parts.group,
            hook: parts.hook,
            trigger: parts.trigger,
            shared: shared.clone(),
        };
        let receiver = Arc::new(receiver);
        let tasks = vec![
            tokio::spawn(receiver.clone().receive_loop()),
            tokio::spawn(receiver.sweep_loop()),
        ];
        info!(url, hook, "reading the lifecycle hook's queue");
        Self {
            url: url.to_owned(),
            hook,
            shared,
            tasks,
        }
    }

    pub fn problem(&self) -> Option<QueueError> {
        self.shared.problem.lock().expect("queue lock").clone()
    }

    /// The confirmed held VMs, with their tokens.
    pub fn held(&self) -> Vec<(String, Option<String>)> {
        let held = self.shared.held.lock().expect("queue lock");
        held.iter()
            .map(|(id, h)| (id.clone(), h.token.clone()))
            .collect()
    }

    pub fn token(&self, instance_id: &str) -> Option<String> {
        let held = self.shared.held.lock().expect("queue lock");
        held.get(instance_id).and_then(|h| h.token.clone())
    }
}

/// Show the confirmed held VMs held in a group view older than their
/// confirmation: one that still shows them in service (a view that shows
/// them leaving, gone or held already is as new or newer). Returns how many
/// it changed.
pub fn overlay(held: &[(String, Option<String>)], group: &mut GroupState) -> usize {
    let mut changed = 0;
    for (id, _) in held {
        if let Some(i) = group.instances.iter_mut().find(|i| i.id == *id)
            && i.lifecycle.counted()
        {
            i.lifecycle = Lifecycle::TerminatingWait;
            changed += 1;
        }
    }
    changed
}

struct Receiver {
    queue: Arc<dyn LifecycleQueue>,
    provider: Arc<dyn CloudProvider>,
    group: String,
    hook: String,
    trigger: Trigger,
    shared: Arc<Shared>,
}

impl Receiver {
    async fn receive_loop(self: Arc<Self>) {
        let mut retry = RETRY_FIRST;
        loop {
            match self.queue.receive().await {
                Ok(messages) => {
                    retry = RETRY_FIRST;
                    self.set_problem(None);
                    self.handle(messages).await;
                }
                Err(e) => {
                    warn!(url = self.queue.url(), error = %e, "the lifecycle hook's queue cannot be read; group reads go on");
                    self.set_problem(Some(e));
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_CAP);
                }
            }
        }
    }

    /// Record the queue's state; a change wakes the pool, whose condition
    /// reports it.
    fn set_problem(&self, problem: Option<QueueError>) {
        let mut current = self.shared.problem.lock().expect("queue lock");
        if *current != problem {
            *current = problem;
            drop(current);
            self.trigger.fire();
        }
    }

    async fn handle(&self, messages: Vec<crate::provider::QueuedNotice>) {
        let mut candidates: Vec<(String, Option<String>, String)> = Vec::new();
        for m in messages {
            match triage(&m.notice, &self.group, &self.hook) {
                Triage::Delete => {
                    debug!(message_id = m.message_id, "test notification deleted");
                    self.delete(&m.receipt_handle).await;
                }
                Triage::Leave => {
                    debug!(message_id = m.message_id, notice = ?m.notice, "message left in the queue: not this hook's")
                }
                Triage::Ours { instance_id, token } => {
                    let mut held = self.shared.held.lock().expect("queue lock");
                    if let Some(h) = held.get_mut(&instance_id) {
                        // Received again after its visibility timeout.
                        h.receipt_handle = m.receipt_handle;
                    } else {
                        candidates.push((instance_id, token, m.receipt_handle));
                    }
                }
            }
        }
        if candidates.is_empty() {
            return;
        }
        let ids: Vec<String> = candidates.iter().map(|c| c.0.clone()).collect();
        let states = match self.provider.instance_lifecycles(&ids).await {
            Ok(states) => states,
            Err(e) => {
                // They come back after the visibility timeout.
                warn!(error = %e, "confirming queued lifecycle actions failed");
                return;
            }
        };
        let mut new = 0;
        for (instance_id, token, receipt_handle) in candidates {
            let state = states.iter().find(|(id, _)| *id == instance_id);
            match state.map(|(_, l)| l) {
                Some(Lifecycle::TerminatingWait) => {
                    let mut held = self.shared.held.lock().expect("queue lock");
                    if held.len() < MAX_HELD {
                        info!(
                            instance_id,
                            "the queue names a VM held by the lifecycle hook"
                        );
                        held.insert(
                            instance_id,
                            Held {
                                token,
                                receipt_handle,
                            },
                        );
                        new += 1;
                    }
                }
                // Gone, or past the wait: its action is over.
                None | Some(Lifecycle::Terminating | Lifecycle::Terminated) => {
                    debug!(
                        instance_id,
                        "queued lifecycle action already over; message deleted"
                    );
                    self.delete(&receipt_handle).await;
                }
                // Not (yet) shown waiting: the message comes back.
                Some(other) => debug!(instance_id, %other, "queued lifecycle action not confirmed"),
            }
        }
        if new > 0 {
            self.trigger.fire();
        }
    }

    async fn delete(&self, receipt_handle: &str) {
        if let Err(e) = self.queue.delete(receipt_handle).await {
            warn!(url = self.queue.url(), error = %e, "deleting a lifecycle message failed; it comes back and is deleted then");
        }
    }

    /// Delete the messages of held VMs whose action is over.
    async fn sweep_loop(self: Arc<Self>) {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let ids: Vec<String> = {
                let held = self.shared.held.lock().expect("queue lock");
                held.keys().cloned().collect()
            };
            if ids.is_empty() {
                continue;
            }
            let states = match self.provider.instance_lifecycles(&ids).await {
                Ok(states) => states,
                Err(e) => {
                    debug!(error = %e, "reading held VMs failed; next sweep");
                    continue;
                }
            };
            for id in ids {
                let state = states.iter().find(|(i, _)| *i == id).map(|(_, l)| l);
                let over = matches!(
                    state,
                    None | Some(Lifecycle::Terminating | Lifecycle::Terminated)
                );
                if !over {
                    continue;
                }
                let removed = self.shared.held.lock().expect("queue lock").remove(&id);
                if let Some(h) = removed {
                    info!(
                        instance_id = id,
                        "lifecycle action over; its message deleted"
                    );
                    self.delete(&h.receipt_handle).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
