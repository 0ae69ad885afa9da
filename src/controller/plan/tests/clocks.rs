//! Nomad's clock is not ours: a drain's `StartedAt` comes from the Nomad
//! servers, whose clock may run ahead or behind (nomad-sim runs at 2x in
//! the demo). What the pool reports and decides from it (the drain's start,
//! its deadline, the "drained in" of `Retired`) stays inside the window in
//! which the pool knows the drain began: after it sent it, before it saw it.

use super::*;

/// Node 0 cordoned at 11:00 (when the pool sent its drain), seen draining
/// at `now()` (12:00) with Nomad saying the drain began at `nomad_started`.
fn drain_seen(nomad_started: &str) -> World {
    let mut w = World::new(3, Some(2));
    w.tracked = vec![entry(&w.nodes[0], RetirePhase::Cordoned)];
    let n = &mut w.nodes[0];
    n.eligible = false;
    n.draining = true;
    n.last_drain = Some(LastDrainStatus::Draining);
    n.last_drain_mark = Some(scale_in_mark());
    n.last_drain_started = Some(t(nomad_started));
    w.spec.drain.deadline = Some("1h".into());
    w
}

#[test]
fn a_nomad_clock_ahead_of_ours_never_puts_the_drain_start_in_our_future() {
    // Nomad says 12:40: on our clock the drain was seen at 12:00, so it
    // began no later than that.
    let p = drain_seen("2026-11-26T12:40:00Z").plan();
    let e = &p.retiring[0];
    assert_eq!(e.phase, RetirePhase::Draining);
    assert_eq!(e.drain_started_at, Some(Time(now())));
    assert_eq!(e.drain_deadline, Some(Time(t("2026-11-26T13:00:00Z"))));

    // Retired ten minutes later on our clock: it drained for ten minutes,
    // not "0s" (what Nomad's 12:40 start would have made of it).
    let mut w = drain_seen("2026-11-26T12:40:00Z");
    let mut done = e.clone();
    done.phase = RetirePhase::Terminating;
    done.since = Time(t("2026-11-26T12:10:00Z"));
    w.tracked = vec![done];
    w.nodes.remove(0);
    let p = w.plan();
    let retired = p.events.iter().find(|e| e.reason == "Retired").unwrap();
    assert!(
        retired.message.contains("drained in 10m00s"),
        "{}",
        retired.message
    );
}

#[test]
fn a_nomad_clock_behind_ours_never_starts_the_drain_before_the_pool_sent_it() {
    // Nomad says 10:00, an hour before the pool sent the drain at 11:00:
    // the deadline counts from 11:00, not from a time the drain did not run.
    let p = drain_seen("2026-11-26T10:00:00Z").plan();
    let e = &p.retiring[0];
    assert_eq!(e.drain_started_at, Some(Time(t("2026-11-26T11:00:00Z"))));
    assert_eq!(e.drain_deadline, Some(Time(t("2026-11-26T12:00:00Z"))));
    // Inside the window, Nomad's own time is kept (it is the better one).
    let p = drain_seen("2026-11-26T11:30:00Z").plan();
    assert_eq!(
        p.retiring[0].drain_started_at,
        Some(Time(t("2026-11-26T11:30:00Z")))
    );
}

#[test]
fn an_adopted_drain_started_in_our_future_is_taken_as_started_now() {
    // Status lost: the pool finds its own drain on Nomad, started (by
    // Nomad's clock) 20 minutes after our now.
    let mut w = World::new(4, Some(3));
    let n = &mut w.nodes[0];
    n.eligible = false;
    n.draining = true;
    n.last_drain = Some(LastDrainStatus::Draining);
    n.last_drain_mark = Some(scale_in_mark());
    n.last_drain_started = Some(t("2026-11-26T12:20:00Z"));
    let p = w.plan();
    let e = &p.retiring[0];
    assert_eq!(e.phase, RetirePhase::Draining);
    assert_eq!(e.drain_started_at, Some(Time(now())));
    assert_eq!(e.selected_at, Some(Time(now())));
}
