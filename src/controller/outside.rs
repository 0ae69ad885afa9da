//! Tracked clients the pool's node view does not show: read by ID.
//!
//! The node view holds only the nodes the selector matches, so a client in
//! flight that leaves the selector (the selector edited, the client's meta
//! changed) vanished from it, and the planner forgot it: it stayed cordoned
//! or draining on a running VM that nothing tracked. Each tracked node the
//! view lacks is read directly instead; the planner then releases it or
//! carries it to the end (`plan::departed`). A node Nomad no longer knows
//! (purged) is left out: that is the normal end of a retirement. One the
//! event stream reported deregistered as of the view is not read at all
//! (`watch::GoneNodes`).

use std::sync::Arc;

use futures::StreamExt;
use futures::future::BoxFuture;

use super::PoolRuntime;
use super::plan::NodeFacts;
use super::watch::NodesSnapshot;
use crate::api::{NomadClientPoolSpec, RetiringNode};
use crate::nomad::{Node, NomadError, PoolSelector, QueryOptions, QueryResponse};

type NodeRead = Result<QueryResponse<Node>, NomadError>;

/// Reads of missing nodes in flight at once.
const READ_CONCURRENCY: usize = 8;

/// The pool's nodes (the view's, and tracked ones it trails behind) and
/// the tracked nodes outside the selector, as the planner takes them.
pub async fn view(
    rt: &PoolRuntime,
    spec: &NomadClientPoolSpec,
    tracked: &[RetiringNode],
    snapshot: &NodesSnapshot,
    nodes: Arc<Vec<NodeFacts>>,
    facts: impl Fn(&NodesSnapshot) -> Vec<NodeFacts>,
) -> Result<(Arc<Vec<NodeFacts>>, Vec<NodeFacts>), NomadError> {
    let mut nodes = nodes;
    let (outside, lagging) = read_unseen(rt, spec, tracked, snapshot).await?;
    if !lagging.nodes.is_empty() {
        Arc::make_mut(&mut nodes).extend(facts(&lagging));
    }
    Ok((nodes, facts(&outside)))
}

/// Read every node of `tracked` that `snapshot` lacks: those the selector
/// no longer matches, and those it still matches (the view trails Nomad;
/// they are the pool's nodes).
async fn read_unseen(
    rt: &PoolRuntime,
    spec: &NomadClientPoolSpec,
    tracked: &[RetiringNode],
    snapshot: &NodesSnapshot,
) -> Result<(NodesSnapshot, NodesSnapshot), NomadError> {
    let (nomad, instance_attribute) = (&rt.nomad, rt.provider.instance_id_attribute());
    let missing: Vec<&str> = tracked
        .iter()
        .filter(|r| r.reason.has_node())
        .map(|r| r.node_id.as_str())
        .filter(|id| !snapshot.nodes.contains(id))
        // Purged as of this view (the normal end of a retirement): a read
        // would only say so.
        .filter(|id| !rt.watch.gone_by(id, snapshot.index))
        .collect();
    let mut outside = NodesSnapshot::default();
    let mut lagging = NodesSnapshot::default();
    if missing.is_empty() {
        return Ok((outside, lagging));
    }
    let selector = PoolSelector {
        node_pool: spec.selector.node_pool.clone(),
        node_class: spec.selector.node_class.clone(),
        datacenters: spec.selector.datacenters.clone(),
        meta: spec.selector.meta.clone(),
    };
    // Built eagerly (boxed) rather than mapped lazily in the stream: a lazy
    // map over borrowed IDs trips the Send check of the controller.
    let reads: Vec<BoxFuture<'_, NodeRead>> = missing
        .into_iter()
        .map(|id| Box::pin(async move { nomad.node(id, &QueryOptions::default()).await }) as _)
        .collect();
    let reads: Vec<NodeRead> = futures::stream::iter(reads)
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;
    for read in reads {
        let node = match read {
            Ok(resp) => resp.value,
            Err(NomadError::NodeNotFound { .. }) => continue,
            Err(e) => return Err(e),
        };
        let into = if selector.matches(&node) {
            &mut lagging
        } else {
            &mut outside
        };
        if let Some(instance) = node.attribute(instance_attribute) {
            Arc::make_mut(&mut into.instance_ids).insert(node.id.clone(), instance.to_owned());
        }
        into.nodes.upsert(Arc::new(node.to_stub()));
    }
    Ok((outside, lagging))
}
