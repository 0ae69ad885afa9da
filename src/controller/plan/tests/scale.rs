//! One plan at the benchmark's scale: 5,000 clients, 500 retirements in
//! flight (the 10 % budget spent). Besides its assertions, this is the plan
//! the per-plan instruction counts in BENCHMARKS.md were taken on
//! (`valgrind --tool=callgrind <test binary> plan::tests::scale`).

use super::*;

#[test]
fn a_plan_at_five_thousand_clients_moves_every_retirement_and_starts_none() {
    let mut w = World::new(5000, Some(4000));
    w.spec.disruption.max_unavailable = IntOrString::String("10%".into());
    for i in 0..500 {
        let phase = match i % 5 {
            0 => RetirePhase::Terminating,
            1 => RetirePhase::Drained,
            _ => RetirePhase::Draining,
        };
        let n = &mut w.nodes[i];
        n.eligible = false;
        n.draining = phase == RetirePhase::Draining;
        n.last_drain = Some(if n.draining {
            LastDrainStatus::Draining
        } else {
            LastDrainStatus::Complete
        });
        n.last_drain_mark = Some(scale_in_mark());
        let mut e = entry(&w.nodes[i], phase);
        e.drain_started_at = Some(Time(t("2026-11-26T11:30:00Z")));
        w.tracked.push(e);
        let live = u32::from(phase == RetirePhase::Draining);
        w.allocs.insert(
            w.id(i),
            AllocFacts {
                live,
                ..Default::default()
            },
        );
    }
    let p = w.plan();
    assert_eq!(p.retiring.len(), 500, "nothing finished, nothing new");
    let count = |phase| p.retiring.iter().filter(|r| r.phase == phase).count();
    assert_eq!(count(RetirePhase::Draining), 300, "their jobs still run");
    assert_eq!(count(RetirePhase::Terminating), 200);
    let terminates: Vec<bool> = (p.actions.iter())
        .filter_map(|a| match a {
            Action::Terminate { first_attempt, .. } => Some(*first_attempt),
            _ => None,
        })
        .collect();
    // 100 drained clients terminated now, 100 terminations re-sent.
    assert_eq!(terminates.iter().filter(|f| **f).count(), 100);
    assert_eq!(terminates.iter().filter(|f| !**f).count(), 100);
    assert_eq!(p.actions.len(), 200, "no cordon: the budget is spent");
}
