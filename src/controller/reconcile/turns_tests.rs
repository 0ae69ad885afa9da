//! The last check ahead of a terminate call's turn (`checked_turn`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::super::super::siblings::LastCheckError;
use super::checked_turn;

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

#[tokio::test]
async fn vms_are_checked_ahead_of_busy_calls_as_many_as_there_are_check_slots() {
    let (checks, calls) = (Arc::new(Semaphore::new(2)), Arc::new(Semaphore::new(2)));
    let busy = calls.clone().acquire_many_owned(2).await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (checks, calls, check) =
                (checks.clone(), calls.clone(), counting(&runs, usize::MAX));
            tokio::spawn(async move { checked_turn(&checks, &calls, LONG, check).await.map(drop) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "two checked ahead, the third waits"
    );
    drop(busy);
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "each turn came at once: no check again"
    );
}

#[tokio::test]
async fn a_turn_that_comes_long_after_the_check_is_checked_again() {
    let (checks, calls) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(1)));
    let busy = calls.clone().acquire_owned().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let check = counting(&runs, usize::MAX);
    let (c2, k2) = (checks.clone(), calls.clone());
    let task = tokio::spawn(async move { checked_turn(&c2, &k2, SHORT, check).await.is_ok() });
    tokio::time::sleep(SHORT * 5).await;
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    drop(busy);
    assert!(task.await.unwrap());
    assert_eq!(
        runs.load(Ordering::SeqCst),
        2,
        "checked again before the call"
    );
}

#[tokio::test]
async fn a_late_turn_whose_check_again_fails_is_given_back() {
    let (checks, calls) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(1)));
    let busy = calls.clone().acquire_owned().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let check = counting(&runs, 2);
    let (c2, k2) = (checks.clone(), calls.clone());
    let task = tokio::spawn(async move { checked_turn(&c2, &k2, SHORT, check).await });
    tokio::time::sleep(SHORT * 5).await;
    drop(busy);
    let refused = task.await.unwrap();
    assert!(
        matches!(refused, Err(LastCheckError::NodesAppeared(_))),
        "{refused:?}"
    );
    assert_eq!(
        calls.available_permits(),
        1,
        "no call made, its turn given back"
    );
    assert_eq!(checks.available_permits(), 1);
}

#[tokio::test]
async fn a_refused_first_check_waits_for_no_turn() {
    let (checks, calls) = (Arc::new(Semaphore::new(1)), Arc::new(Semaphore::new(1)));
    let _busy = calls.clone().acquire_owned().await.unwrap();
    let runs = Arc::new(AtomicUsize::new(0));
    let refused = checked_turn(&checks, &calls, LONG, counting(&runs, 1)).await;
    assert!(refused.is_err());
    assert_eq!(checks.available_permits(), 1, "its check slot given back");
}
