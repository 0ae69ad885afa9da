//! Drains Nomad accepted but does not show. A drain answered `200` with an
//! index that the node view never reflects is sent again once the write log
//! stops holding it back (`WRITE_OBSERVE_TIMEOUT`); without a count, that
//! goes on every half minute forever, with the node cordoned and nothing in
//! the status. This counts the sends per node until the view shows the drain
//! (or the retirement leaves `Cordoned`), so the pool can say so.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use super::conditions::Problem;
use super::plan::{NodeFacts, Plan, PlanEvent};
use crate::api::RetirePhase;

/// Re-sends of one drain after which the pool reports it. One re-send is
/// explained by a lost event (the write log's timeout exists for that); a
/// second one means two answers of `200`, each followed by a node view that
/// still showed no drain past the timeout: Nomad is not applying it. Two
/// re-sends also keep the report within about a minute of the first send.
pub const DRAIN_RESENDS_REPORTED: u32 = 2;

/// Drains of one node answered `200` and not yet shown.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Sends {
    /// Drains sent and answered `200`, the first included.
    count: u32,
    /// The index of the last answer.
    index: u64,
    /// Whether the Event was published.
    reported: bool,
}

#[derive(Default)]
pub struct DrainResends(Mutex<HashMap<String, Sends>>);

impl DrainResends {
    /// A drain of the node was answered `200` with `index`.
    pub fn accepted(&self, node_id: &str, index: u64) {
        let mut sent = self.0.lock().expect("resends lock");
        let s = sent.entry(node_id.to_owned()).or_default();
        s.count += 1;
        s.index = index;
    }

    /// After a plan: forget every node whose drain the view shows (or whose
    /// retirement left `Cordoned`, the only phase that sends drains), and
    /// return a problem for each drain re-sent `DRAIN_RESENDS_REPORTED`
    /// times. The first time, a warning Event is added to the plan's.
    pub fn review(&self, planned: &mut Plan, nodes: &[NodeFacts]) -> Vec<Problem> {
        let draining: HashSet<&str> = nodes
            .iter()
            .filter(|n| n.draining)
            .map(|n| n.id.as_str())
            .collect();
        let waiting: HashMap<&str, &str> = planned
            .retiring
            .iter()
            .filter(|r| r.phase == RetirePhase::Cordoned && !draining.contains(r.node_id.as_str()))
            .map(|r| (r.node_id.as_str(), r.node_name.as_str()))
            .collect();
        let mut sent = self.0.lock().expect("resends lock");
        sent.retain(|id, _| waiting.contains_key(id.as_str()));
        let mut problems = Vec::new();
        let mut unapplied: Vec<(&str, &mut Sends)> = sent
            .iter_mut()
            .filter(|(_, s)| s.count > DRAIN_RESENDS_REPORTED)
            .map(|(id, s)| (waiting[id.as_str()], s))
            .collect();
        unapplied.sort_by_key(|(name, _)| *name);
        for (name, s) in unapplied {
            let message = describe(name, s);
            if !s.reported {
                s.reported = true;
                planned.events.push(PlanEvent {
                    warning: true,
                    node: Some(name.to_owned()),
                    reason: REASON,
                    message: message.clone(),
                });
            }
            problems.push(Problem::new(REASON, message));
        }
        problems
    }
}

/// The condition reason and Event reason.
pub const REASON: &str = "DrainNotApplied";

fn describe(node_name: &str, s: &Sends) -> String {
    format!(
        "Nomad accepted the drain but does not show it: node {node_name}, sent {} times (last answered with index {}), stays ineligible and is not draining",
        s.count, s.index
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{RetireReason, RetiringNode};
    use crate::controller::plan::NodeStatus;

    fn node(id: &str, draining: bool) -> NodeFacts {
        NodeFacts {
            do_not_retire: false,
            id: id.into(),
            name: format!("client-{id}"),
            status: NodeStatus::Ready,
            eligible: false,
            draining,
            last_drain: None,
            last_drain_started: None,
            last_drain_mark: None,
            create_index: 1,
            instance_id: None,
        }
    }

    fn cordoned(id: &str) -> RetiringNode {
        RetiringNode {
            node_id: id.into(),
            node_name: format!("client-{id}"),
            instance_id: None,
            phase: RetirePhase::Cordoned,
            since: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                "2026-01-01T00:00:00Z".parse().unwrap(),
            ),
            selected_at: None,
            reason: RetireReason::ScaleIn,
            decrement: true,
            cordoned_by_pool: true,
            drain_started_at: None,
            drain_deadline: None,
            allocations_left: 0,
            blocking_jobs: vec![],
            message: None,
        }
    }

    #[test]
    fn a_drain_is_reported_after_the_resends_once_and_forgotten_when_shown() {
        let r = DrainResends::default();
        let mut plan = Plan {
            retiring: vec![cordoned("a"), cordoned("b")],
            ..Default::default()
        };
        let nodes = [node("a", false), node("b", false)];
        for i in 0..=DRAIN_RESENDS_REPORTED {
            assert!(
                r.review(&mut plan, &nodes).is_empty(),
                "a first send and {i} re-send(s) are not reported"
            );
            r.accepted("a", 10 + i as u64);
        }
        r.accepted("b", 30);
        let problems = r.review(&mut plan, &nodes);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].reason, "DrainNotApplied");
        assert!(problems[0].message.contains("node client-a, sent 3 times"));
        assert!(problems[0].message.contains("index 12"));
        assert_eq!(plan.events.len(), 1);
        assert_eq!(plan.events[0].node.as_deref(), Some("client-a"));
        assert!(plan.events[0].warning);
        assert_eq!(r.review(&mut plan, &nodes).len(), 1, "still reported");
        assert_eq!(plan.events.len(), 1, "the Event only once");
        // The view shows the drain of a: forgotten, counting starts over.
        let shown = [node("a", true), node("b", false)];
        assert!(r.review(&mut plan, &shown).is_empty());
        r.accepted("a", 40);
        assert!(r.review(&mut plan, &nodes).is_empty());
        // A retirement that left Cordoned is forgotten too.
        plan.retiring.clear();
        for _ in 0..=DRAIN_RESENDS_REPORTED {
            r.accepted("b", 50);
        }
        assert!(r.review(&mut plan, &nodes).is_empty());
    }
}
