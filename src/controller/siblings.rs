//! Which Nomad nodes report the VMs a pool is about to terminate, wherever in
//! the cluster they are: the I/O half of `plan::identity`.
//!
//! Nomad evaluates a node-list `filter` against the full node, attributes
//! included (`nomad/node_endpoint.go` `List`, through the paginator), so one
//! filtered list per VM finds every node that reports it, whatever its
//! status, node pool or class. Each list costs the server a pass over every
//! node, so it is read once per VM when the VM reaches the termination gate,
//! not followed with a blocking query: a blocking list wakes on every change
//! of the node table, and hundreds of VMs at the gate of a large pool made
//! that a pass over the whole cluster per VM per change (the scale-in bench
//! stalled on it). A client that registers on the VM later is caught by
//! `last_check`, one more leader read right before the terminate call, which
//! also drops the VM's answer so the next plan reads the VM again and holds
//! it while the new node may lose work. The allocations of every node found
//! are watched like those of the drained node itself.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

use super::plan::{InstanceNode, InstanceNodes, NodeFacts, NodeStatus};
use super::trigger::Trigger;
use crate::api::{RetirePhase, RetiringNode};
use crate::nomad::{self, NomadClient, NomadError, QueryOptions, filter::quote};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// One node-list read per VM at the termination gate.
pub struct SiblingWatch {
    client: NomadClient,
    attribute: &'static str,
    trigger: Trigger,
    watches: Mutex<HashMap<String, Watch>>,
}

struct Watch {
    nodes: watch::Receiver<Option<Vec<InstanceNode>>>,
    task: JoinHandle<()>,
}

impl Drop for SiblingWatch {
    fn drop(&mut self) {
        for (_, w) in self.watches.lock().expect("sibling lock").drain() {
            w.task.abort();
        }
    }
}

impl SiblingWatch {
    pub fn new(client: NomadClient, attribute: &'static str, trigger: Trigger) -> Self {
        Self {
            client,
            attribute,
            trigger,
            watches: Mutex::default(),
        }
    }

    /// What the watches know now: a VM is absent until its first answer.
    pub fn facts(&self) -> InstanceNodes {
        let watches = self.watches.lock().expect("sibling lock");
        watches
            .iter()
            .filter_map(|(i, w)| w.nodes.borrow().clone().map(|n| (i.clone(), n)))
            .collect()
    }

    /// Keep watches exactly on `instances`.
    pub fn track(&self, instances: &BTreeSet<String>) {
        let mut watches = self.watches.lock().expect("sibling lock");
        watches.retain(|i, w| {
            let keep = instances.contains(i);
            if !keep {
                w.task.abort();
            }
            keep
        });
        for instance in instances {
            watches.entry(instance.clone()).or_insert_with(|| {
                let (tx, rx) = watch::channel(None);
                let filter = format!(
                    "Attributes[{}] == {}",
                    quote(self.attribute),
                    quote(instance)
                );
                let task = tokio::spawn(follow(
                    self.client.clone(),
                    instance.clone(),
                    filter,
                    tx,
                    self.trigger.clone(),
                ));
                Watch { nodes: rx, task }
            });
        }
    }
}

/// Why a terminate call was not sent after all.
#[derive(Debug, thiserror::Error)]
pub enum LastCheckError {
    #[error("not sent: node(s) {} registered on the VM after the decision", .0.join(", "))]
    NodesAppeared(Vec<String>),
    #[error("not sent: the Nomad nodes reporting the VM could not be read: {0}")]
    Unreadable(#[source] NomadError),
}

impl SiblingWatch {
    /// Right before a terminate call, one direct read of the nodes that
    /// report `instance`: a node the decision did not know (registered
    /// since its last answer) stops the call. Its watch shows the node to
    /// the next plan, which holds the VM while the node may lose work.
    pub async fn last_check(
        &self,
        instance: &str,
        known: &HashSet<String>,
    ) -> Result<(), LastCheckError> {
        let filter = instance_filter(self.attribute, instance);
        let listed = self
            .client
            .list_nodes(Some(&filter), &QueryOptions::default())
            .await
            .map_err(LastCheckError::Unreadable)?;
        let new: Vec<String> = listed
            .value
            .iter()
            .filter(|n| !known.contains(&n.id))
            .map(|n| n.id.clone())
            .collect();
        if new.is_empty() {
            Ok(())
        } else {
            // Read the VM again for the next plan, which must see the node.
            if let Some(w) = self.watches.lock().expect("sibling lock").remove(instance) {
                w.task.abort();
            }
            Err(LastCheckError::NodesAppeared(new))
        }
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

/// Read the nodes reporting `instance` once, retrying until Nomad answers.
async fn follow(
    client: NomadClient,
    instance: String,
    filter: String,
    tx: watch::Sender<Option<Vec<InstanceNode>>>,
    trigger: Trigger,
) {
    let mut backoff = Duration::ZERO;
    // A node that registered a moment ago must be in the answer: a leader read.
    let q = QueryOptions {
        index: 0,
        wait: None,
        stale: false,
        background: false,
    };
    loop {
        match client.list_nodes(Some(&filter), &q).await {
            Ok(resp) => {
                let mut nodes: Vec<InstanceNode> = resp
                    .value
                    .iter()
                    .map(|n| InstanceNode {
                        id: n.id.clone(),
                        name: n.name.clone(),
                        status: status_of(&n.status),
                        eligible: n.scheduling_eligibility
                            == nomad::SchedulingEligibility::Eligible,
                    })
                    .collect();
                nodes.sort_by(|a, b| a.id.cmp(&b.id));
                tx.send_replace(Some(nodes));
                trigger.fire();
                return;
            }
            Err(e) => {
                warn!(%instance, error = %e, "listing the Nomad nodes of a VM failed");
                backoff = (backoff * 2).clamp(Duration::from_millis(500), MAX_BACKOFF);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

fn status_of(s: &nomad::NodeStatus) -> NodeStatus {
    match s {
        nomad::NodeStatus::Ready => NodeStatus::Ready,
        nomad::NodeStatus::Down => NodeStatus::Down,
        nomad::NodeStatus::Disconnected => NodeStatus::Disconnected,
        _ => NodeStatus::Initializing,
    }
}

/// The VMs whose other nodes the next step may need: those of retirements
/// whose allocations are watched for the termination decision (`watched`),
/// and those already terminating (a call sent again checks them too).
pub fn gate_instances(retiring: &[RetiringNode], watched: &HashSet<String>) -> BTreeSet<String> {
    retiring
        .iter()
        .filter(|r| match r.phase {
            RetirePhase::Draining | RetirePhase::Drained => watched.contains(&r.node_id),
            RetirePhase::Terminating => true,
            _ => false,
        })
        .filter_map(|r| r.instance_id.clone())
        .collect()
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
    use super::*;
    use crate::api::RetireReason;
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
        let client = NomadClient::new(crate::nomad::NomadConfig {
            address: sim.url(),
            ..Default::default()
        })
        .unwrap();
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let trigger = Trigger::new(
            tx,
            kube::runtime::reflector::ObjectRef::new("pool").within("ns"),
        );
        let w = SiblingWatch::new(
            client,
            crate::provider::fake::INSTANCE_ID_ATTRIBUTE,
            trigger,
        );
        let known: HashSet<String> = [first.clone()].into();
        w.last_check("i-0vm", &known).await.unwrap();
        w.track(&["i-0vm".to_string()].into());
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
        w.track(&["i-0vm".to_string()].into());
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
        let instances = gate_instances(&retiring, &watched);
        assert_eq!(
            instances.into_iter().collect::<Vec<_>>(),
            ["i-1", "i-3"],
            "a drain not watched yet, and a cordon, wait"
        );
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
