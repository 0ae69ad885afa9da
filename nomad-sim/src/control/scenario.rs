//! Scenario files (`--scenario FILE`): the same writes as the control
//! surface's, applied once at start-up, so a demo or benchmark starts from
//! a known cluster.

use serde::Deserialize;

use super::cluster::{
    AllocReq, NamespaceReq, RegisterNodes, WorkloadReq, add_workload, register, submit,
};
use crate::App;
use crate::http_common::ApiError;
use crate::state::StateError;

/// A scenario file (`--scenario FILE`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Namespaces to create before anything else.
    pub namespaces: Vec<NamespaceReq>,
    pub nodes: Vec<RegisterNodes>,
    pub allocations: Vec<AllocReq>,
    pub workloads: Vec<WorkloadReq>,
    pub time_scale: Option<f64>,
}

/// Which of a scenario's writes was refused. The text is the refusal's
/// own: the same write through the control surface answers it.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error(transparent)]
    Namespace(StateError),
    #[error(transparent)]
    Nodes(ApiError),
    #[error(transparent)]
    Allocations(ApiError),
    #[error(transparent)]
    Workload(ApiError),
}

pub fn apply_scenario(app: &App, sc: &Scenario) -> Result<(), ScenarioError> {
    if let Some(s) = sc.time_scale {
        app.clock.set_scale(s);
    }
    let mut c = app.write();
    for n in &sc.namespaces {
        c.upsert_namespace(&n.name, &n.description)
            .map_err(ScenarioError::Namespace)?;
    }
    for n in &sc.nodes {
        register(&mut c, n).map_err(ScenarioError::Nodes)?;
    }
    for a in &sc.allocations {
        submit(&mut c, a).map_err(ScenarioError::Allocations)?;
    }
    for w in &sc.workloads {
        add_workload(&mut c, w).map_err(ScenarioError::Workload)?;
    }
    Ok(())
}
