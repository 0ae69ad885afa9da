//! `spec.retire` entries that are done. A retired client leaves Nomad (it is
//! purged), so without a record its entry would read as naming an unknown
//! client forever, and a later client registering under the same name would
//! be retired again. The record is kept in `status.retired` while the spec
//! still names the client.

use crate::api::{RetireTarget, RetiredNode, RetiringNode};

use super::{PoolView, ts};

fn matches(t: &RetireTarget, r: &RetiredNode) -> bool {
    t.node_name.as_deref() == Some(r.node_name.as_str())
        || t.node_id.as_deref() == Some(r.node_id.as_str())
        || (t.instance_id.is_some() && t.instance_id == r.instance_id)
}

/// Whether `target` names a client this pool already retired.
pub(super) fn is_done(t: &RetireTarget, view: &PoolView<'_>, now_retired: &[RetiredNode]) -> bool {
    view.retired
        .iter()
        .chain(now_retired)
        .any(|r| matches(t, r))
}

/// The record of a retirement of a named client that finished now.
pub(super) fn record(view: &PoolView<'_>, e: &RetiringNode) -> RetiredNode {
    RetiredNode {
        node_id: e.node_id.clone(),
        node_name: e.node_name.clone(),
        instance_id: e.instance_id.clone(),
        retired_at: ts(view.now),
    }
}

/// The next `status.retired`: earlier records and those of now, while a
/// `spec.retire` entry still names them.
pub(super) fn keep_named(view: &PoolView<'_>, now_retired: Vec<RetiredNode>) -> Vec<RetiredNode> {
    view.retired
        .iter()
        .cloned()
        .chain(now_retired)
        .filter(|r| view.spec.retire.iter().any(|t| matches(t, r)))
        .collect()
}
