//! The one reader of a `SiblingWatch`: gate reads and last checks wait in
//! queues, and each filtered node list answers up to [`MAX_BATCH`] VMs
//! (a dataloader: whatever arrives while a list is in flight goes into the
//! next one, and an idle reader starts a list the moment a request comes).

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;
use tracing::warn;

use super::super::plan::{InstanceNode, NodeStatus};
use super::super::trigger::Trigger;
use super::{LastCheckError, SiblingReadError, instance_filter};
use crate::nomad::{
    self, Node, NodeListStub, NomadClient, NomadError, QueryOptions, QueryResponse,
};

/// VMs one list asks for. A term is 70 bytes for an AWS instance ID and 90
/// once query-encoded with its ` or `, so 50 make a `filter` of 4.5 KB:
/// far below Go's `http.DefaultMaxHeaderBytes` (1 MB, request line
/// included, for a Go HTTP server that sets no limit) and below the 8 KB
/// request line that common proxies in front of Nomad accept (nginx's
/// `large_client_header_buffers`).
pub(super) const MAX_BATCH: usize = 50;
/// The encoded `filter` parameter stays within this, whatever the length of
/// the attribute name and IDs, for the same proxies.
pub(super) const MAX_FILTER_BYTES: usize = 6 * 1024;
/// Reads of nodes whose VM the pool does not know, in flight at once.
const READ_CONCURRENCY: usize = 8;
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub(super) struct Shared {
    pub(super) client: NomadClient,
    pub(super) attribute: &'static str,
    pub(super) trigger: Trigger,
    pub(super) state: Mutex<State>,
    /// Wakes the reader: a request was queued.
    pub(super) wake: Notify,
    /// Wakes those waiting for gate answers: a list answered.
    pub(super) answered: Notify,
}

#[derive(Default)]
pub(super) struct State {
    /// The VMs at the gate and their answer, once read.
    pub(super) tracked: HashMap<String, Gate>,
    /// Gate reads waiting, oldest first, with the generation of the entry
    /// they were asked for (an entry dropped or asked anew is skipped).
    pending: VecDeque<(String, u64)>,
    pub(super) checks: VecDeque<Check>,
    /// The VM of each of the pool's nodes (node ID to instance ID), as the
    /// last plan saw them: it places the nodes of an answer without a read.
    /// The node view's own map, shared: holding the plan's facts instead
    /// kept the facts cache from reusing them in place.
    pub(super) pool: Arc<HashMap<String, String>>,
    /// The VM of nodes outside the pool, as read from Nomad.
    learned: HashMap<String, String>,
    next_gen: u64,
    /// Gate reads wait until then after a failed list.
    retry_at: Option<Instant>,
    backoff: Duration,
}

pub(super) struct Gate {
    generation: u64,
    pub(super) nodes: Option<Vec<InstanceNode>>,
}

/// A last check waiting for its list.
pub(super) struct Check {
    pub(super) instance: String,
    pub(super) known: HashSet<String>,
    pub(super) reply: oneshot::Sender<Result<(), LastCheckError>>,
}

/// What one list asks for and whom it answers.
#[derive(Default)]
struct Batch {
    /// Distinct, in the order of the filter's terms.
    instances: Vec<String>,
    filter_bytes: usize,
    gates: Vec<(String, u64)>,
    checks: Vec<Check>,
}

impl Batch {
    /// Add `instance`'s term unless the list would grow too large.
    fn add(&mut self, attribute: &str, instance: &str) -> bool {
        if self.instances.iter().any(|i| i == instance) {
            return true;
        }
        let term = query_len(&instance_filter(attribute, instance)) + query_len(" or ");
        if !self.instances.is_empty()
            && (self.instances.len() >= MAX_BATCH || self.filter_bytes + term > MAX_FILTER_BYTES)
        {
            return false;
        }
        self.instances.push(instance.to_owned());
        self.filter_bytes += term;
        true
    }
}

/// Bytes of `s` once form-encoded into a query string, as the client sends
/// it: unreserved bytes and the space (`+`) stay one byte, others take three.
fn query_len(s: &str) -> usize {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"*-._ ".contains(&b) {
                1
            } else {
                3
            }
        })
        .sum()
}

impl State {
    /// Keep the gate on exactly `instances`; whether a read was queued.
    pub(super) fn track(
        &mut self,
        instances: &BTreeSet<String>,
        pool: Arc<HashMap<String, String>>,
    ) -> bool {
        self.tracked.retain(|i, _| instances.contains(i));
        self.learned.retain(|_, i| instances.contains(i));
        self.add(instances, pool)
    }

    /// Read the VMs of `instances` not at the gate yet, keeping the others;
    /// whether a read was queued.
    pub(super) fn add(
        &mut self,
        instances: &BTreeSet<String>,
        pool: Arc<HashMap<String, String>>,
    ) -> bool {
        self.pool = pool;
        let mut queued = false;
        for instance in instances {
            if !self.tracked.contains_key(instance) {
                self.next_gen += 1;
                let generation = self.next_gen;
                self.tracked.insert(
                    instance.clone(),
                    Gate {
                        generation,
                        nodes: None,
                    },
                );
                self.pending.push_back((instance.clone(), generation));
                queued = true;
            }
        }
        queued
    }

    fn wanted(&self, (instance, generation): &(String, u64)) -> bool {
        self.tracked
            .get(instance)
            .is_some_and(|g| g.generation == *generation && g.nodes.is_none())
    }

    /// The next list: last checks first (a terminate call waits on each),
    /// then gate reads unless they back off.
    fn take_batch(&mut self, attribute: &str, now: Instant) -> Batch {
        let mut batch = Batch::default();
        while let Some(check) = self.checks.front() {
            if !batch.add(attribute, &check.instance) {
                break;
            }
            batch.checks.extend(self.checks.pop_front());
        }
        if self.retry_at.is_some_and(|t| t > now) {
            return batch;
        }
        self.retry_at = None;
        while let Some(front) = self.pending.front() {
            if !self.wanted(front) {
                self.pending.pop_front();
                continue;
            }
            if !batch.add(attribute, &front.0) {
                break;
            }
            batch.gates.extend(self.pending.pop_front());
        }
        batch
    }

    /// When gate reads that back off may go again, if any wait.
    fn retry_at(&self) -> Option<Instant> {
        self.retry_at.filter(|_| !self.pending.is_empty())
    }
}

/// The reader task: one list at a time, each with everything queued.
pub(super) async fn run(shared: Arc<Shared>) {
    loop {
        let (batch, retry_at) = {
            let mut s = shared.state.lock().expect("sibling lock");
            let batch = s.take_batch(shared.attribute, Instant::now());
            (batch, s.retry_at())
        };
        if batch.instances.is_empty() {
            // A request queued since the lock was released left a permit.
            match retry_at {
                Some(at) => tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep_until(at) => {}
                },
                None => shared.wake.notified().await,
            }
            continue;
        }
        let result = shared.read(&batch.instances).await;
        shared.answer(batch, result);
    }
}

type Answer = HashMap<String, Vec<InstanceNode>>;
type NodeRead<'a> = (&'a str, Result<QueryResponse<Node>, NomadError>);

impl Shared {
    /// One leader list of the nodes reporting any of `instances`, each
    /// node attributed to its VM: a list stub does not carry attributes, so
    /// from the pool's instance IDs, else from a read of the node. A node
    /// whose VM is not among `instances` by either fails the whole list.
    async fn read(&self, instances: &[String]) -> Result<Answer, SiblingReadError> {
        let filter = instances
            .iter()
            .map(|i| instance_filter(self.attribute, i))
            .collect::<Vec<_>>()
            .join(" or ");
        // A node that registered a moment ago must be in the answer.
        let leader = QueryOptions::default();
        let listed = self
            .client
            .list_nodes(Some(&filter), &leader)
            .await
            .map_err(|e| SiblingReadError::List(Arc::new(e)))?
            .value;
        let wanted: HashSet<&str> = instances.iter().map(String::as_str).collect();
        let mut vm_of = self.known_vms(&listed, &wanted);
        let unknown: Vec<&str> = listed
            .iter()
            .map(|n| n.id.as_str())
            .filter(|id| !vm_of.contains_key(*id))
            .collect();
        // Built eagerly (boxed) rather than mapped lazily in the stream: a
        // lazy map over borrowed IDs trips the Send check of the spawn.
        let reads: Vec<BoxFuture<'_, NodeRead<'_>>> = unknown
            .into_iter()
            .map(|id| {
                let leader = &leader;
                Box::pin(async move { (id, self.client.node(id, leader).await) }) as _
            })
            .collect();
        let reads: Vec<NodeRead<'_>> = futures::stream::iter(reads)
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await;
        let mut learned = Vec::new();
        for (id, read) in reads {
            let node = read.map_err(|e| SiblingReadError::Node {
                node_id: id.to_owned(),
                source: Arc::new(e),
            })?;
            // Its attribute changed since the list (a node gone since is a
            // read error above): it cannot be placed, and a guess could let
            // a VM with it go.
            let Some(vm) = node.value.attribute(self.attribute) else {
                return Err(SiblingReadError::Unattributed(id.to_owned()));
            };
            if !wanted.contains(vm) {
                return Err(SiblingReadError::Unattributed(id.to_owned()));
            }
            vm_of.insert(id.to_owned(), vm.to_owned());
            learned.push((id.to_owned(), vm.to_owned()));
        }
        self.state
            .lock()
            .expect("sibling lock")
            .learned
            .extend(learned);
        let mut answer: Answer = instances.iter().map(|i| (i.clone(), vec![])).collect();
        for n in &listed {
            if let Some(nodes) = vm_of.get(&n.id).and_then(|vm| answer.get_mut(vm)) {
                nodes.push(instance_node(n));
            }
        }
        for nodes in answer.values_mut() {
            nodes.sort_by(|a, b| a.id.cmp(&b.id));
        }
        Ok(answer)
    }

    /// The VM of each listed node that the pool or an earlier read knows,
    /// when it is one of `wanted` (else the knowledge is stale: read it).
    fn known_vms(
        &self,
        listed: &[Arc<NodeListStub>],
        wanted: &HashSet<&str>,
    ) -> HashMap<String, String> {
        if listed.is_empty() {
            return HashMap::new();
        }
        let (pool, learned) = {
            let s = self.state.lock().expect("sibling lock");
            let ids: HashSet<&str> = listed.iter().map(|n| n.id.as_str()).collect();
            let learned: HashMap<String, String> = s
                .learned
                .iter()
                .filter(|(id, _)| ids.contains(id.as_str()))
                .map(|(id, vm)| (id.clone(), vm.clone()))
                .collect();
            (s.pool.clone(), learned)
        };
        let from_pool = listed.iter().filter_map(|n| {
            let vm = pool.get(&n.id)?;
            wanted
                .contains(vm.as_str())
                .then(|| (n.id.clone(), vm.clone()))
        });
        from_pool
            .chain(learned)
            .filter(|(_, vm)| wanted.contains(vm.as_str()))
            .collect()
    }

    /// Hand out a list's answer: one wake-up for all the gate answers.
    fn answer(&self, batch: Batch, result: Result<Answer, SiblingReadError>) {
        let mut fire = false;
        {
            let mut s = self.state.lock().expect("sibling lock");
            match result {
                Ok(answer) => {
                    s.backoff = Duration::ZERO;
                    for (instance, generation) in batch.gates {
                        // Dropped, or asked anew, while the list was out.
                        if let Some(g) = s.tracked.get_mut(&instance)
                            && g.generation == generation
                        {
                            g.nodes = answer.get(&instance).cloned();
                            fire = true;
                        }
                    }
                    for check in batch.checks {
                        let reply = verdict(&mut s, &check, answer.get(&check.instance));
                        // The caller may have stopped waiting.
                        let _ = check.reply.send(reply);
                    }
                }
                Err(e) => {
                    warn!(error = %e, vms = batch.instances.len(), "listing the Nomad nodes of VMs failed");
                    for check in batch.checks {
                        let _ = check.reply.send(Err(LastCheckError::Unreadable(e.clone())));
                    }
                    if !batch.gates.is_empty() {
                        s.backoff = (s.backoff * 2).clamp(Duration::from_millis(500), MAX_BACKOFF);
                        s.retry_at = Some(Instant::now() + s.backoff);
                        for gate in batch.gates.into_iter().rev() {
                            s.pending.push_front(gate);
                        }
                    }
                }
            }
        }
        if fire {
            self.answered.notify_waiters();
            self.trigger.fire();
        }
    }
}

/// A node the decision did not know stops the call, and the VM's gate
/// answer is dropped so the next plan reads it again and sees the node.
fn verdict(
    s: &mut State,
    check: &Check,
    nodes: Option<&Vec<InstanceNode>>,
) -> Result<(), LastCheckError> {
    let new: Vec<String> = nodes
        .into_iter()
        .flatten()
        .filter(|n| !check.known.contains(&n.id))
        .map(|n| n.id.clone())
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    s.tracked.remove(&check.instance);
    Err(LastCheckError::NodesAppeared(new))
}

fn instance_node(n: &NodeListStub) -> InstanceNode {
    InstanceNode {
        id: n.id.clone(),
        name: n.name.clone(),
        status: status_of(&n.status),
        eligible: n.scheduling_eligibility == nomad::SchedulingEligibility::Eligible,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn state_with(instances: &[&str]) -> State {
        let mut s = State::default();
        let set: BTreeSet<String> = instances.iter().map(|i| i.to_string()).collect();
        s.track(&set, Arc::default());
        s
    }

    #[test]
    fn a_batch_holds_at_most_max_batch_vms_and_the_rest_waits_in_order() {
        let names: Vec<String> = (0..120).map(|i| format!("i-{i:017}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut s = state_with(&refs);
        let attribute = "unique.platform.aws.instance-id";
        let now = Instant::now();
        let sizes: Vec<usize> = std::iter::from_fn(|| {
            let b = s.take_batch(attribute, now);
            (!b.instances.is_empty()).then_some(b.instances.len())
        })
        .collect();
        assert_eq!(sizes, [MAX_BATCH, MAX_BATCH, 20]);
    }

    #[test]
    fn a_long_attribute_keeps_the_filter_within_its_byte_budget() {
        let names: Vec<String> = (0..60)
            .map(|i| format!("vm-{i}-{}", "x".repeat(150)))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let mut s = state_with(&refs);
        let b = s.take_batch("a.long.attribute", Instant::now());
        let filter = b
            .instances
            .iter()
            .map(|i| instance_filter("a.long.attribute", i))
            .collect::<Vec<_>>()
            .join(" or ");
        assert!(b.instances.len() < MAX_BATCH, "{}", b.instances.len());
        assert!(
            query_len(&filter) <= MAX_FILTER_BYTES,
            "{}",
            query_len(&filter)
        );
        // The encoded length is what reqwest sends.
        let encoded = reqwest::Url::parse_with_params("http://x/", [("filter", &filter)]).unwrap();
        assert_eq!(
            encoded.query().unwrap().len(),
            "filter=".len() + query_len(&filter)
        );
    }

    #[test]
    fn a_vm_dropped_or_asked_anew_is_read_once_for_its_current_entry() {
        let mut s = state_with(&["i-a", "i-b"]);
        s.track(&["i-b".to_string()].into(), Arc::default());
        s.track(
            &["i-a".to_string(), "i-b".to_string()].into(),
            Arc::default(),
        );
        let b = s.take_batch("k", Instant::now());
        assert_eq!(b.instances, ["i-b", "i-a"]);
        assert_eq!(b.gates.len(), 2);
        assert!(b.gates.iter().all(|g| s.wanted(g)));
    }
}
