//! `disruption.budgets` end to end (issue 18), on the API server, moto and
//! nomad-sim: a window with budget 0 that is open now holds a scale-in
//! until it closes, with the status naming the window, when it closes and
//! when it opens next; a rate of one start per period lets one retirement
//! start although `maxUnavailable` allows more, and still holds the next
//! once the first retirement's object is gone. `kubectl get ncp -o wide` shows
//! the same figures.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Unit, ZonedRound};
use npo_testkit::*;
use serde_json::{Map, Value, json};

const T: Duration = Duration::from_secs(60);

/// How long the zero window stays open after the test applies the pool:
/// long enough to see that nothing starts, short enough for a quick test.
const HOLD: SignedDuration = SignedDuration::from_secs(40);

#[tokio::test(flavor = "multi_thread")]
async fn a_zero_budget_window_holds_scale_in_until_it_closes() {
    let w = setup_on(Cloud::Aws, "window-zero", 3).await;
    // A window that opened at the start of this minute on Berlin's wall
    // clock and closes `HOLD` from now, every day.
    let zone = TimeZone::get("Europe/Berlin").unwrap();
    let now = Timestamp::now().to_zoned(zone.clone());
    let opened = now
        .round(
            ZonedRound::new()
                .smallest(Unit::Minute)
                .mode(jiff::RoundMode::Trunc),
        )
        .unwrap();
    let closes = now.timestamp() + HOLD;
    let seconds = closes.duration_since(opened.timestamp()).as_secs();
    let schedule = format!("{} {} * * *", opened.minute(), opened.hour());
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 2, "disruption": {"maxUnavailable": 2, "budgets": [
            {"maxUnavailable": 0, "schedule": schedule, "duration": format!("{seconds}s"),
             "timeZone": "Europe/Berlin"},
            {"maxUnavailable": 1},
        ]}}),
    ))
    .await;

    let st = w
        .wait_status("pool", "the zero window named in status", T, |s| {
            s.disruption.as_ref().is_some_and(|d| d.budget == Some(0))
                && condition(s, "Progressing").is_some_and(|c| c.reason == "DisruptionBudget")
        })
        .await;
    let d = st.disruption.clone().unwrap();
    assert_eq!(d.allowed, 0);
    let whole = |t: Timestamp| Timestamp::from_second(t.as_second()).unwrap();
    assert_eq!(d.window_closes.map(|t| t.0), Some(whole(closes)));
    let tomorrow = (&opened + 1.day()).timestamp();
    assert_eq!(d.next_window_opens.map(|t| t.0), Some(tomorrow));
    assert!(
        d.message.contains(&format!(
            "budget 0 ('{schedule}' Europe/Berlin, for {seconds}s) applies until"
        )),
        "{}",
        d.message
    );
    let progressing = condition(&st, "Progressing").unwrap();
    assert!(
        progressing.message.contains("next window opens at"),
        "{}",
        progressing.message
    );
    // `kubectl get ncp -o wide` shows the same: none allowed, the next window.
    let row = wide_row(&w, "pool").await;
    assert_eq!(row["Allowed"], json!(0), "{row:?}");
    let shown = row["Next-Window"].as_str().unwrap_or_default();
    assert_eq!(shown.parse::<Timestamp>().ok(), Some(tomorrow), "{row:?}");

    // While the window is open nothing starts.
    while Timestamp::now() < closes - SignedDuration::from_secs(3) {
        let st = w.status("pool").await;
        assert!(
            st.retirements.is_empty(),
            "a retirement started in the zero window: {:?}",
            st.retirements
        );
        assert_eq!(w.group().await.desired, 3);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The window closes: budget 1 applies and lets one client go.
    let st = w
        .wait_status(
            "pool",
            "budget 1 applies and a retirement started",
            T,
            |s| {
                s.disruption
                    .as_ref()
                    .is_some_and(|d| d.budget == Some(1) && d.allowed == 1)
                    && !s.retirements.is_empty()
            },
        )
        .await;
    let started = st.retirements[0]
        .status
        .as_ref()
        .unwrap()
        .selected_at
        .clone()
        .unwrap();
    assert!(
        started.0 >= whole(closes),
        "started at {} before the window closed",
        started.0
    );
    w.wait_status("pool", "pool settled at 2", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    assert_eq!(w.group().await.desired, 2);
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rate_of_one_per_period_starts_one_retirement_however_many_are_allowed() {
    let w = setup_on(Cloud::Aws, "window-rate", 4).await;
    // History limit 0: the finished retirement's object is deleted, and
    // only the status's record of its start still holds the rate.
    w.apply_pool(&w.pool_manifest(
        "pool",
        json!({"replicas": 1, "retirementHistoryLimit": 0, "disruption": {
            "maxUnavailable": 3,
            "budgets": [{"maxUnavailable": 3, "rate": {"retirements": 1, "per": "10m"}}],
        }}),
    ))
    .await;

    let st = w
        .wait_status("pool", "one retirement started, the rate used up", T, |s| {
            s.disruption
                .as_ref()
                .is_some_and(|d| d.starts_allowed == Some(0))
                && condition(s, "Progressing").is_some_and(|c| c.reason == "RateLimited")
        })
        .await;
    assert_eq!(
        st.retirements.len(),
        1,
        "maxUnavailable allows 3, the rate 1"
    );
    let d = st.disruption.clone().unwrap();
    assert_eq!(
        d.recent_starts.len(),
        1,
        "the start is recorded with its status"
    );
    let message = &condition(&st, "Progressing").unwrap().message;
    assert!(
        message.contains("allows 0 more start(s), the next at"),
        "{message}"
    );

    // The retirement finishes and its object is pruned: still no second start.
    w.wait_status("pool", "the first retired, its object gone", T, |s| {
        s.retired_total == 1 && s.retirements.is_empty()
    })
    .await;
    let settled = Timestamp::now();
    while Timestamp::now() < settled + SignedDuration::from_secs(8) {
        let st = w.status("pool").await;
        assert!(
            st.retirements.is_empty(),
            "a second start within the period: {:?}",
            st.retirements
        );
        let d = st.disruption.clone().unwrap();
        assert_eq!(d.recent_starts.len(), 1);
        assert_eq!(d.starts_allowed, Some(0));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(w.group().await.desired, 3, "one of three scale-ins done");
    let row = wide_row(&w, "pool").await;
    assert_eq!(row["Starts-Left"], json!(0), "{row:?}");
    w.sim.assert_no_violations().await;
    w.cleanup().await;
}

/// What only the controller can check: a time zone the database does not
/// know. `Degraded` and a warning Event name the budget and the zone, and
/// nothing voluntary starts (fail safe: the broken budget may be the one
/// that forbids disruption now); fixing it lets the scale-in go.
#[tokio::test(flavor = "multi_thread")]
async fn a_budget_that_does_not_parse_blocks_and_says_why() {
    let w = setup_on(Cloud::Aws, "window-invalid", 3).await;
    let budgets = |zone: &str| {
        json!({"replicas": 2, "disruption": {"maxUnavailable": 1, "budgets": [
            {"maxUnavailable": 1, "schedule": "0 9 * * 1-5", "duration": "8h", "timeZone": zone},
        ]}})
    };
    w.apply_pool(&w.pool_manifest("pool", budgets("Europe/Atlantis")))
        .await;
    let st = w
        .wait_status("pool", "Degraded: InvalidDisruptionBudget", T, |s| {
            condition(s, "Degraded")
                .is_some_and(|c| c.status == "True" && c.message.contains("Europe/Atlantis"))
        })
        .await;
    let degraded = condition(&st, "Degraded").unwrap();
    assert_eq!(
        degraded.reason, "InvalidDisruptionBudget",
        "{}",
        degraded.message
    );
    assert!(
        degraded.message.contains("disruption.budgets[0]"),
        "{}",
        degraded.message
    );
    let note = w
        .wait_event(
            "InvalidDisruptionBudget",
            |r, n| r == "InvalidDisruptionBudget" && n.contains("Europe/Atlantis"),
            T,
        )
        .await;
    assert!(note.contains("wait until it is fixed"), "{note}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        w.status("pool").await.retirements.is_empty(),
        "nothing starts"
    );
    assert_eq!(w.group().await.desired, 3);

    w.patch_spec("pool", json!({"disruption": budgets("UTC")["disruption"]}))
        .await;
    w.wait_status("pool", "the scale-in done once the zone is fixed", T, |s| {
        s.retired_total == 1 && s.retiring.is_empty()
    })
    .await;
    w.cleanup().await;
}

/// The pool's row as `kubectl get ncp -o wide` gets it (the API server's
/// Table form), by column name.
async fn wide_row(w: &World, pool: &str) -> Map<String, Value> {
    let path = format!(
        "/apis/nomadpool.dev/v1alpha1/namespaces/{}/nomadclientpools",
        w.namespace
    );
    let mut req = kube::core::Request::new(path)
        .list(&kube::api::ListParams::default().fields(&format!("metadata.name={pool}")))
        .unwrap();
    let table = "application/json;as=Table;v=v1;g=meta.k8s.io";
    req.headers_mut().insert("accept", table.parse().unwrap());
    let table: Value = w.client.request(req).await.expect("the Table form");
    let names = table["columnDefinitions"].as_array().expect("columns");
    let cells = table["rows"][0]["cells"].as_array().expect("one row");
    (names.iter().zip(cells))
        .map(|(c, v)| (c["name"].as_str().unwrap_or_default().to_owned(), v.clone()))
        .collect()
}
