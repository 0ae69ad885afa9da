//! The last check ahead of a terminate call's turn, and how many VMs are
//! checked ahead as the turns' pace changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::super::super::siblings::LastCheckError;
use super::{FIRST_TURN, TerminateTurns, ahead_limit};

/// Real time: paused time needs tokio's `test-util`, and enabling it for
/// tests alone would rebuild every crate on tokio a second time. Ages are
/// wide apart from the sleeps, so a slow machine cannot flip an outcome.
const LONG: Duration = Duration::from_secs(600);
const SHORT: Duration = Duration::from_millis(20);

/// A check that counts its runs and refuses from run `fail_from` on.
fn counting(
    runs: &Arc<AtomicUsize>,
    fail_from: usize,
) -> impl Fn() -> futures::future::Ready<Result<(), LastCheckError>> + use<> {
    let runs = runs.clone();
    move || {
        let n = runs.fetch_add(1, Ordering::SeqCst) + 1;
        futures::future::ready(if n >= fail_from {
            Err(LastCheckError::NodesAppeared(vec!["new-node".into()]))
        } else {
            Ok(())
        })
    }
}

/// `n` VMs asking for a turn side by side, each dropping it at once.
fn ask(
    turns: &Arc<TerminateTurns>,
    runs: &Arc<AtomicUsize>,
    n: usize,
    max_age: Duration,
) -> Vec<tokio::task::JoinHandle<Result<(), LastCheckError>>> {
    (0..n)
        .map(|_| {
            let (turns, check) = (turns.clone(), counting(runs, usize::MAX));
            tokio::spawn(async move { turns.checked_turn(max_age, check).await.map(drop) })
        })
        .collect()
}

#[test]
fn the_vms_ahead_are_those_the_calls_take_during_a_check_and_half_the_age() {
    let ms = Duration::from_millis;
    // Instant checks: 10 calls of 250 ms take 20 VMs in 500 ms; of 290 ms
    // (a busy machine at 20,000 clients), 17.
    assert_eq!(ahead_limit(10, ms(250), Duration::ZERO), 20);
    assert_eq!(ahead_limit(10, ms(290), Duration::ZERO), 17);
    // Checks of 300 ms and calls of 400: 20, of which about 7 are checking,
    // so a checked VM still waits about 500 ms.
    assert_eq!(ahead_limit(10, ms(400), ms(300)), 20);
    // Checks of 300 ms and calls of 220 (the same machine): 36, but at
    // most three per call.
    assert_eq!(ahead_limit(10, ms(220), ms(300)), 30);
    // Calls slower than the wait itself: still one VM, never none.
    assert_eq!(ahead_limit(10, Duration::from_secs(30), Duration::ZERO), 1);
    assert_eq!(ahead_limit(1, Duration::ZERO, Duration::ZERO), 3);
}

#[tokio::test]
async fn vms_are_checked_ahead_of_busy_calls_as_many_as_the_pace_allows() {
    let turns = Arc::new(TerminateTurns::new(2));
    let limit = ahead_limit(2, FIRST_TURN, Duration::ZERO);
    assert_eq!(turns.ahead_limit(), limit);
    let busy = turns.calls.acquire_many(2).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks = ask(&turns, &runs, limit + 1, LONG);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        limit,
        "as many checked ahead as the limit, the next one waits"
    );
    drop(busy);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        limit + 1,
        "each turn came at once: no check again"
    );
}

#[tokio::test]
async fn slow_turns_check_fewer_ahead_and_fast_ones_more_again() {
    let turns = Arc::new(TerminateTurns::new(10));
    assert_eq!(turns.ahead_limit(), 30);
    let busy = turns.calls.acquire_many(10).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    // Each VM keeps its turn until the test lets it go.
    let hold = Arc::new(tokio::sync::Semaphore::new(0));
    let vms = |n: usize| -> Vec<_> {
        (0..n)
            .map(|_| {
                let (turns, hold) = (turns.clone(), hold.clone());
                let check = counting(&runs, usize::MAX);
                tokio::spawn(async move {
                    let turn = turns.checked_turn(LONG, check).await;
                    hold.acquire().await.unwrap().forget();
                    turn.map(drop)
                })
            })
            .collect()
    };
    let first = vms(30);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 30);
    // Calls of a second each: 5 VMs are what 10 calls take in 500 ms.
    for _ in 0..100 {
        turns.turn_ended(Duration::from_secs(1));
    }
    assert_eq!(turns.ahead_limit(), 5);
    // Ten of the 30 get a turn and leave the set, which shrinks by them.
    drop(busy);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(turns.pace.lock().unwrap().ahead_total, 20);
    assert_eq!(turns.ahead.available_permits(), 0);
    let later = vms(10);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 30, "no room ahead");
    // Fast turns from here on: the set grows back to three per call.
    hold.add_permits(1000);
    for t in first.into_iter().chain(later) {
        t.await.unwrap().unwrap();
    }
    assert_eq!(runs.load(Ordering::SeqCst), 40);
    assert_eq!(turns.ahead_limit(), 30);
    assert_eq!(turns.ahead.available_permits(), 30);
}

#[tokio::test]
async fn a_pace_lowered_while_no_vm_waits_applies_to_the_next_ones() {
    let turns = Arc::new(TerminateTurns::new(10));
    for _ in 0..100 {
        turns.turn_ended(Duration::from_secs(1));
    }
    let busy = turns.calls.acquire_many(10).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks = ask(&turns, &runs, 8, LONG);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(runs.load(Ordering::SeqCst), 5, "free slots were retired");
    drop(busy);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_turn_that_comes_long_after_the_check_is_checked_again() {
    let turns = Arc::new(TerminateTurns::new(1));
    let busy = turns.calls.acquire().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let task = ask(&turns, &runs, 1, SHORT).remove(0);
    tokio::time::sleep(SHORT * 5).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    drop(busy);
    assert!(task.await.unwrap().is_ok());
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "checked again before the call"
    );
}

#[tokio::test]
async fn a_late_turn_whose_check_again_fails_is_given_back() {
    let turns = Arc::new(TerminateTurns::new(1));
    let busy = turns.calls.acquire().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let check = counting(&runs, 2);
    let t2 = turns.clone();
    let task = tokio::spawn(async move { t2.checked_turn(SHORT, check).await.map(drop) });
    tokio::time::sleep(SHORT * 5).await;
    drop(busy);
    let refused = task.await.unwrap();
    assert!(
        matches!(refused, Err(LastCheckError::NodesAppeared(_))),
        "{refused:?}"
    );
    assert_eq!(
        turns.calls.available_permits(),
        1,
        "no call made, its turn given back"
    );
    assert_eq!(turns.ahead.available_permits(), turns.ahead_limit());
}

#[tokio::test]
async fn a_refused_first_check_waits_for_no_turn() {
    let turns = TerminateTurns::new(1);
    let _busy = turns.calls.acquire().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let refused = turns.checked_turn(LONG, counting(&runs, 1)).await;
    assert!(refused.is_err());
    assert_eq!(
        turns.ahead.available_permits(),
        turns.ahead_limit(),
        "its check slot given back"
    );
}
