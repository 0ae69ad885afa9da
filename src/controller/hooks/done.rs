//! The lifecycle actions this process completed, until the retirement that
//! held each records it (`status.lifecycleAction.completedAt`), after which
//! the record is what keeps it from being completed again, across restarts.
//!
//! Without it, a VM that another hook still holds after ours was completed
//! stays in `Terminating:Wait`, and the planner planned the completion again
//! on every look (AWS answering "No active Lifecycle Action found" each
//! time).

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::Timestamp;

#[derive(Default)]
pub struct Completed(Mutex<HashMap<String, Timestamp>>);

impl Completed {
    /// The action of `instance_id` is over for us: completed now, or found
    /// no longer pending.
    pub fn record(&self, instance_id: &str, at: Timestamp) {
        let mut done = self.0.lock().expect("completed lock");
        done.entry(instance_id.to_owned()).or_insert(at);
    }

    pub fn all(&self) -> HashMap<String, Timestamp> {
        self.0.lock().expect("completed lock").clone()
    }

    /// Forget the instances `keep` refuses: neither in the group any more
    /// nor held by a retirement in flight (whose status may not record the
    /// completion yet).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.0
            .lock()
            .expect("completed lock")
            .retain(|id, _| keep(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_completion_is_kept_until_forgotten() {
        let done = Completed::default();
        let first: Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        let second: Timestamp = "2026-12-02T12:00:05Z".parse().unwrap();
        done.record("i-1", first);
        done.record("i-1", second);
        done.record("i-2", second);
        assert_eq!(done.all().get("i-1"), Some(&first), "the first time stays");
        done.retain(|id| id == "i-2");
        assert_eq!(done.all().keys().collect::<Vec<_>>(), ["i-2"]);
    }
}
