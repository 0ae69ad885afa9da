//! Allocation watches against the simulator: a watch ends once its node can
//! get no new allocation and has none left, and its kept answer counts only
//! while the node stays as it was.

use super::*;
use crate::nomad::NomadConfig;
use serde_json::{Value, json};

struct Setup {
    sim: nomad_sim::Sim,
    watch: PoolWatch,
    client: NomadClient,
    node: String,
}

async fn setup() -> Setup {
    let sim = nomad_sim::serve(nomad_sim::Config::default())
        .await
        .unwrap();
    let client = NomadClient::new(NomadConfig {
        address: sim.url(),
        ..Default::default()
    })
    .unwrap();
    let http = reqwest::Client::new();
    http.post(format!("{}/sim/nodes", sim.url()))
        .json(&json!({"count": 1, "node_pool": "ci"}))
        .send()
        .await
        .unwrap();
    let node = client
        .list_nodes(None, &QueryOptions::default())
        .await
        .unwrap()
        .value[0]
        .id
        .clone();
    let watch = PoolWatch::for_tests(client.clone());
    Setup {
        sim,
        watch,
        client,
        node,
    }
}

impl Setup {
    async fn post(&self, path: &str, body: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}{path}", self.sim.url()))
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn view(&self) -> NodesSnapshot {
        let nodes = self
            .client
            .list_nodes(None, &QueryOptions::default())
            .await
            .unwrap();
        NodesSnapshot {
            index: nodes.index,
            nodes: nodes.value.into_iter().collect(),
            ..Default::default()
        }
    }

    fn track(&self, mode: AllocWatchMode) {
        self.watch
            .track_allocations(&[(self.node.clone(), mode)].into(), false);
    }

    fn task_ended(&self) -> bool {
        self.watch.allocs.lock().unwrap()[&self.node]
            .task
            .is_finished()
    }

    async fn facts_until(&self, what: &str, ok: impl Fn(Option<&AllocFacts>) -> bool) {
        let view = self.view().await;
        for _ in 0..200 {
            let facts = self.watch.allocation_facts(false, &view);
            if ok(facts.get(&self.node)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: {:?}", self.watch.allocation_facts(false, &view));
    }
}

#[tokio::test]
async fn a_settled_node_keeps_its_answer_without_a_connection_until_it_changes() {
    let s = setup().await;
    let placed = s
        .post(
            "/sim/allocations",
            json!({"type": "batch", "job_id": "etl", "node_id": s.node, "node_pool": "ci"}),
        )
        .await;
    let alloc = placed["alloc_ids"][0].as_str().unwrap().to_owned();
    s.client.set_eligibility(&s.node, false).await.unwrap();
    let at = s.view().await.nodes.iter().next().unwrap().modify_index;

    // Nothing new can land there, but an allocation still runs: watched.
    s.track(AllocWatchMode::Settled(at));
    s.facts_until("the running allocation", |f| f.is_some_and(|f| f.live == 1))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.task_ended(), "a live allocation is still followed");

    // It finishes: the watch answers, then ends; the answer stays.
    s.post(&format!("/sim/allocations/{alloc}/finish"), json!({}))
        .await;
    s.facts_until("the finished allocation", |f| {
        f.is_some_and(|f| f.live == 0)
    })
    .await;
    for _ in 0..100 {
        if s.task_ended() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.task_ended(), "no parked query for a settled, empty node");

    // The node changes (eligible again): the kept answer no longer counts,
    // and the watch starts over with a fresh read.
    s.client.set_eligibility(&s.node, true).await.unwrap();
    let changed = s.view().await;
    assert_ne!(changed.nodes.iter().next().unwrap().modify_index, at);
    assert!(s.watch.allocation_facts(false, &changed).is_empty());
    s.track(AllocWatchMode::Gate);
    assert!(!s.task_ended(), "a new watch");
    s.facts_until("a fresh answer", |f| f.is_some_and(|f| f.live == 0))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.task_ended(), "an eligible node stays watched");
}

#[tokio::test]
async fn a_parked_watch_gives_its_connection_back_once_its_node_settles() {
    let s = setup().await;
    s.client.set_eligibility(&s.node, false).await.unwrap();
    s.track(AllocWatchMode::Gate);
    s.facts_until("the first answer", |f| f.is_some_and(|f| f.live == 0))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!s.task_ended(), "parked while the next step waits on it");
    let at = s.view().await.nodes.iter().next().unwrap().modify_index;
    s.track(AllocWatchMode::Settled(at));
    for _ in 0..100 {
        if s.task_ended() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.task_ended(), "the parked query was dropped");
    s.facts_until("the kept answer", |f| f.is_some_and(|f| f.live == 0))
        .await;
}

/// A status-only watch waits in the small status lane behind queries parked
/// on nodes that do not change. Once the retirement's next step waits on its
/// node, the watch must ask again in the lane the decision uses rather than
/// stay queued: the scale-in bench had nodes wait tens of seconds there
/// after their last job ended.
#[tokio::test]
async fn a_status_watch_whose_node_the_next_step_needs_leaves_the_full_status_lane() {
    let s = setup().await;
    let (modes, at) = status_watch_behind_a_full_lane(&s).await;
    s.watch
        .track_allocations(&modes(AllocWatchMode::Settled(at)), false);
    s.facts_until("the finish, read in the decision's lane", |f| {
        f.is_some_and(|f| f.live == 0)
    })
    .await;
}

/// The express lane's way out of the same queue: `gate_watches` moves the
/// one watch its decision needs to the gate lane, and leaves the others as
/// they are (it is no reconcile: it stops no watch it does not name).
#[tokio::test]
async fn the_express_lane_moves_a_status_watch_it_needs_to_the_gate_lane() {
    let s = setup().await;
    let (modes, _) = status_watch_behind_a_full_lane(&s).await;
    let all = modes(AllocWatchMode::Status).len();
    s.watch
        .gate_watches(&[(s.node.clone(), AllocWatchMode::Gate)].into(), false);
    s.facts_until("the finish, read in the gate lane", |f| {
        f.is_some_and(|f| f.live == 0)
    })
    .await;
    let watches = s.watch.allocs.lock().unwrap();
    assert_eq!(watches.len(), all, "no other watch stopped");
    assert_eq!(*watches[&s.node].mode.borrow(), AllocWatchMode::Gate);
    let others_status = (watches.iter())
        .filter(|(id, _)| **id != s.node)
        .all(|(_, w)| *w.mode.borrow() == AllocWatchMode::Status);
    assert!(others_status, "the other watches stay in the status lane");
}

/// Modes for all nodes (ours as given), and our node's index, once our
/// status-only watch queues behind 24 others and has not seen its last
/// allocation finish.
async fn status_watch_behind_a_full_lane(
    s: &Setup,
) -> (
    impl Fn(AllocWatchMode) -> HashMap<String, AllocWatchMode> + '_,
    u64,
) {
    s.post("/sim/nodes", json!({"count": 24, "node_pool": "ci"}))
        .await;
    let placed = s
        .post(
            "/sim/allocations",
            json!({"type": "batch", "job_id": "etl", "node_id": s.node, "node_pool": "ci"}),
        )
        .await;
    let alloc = placed["alloc_ids"][0].as_str().unwrap().to_owned();
    s.client.set_eligibility(&s.node, false).await.unwrap();
    let others: Vec<String> = s
        .view()
        .await
        .nodes
        .iter()
        .map(|n| n.id.clone())
        .filter(|id| *id != s.node)
        .collect();
    let all = others.clone();
    let modes = move |ours: AllocWatchMode| -> HashMap<String, AllocWatchMode> {
        all.iter()
            .map(|id| (id.clone(), AllocWatchMode::Status))
            .chain([(s.node.clone(), ours)])
            .collect()
    };
    // The other nodes' watches first: once each has its first answer, their
    // next queries fill the status lane and queue behind it (first come,
    // first served), so ours, asked after them, waits behind them all.
    let theirs: HashMap<String, AllocWatchMode> = others
        .iter()
        .map(|id| (id.clone(), AllocWatchMode::Status))
        .collect();
    s.watch.track_allocations(&theirs, false);
    let view = s.view().await;
    for _ in 0..200 {
        if s.watch.allocation_facts(false, &view).len() == others.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.watch
        .track_allocations(&modes(AllocWatchMode::Status), false);
    s.facts_until("the running allocation", |f| f.is_some_and(|f| f.live == 1))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    s.post(&format!("/sim/allocations/{alloc}/finish"), json!({}))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stale = s.watch.allocation_facts(false, &s.view().await);
    assert_eq!(
        stale.get(&s.node).map(|f| f.live),
        Some(1),
        "precondition: the status lane is full, so the finish is not seen yet"
    );

    // The drain is over: the termination decision waits on this node now.
    let at = s
        .view()
        .await
        .nodes
        .iter()
        .find(|n| n.id == s.node)
        .unwrap()
        .modify_index;
    (modes, at)
}
