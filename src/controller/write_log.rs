//! Nomad writes this process sent that the node view does not show yet:
//! the planner must not send them again while the event that shows them is
//! on its way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::watch;

/// How long a write may stay invisible in the node watch before it is sent
/// again anyway (a lost event; the next re-list repairs the view).
pub const WRITE_OBSERVE_TIMEOUT: Duration = Duration::from_secs(30);

/// Nomad writes to nodes (cordon, drain, release, purge) by node ID, with
/// the index Nomad gave them.
#[derive(Default)]
pub struct WriteLog(Mutex<HashMap<String, (u64, std::time::Instant)>>);

impl WriteLog {
    pub fn record(&self, node_id: &str, index: u64) {
        // Index 0: Nomad changed nothing (e.g. eligibility already set).
        if index > 0 {
            self.0
                .lock()
                .expect("writes lock")
                .insert(node_id.to_owned(), (index, std::time::Instant::now()));
        }
    }

    pub fn clear(&self) {
        self.0.lock().expect("writes lock").clear();
    }

    /// Nodes with a write the node view does not show yet (neither the
    /// view's index nor the node's, which a read-back may have advanced).
    /// Planning on that view would send the same write again: during a large
    /// scale-in the event that shows a drain can trail the reconciles that
    /// follow it by seconds, and every one of them would re-send it.
    pub fn unobserved(&self, view: &watch::NodesSnapshot) -> std::collections::HashSet<String> {
        let mut writes = self.0.lock().expect("writes lock");
        writes.retain(|id, (index, at)| {
            !view.shows_write(id, *index) && at.elapsed() < WRITE_OBSERVE_TIMEOUT
        });
        writes.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_write_is_unobserved_until_the_node_view_reaches_its_index() {
        let node = |id: &str, modify_index: u64| {
            let n: crate::nomad::NodeListStub = serde_json::from_value(serde_json::json!({
                "ID": id, "Name": id, "Datacenter": "dc1", "SchedulingEligibility": "eligible",
                "Status": "ready", "CreateIndex": 1, "ModifyIndex": modify_index,
            }))
            .unwrap();
            Arc::new(n)
        };
        let view = |index: u64, b_at: u64| watch::NodesSnapshot {
            index,
            nodes: vec![node("a", 1), node("b", b_at), node("c", 1), node("d", 1)].into(),
            ..Default::default()
        };
        let log = WriteLog::default();
        log.record("a", 10);
        log.record("b", 20);
        log.record("c", 0);
        log.record("d", 30);
        let both: std::collections::HashSet<String> = ["b".to_string(), "d".to_string()].into();
        assert_eq!(log.unobserved(&view(15, 1)), both);
        assert_eq!(
            log.unobserved(&view(5, 1)),
            both,
            "a seen write is forgotten"
        );
        assert_eq!(
            log.unobserved(&view(15, 20)),
            ["d".to_string()].into(),
            "the node itself (read back) shows the write"
        );
        assert!(log.unobserved(&view(30, 1)).is_empty());
    }
}
