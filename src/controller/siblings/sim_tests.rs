//! The batched reads against nomad-sim, counted by its request statistics.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::*;

struct Sim {
    sim: nomad_sim::Sim,
    http: reqwest::Client,
}

impl Sim {
    async fn start() -> Sim {
        let sim = nomad_sim::serve(nomad_sim::Config::default())
            .await
            .unwrap();
        Sim {
            sim,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.sim.url()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.unwrap()
    }

    /// One node per entry of `instances`, in order: their IDs.
    async fn register(&self, instances: &[&str]) -> Vec<String> {
        let v = self
            .post("/sim/nodes", json!({"instance_ids": instances}))
            .await;
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Requests Nomad was sent, by route.
    async fn requests(&self, route: &str) -> u64 {
        let v: Value = self
            .http
            .get(format!("{}/sim/stats", self.sim.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["requests"][route].as_u64().unwrap_or(0)
    }

    async fn faults(&self, faults: Value) {
        self.post("/sim/faults", faults).await;
    }

    fn watch(&self) -> SiblingWatch {
        SiblingWatch::for_tests(&self.sim.url())
    }
}

const LISTS: &str = "GET /v1/nodes";
const READS: &str = "GET /v1/node/:id";

fn pool_node(id: &str, instance: &str) -> (String, String) {
    (id.into(), instance.into())
}

/// The node IDs of each VM's answer, once every VM of `instances` has one.
async fn answers(w: &SiblingWatch, instances: &BTreeSet<String>) -> BTreeMap<String, Vec<String>> {
    for _ in 0..200 {
        let facts = w.facts();
        if instances.iter().all(|i| facts.contains_key(i)) {
            return facts
                .into_iter()
                .map(|(i, nodes)| (i, nodes.into_iter().map(|n| n.id).collect()))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("not every VM was answered: {:?}", w.facts().keys());
}

#[tokio::test]
async fn many_vms_at_the_gate_are_answered_by_few_lists_each_node_on_its_own_vm() {
    let sim = Sim::start().await;
    let singles: Vec<String> = (0..117).map(|i| format!("i-{i:017x}")).collect();
    let refs: Vec<&str> = singles.iter().map(String::as_str).collect();
    let single_nodes = sim.register(&refs).await;
    let twins = sim.register(&["i-0twin", "i-0twin"]).await;
    // On a VM at the gate but outside the pool: the pool knows nothing of it.
    let stranger = sim.register(&["i-0shared"]).await;
    // Not at the gate: the filter must leave it out.
    sim.register(&["i-0unrelated"]).await;
    let mut pool: HashMap<String, String> = single_nodes
        .iter()
        .zip(&singles)
        .map(|(n, i)| pool_node(n, i))
        .collect();
    pool.extend([pool_node(&twins[0], "i-0twin")]);
    // The twin's second node registered after the pool's view was taken.
    let mut gate: BTreeSet<String> = singles.iter().cloned().collect();
    gate.extend(["i-0twin", "i-0shared", "i-0empty"].map(String::from));
    assert_eq!(gate.len(), 120);

    let w = sim.watch();
    w.track(&gate, Arc::new(pool));
    let got = answers(&w, &gate).await;

    for (instance, node) in singles.iter().zip(&single_nodes) {
        assert_eq!(got[instance], std::slice::from_ref(node), "{instance}");
    }
    let mut both = twins.clone();
    both.sort();
    assert_eq!(got["i-0twin"], both, "a VM with two nodes");
    assert_eq!(got["i-0shared"], stranger, "a node outside the pool's map");
    assert!(got["i-0empty"].is_empty(), "a VM with no node");
    // 120 VMs: three lists of at most 50, not 120; a read only for each of
    // the two nodes the pool did not place.
    assert_eq!(sim.requests(LISTS).await, 3);
    assert_eq!(sim.requests(READS).await, 2);
    // The same VMs again: nothing is read.
    w.track(&gate, Arc::default());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sim.requests(LISTS).await, 3);
    sim.sim.shutdown().await;
}

/// A list already out when the check is asked does not answer it: the
/// check waits for the next one, which shows a node registered meanwhile.
#[tokio::test]
async fn a_last_check_is_answered_by_a_list_begun_after_it_was_asked() {
    let sim = Sim::start().await;
    let first = sim.register(&["i-0vm"]).await.remove(0);
    let known: HashSet<String> = [first.clone()].into();
    sim.faults(json!({"path_prefix": "/v1/nodes", "latency_ms": 600}))
        .await;
    let w = Arc::new(sim.watch());
    let gate: BTreeSet<String> = ["i-0vm".to_string()].into();
    w.track(&gate, Arc::new([pool_node(&first, "i-0vm")].into()));
    for _ in 0..100 {
        if sim.requests(LISTS).await > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(sim.requests(LISTS).await, 1, "the gate's list is out");
    assert!(w.facts().is_empty());

    let check = tokio::spawn({
        let (w, known) = (w.clone(), known.clone());
        async move { w.last_check("i-0vm", &known).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = sim.register(&["i-0vm"]).await.remove(0);
    match check.await.unwrap() {
        Err(LastCheckError::NodesAppeared(ids)) => {
            assert_eq!(ids, std::slice::from_ref(&second))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.requests(LISTS).await, 2, "the check had its own list");
    assert!(!w.facts().contains_key("i-0vm"), "{:?}", w.facts());

    // Checks asked together share one list; each gets its own answer.
    let other = sim.register(&["i-0other"]).await.remove(0);
    let all: HashSet<String> = [first.clone(), second.clone()].into();
    let lists = sim.requests(LISTS).await;
    let none = HashSet::new();
    let (a, b, c) = tokio::join!(
        w.last_check("i-0vm", &all),
        w.last_check("i-0other", &none),
        w.last_check("i-0vm", &known),
    );
    assert!(a.is_ok(), "{a:?}");
    assert!(
        matches!(&b, Err(LastCheckError::NodesAppeared(ids)) if *ids == [other.clone()]),
        "{b:?}"
    );
    assert!(
        matches!(&c, Err(LastCheckError::NodesAppeared(ids)) if *ids == [second.clone()]),
        "{c:?}"
    );
    assert_eq!(sim.requests(LISTS).await, lists + 1);
    sim.sim.shutdown().await;
}

/// A failed list, or a node whose VM cannot be read, answers no VM of its
/// batch; gate reads are retried, checks are refused at once.
#[tokio::test]
async fn an_error_answers_no_vm_of_the_batch_and_gate_reads_are_retried() {
    let sim = Sim::start().await;
    let known = sim.register(&["i-0known"]).await.remove(0);
    let outside = sim.register(&["i-0outside"]).await.remove(0);
    let w = sim.watch();
    let gate: BTreeSet<String> = ["i-0known", "i-0outside"].map(String::from).into();
    let pool = Arc::new(HashMap::from([pool_node(&known, "i-0known")]));

    sim.faults(json!({"path_prefix": "/v1/nodes", "error_rate": 1.0}))
        .await;
    w.track(&gate, pool.clone());
    match w.last_check("i-0known", &[known.clone()].into()).await {
        Err(LastCheckError::Unreadable(SiblingReadError::List(_))) => {}
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(w.facts().is_empty(), "{:?}", w.facts());

    // The list answers, but the node outside the pool cannot be read: its
    // VM is unknown, so neither VM of the batch is answered.
    sim.faults(json!({"path_prefix": "/v1/node/", "error_rate": 1.0}))
        .await;
    match w.last_check("i-0outside", &[outside.clone()].into()).await {
        Err(LastCheckError::Unreadable(SiblingReadError::Node { node_id, .. })) => {
            assert_eq!(node_id, outside)
        }
        other => panic!("{other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(w.facts().is_empty(), "{:?}", w.facts());
    let failed_lists = sim.requests(LISTS).await;
    assert!(failed_lists >= 3, "retried: {failed_lists}");

    sim.http
        .delete(format!("{}/sim/faults", sim.sim.url()))
        .send()
        .await
        .unwrap();
    let got = answers(&w, &gate).await;
    assert_eq!(got["i-0known"], [known]);
    assert_eq!(got["i-0outside"], [outside]);
    sim.sim.shutdown().await;
}
