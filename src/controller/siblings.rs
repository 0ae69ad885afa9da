//! Which Nomad nodes report the VMs a pool is about to terminate, wherever in
//! the cluster they are: the I/O half of `plan::identity`.
//!
//! Nomad evaluates a node-list `filter` against the full node, attributes
//! included (`nomad/node_endpoint.go` `List`, through the paginator), so a
//! filtered list finds every node that reports a VM, whatever its status,
//! node pool or class. Each list costs the server a pass over every node, so
//! a VM is read once when it reaches the termination gate, not followed with
//! a blocking query (one wakes on every change of the node table), and the
//! reads are batched: one list ORs up to 50 VMs, and a single reader per
//! pool sends them one after another, so what arrives while a list is out
//! goes into the next (`batch`). At 20,000 clients one list per VM made
//! Nomad the bottleneck. A list stub carries no attributes, so each node of
//! an answer is placed on its VM by the pool's own instance IDs, or by a
//! read of the node; one that cannot be placed fails the whole list.
//!
//! A client that registers on the VM later is caught by `last_check`, one
//! more leader read (batched the same way, but begun after the caller
//! asked) right before the terminate call, which also drops the VM's answer
//! so the next plan reads the VM again and holds it while the new node may
//! lose work. The allocations of every node found are watched like those of
//! the drained node itself.

mod batch;
#[cfg(test)]
mod sim_tests;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

use super::plan::{InstanceNodes, NodeFacts};
use super::trigger::Trigger;
use crate::api::{RetirePhase, RetiringNode};
use crate::nomad::{NomadClient, NomadError, filter::quote};
use crate::provider::GroupState;

/// The nodes of the VMs at the termination gate, read in batches.
pub struct SiblingWatch {
    shared: Arc<batch::Shared>,
    reader: JoinHandle<()>,
}

impl Drop for SiblingWatch {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl SiblingWatch {
    /// A watch of the Nomad at `address` whose wake-ups go nowhere.
    #[cfg(test)]
    pub(crate) fn for_tests(address: &str) -> Self {
        let client = NomadClient::new(crate::nomad::NomadConfig {
            address: address.to_owned(),
            ..Default::default()
        })
        .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let trigger = Trigger::new(
            tx,
            kube::runtime::reflector::ObjectRef::new("pool").within("ns"),
        );
        Self::new(
            client,
            crate::provider::fake::INSTANCE_ID_ATTRIBUTE,
            trigger,
        )
    }

    /// Starts the reader task: call within a Tokio runtime.
    pub fn new(client: NomadClient, attribute: &'static str, trigger: Trigger) -> Self {
        let shared = Arc::new(batch::Shared {
            client,
            attribute,
            trigger,
            state: Mutex::default(),
            wake: Notify::new(),
            answered: Notify::new(),
        });
        let reader = tokio::spawn(batch::run(shared.clone()));
        Self { shared, reader }
    }

    /// What the reads know now: a VM is absent until its first answer.
    pub fn facts(&self) -> InstanceNodes {
        let s = self.shared.state.lock().expect("sibling lock");
        s.tracked
            .iter()
            .filter_map(|(i, g)| g.nodes.clone().map(|n| (i.clone(), n)))
            .collect()
    }

    /// `facts` of `instances` only.
    pub fn facts_of<'a>(&self, instances: impl IntoIterator<Item = &'a str>) -> InstanceNodes {
        let s = self.shared.state.lock().expect("sibling lock");
        (instances.into_iter())
            .filter_map(|i| Some((i.to_owned(), s.tracked.get(i)?.nodes.clone()?)))
            .collect()
    }

    /// Keep answers exactly on `instances`, reading the VMs new among them.
    /// `pool` is the VM of each of the pool's nodes as the plan sees them
    /// (the node view's map): it places the nodes of an answer on their VMs
    /// without reading each.
    pub fn track(&self, instances: &BTreeSet<String>, pool: Arc<HashMap<String, String>>) {
        let queued = self
            .shared
            .state
            .lock()
            .expect("sibling lock")
            .track(instances, pool);
        if queued {
            self.shared.wake.notify_one();
        }
    }
}

impl SiblingWatch {
    /// Read the VMs of `instances` not at the gate yet, leaving the others
    /// as they are (`track` sets the gate exactly, once the plan is made).
    pub fn also(&self, instances: &BTreeSet<String>, pool: Arc<HashMap<String, String>>) {
        let queued = (self.shared.state.lock().expect("sibling lock")).add(instances, pool);
        if queued {
            self.shared.wake.notify_one();
        }
    }

    /// Resolves once every VM of `instances` has its answer (or is no
    /// longer at the gate).
    pub async fn answered(&self, instances: &BTreeSet<String>) {
        loop {
            let next = self.shared.answered.notified();
            tokio::pin!(next);
            // Registered before the check, so an answer in between wakes it.
            next.as_mut().enable();
            let all = {
                let s = self.shared.state.lock().expect("sibling lock");
                (instances.iter()).all(|i| s.tracked.get(i).is_none_or(|g| g.nodes.is_some()))
            };
            if all {
                return;
            }
            next.await;
        }
    }
}

/// Why the nodes of a list of VMs are not known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SiblingReadError {
    #[error("listing the Nomad nodes of the VMs: {0}")]
    List(#[source] Arc<NomadError>),
    #[error("reading Nomad node {node_id} to find its VM: {source}")]
    Node {
        node_id: String,
        #[source]
        source: Arc<NomadError>,
    },
    /// Listed as on one of the VMs, but its own read shows none of them (it
    /// is gone, or its attribute changed): the list cannot be trusted.
    #[error("Nomad node {0} was listed on one of the VMs but its read shows none of them")]
    Unattributed(String),
    /// The reader task is gone (the pool's runtime is being replaced).
    #[error("the reader of the VMs' nodes stopped")]
    ReaderGone,
}

/// Why a terminate call was not sent after all.
#[derive(Debug, thiserror::Error)]
pub enum LastCheckError {
    #[error("not sent: node(s) {} registered on the VM after the decision", .0.join(", "))]
    NodesAppeared(Vec<String>),
    #[error("not sent: the Nomad nodes reporting the VM could not be read: {0}")]
    Unreadable(#[source] SiblingReadError),
}

impl SiblingWatch {
    /// Right before a terminate call, a leader read of the nodes that
    /// report `instance`, begun after this call queued it (a list already
    /// out does not answer it): a node the decision did not know (registered
    /// since its last answer) stops the call. The VM's answer is dropped,
    /// so the next plan reads it, sees the node and holds the VM while the
    /// node may lose work.
    pub async fn last_check(
        &self,
        instance: &str,
        known: &HashSet<String>,
    ) -> Result<(), LastCheckError> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .state
            .lock()
            .expect("sibling lock")
            .checks
            .push_back(batch::Check {
                instance: instance.to_owned(),
                known: known.clone(),
                reply,
            });
        self.shared.wake.notify_one();
        answer.await.unwrap_or(Err(LastCheckError::Unreadable(
            SiblingReadError::ReaderGone,
        )))
    }
}

/// Every node the decision knew on `instance`: the cluster-wide list and the
/// pool's own nodes.
pub fn known_on(instance: &str, listed: &InstanceNodes, nodes: &[NodeFacts]) -> HashSet<String> {
    let instances: BTreeSet<String> = [instance.to_owned()].into();
    sibling_nodes(&instances, listed, nodes)
}

fn instance_filter(attribute: &str, instance: &str) -> String {
    format!("Attributes[{}] == {}", quote(attribute), quote(instance))
}

/// The VMs whose other nodes the next step may need: those of retirements
/// whose allocations are watched for the termination decision (`watched`),
/// and those terminating whose VM the group still counts (a call sent
/// again checks them too). A VM whose terminate landed is never called
/// again, so it is not read: at 20,000 clients each reconcile read the VMs
/// of the ~1,200 retirements whose terminate had landed but whose node was
/// not purged yet, and watched those nodes' allocations anew, and the last
/// checks of the VMs drained meanwhile waited 0.2-0.9 s behind those
/// lists and answers (BENCHMARKS.md, twenty-third pass).
pub fn gate_instances(
    retiring: &[RetiringNode],
    watched: &HashSet<String>,
    group: &GroupState,
) -> BTreeSet<String> {
    let mut terminating = HashSet::new();
    let mut gate: BTreeSet<String> = retiring
        .iter()
        .filter(|r| match r.phase {
            // A broken client is decided on from Cordoned (it has no drain).
            RetirePhase::Cordoned if r.reason == crate::api::RetireReason::Unhealthy => {
                watched.contains(&r.node_id)
            }
            // A VM no client registered on: the read proves it has none.
            RetirePhase::Selected => !r.reason.has_node(),
            RetirePhase::Draining | RetirePhase::Drained => watched.contains(&r.node_id),
            RetirePhase::Terminating => {
                terminating.extend(r.instance_id.as_deref());
                false
            }
            _ => false,
        })
        .filter_map(|r| r.instance_id.clone())
        .collect();
    if !terminating.is_empty() {
        let counted = (group.instances.iter())
            .filter(|i| i.lifecycle.counted() && terminating.contains(i.id.as_str()));
        gate.extend(counted.map(|i| i.id.clone()));
    }
    gate
}

/// Every node of those VMs, whose allocations must be watched too: from the
/// cluster-wide lists, and the pool's own nodes on the same VMs (a node
/// retiring itself included: the decision on its twin needs its facts).
pub fn sibling_nodes(
    instances: &BTreeSet<String>,
    listed: &InstanceNodes,
    nodes: &[NodeFacts],
) -> HashSet<String> {
    let from_lists = instances
        .iter()
        .filter_map(|i| listed.get(i))
        .flatten()
        .map(|n| n.id.as_str());
    let from_pool = nodes
        .iter()
        .filter(|n| {
            n.instance_id
                .as_ref()
                .is_some_and(|i| instances.contains(i))
        })
        .map(|n| n.id.as_str());
    from_lists.chain(from_pool).map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::super::plan::{InstanceNode, NodeStatus};
    use super::*;
    use crate::api::RetireReason;
    use crate::provider::Lifecycle;
    use jiff::Timestamp;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn entry(i: u32, phase: RetirePhase) -> RetiringNode {
        RetiringNode {
            node_id: format!("n{i}"),
            node_name: format!("client-{i}"),
            instance_id: Some(format!("i-{i}")),
            phase,
            since: Time(Timestamp::UNIX_EPOCH),
            selected_at: None,
            reason: RetireReason::ScaleIn,
            decrement: true,
            cordoned_by_pool: true,
            drain_started_at: None,
            drain_deadline: None,
            allocations_left: 0,
            blocking_jobs: vec![],
            message: None,
        }
    }

    /// Against the simulator: the filter finds every node of the VM, and a
    /// node that registered after the decision stops the call.
    #[tokio::test]
    async fn the_last_check_refuses_a_node_the_decision_did_not_know_and_the_vm_is_read_again() {
        let sim = nomad_sim::serve(nomad_sim::Config::default())
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let register = |instance: &'static str| {
            let (http, url) = (http.clone(), sim.url());
            async move {
                let v: serde_json::Value = http
                    .post(format!("{url}/sim/nodes"))
                    .json(&serde_json::json!({"instance_ids": [instance]}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                v["nodes"][0]["id"].as_str().unwrap().to_string()
            }
        };
        let first = register("i-0vm").await;
        register("i-0elsewhere").await;
        let w = SiblingWatch::for_tests(&sim.url());
        let known: HashSet<String> = [first.clone()].into();
        w.last_check("i-0vm", &known).await.unwrap();
        w.track(&["i-0vm".to_string()].into(), Arc::default());
        let w = &w;
        let listed = |n: usize| async move {
            for _ in 0..100 {
                if let Some(nodes) = w.facts().get("i-0vm")
                    && nodes.len() == n
                {
                    return nodes.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            panic!("the watch never listed {n} node(s): {:?}", w.facts());
        };
        assert_eq!(listed(1).await, vec![first.clone()]);
        let second = register("i-0vm").await;
        // One read per VM, no blocking query: the newcomer is caught by the
        // check right before the terminate call ...
        match w.last_check("i-0vm", &known).await {
            Err(LastCheckError::NodesAppeared(ids)) => {
                assert_eq!(ids, std::slice::from_ref(&second))
            }
            other => panic!("{other:?}"),
        }
        // ... which drops the VM's answer, so the next plan reads it again.
        assert!(!w.facts().contains_key("i-0vm"), "{:?}", w.facts());
        w.track(&["i-0vm".to_string()].into(), Arc::default());
        assert!(listed(2).await.contains(&second));
        sim.shutdown().await;
    }

    #[test]
    fn only_vms_at_the_gate_are_watched_and_their_other_nodes_too() {
        let retiring = vec![
            entry(1, RetirePhase::Drained),
            entry(2, RetirePhase::Draining),
            entry(3, RetirePhase::Terminating),
            entry(4, RetirePhase::Cordoned),
        ];
        let watched: HashSet<String> = ["n1".to_string()].into();
        let fake = crate::provider::fake::FakeProvider::new("ci", &["i-1", "i-2", "i-3", "i-4"]);
        let instances = gate_instances(&retiring, &watched, &fake.group_state());
        assert_eq!(
            instances.into_iter().collect::<Vec<_>>(),
            ["i-1", "i-3"],
            "a drain not watched yet, and a cordon, wait"
        );
        // Once the group no longer counts the terminating VM (its terminate
        // landed, or it left), no call is sent again: nothing to check.
        for gone in [Some(Lifecycle::Terminating), None] {
            fake.update(|g| match &gone {
                Some(l) => g.instances[2].lifecycle = l.clone(),
                None => g.instances.retain(|i| i.id != "i-3"),
            });
            let instances = gate_instances(&retiring, &watched, &fake.group_state());
            assert_eq!(
                instances.into_iter().collect::<Vec<_>>(),
                ["i-1"],
                "{gone:?}"
            );
        }
        let instances: BTreeSet<String> = ["i-1".to_string(), "i-3".to_string()].into();
        let listed: InstanceNodes = [(
            "i-1".to_string(),
            vec![
                InstanceNode {
                    id: "n1".into(),
                    name: "client-1".into(),
                    status: NodeStatus::Down,
                    eligible: false,
                },
                InstanceNode {
                    id: "outside".into(),
                    name: "other".into(),
                    status: NodeStatus::Ready,
                    eligible: true,
                },
            ],
        )]
        .into();
        let pool = NodeFacts {
            do_not_retire: false,
            id: "pool-twin".into(),
            name: "twin".into(),
            status: NodeStatus::Ready,
            eligible: true,
            draining: false,
            last_drain: None,
            last_drain_started: None,
            last_drain_mark: None,
            create_index: 1,
            instance_id: Some("i-3".into()),
        };
        let mut got: Vec<String> = sibling_nodes(&instances, &listed, &[pool])
            .into_iter()
            .collect();
        got.sort();
        assert_eq!(got, ["n1", "outside", "pool-twin"]);
    }
}
