//! The SIGKILL loop of `tests/faults.rs` with every fleet-hygiene feature
//! of issue 18 on at once, on one AWS pool (moto, nomad-sim): a scale-in,
//! clients past `maxNodeAge`, clients drifted from the launch template,
//! clients down past `remediation.unhealthyAfter` (within
//! `maxUnhealthy`), a disruption budget with a rate, and one client opted
//! out with `nomadpool.dev/do-not-retire`. The operator is SIGKILLed at
//! random moments and just after retirement writes, and restarted.
//!
//! The features must not fight the scale-in or each other. Watched
//! throughout (`npo_testkit::faults::{RetirementWatch, ServiceWatch}`):
//! never two retirements under way for one client, each retirement's one
//! reason never changing, voluntary retirements within the budget (in
//! their objects and as clients out of service in Nomad), remediations
//! within `maxUnhealthy`, the opted-out client never taken out of
//! service. At the end: every retirement finished, each client retired
//! for a reason it had (expiry
//! wins over drift, a down client is only ever remediated), each VM
//! terminated once and only the scale-in's shrinking the group, no
//! allocation lost to a terminate (the simulator's safety record), the
//! rate kept, and the pool converged: `replicas` clients, none expired,
//! drifted or down but the opted-out one, nothing left out of service, Ready.
//!
//! Seeded like `tests/faults.rs` (`NPO_FAULT_SEED`): the kill schedule and
//! the job durations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::SignedDuration;
use nomad_pool_operator::api::{DO_NOT_RETIRE_META, RetireReason, RetirementPhase};
use npo_testkit::aws::{new_default_template_version, template_versions};
use npo_testkit::faults::*;
use npo_testkit::proxy::aws_faults::FaultProxy;
use npo_testkit::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Clients after the scale-in (the group starts with `1 + 2 * STALE + 2`).
const REPLICAS: i32 = 9;
/// Clients on the old template version that are also past `maxNodeAge`,
/// and as many that are only drifted; the first of each goes down.
const STALE: usize = 4;
/// `disruption.budgets[0]`: 2 out of service, 3 starts per 10 s (tighter
/// than `disruption.maxUnavailable: 3`).
const BUDGET: u32 = 2;
const RATE: usize = 3;
const RATE_PER: SignedDuration = SignedDuration::from_secs(10);
const MAX_UNHEALTHY: u32 = 2;
/// How much older than moto says the aged VMs look, against `maxNodeAge: 1h`.
const AGE: SignedDuration = SignedDuration::from_hours(2);
/// SIGKILLs at a random delay at least, and in all at most.
const MIN_KILLS: usize = 10;
const MAX_KILLS: usize = 50;

/// The clients by what the test made of them (node ID, VM).
struct Fleet {
    opted: (String, String),
    /// Template version 1 and launched `AGE` ago: expired and drifted.
    aged: Vec<(String, String)>,
    /// Template version 1, young: drifted only.
    young: Vec<(String, String)>,
    /// Down before the pool exists: one aged, one young.
    down: Vec<String>,
    /// Every VM on version 1 but the opted-out one.
    stale_vms: BTreeSet<String>,
    /// Node ID by VM, for every client the fleet started with.
    by_vm: BTreeMap<String, String>,
}

async fn grow(w: &World, to: i32) -> BTreeSet<String> {
    let before: BTreeSet<String> = w
        .group()
        .await
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    w.asg
        .set_desired_capacity()
        .auto_scaling_group_name(&w.group)
        .desired_capacity(to)
        .send()
        .await
        .expect("growing the group");
    wait_for(
        "the new clients to register",
        Duration::from_secs(60),
        || async { (w.ready_nodes().await.len() == to as usize).then_some(()) },
    )
    .await;
    let after: BTreeSet<String> = w
        .group()
        .await
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    after.difference(&before).cloned().collect()
}

/// The world: one opted-out client, `2 * STALE` on template version 1,
/// then version 2 made the default and two clients launched from it.
async fn build_fleet() -> (World, Fleet) {
    let mut w = World::on(
        kube_client().await,
        "hygiene",
        WorldOptions {
            size: 1,
            node_meta: json!({ DO_NOT_RETIRE_META: "true" }),
            launch_template: true,
            ..Default::default()
        },
    )
    .await;
    w.create_provider_secret().await;
    let opted_vm = w.group().await.instances[0].id.clone();
    // The clients launched from now on do not opt out.
    w.bridge = Bridge::start(w.sim.url.clone(), w.group.clone(), "ci".into());
    let v1: Vec<String> = grow(&w, 1 + 2 * STALE as i32).await.into_iter().collect();
    assert_eq!(new_default_template_version(&w.group).await, 2);
    grow(&w, 3 + 2 * STALE as i32).await;
    let by_vm: BTreeMap<String, String> = (w.sim.nodes().await.iter())
        .map(|n| {
            let vm = n["instance_id"].as_str().unwrap().to_owned();
            (vm, n["id"].as_str().unwrap().to_owned())
        })
        .collect();
    let pair = |vm: &String| (by_vm[vm].clone(), vm.clone());
    let fleet = Fleet {
        opted: pair(&opted_vm),
        aged: v1[..STALE].iter().map(pair).collect(),
        young: v1[STALE..].iter().map(pair).collect(),
        down: vec![by_vm[&v1[0]].clone(), by_vm[&v1[STALE]].clone()],
        stale_vms: v1.iter().cloned().collect(),
        by_vm,
    };
    // Their agents die before any work lands on them: nothing to lose.
    for node in &fleet.down {
        w.sim
            .post(&format!("/sim/nodes/{node}/kill"), json!({}))
            .await;
    }
    // Down once their heartbeats lapse: until then Nomad reports them
    // ready, and an empty ready client is the scale-in's first choice.
    wait_for(
        "the killed clients down",
        Duration::from_secs(30),
        || async {
            let nodes = w.sim.nodes().await;
            let down = (nodes.iter())
                .filter(|n| n["status"] == "down")
                .filter(|n| fleet.down.iter().any(|d| n["id"] == d.as_str()))
                .count();
            (down == fleet.down.len()).then_some(())
        },
    )
    .await;
    (w, fleet)
}

fn pool_spec(proxy: &FaultProxy) -> Value {
    json!({
        "replicas": REPLICAS,
        "maxNodeAge": "1h",
        "replaceDrifted": true,
        "retirementHistoryLimit": 100,
        "remediation": {"unhealthyAfter": "500ms", "maxUnhealthy": MAX_UNHEALTHY,
                        "purgeDownAfter": "2s"},
        "disruption": {"maxUnavailable": 3, "budgets": [
            {"maxUnavailable": BUDGET, "rate": {"retirements": RATE, "per": "10s"}},
        ]},
        "provider": {"awsAutoScalingGroup": {"endpoint": proxy.url}},
    })
}

/// When a kill lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Aim {
    /// 0-1.5 s after the restart.
    Random,
    /// 0-50 ms after a retirement moved (a write-ahead record landed),
    /// while the actions it names run.
    AfterWrite,
    /// As soon as a new retirement object shows up: between its create
    /// and its first status.
    AtCreate,
}

/// What the kill loop did.
struct Kills {
    random: Vec<u64>,
    /// Kills by aim, and turns on which no write came within 1.5 s.
    aimed: BTreeMap<String, usize>,
    misses: usize,
    /// The client the loop took down once a first remediation finished.
    late_down: Option<String>,
    secs: f64,
}

impl Kills {
    fn total(&self) -> usize {
        self.random.len() + self.aimed.values().sum::<usize>()
    }
}

/// Once a remediation has finished, a third client goes down (its
/// network cut: its work is lost, nothing to drain), so a remediation
/// starts while another may still be in flight.
async fn take_one_more_down(w: &World, watch: &RetirementWatch, fleet: &Fleet) -> Option<String> {
    let ledger = watch.ledger();
    let remediated = (ledger.objects.values())
        .any(|s| s.reason == RetireReason::Unhealthy && s.phase == RetirementPhase::Retired);
    if !remediated {
        return None;
    }
    let busy: BTreeSet<&str> = (ledger.objects.values())
        .filter(|s| !s.phase.is_finished())
        .filter_map(|s| s.node_id.as_deref())
        .collect();
    let nodes = w.ready_nodes().await;
    let victim = nodes.iter().find(|n| {
        let vm = n["instance_id"].as_str().unwrap_or_default();
        n["eligibility"] == "eligible"
            && n["draining"] == false
            && !busy.contains(n["id"].as_str().unwrap_or_default())
            && !fleet.stale_vms.contains(vm)
            && vm != fleet.opted.1
    })?;
    let id = victim["id"].as_str()?.to_owned();
    w.sim
        .post(&format!("/sim/nodes/{id}/disconnect"), json!({}))
        .await;
    Some(id)
}

/// How long to wait before the next kill: `None` when an aimed kill's
/// moment did not come within 1.5 s.
async fn wait_for_aim(
    aim: Aim,
    moves: &mut tokio::sync::watch::Receiver<(u64, u64)>,
    rng: &mut StdRng,
) -> Option<u64> {
    let (moved, created) = *moves.borrow_and_update();
    if aim == Aim::Random {
        return Some(rng.random_range(0..=1500u64));
    }
    let came = moves.wait_for(|(m, c)| match aim {
        Aim::AtCreate => *c > created,
        _ => *m > moved,
    });
    tokio::time::timeout(Duration::from_millis(1500), came)
        .await
        .ok()?
        .ok()?;
    Some(match aim {
        Aim::AtCreate => 0,
        _ => rng.random_range(0..=50u64),
    })
}

/// SIGKILL the operator at random delays and at the moments the
/// write-ahead design is about, restarting it each time, until the pool
/// has settled (or `MAX_KILLS`).
async fn kill_loop(
    w: &World,
    op: &mut Operator,
    watch: &RetirementWatch,
    fleet: &Fleet,
    rng: &mut StdRng,
) -> Kills {
    let start = Instant::now();
    let mut moves = watch.moves();
    let mut k = Kills {
        random: vec![],
        aimed: BTreeMap::new(),
        misses: 0,
        late_down: None,
        secs: 0.0,
    };
    let aims = [Aim::Random, Aim::AfterWrite, Aim::AtCreate];
    for turn in 0.. {
        if k.late_down.is_none() {
            k.late_down = take_one_more_down(w, watch, fleet).await;
        }
        let aim = aims[turn % aims.len()];
        let Some(delay_ms) = wait_for_aim(aim, &mut moves, rng).await else {
            k.misses += 1;
            continue;
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        op.kill().await;
        match aim {
            Aim::Random => k.random.push(delay_ms),
            _ => *k.aimed.entry(format!("{aim:?}")).or_default() += 1,
        }
        let st = status_of(w, "pool").await.unwrap_or_default();
        let done = is_settled(&st, REPLICAS)
            && k.late_down.is_some()
            && stale_left(w, fleet).await.is_empty();
        op.restart();
        if k.random.len() >= MIN_KILLS && (done || k.total() >= MAX_KILLS) {
            break;
        }
    }
    k.secs = start.elapsed().as_secs_f64();
    k
}

/// The group's VMs still on template version 1, but the opted-out one.
async fn stale_left(w: &World, fleet: &Fleet) -> Vec<String> {
    (w.group().await.instances.into_iter())
        .map(|i| i.id)
        .filter(|id| fleet.stale_vms.contains(id))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_loop_with_every_hygiene_feature_on_keeps_every_invariant() {
    let t0 = Instant::now();
    let seed = fault_seed("hygiene");
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6879_6769);
    let (w, fleet) = build_fleet().await;
    let proxy = FaultProxy::start(&moto_endpoint(), seed).await;
    let mut aged_vms: Vec<String> = fleet.aged.iter().map(|(_, vm)| vm.clone()).collect();
    aged_vms.push(fleet.opted.1.clone());
    proxy.make_older(aged_vms, AGE);
    busy(&w, &mut rng, 1, 2.0..8.0).await;
    w.sim
        .post(
            "/sim/workload",
            json!({"node_pool": "ci", "rate_per_minute": 30, "duration_min_s": 2, "duration_max_s": 5}),
        )
        .await;
    let limits = Limits {
        voluntary: BUDGET,
        remediations: MAX_UNHEALTHY,
    };
    let watch = RetirementWatch::start(w.retirements_api(), limits);
    let service = ServiceWatch::start(w.sim.url.clone(), BTreeSet::from([fleet.opted.0.clone()]));
    let mon = GroupMonitor::start(&w).await;
    let log_dir = PathBuf::from(env_var("NPO_TESTENV_DIR")).join("logs");
    // Leader election off, as in tests/faults.rs: a killed leader's Lease
    // would hold every short life up for 15 s.
    let mut op = operator(
        &env_var("KUBECONFIG"),
        &w.namespace,
        &log_dir,
        "hygiene",
        &["--leader-elect", "false"],
    );
    w.apply_pool(&w.pool_manifest("pool", pool_spec(&proxy)))
        .await;
    let applied = Instant::now();

    let kills = kill_loop(&w, &mut op, &watch, &fleet, &mut rng).await;
    wait_for(
        "every stale VM replaced",
        Duration::from_secs(120),
        || async { stale_left(&w, &fleet).await.is_empty().then_some(()) },
    )
    .await;
    let st = wait_settled(&w, &op, "pool", REPLICAS, Duration::from_secs(120)).await;
    let converged = applied.elapsed().as_secs_f64();
    let ledger = watch.ledger();

    assert!(ledger.violations.is_empty(), "{:#?}", ledger.violations);
    // Settled: every retirement ended, none left waiting (a `Pending` one
    // the pool created is a selection it never carried out).
    assert!(ledger.unfinished().is_empty(), "{:?}", ledger.unfinished());
    check_reasons(&ledger, &fleet, kills.late_down.as_deref());
    check_cloud(&ledger, &proxy, &mon.history(), &st);
    check_budget(&ledger, &service.history());
    check_converged(&w, &fleet, &st).await;
    w.sim.assert_no_violations().await;
    assert!(op.exited().is_none(), "operator exited:\n{}", op.log_tail());

    println!(
        "[hygiene] seed {seed}: {} SIGKILLs in {:.1}s ({} at a random delay, ms {:?}; aimed {:?}; {} turns without the moment aimed at); {} operator starts; late down {:?}; retirements {:?}; most voluntary before terminate at once {}, most remediations {}, most clients out of service {} ({} samples); converged {converged:.1}s after the pool was applied; cloud calls {}; total {:.1}s",
        kills.total(),
        kills.secs,
        kills.random.len(),
        kills.random,
        kills.aimed,
        kills.misses,
        op.starts,
        kills.late_down,
        ledger.by_reason(),
        ledger.max_voluntary,
        ledger.max_remediations,
        service.history().max_out,
        service.history().samples,
        aws_counts(&proxy),
        t0.elapsed().as_secs_f64()
    );
    op.kill().await;
    w.cleanup().await;
}

/// Each client was retired only for a reason it had, at most once, and
/// every feature retired at least one.
fn check_reasons(ledger: &Ledger, fleet: &Fleet, late_down: Option<&str>) {
    use RetireReason::*;
    let class = |node: &str| -> (&str, Vec<RetireReason>) {
        if node == fleet.opted.0 {
            ("opted out", vec![])
        } else if fleet.down.iter().any(|d| d == node) {
            ("down", vec![Unhealthy])
        } else if Some(node) == late_down {
            ("down later", vec![ScaleIn, Unhealthy])
        } else if fleet.aged.iter().any(|(n, _)| n == node) {
            ("expired and drifted", vec![ScaleIn, Expired])
        } else if fleet.young.iter().any(|(n, _)| n == node) {
            ("drifted", vec![ScaleIn, Drifted])
        } else {
            ("current", vec![ScaleIn])
        }
    };
    let mut retired: BTreeMap<&str, usize> = BTreeMap::new();
    for s in ledger.objects.values() {
        let node = s
            .node_id
            .as_deref()
            .expect("every retirement names its node");
        let (what, allowed) = class(node);
        assert!(
            allowed.contains(&s.reason),
            "{} retired {what} client {node} for {}",
            s.name,
            s.reason
        );
        if s.phase == RetirementPhase::Retired {
            *retired.entry(node).or_default() += 1;
        }
    }
    assert!(
        retired.values().all(|n| *n == 1),
        "a client retired twice: {retired:?}"
    );
    let reasons: BTreeSet<&str> = (ledger.objects.values())
        .filter(|s| s.phase == RetirementPhase::Retired)
        .map(|s| s.reason.as_str())
        .collect();
    for r in ["ScaleIn", "Expired", "Drifted", "Unhealthy"] {
        assert!(
            reasons.contains(r),
            "no {r} retirement: {:?}",
            ledger.by_reason()
        );
    }
    for node in fleet.down.iter().map(String::as_str).chain(late_down) {
        assert!(
            retired.contains_key(node),
            "down client {node} not replaced"
        );
    }
}

/// Each VM terminated once, the ones the retirements name; only the
/// scale-in's lowered the group's size, by exactly the excess; every
/// retirement counted once in `retiredTotal`.
fn check_cloud(ledger: &Ledger, proxy: &FaultProxy, h: &GroupHistory, st: &PoolView) {
    let retired: Vec<&Seen> = (ledger.objects.values())
        .filter(|s| s.phase == RetirementPhase::Retired)
        .collect();
    assert_eq!(
        st.retired_total,
        retired.len() as i64,
        "{:?}",
        ledger.by_reason()
    );
    let executed = proxy.executed_terminates();
    assert!(
        executed.values().all(|n| *n == 1),
        "a VM terminated twice: {executed:?}; calls {:#?}",
        proxy.terminate_calls()
    );
    let named: BTreeSet<String> = retired
        .iter()
        .filter_map(|s| s.instance_id.clone())
        .collect();
    let terminated: BTreeSet<String> = executed.keys().cloned().collect();
    assert_eq!(terminated, named, "terminated VMs vs retirements");
    let shrinking: BTreeSet<String> = (proxy.terminate_calls().into_iter())
        .filter(|c| c.upstream_status == Some(200) && c.decrement == Some(true))
        .map(|c| c.instance_id)
        .collect();
    let scaled_in: BTreeSet<String> = (retired.iter())
        .filter(|s| s.reason == RetireReason::ScaleIn)
        .filter_map(|s| s.instance_id.clone())
        .collect();
    assert_eq!(shrinking, scaled_in, "only a scale-in shrinks the group");
    let from = REPLICAS + 2;
    assert_eq!(h.desired.first(), Some(&from), "{:?}", h.desired);
    assert_eq!(h.desired.last(), Some(&REPLICAS), "{:?}", h.desired);
    assert_eq!((h.increments(), h.decrements()), (0, 2), "{:?}", h.desired);
}

/// The budget and the rate held; the opted-out client stayed in service.
fn check_budget(ledger: &Ledger, service: &ServiceHistory) {
    assert!(
        service.max_out as u32 <= BUDGET,
        "{} clients out of service at once (budget {BUDGET}): {:?}",
        service.max_out,
        service.at_max
    );
    assert!(
        service.touched.is_empty(),
        "opted-out client taken out of service"
    );
    let starts: Vec<_> = (ledger.objects.values())
        .filter(|s| s.reason.is_voluntary())
        .filter_map(|s| s.selected_at)
        .collect();
    if let Some(over) = over_rate(&starts, RATE, RATE_PER) {
        panic!("{over}");
    }
}

/// `replicas` clients, every one in service and current but the
/// opted-out one, which is still there, and the pool Ready.
async fn check_converged(w: &World, fleet: &Fleet, st: &PoolView) {
    assert_no_stranded_nodes(w, st).await;
    let vms: Vec<String> = w
        .group()
        .await
        .instances
        .into_iter()
        .map(|i| i.id)
        .collect();
    assert!(vms.contains(&fleet.opted.1), "the opted-out VM is gone");
    let versions = template_versions(&vms).await;
    for vm in vms.iter().filter(|vm| **vm != fleet.opted.1) {
        assert_eq!(
            versions.get(vm).map(String::as_str),
            Some("2"),
            "VM {vm} (node {:?}) not on the current template: {versions:?}",
            fleet.by_vm.get(vm)
        );
    }
    assert!(
        w.sim.nodes().await.iter().all(|n| n["status"] == "ready"),
        "a client is not ready: {:#?}",
        w.sim.nodes().await
    );
    assert_eq!(st.unhealthy_nodes, 0);
    assert_eq!(st.do_not_retire_nodes, 1);
    assert!(condition(st, "Ready").is_some_and(|c| c.status == "True"));
}
