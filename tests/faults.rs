//! Crash and fault loop (issues 6 and 17): the operator binary is SIGKILLed
//! over and over during a scale-in; Nomad answers with 5xx, latency,
//! dropped connections and leader loss; the cloud throttles and fails. After
//! each, the pool must settle with every safety invariant intact (no
//! instance terminated twice, the group shrunk by exactly what was asked),
//! and the request counts must show back-off rather than spinning. (The API
//! server restarted in the middle of a scale-in is `tests/faults_apiserver.rs`.)
//!
//! The SIGKILL loop and the provider faults run on both clouds from one
//! body each (`aws::<name>`, `gce::<name>`): on AWS through a
//! fault-injecting proxy in front of moto, whose record says which
//! terminates moto carried out; on GCE through gce-sim's own fault rules,
//! whose request log says which deleteInstances it carried out and under
//! which `requestId` (`npo_testkit::faults::CloudCalls`). The Nomad faults
//! do not depend on the cloud and run on AWS only.
//!
//! Seeded: `NPO_FAULT_SEED` (default `npo_testkit::faults::DEFAULT_SEED`)
//! drives the kill schedule, the job durations and the cloud's fault
//! decisions; each test prints it with its figures (`cargo test --test
//! faults -- --nocapture`). The Nomad simulator draws its own fault dice
//! (not seedable from outside), and the interleaving with real processes is
//! timing-dependent, so a seed repeats the schedule, not every byte of the run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kube::Api;
use npo_testkit::faults::*;
use npo_testkit::proxy::aws_faults::FaultProxy;
use npo_testkit::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

on_both_clouds!(
    sigkill_loop_during_scale_in_keeps_every_invariant,
    provider_throttling_and_errors_never_terminate_twice,
);

// ---------------------------------------------------------------------------
// 1. SIGKILL loop

/// At least this many SIGKILLs at a random delay (0-1.5 s) per run, and as
/// many aimed just after a status write (see below).
const MIN_KILLS: usize = 20;
/// Kills go on while the scale-in is still running, up to this many in all.
const MAX_KILLS: usize = 80;

/// Counts the writes that move a retirement (one came, or its phase
/// moved), as seen through a watch on the retirement objects: each one is a
/// write-ahead after which the operator runs the action it names.
fn watch_retiring_writes(
    api: Api<nomad_pool_operator::api::NomadClientRetirement>,
) -> (tokio::sync::watch::Receiver<u64>, JoinHandle<()>) {
    use futures::StreamExt;
    use kube::ResourceExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    let task = tokio::spawn(async move {
        let mut phases = std::collections::HashMap::new();
        let mut events = watcher(api, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(ev) = events.next().await {
            let Ok(r) = ev else { continue };
            if phases.insert(r.name_any(), r.phase()) != Some(r.phase()) {
                tx.send_modify(|n| *n += 1);
            }
        }
    });
    (rx, task)
}

async fn sigkill_loop_during_scale_in_keeps_every_invariant(cloud: Cloud) {
    let t0 = Instant::now();
    let seed = fault_seed("sigkill");
    let mut rng = StdRng::seed_from_u64(seed);
    let w = build_world_on(kube_client().await, cloud, "sigkill", 12).await;
    // No faults: only the record of the cloud calls.
    let calls = CloudCalls::start(&w, seed).await;
    let mon = GroupMonitor::start(&w).await;
    busy(&w, &mut rng, 2, 5.0..20.0).await;
    w.sim
        .post(
            "/sim/workload",
            json!({"node_pool": "ci", "rate_per_minute": 60, "duration_min_s": 2, "duration_max_s": 5}),
        )
        .await;

    // Leader election off: a SIGKILLed leader keeps its Lease until it
    // expires (15 s), so with it on the restarted process would spend every
    // short life waiting for the lease and the kills would never land inside
    // a reconcile. This test is about the reconcile's crash safety.
    let log_dir = PathBuf::from(env_var("NPO_TESTENV_DIR")).join("logs");
    let (mut writes, writes_task) =
        watch_retiring_writes(Api::namespaced(w.client.clone(), &w.namespace));
    let mut op = operator(
        &env_var("KUBECONFIG"),
        &w.namespace,
        &log_dir,
        "sigkill",
        &["--leader-elect", "false"],
    );
    w.apply_pool(&w.pool_manifest("pool", pool_spec(6, 3, calls.endpoint())))
        .await;

    // Two kinds of kill, alternating: at a random delay after the restart,
    // and aimed at the window the write-ahead design is about: right after
    // a status write lands (plus 0-50 ms), while the actions it names run.
    struct Kill {
        aimed: bool,
        delay_ms: u64,
        phases: String,
    }
    let mut kills: Vec<Kill> = Vec::new();
    let mut aimed_misses = 0;
    let mut turn = 0u32;
    loop {
        turn += 1;
        let aimed = turn.is_multiple_of(2);
        let delay_ms = if aimed {
            let seen = *writes.borrow_and_update();
            let hit =
                tokio::time::timeout(Duration::from_millis(1500), writes.wait_for(|n| *n > seen))
                    .await
                    .is_ok();
            if !hit {
                // Nothing moved (jobs still running): no aimed kill this turn.
                aimed_misses += 1;
                continue;
            }
            rng.random_range(0..=50u64)
        } else {
            rng.random_range(0..=1500u64)
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        op.kill().await;
        let st = status_of(&w, "pool").await.unwrap_or_default();
        let done = is_settled(&st, 6) && mon.history().current.len() == 6;
        kills.push(Kill {
            aimed,
            delay_ms,
            phases: phases(&st),
        });
        op.restart();
        let random = kills.iter().filter(|k| !k.aimed).count();
        if random >= MIN_KILLS && (done || kills.len() >= MAX_KILLS) {
            break;
        }
    }
    writes_task.abort();
    let kill_window = t0.elapsed();

    let st = wait_settled(&w, &op, "pool", 6, Duration::from_secs(120)).await;
    w.sim.assert_no_violations().await;
    assert_no_stranded_nodes(&w, &st).await;
    let h = mon.history();
    calls.assert_invariants(&h, 12, 6).await;
    // retiredTotal is exact even across crashes: a retirement's final status
    // (Retired) is written before the pool's status counts it by name
    // (countedRetirements), so a crash between the two leaves it finished
    // and uncounted, and the next process counts it once.
    assert_eq!(st.retired_total, 6, "{st:?}");
    assert!(op.exited().is_none(), "operator exited:\n{}", op.log_tail());

    let mut at_kill: BTreeMap<String, u32> = BTreeMap::new();
    for k in &kills {
        for part in k.phases.split(',') {
            *at_kill
                .entry(part.split('x').next().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let random: Vec<u64> = kills
        .iter()
        .filter(|k| !k.aimed)
        .map(|k| k.delay_ms)
        .collect();
    // Process lives (split at the startup line) that got as far as a Nomad
    // write or a terminate (either provider logs it) before being killed or
    // before the end.
    let log = op.log_text();
    let lives: Vec<&str> = log.split("serving /metrics").skip(1).collect();
    let acting = lives
        .iter()
        .filter(|l| l.contains("endpoint=POST") || l.contains("terminating instance"))
        .count();
    println!(
        "[sigkill] {cloud:?} seed {seed}: {} SIGKILLs in {:.1}s: {} at a random delay (ms {random:?}), {} aimed 0-50 ms after a status write (on {aimed_misses} other turns no write came within 1.5 s); {} operator starts, {acting} of the process lives wrote to Nomad or the cloud; entries by phase in status right after each kill: {at_kill:?}",
        kills.len(),
        kill_window.as_secs_f64(),
        random.len(),
        kills.len() - random.len(),
        op.starts
    );
    println!(
        "[sigkill] {cloud:?} group desired {:?}, {} instances gone, {} samples; cloud calls {}; Nomad /v1 requests {}; total {:.1}s",
        h.desired,
        h.gone().len(),
        h.samples,
        calls.counts().await,
        total(&nomad_requests(&w.sim).await),
        t0.elapsed().as_secs_f64()
    );
    op.kill().await;
    w.cleanup().await;
}

// ---------------------------------------------------------------------------
// 2. Nomad faults (AWS only: what is tested is the operator's back-off
// against Nomad; the cloud side only has to stay correct, which the other
// two tests check on both clouds)

#[tokio::test(flavor = "multi_thread")]
async fn nomad_faults_back_off_and_the_pool_converges() {
    let t0 = Instant::now();
    let seed = fault_seed("nomad-faults");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6e6f_6d61);
    let w = build_world(kube_client().await, "nomadfault", 8).await;
    let proxy = FaultProxy::start(&moto_endpoint(), seed).await;
    let mon = GroupMonitor::start(&w).await;
    // Long enough jobs, and more arriving, that the scale-in is still
    // running when the last fault phase starts.
    busy(&w, &mut rng, 1, 8.0..25.0).await;
    w.sim
        .post(
            "/sim/workload",
            json!({"node_pool": "ci", "rate_per_minute": 20, "duration_min_s": 4, "duration_max_s": 12}),
        )
        .await;
    let log_dir = PathBuf::from(env_var("NPO_TESTENV_DIR")).join("logs");
    let op = operator(&env_var("KUBECONFIG"), &w.namespace, &log_dir, "nomad", &[]);

    let phases_cfg: [(&str, Value, Duration); 3] = [
        (
            "5xx+drops",
            json!({"error_rate": 0.3, "drop_rate": 0.1}),
            Duration::from_secs(12),
        ),
        (
            "leader-lost",
            json!({"leader_lost": true}),
            Duration::from_secs(8),
        ),
        (
            "latency2s+5xx on /v1/node/",
            json!({"path_prefix": "/v1/node/", "latency_ms": 2000, "error_rate": 0.3}),
            Duration::from_secs(12),
        ),
    ];
    let mut reasons_seen: BTreeSet<String> = BTreeSet::new();
    let mut figures: Vec<(String, u64, f64)> = Vec::new();
    let before = nomad_requests(&w.sim).await;
    let faulty_start = Instant::now();
    let mut mark = before.clone();
    let mut first = true;
    for (phase, (name, cfg, dur)) in phases_cfg.iter().enumerate() {
        // nomad-sim's dice from the test's seed: a failing run replays.
        let mut cfg = cfg.clone();
        cfg["seed"] = json!(seed ^ phase as u64);
        w.sim.post("/sim/faults", cfg).await;
        if first {
            w.apply_pool(&w.pool_manifest("pool", pool_spec(4, 2, Some(&proxy.url))))
                .await;
            first = false;
        }
        let start = Instant::now();
        while start.elapsed() < *dur {
            if let Some(st) = status_of(&w, "pool").await {
                for c in &st.conditions {
                    reasons_seen.insert(format!("{}={}", c.type_, c.reason));
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let now = nomad_requests(&w.sim).await;
        let d = delta(&now, &mark);
        println!("[nomad-faults] phase {name}: {d:?}");
        figures.push((name.to_string(), total(&d), start.elapsed().as_secs_f64()));
        mark = now;
    }
    // 30 % 5xx everywhere persists until the pool has converged.
    let weather = json!({"error_rate": 0.3, "seed": seed ^ phases_cfg.len() as u64});
    w.sim.post("/sim/faults", weather).await;
    let start = Instant::now();
    let st = wait_settled(&w, &op, "pool", 4, Duration::from_secs(150)).await;
    let now = nomad_requests(&w.sim).await;
    let d = delta(&now, &mark);
    println!("[nomad-faults] phase 5xx-until-settled: {d:?}");
    figures.push((
        "5xx-until-settled".into(),
        total(&d),
        start.elapsed().as_secs_f64(),
    ));
    let faulty = delta(&now, &before);
    let faulty_secs = faulty_start.elapsed().as_secs_f64();
    let faults_injected = w.sim.get("/sim/stats").await["faults_injected"].clone();
    w.sim
        .control(reqwest::Method::DELETE, "/sim/faults", None)
        .await;
    let reconciles = op.reconciles().await;

    w.sim.assert_no_violations().await;
    assert_no_stranded_nodes(&w, &st).await;
    assert_cloud_invariants(&mon.history(), &proxy, 8, 4);
    assert_eq!(st.retired_total, 4);
    assert!(op.exited().is_none(), "operator exited:\n{}", op.log_tail());
    // Which conditions flash up depends on which requests the dice hit (with
    // the node watch on the event stream, often none of the reads), so they
    // are reported below, not asserted; `nomad_permission_denied_and_
    // unreachable_show_as_conditions` in tests/retire.rs pins that an outage
    // shows as a condition.

    println!(
        "[nomad-faults] seed {seed}: per phase (name, /v1 requests, seconds) {figures:?}; faulty window {} requests in {faulty_secs:.1}s; faults injected {faults_injected}; reconciles {reconciles:?}; conditions seen {reasons_seen:?}; total {:.1}s",
        total(&faulty),
        t0.elapsed().as_secs_f64()
    );
    // Bounds: see NOMAD_MAX_RATE and RECONCILE_MAX_RATE.
    let per_sec = total(&faulty) as f64 / faulty_secs;
    assert!(
        per_sec < NOMAD_MAX_RATE,
        "{per_sec:.1} Nomad requests/s under faults (bound {NOMAD_MAX_RATE}): {faulty:?}"
    );
    if let Some(r) = reconciles {
        assert!(
            (r as f64) < RECONCILE_MAX_RATE * t0.elapsed().as_secs_f64(),
            "{r} reconciles in {:.0}s",
            t0.elapsed().as_secs_f64()
        );
    }
    op.kill().await;
    w.cleanup().await;
}

/// Nomad requests per second the operator may send while Nomad fails,
/// averaged over the faulty window. Measured on the 2-core machine: 1.4-2.6/s
/// (70-99 requests in 37-69 s). By design the operator keeps one node-list
/// blocking query plus one allocation query per draining node (at most 2
/// here) in flight, each failure waits at least 0.5 s and doubles, and
/// reconciles back off per pool; a loop without back-off against a simulator
/// that answers a fault in about a millisecond would send hundreds per second.
const NOMAD_MAX_RATE: f64 = 10.0;
/// Reconciles per second, averaged over a whole test. Measured 0.9-1.7/s
/// (every Nomad change, status write and requeue counts one).
const RECONCILE_MAX_RATE: f64 = 5.0;

// ---------------------------------------------------------------------------
// 3. Provider throttling and errors

async fn provider_throttling_and_errors_never_terminate_twice(cloud: Cloud) {
    let t0 = Instant::now();
    let seed = fault_seed("cloud-faults");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0061_7773);
    let w = build_world_on(kube_client().await, cloud, "cloudfault", 6).await;
    let calls = CloudCalls::start(&w, seed).await;
    let mon = GroupMonitor::start(&w).await;
    busy(&w, &mut rng, 1, 2.0..6.0).await;
    let log_dir = PathBuf::from(env_var("NPO_TESTENV_DIR")).join("logs");
    let op = operator(&env_var("KUBECONFIG"), &w.namespace, &log_dir, "cloud", &[]);

    // A throttling storm: every call is refused. Nothing may happen, and the
    // SDK's retries plus the reconciler's back-off must keep the call rate low.
    calls.refuse_everything().await;
    w.apply_pool(&w.pool_manifest("pool", pool_spec(3, 3, calls.endpoint())))
        .await;
    let storm = Instant::now();
    let mut reasons_seen: BTreeSet<String> = BTreeSet::new();
    while storm.elapsed() < Duration::from_secs(10) {
        if let Some(st) = status_of(&w, "pool").await {
            for c in &st.conditions {
                reasons_seen.insert(format!("{}={}", c.type_, c.reason));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let storm_secs = storm.elapsed().as_secs_f64();
    let storm_total = calls.totals().await;
    let storm_counts = calls.counts().await;
    assert_eq!(
        storm_total.carried_out, 0,
        "every call was throttled: {storm_counts}"
    );
    assert_eq!(mon.history().desired, vec![6], "nothing happens in a storm");
    assert!(
        reasons_seen.contains("Degraded=ProviderError"),
        "the storm shows in status: {reasons_seen:?}"
    );

    // Then throttling, 5xx, lost answers to calls carried out (and on GCE
    // failed Operations), until settled (`CloudCalls::mixed` gives the rates).
    calls.mixed(seed).await;
    let mixed = Instant::now();
    let st = wait_settled(&w, &op, "pool", 3, Duration::from_secs(150)).await;
    let mixed_secs = mixed.elapsed().as_secs_f64();
    let tot = calls.totals().await;
    let reconciles = op.reconciles().await;

    w.sim.assert_no_violations().await;
    assert_no_stranded_nodes(&w, &st).await;
    calls.assert_invariants(&mon.history(), 6, 3).await;
    assert_eq!(st.retired_total, 3);
    assert!(op.exited().is_none(), "operator exited:\n{}", op.log_tail());
    println!(
        "[cloud-faults] {cloud:?} seed {seed}: storm (100 % throttled) {} requests in {storm_secs:.1}s: {storm_counts}; then settled in {mixed_secs:.1}s under 30 % throttling, 10 % 5xx, 15 % lost answers after the work (GCE: half those, and the first and 10 % of the delete Operations failed); requests in all {} ({} carried out); per kind: {}; terminate calls: {}; reconciles {reconciles:?}; conditions seen {reasons_seen:?}; total {:.1}s",
        storm_total.requests,
        tot.requests,
        tot.carried_out,
        calls.counts().await,
        calls.terminate_log().await,
        t0.elapsed().as_secs_f64()
    );
    let b = Bounds::of(cloud);
    assert!(
        (storm_total.requests as f64) < b.storm_rate * storm_secs,
        "{} {cloud:?} requests in a {storm_secs:.0}s throttling storm",
        storm_total.requests
    );
    let later = tot.requests - storm_total.requests;
    let bound = b.per_retirement * 3.0 + b.rate * mixed_secs + 10.0;
    assert!(
        (later as f64) < bound,
        "{later} {cloud:?} requests in {mixed_secs:.0}s (bound {bound:.0})"
    );
    op.kill().await;
    w.cleanup().await;
}

/// How many cloud requests the operator may send under faults.
struct Bounds {
    /// Per second while every call is throttled.
    storm_rate: f64,
    /// Per retirement once calls mostly succeed ...
    per_retirement: f64,
    /// ... plus this many per second for the group reads of the reconciles.
    rate: f64,
}

impl Bounds {
    fn of(cloud: Cloud) -> Bounds {
        match cloud {
            // Storm: measured 1.2-1.4/s (12-14 in 10 s): each reconcile's
            // describe is tried 4 times by the SDK with 0.5/1/2 s back-off,
            // and a ProviderError requeues after seconds; without back-off
            // moto-speed retries would be hundreds per second. Per
            // retirement: a DescribeAutoScalingInstances, the terminate and
            // at most one read-back, each tried up to 4 times by the SDK;
            // about one reconcile a second, 4 attempts when throttled.
            // Measured in all: 19-22 requests for 3 retirements in 2.7-7.4 s.
            Cloud::Aws => Bounds {
                storm_rate: 5.0,
                per_retirement: 12.0,
                rate: 4.0,
            },
            // Storm: the provider tries each read 4 times (1/2/4 s apart)
            // and the reconciler backs off after; measured 5-6 requests in
            // 10 s. Per retirement: the listing before the call,
            // deleteInstances, its Operation's polls and the listing after,
            // each read up to 4 times; a describe is a get and a listing.
            // Measured after the storm (with failed Operations retried):
            // 32-80 requests for 3 retirements in 12-36 s.
            Cloud::Gce => Bounds {
                storm_rate: 2.0,
                per_retirement: 24.0,
                rate: 3.0,
            },
        }
    }
}
