//! Retirements the pool created whose first status never landed: the
//! object is created, then its status (`Selected`) written, and a
//! controller killed between the two leaves an object in `Pending` with
//! the pool's mark. Nothing was done to its client (every action waits
//! for its record), and the planner, which tracks retirements by their
//! status, never knew of it. Left alone it stayed `Pending` for good
//! beside a second object the next selection of the same client created,
//! holding its finalizer: two retirements for one client, one of them
//! never finishing.
//!
//! So a selection of the same client for the same reason takes the
//! object over (its create answers "already exists" and goes on with the
//! existing object, `write::create`), and any other is finished as
//! `Cancelled`: it never started, and a later selection makes a new one.

use super::*;

/// The pool's own retirements whose first status never landed.
fn orphans(input: &Inputs<'_>) -> Vec<Arc<NomadClientRetirement>> {
    (input.retirements.iter())
        .filter(|r| created_by_pool(r) && r.phase() == RetirementPhase::Pending)
        .filter(|r| r.metadata.deletion_timestamp.is_none())
        .cloned()
        .collect()
}

/// Give each new retirement of `out` the name of an orphan with the same
/// spec (one client, one reason: the spec is immutable), and finish the
/// orphans left over.
pub(super) fn settle(input: &Inputs<'_>, out: &mut Writes) {
    let mut left = orphans(input);
    for (obj, _) in &mut out.creates {
        let Some(i) = left.iter().position(|o| o.spec == obj.spec) else {
            continue;
        };
        let orphan = left.swap_remove(i);
        let name = orphan.name_any();
        for n in out.names.values_mut() {
            if *n == obj.name_any() {
                *n = name.clone();
            }
        }
        obj.metadata.name = Some(name);
    }
    for orphan in left {
        let status = finished_status(
            &orphan.status.clone().unwrap_or_default(),
            orphan.metadata.generation,
            RetirementPhase::Cancelled,
            "never started: the controller stopped before it recorded the selection; \
             the client is selected again if the pool still needs it"
                .into(),
            input.now,
        );
        if orphan.finalizers().iter().any(|f| f == FINALIZER) {
            out.releases.push(orphan.clone());
        }
        out.finishes.push(StatusWrite {
            object: orphan,
            status,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::api::{NomadClientPoolSpec, RetirePhase, RetireReason};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pool() -> NomadClientPool {
        let spec: NomadClientPoolSpec = serde_json::from_value(serde_json::json!({
            "nomad": {"address": "http://127.0.0.1:4646"},
            "selector": {"nodePool": "ci"},
            "provider": {"awsAutoScalingGroup": {"name": "g", "region": "us-east-1"}},
        }))
        .unwrap();
        let mut p = NomadClientPool::new("ci", spec);
        p.metadata.namespace = Some("default".into());
        p.metadata.uid = Some("uid-1".into());
        p
    }

    fn selected(n: u32, reason: RetireReason) -> RetiringNode {
        RetiringNode {
            node_id: format!("0b1c2d3e-0000-4000-8000-00000000000{n}"),
            node_name: format!("client-{n}"),
            instance_id: Some(format!("i-{n}")),
            phase: RetirePhase::Selected,
            since: Time("2026-12-01T10:00:00Z".parse().unwrap()),
            selected_at: Some(Time("2026-12-01T10:00:00Z".parse().unwrap())),
            reason,
            decrement: !reason.replaces(),
            cordoned_by_pool: true,
            drain_started_at: None,
            drain_deadline: None,
            allocations_left: 0,
            blocking_jobs: vec![],
            message: None,
        }
    }

    fn run(retirements: &[Arc<NomadClientRetirement>], entries: Vec<RetiringNode>) -> Writes {
        let none = HashMap::new();
        let blocking = HashMap::new();
        let recently = |_: &NomadClientRetirement| false;
        let plan = Plan {
            retiring: entries,
            ..Default::default()
        };
        writes(
            &Inputs {
                pool: &pool(),
                retirements,
                meta_names: &none,
                blocking: &blocking,
                written_recently: &recently,
                hold: &Default::default(),
                now: Timestamp::now(),
            },
            &plan,
        )
    }

    /// The object a plan selecting `entry` creates, as the API server
    /// keeps it when the controller dies before writing its status.
    fn orphan_of(entry: RetiringNode) -> Arc<NomadClientRetirement> {
        let w = run(&[], vec![entry]);
        let (mut obj, _) = w.creates.into_iter().next().expect("a create");
        obj.metadata.resource_version = Some("7".into());
        obj.metadata.generation = Some(1);
        Arc::new(obj)
    }

    #[test]
    fn the_same_client_selected_again_takes_over_the_object_instead_of_a_second() {
        let orphan = orphan_of(selected(1, RetireReason::Drifted));
        let w = run(
            std::slice::from_ref(&orphan),
            vec![selected(1, RetireReason::Drifted)],
        );
        assert_eq!(w.creates.len(), 1);
        assert_eq!(w.creates[0].0.name_any(), orphan.name_any());
        assert_eq!(w.creates[0].0.spec, orphan.spec);
        assert_eq!(
            w.names[&selected(1, RetireReason::Drifted).node_id],
            orphan.name_any()
        );
        assert!(w.finishes.is_empty() && w.releases.is_empty());
    }

    #[test]
    fn an_orphan_the_plan_does_not_select_again_is_cancelled_and_let_go() {
        let orphan = orphan_of(selected(1, RetireReason::Unhealthy));
        // Another client is selected, and this one for another reason.
        for entries in [
            vec![selected(2, RetireReason::Unhealthy)],
            vec![selected(1, RetireReason::ScaleIn)],
        ] {
            let w = run(std::slice::from_ref(&orphan), entries);
            assert_eq!(w.creates.len(), 1);
            assert_ne!(w.creates[0].0.name_any(), orphan.name_any());
            assert_eq!(w.finishes.len(), 1);
            assert_eq!(w.finishes[0].object.name_any(), orphan.name_any());
            assert_eq!(w.finishes[0].status.phase, Some(RetirementPhase::Cancelled));
            assert!(
                w.finishes[0].status.selected_at.is_none(),
                "it never started"
            );
            assert_eq!(w.releases.len(), 1, "its finalizer goes");
        }
    }

    #[test]
    fn a_hand_made_pending_retirement_is_no_orphan() {
        let mut by_hand = (*orphan_of(selected(1, RetireReason::Replace))).clone();
        by_hand.metadata.annotations = None;
        let w = run(&[Arc::new(by_hand)], vec![]);
        assert!(w.finishes.is_empty(), "it waits for the pool");
    }
}
