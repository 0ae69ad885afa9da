//! Before planning, start what the next step of a drain that just ended
//! waits on, and give the answers a moment.
//!
//! The plan decides a termination on two reads: the node's allocations
//! (all terminal) and the other Nomad nodes of its VM (`siblings`). Both
//! are started for the nodes the plan watches, after it is made; their
//! answers wake the next reconcile, which decides. So every node went
//! through two full reconciles between the end of its drain and its
//! terminate call, each waiting out the reconcile interval: most of the
//! retire latency of the scale-in benchmark. The reconcile that sees the
//! drain end now starts both first, from the retirements as tracked, and
//! waits up to `PRIME_WAIT` for their first answers (a first allocation
//! query does not block in Nomad), so it can decide itself. Nothing waits
//! when nothing new was started; what misses the wait is decided by the
//! reconcile its answer wakes, as before.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use crate::api::RetiringNode;
use crate::controller::alloc_watch::{self, AllocWatchMode};
use crate::controller::plan::NodeFacts;
use crate::controller::siblings::SiblingWatch;
use crate::controller::watch::{NodesSnapshot, PoolWatch};

/// How long a reconcile waits for the first answers it started.
const PRIME_WAIT: Duration = Duration::from_millis(200);

/// Start the allocation watches and VM reads of the drains that ended
/// since the last plan, and wait (bounded) for their first answers.
pub async fn prime(
    (allocations, siblings): (&PoolWatch, &SiblingWatch),
    tracked: &[RetiringNode],
    nodes: &Arc<Vec<NodeFacts>>,
    snapshot: &NodesSnapshot,
    now: Timestamp,
    ignore_system_jobs: bool,
) {
    let (watched, status_only) = alloc_watch::alloc_watch_set(tracked, nodes, now);
    let modes = alloc_watch::watch_modes(&watched, &status_only, &snapshot.nodes);
    // A drain watched for its status only is already running; the others
    // are what the next step decides on (see `alloc_watch`).
    let decisive: HashMap<String, AllocWatchMode> = (modes.into_iter())
        .filter(|(_, m)| *m != AllocWatchMode::Status)
        .collect();
    let started = allocations.start_missing_watches(&decisive, ignore_system_jobs);
    if started.is_empty() {
        return;
    }
    // Only the VMs of the nodes just started: the plan sets the whole gate
    // (`settle`), and adding back what it let go of would read it again.
    let instances: BTreeSet<String> = (tracked.iter())
        .filter(|r| started.iter().any(|(id, _)| *id == r.node_id))
        .filter_map(|r| r.instance_id.clone())
        .collect();
    siblings.also(&instances, snapshot.instance_ids.clone());
    let allocs = futures::future::join_all(started.into_iter().map(|(_, mut facts)| async move {
        // An error means the watch is gone; the plan reads no facts then.
        let _ = facts.wait_for(Option::is_some).await;
    }));
    let reads = siblings.answered(&instances);
    let _ = tokio::time::timeout(PRIME_WAIT, futures::future::join(allocs, reads)).await;
}

#[cfg(test)]
#[path = "prime_tests.rs"]
mod tests;
