//! A pool as the tests read it: its status together with its
//! `NomadClientRetirement` objects, the clients in flight among them turned
//! back into the `RetiringNode` entries the pool's status used to list, so a
//! test asserts on `st.retiring` whether the entries live on the pool or in
//! objects of their own.

use std::collections::BTreeSet;
use std::ops::Deref;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use nomad_pool_operator::api::{
    NomadClientPool, NomadClientPoolStatus, NomadClientRetirement, RetiringNode,
};
use serde::{Serialize, Serializer};
use serde_json::json;

/// The label every retirement of pool P carries: `nomadpool.dev/pool=P`.
pub const POOL_LABEL: &str = "nomadpool.dev/pool";

/// A pool's status and its retirements, read together (see [`read`] for the
/// order). Derefs to the pool's status; `retiring` shadows the status's own
/// (deprecated, always empty) list.
#[derive(Clone, Debug, Default)]
pub struct PoolView {
    pub status: NomadClientPoolStatus,
    /// The pool's retirements in flight (Selected..Cancelling), as status
    /// entries, oldest selection first.
    pub retiring: Vec<RetiringNode>,
    /// Every retirement of the pool, finished ones included, by name.
    pub retirements: Vec<NomadClientRetirement>,
}

impl Deref for PoolView {
    type Target = NomadClientPoolStatus;
    fn deref(&self) -> &NomadClientPoolStatus {
        &self.status
    }
}

/// As the pool's status, with `retiring` filled from the objects and each
/// retirement as `name: phase`, so a failure message shows both at once.
impl Serialize for PoolView {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.status).map_err(serde::ser::Error::custom)?;
        v["retiring"] = serde_json::to_value(&self.retiring).map_err(serde::ser::Error::custom)?;
        v["retirementObjects"] = self
            .retirements
            .iter()
            .map(|r| json!(format!("{}: {}", r.name_any(), r.phase())))
            .collect();
        v.serialize(s)
    }
}

impl PoolView {
    pub fn new(status: NomadClientPoolStatus, mut retirements: Vec<NomadClientRetirement>) -> Self {
        retirements.sort_by_key(|r| r.name_any());
        let mut retiring: Vec<RetiringNode> =
            retirements.iter().filter_map(retiring_node).collect();
        // A stable sort: equal selection times stay in name order.
        retiring.sort_by(|a, b| a.selected_at.cmp(&b.selected_at));
        PoolView {
            status,
            retiring,
            retirements,
        }
    }

    /// The retirement of the client `node_id`, finished or not.
    pub fn retirement_of(&self, node_id: &str) -> Option<&NomadClientRetirement> {
        self.retirements.iter().find(|r| {
            r.status
                .as_ref()
                .and_then(|s| s.node_id.as_deref())
                .is_some_and(|id| id == node_id)
        })
    }
}

/// A retirement in flight as the status entry it replaces; `None` for one
/// that waits (`Pending`) or has finished.
pub fn retiring_node(r: &NomadClientRetirement) -> Option<RetiringNode> {
    let phase = r.phase().in_flight()?;
    let st = r.status.clone().unwrap_or_default();
    let blocking_jobs: BTreeSet<String> = st
        .blocking_allocations
        .iter()
        .map(|a| a.job_id.clone())
        .collect();
    let created = r.metadata.creation_timestamp.clone();
    let since = st
        .phase_since
        .or_else(|| st.selected_at.clone())
        .or(created)
        .unwrap_or_else(|| Time(Default::default()));
    Some(RetiringNode {
        node_id: st.node_id.unwrap_or_default(),
        node_name: st.node_name.unwrap_or_default(),
        instance_id: st.instance_id,
        phase,
        since,
        selected_at: st.selected_at,
        reason: r.spec.reason,
        decrement: r.spec.decrement(),
        cordoned_by_pool: st.cordoned_by_pool,
        drain_started_at: st.drain_started_at,
        drain_deadline: st.drain_deadline,
        allocations_left: st.allocations_left,
        blocking_jobs: blocking_jobs.into_iter().collect(),
        message: st.message,
    })
}

/// The retirements labelled for `pool`, as the API server holds them now
/// (a list without a resourceVersion is a quorum read).
pub async fn list(
    api: &Api<NomadClientRetirement>,
    pool: &str,
) -> Result<Vec<NomadClientRetirement>, kube::Error> {
    let lp = ListParams::default().labels(&format!("{POOL_LABEL}={pool}"));
    Ok(api.list(&lp).await?.items)
}

/// The pool (`None` if it does not exist) and its retirements.
///
/// The pool is read first, the retirements after it. The controller creates
/// a retirement before any pool status that counts it, and finishes one
/// before the pool counts it retired: whatever the pool's status says has
/// happened is then in the list too, and the list is the newer of the two.
/// Read the other way round, a list taken just before the pool's next
/// retirement is created, joined with a pool status written just after,
/// would show `retiredTotal == 1` and nothing in flight although the second
/// retirement had started: a state the pool never passed through.
pub async fn read(
    pools: &Api<NomadClientPool>,
    retirements: &Api<NomadClientRetirement>,
    pool: &str,
) -> Result<Option<PoolView>, kube::Error> {
    let Some(p) = pools.get_opt(pool).await? else {
        return Ok(None);
    };
    let listed = list(retirements, pool).await?;
    Ok(Some(PoolView::new(p.status.unwrap_or_default(), listed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retirement(name: &str, reason: &str, status: serde_json::Value) -> NomadClientRetirement {
        serde_json::from_value(json!({
            "apiVersion": "nomadpool.dev/v1alpha1", "kind": "NomadClientRetirement",
            "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"pool": "ci", "target": {"nodeName": name}, "reason": reason},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn only_retirements_in_flight_are_retiring_oldest_selection_first() {
        let view = PoolView::new(
            NomadClientPoolStatus::default(),
            vec![
                retirement(
                    "c",
                    "ScaleIn",
                    json!({"phase": "Draining", "nodeID": "n-c",
                    "selectedAt": "2026-01-01T00:00:05Z", "phaseSince": "2026-01-01T00:00:07Z",
                    "allocationsLeft": 3, "blockingAllocations": [
                        {"jobID": "web", "allocationID": "1"}, {"jobID": "batch", "allocationID": "2"},
                        {"jobID": "web", "allocationID": "3"}]}),
                ),
                retirement(
                    "b",
                    "Replace",
                    json!({"phase": "Cordoned", "nodeID": "n-b",
                    "selectedAt": "2026-01-01T00:00:01Z"}),
                ),
                retirement("a", "Replace", json!({"phase": "Retired", "nodeID": "n-a"})),
                retirement("p", "Replace", json!(null)),
                retirement(
                    "d",
                    "ScaleIn",
                    json!({"phase": "Cancelled", "nodeID": "n-d"}),
                ),
            ],
        );
        let names: Vec<_> = view.retirements.iter().map(|r| r.name_any()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "p"]);
        let ids: Vec<_> = view.retiring.iter().map(|r| r.node_id.as_str()).collect();
        assert_eq!(ids, ["n-b", "n-c"]);
        let c = &view.retiring[1];
        assert_eq!(c.blocking_jobs, ["batch", "web"]);
        assert_eq!(c.allocations_left, 3);
        assert!(c.decrement, "ScaleIn shrinks the group");
        assert_eq!(c.since.0.to_string(), "2026-01-01T00:00:07Z");
        let b = &view.retiring[0];
        assert!(!b.decrement, "Replace launches a new VM");
        assert_eq!(
            b.since.0.to_string(),
            "2026-01-01T00:00:01Z",
            "since falls back to selectedAt"
        );
        assert_eq!(view.retirement_of("n-a").unwrap().name_any(), "a");

        // A failure message shows the entries and every object's phase.
        let shown = serde_json::to_value(&view).unwrap();
        assert_eq!(shown["retiring"][1]["nodeID"], "n-c");
        assert_eq!(shown["retirementObjects"][0], "a: Retired");
        assert_eq!(shown["retirementObjects"][4], "p: Pending");
    }
}
