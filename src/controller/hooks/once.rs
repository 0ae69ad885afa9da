//! Events about a lifecycle action, once per action. The planner is pure
//! and plans again on every reconcile: a held VM without a client is
//! planned for completion (and its `LifecycleActionCompleted` Event) on each
//! look until the group shows it gone, which published the same Event on
//! every reconcile in between. This process remembers which it published.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::controller::plan::PlanEvent;

/// The reasons published once per action.
const ONCE: &[&str] = &["LifecycleActionCompleted"];
/// Events remembered at most; the oldest are forgotten first. A held VM
/// leaves the group within the hook's global timeout, so an old one does
/// not come back.
const REMEMBERED: usize = 10_000;

#[derive(Default)]
pub struct Once(Mutex<(HashSet<String>, VecDeque<String>)>);

impl Once {
    /// Drop from `events` those of [`ONCE`] published before.
    pub fn filter(&self, events: &mut Vec<PlanEvent>) {
        let mut state = self.0.lock().expect("once lock");
        let (seen, order) = &mut *state;
        events.retain(|e| {
            if !ONCE.contains(&e.reason) {
                return true;
            }
            let key = format!("{}\u{0}{}", e.reason, e.message);
            if !seen.insert(key.clone()) {
                return false;
            }
            order.push_back(key);
            if order.len() > REMEMBERED
                && let Some(old) = order.pop_front()
            {
                seen.remove(&old);
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &'static str, vm: &str) -> PlanEvent {
        PlanEvent {
            warning: false,
            node: None,
            reason,
            message: format!(
                "VM {vm} is held by the lifecycle hook and runs no client of the pool: completing its action"
            ),
        }
    }

    /// The planner plans the same completion on each look until the VM is
    /// gone: before this filter, each of those reconciles published it.
    #[test]
    fn a_completion_is_announced_once_however_often_it_is_planned() {
        let once = Once::default();
        let mut first = vec![
            event("LifecycleActionCompleted", "i-1"),
            event("Other", "i-1"),
        ];
        once.filter(&mut first);
        assert_eq!(first.len(), 2);
        let mut again = vec![
            event("LifecycleActionCompleted", "i-1"),
            event("LifecycleActionCompleted", "i-2"),
            event("Other", "i-1"),
        ];
        once.filter(&mut again);
        let reasons: Vec<(&str, bool)> = again
            .iter()
            .map(|e| (e.reason, e.message.contains("i-2")))
            .collect();
        assert_eq!(
            reasons,
            [("LifecycleActionCompleted", true), ("Other", false)]
        );
    }
}
