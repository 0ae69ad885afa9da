//! Allocations: `structs.Allocation` in full (`/v1/allocation/:id`, a
//! node's allocations, the event stream) and as `structs.AllocListStub`,
//! with the desired transition and deployment status they carry.

use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::{Value, json};

use super::{Job, TaskStates};

/// `structs.DesiredTransition`: pointer booleans, so each may be null.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DesiredTransition {
    pub migrate: Option<bool>,
    pub reschedule: Option<bool>,
    pub force_reschedule: Option<bool>,
    pub no_shutdown_delay: Option<bool>,
    pub migrate_disable_placement: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeploymentStatus {
    pub healthy: Option<bool>,
    pub timestamp: String,
    pub canary: bool,
    pub modify_index: u64,
}

/// Full `structs.Allocation` as `/v1/node/:id/allocations` and
/// `/v1/allocation/:id` return it.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub id: String,
    pub namespace: String,
    pub eval_id: String,
    pub name: String,
    pub node_id: String,
    pub node_name: String,
    pub job: Arc<Job>,
    pub task_group: String,
    pub desired_status: String,
    pub desired_description: String,
    pub desired_transition: DesiredTransition,
    pub client_status: String,
    pub client_description: String,
    pub task_states: TaskStates,
    pub deployment_status: Option<DeploymentStatus>,
    pub previous_allocation: String,
    pub next_allocation: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub alloc_modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

static ALLOC_RESOURCES: OnceLock<Value> = OnceLock::new();
static SHARED_RESOURCES: OnceLock<Value> = OnceLock::new();
static TASK_RESOURCES: OnceLock<Value> = OnceLock::new();
static ALLOC_METRICS: OnceLock<Value> = OnceLock::new();

fn alloc_resources() -> &'static Value {
    ALLOC_RESOURCES
        .get_or_init(|| json!({"CPU": 100, "DiskMB": 300, "MemoryMB": 300, "Networks": null}))
}

fn alloc_metrics() -> &'static Value {
    ALLOC_METRICS.get_or_init(|| {
        json!({
            "AllocationTime": 50000, "ClassExhausted": null, "ClassFiltered": null,
            "CoalescedFailures": 0, "ConstraintFiltered": null, "DimensionExhausted": null,
            "NodesAvailable": null, "NodesEvaluated": 1, "NodesExhausted": 0,
            "NodesFiltered": 0, "NodesInPool": 1, "QuotaExhausted": null, "Scores": null
        })
    })
}

/// Borrowed view used to serialize a full allocation.
#[derive(Serialize)]
struct AllocationWire<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "Namespace")]
    namespace: &'a str,
    #[serde(rename = "EvalID")]
    eval_id: &'a str,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "NodeID")]
    node_id: &'a str,
    #[serde(rename = "NodeName")]
    node_name: &'a str,
    #[serde(rename = "JobID")]
    job_id: &'a str,
    #[serde(rename = "Job")]
    job: Option<&'a Value>,
    #[serde(rename = "TaskGroup")]
    task_group: &'a str,
    #[serde(rename = "Resources")]
    resources: &'static Value,
    #[serde(rename = "SharedResources")]
    shared_resources: &'static Value,
    #[serde(rename = "TaskResources")]
    task_resources: &'static Value,
    #[serde(rename = "Metrics")]
    metrics: &'static Value,
    #[serde(rename = "DesiredStatus")]
    desired_status: &'a str,
    #[serde(rename = "DesiredDescription")]
    desired_description: &'a str,
    #[serde(rename = "DesiredTransition")]
    desired_transition: &'a DesiredTransition,
    #[serde(rename = "ClientStatus")]
    client_status: &'a str,
    #[serde(rename = "ClientDescription")]
    client_description: &'a str,
    #[serde(rename = "TaskStates")]
    task_states: &'a TaskStates,
    #[serde(rename = "DeploymentID")]
    deployment_id: &'a str,
    #[serde(rename = "DeploymentStatus")]
    deployment_status: &'a Option<DeploymentStatus>,
    #[serde(rename = "RescheduleTracker")]
    reschedule_tracker: Option<Value>,
    #[serde(rename = "FollowupEvalID")]
    followup_eval_id: &'a str,
    #[serde(rename = "PreviousAllocation")]
    previous_allocation: &'a str,
    #[serde(rename = "NextAllocation")]
    next_allocation: &'a str,
    #[serde(rename = "PreemptedAllocations")]
    preempted_allocations: Option<Value>,
    #[serde(rename = "PreemptedByAllocation")]
    preempted_by_allocation: &'a str,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
    #[serde(rename = "AllocModifyIndex")]
    alloc_modify_index: u64,
    #[serde(rename = "CreateTime")]
    create_time: i64,
    #[serde(rename = "ModifyTime")]
    modify_time: i64,
}

/// `structs.AllocListStub`.
#[derive(Serialize)]
pub struct AllocListStub<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    #[serde(rename = "EvalID")]
    eval_id: &'a str,
    #[serde(rename = "Name")]
    name: &'a str,
    #[serde(rename = "Namespace")]
    namespace: &'a str,
    #[serde(rename = "NodeID")]
    node_id: &'a str,
    #[serde(rename = "NodeName")]
    node_name: &'a str,
    #[serde(rename = "JobID")]
    job_id: &'a str,
    #[serde(rename = "JobType")]
    job_type: &'a str,
    #[serde(rename = "JobVersion")]
    job_version: u64,
    #[serde(rename = "TaskGroup")]
    task_group: &'a str,
    #[serde(rename = "DesiredStatus")]
    desired_status: &'a str,
    #[serde(rename = "DesiredDescription")]
    desired_description: &'a str,
    #[serde(rename = "ClientStatus")]
    client_status: &'a str,
    #[serde(rename = "ClientDescription")]
    client_description: &'a str,
    #[serde(rename = "DesiredTransition")]
    desired_transition: &'a DesiredTransition,
    #[serde(rename = "TaskStates", skip_serializing_if = "Option::is_none")]
    task_states: Option<&'a TaskStates>,
    #[serde(rename = "DeploymentStatus")]
    deployment_status: &'a Option<DeploymentStatus>,
    #[serde(rename = "FollowupEvalID")]
    followup_eval_id: &'a str,
    #[serde(rename = "NextAllocation")]
    next_allocation: &'a str,
    #[serde(rename = "RescheduleTracker")]
    reschedule_tracker: Option<Value>,
    #[serde(rename = "PreemptedAllocations")]
    preempted_allocations: Option<Value>,
    #[serde(rename = "PreemptedByAllocation")]
    preempted_by_allocation: &'a str,
    #[serde(rename = "CreateIndex")]
    create_index: u64,
    #[serde(rename = "ModifyIndex")]
    modify_index: u64,
    #[serde(rename = "CreateTime")]
    create_time: i64,
    #[serde(rename = "ModifyTime")]
    modify_time: i64,
}

impl Allocation {
    fn wire(&self, with_job: bool) -> AllocationWire<'_> {
        AllocationWire {
            id: &self.id,
            namespace: &self.namespace,
            eval_id: &self.eval_id,
            name: &self.name,
            node_id: &self.node_id,
            node_name: &self.node_name,
            job_id: &self.job.id,
            job: with_job.then(|| self.job.to_json()),
            task_group: &self.task_group,
            resources: alloc_resources(),
            shared_resources: SHARED_RESOURCES
                .get_or_init(|| json!({"CPU": 0, "DiskMB": 300, "MemoryMB": 0, "Networks": null})),
            task_resources: TASK_RESOURCES.get_or_init(
                || json!({"task": {"CPU": 100, "DiskMB": 0, "MemoryMB": 300, "Networks": null}}),
            ),
            metrics: alloc_metrics(),
            desired_status: &self.desired_status,
            desired_description: &self.desired_description,
            desired_transition: &self.desired_transition,
            client_status: &self.client_status,
            client_description: &self.client_description,
            task_states: &self.task_states,
            deployment_id: "",
            deployment_status: &self.deployment_status,
            reschedule_tracker: None,
            followup_eval_id: "",
            previous_allocation: &self.previous_allocation,
            next_allocation: &self.next_allocation,
            preempted_allocations: None,
            preempted_by_allocation: "",
            create_index: self.create_index,
            modify_index: self.modify_index,
            alloc_modify_index: self.alloc_modify_index,
            create_time: self.create_time,
            modify_time: self.modify_time,
        }
    }

    /// The allocation as an `Allocation` event carries it: `Job` null.
    pub fn without_job(&self) -> impl Serialize + '_ {
        self.wire(false)
    }

    /// Serializes the full allocation (with the embedded `Job`).
    pub fn write_full(&self, out: &mut Vec<u8>) {
        serde_json::to_writer(out, &self.wire(true)).expect("alloc serializes");
    }

    /// JSON value of the full allocation, used by the filter evaluator.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self.wire(true)).expect("alloc serializes")
    }

    /// What a filter reading only `fields` sees: the common top-level fields
    /// are built directly, anything else comes from the full allocation.
    /// Building the full one (embedded `Job` included) for each of 100,000
    /// allocations under the state lock stalled the whole simulator for
    /// seconds, which real Nomad (filtering a snapshot) does not do.
    pub fn filter_datum(&self, fields: &[String]) -> Value {
        let mut m = serde_json::Map::new();
        let mut full: Option<Value> = None;
        for f in fields {
            let v = match f.as_str() {
                "ID" => Value::String(self.id.clone()),
                "Namespace" => Value::String(self.namespace.clone()),
                "NodeID" => Value::String(self.node_id.clone()),
                "NodeName" => Value::String(self.node_name.clone()),
                "JobID" => Value::String(self.job.id.clone()),
                "TaskGroup" => Value::String(self.task_group.clone()),
                "ClientStatus" => Value::String(self.client_status.clone()),
                "DesiredStatus" => Value::String(self.desired_status.clone()),
                other => {
                    let fv = full.get_or_insert_with(|| self.to_value());
                    match fv.get(other) {
                        Some(v) => v.clone(),
                        None => continue,
                    }
                }
            };
            m.insert(f.clone(), v);
        }
        Value::Object(m)
    }

    pub fn stub(&self, task_states: bool) -> AllocListStub<'_> {
        AllocListStub {
            id: &self.id,
            eval_id: &self.eval_id,
            name: &self.name,
            namespace: &self.namespace,
            node_id: &self.node_id,
            node_name: &self.node_name,
            job_id: &self.job.id,
            job_type: &self.job.job_type,
            job_version: 0,
            task_group: &self.task_group,
            desired_status: &self.desired_status,
            desired_description: &self.desired_description,
            client_status: &self.client_status,
            client_description: &self.client_description,
            desired_transition: &self.desired_transition,
            task_states: task_states.then_some(&self.task_states),
            deployment_status: &self.deployment_status,
            followup_eval_id: "",
            next_allocation: &self.next_allocation,
            reschedule_tracker: None,
            preempted_allocations: None,
            preempted_by_allocation: "",
            create_index: self.create_index,
            modify_index: self.modify_index,
            create_time: self.create_time,
            modify_time: self.modify_time,
        }
    }

    /// Client-terminal: `complete`, `failed` or `lost`.
    pub fn client_terminal(&self) -> bool {
        matches!(self.client_status.as_str(), "complete" | "failed" | "lost")
    }

    /// `TerminalStatus()`: desired stop/evict, or client-terminal.
    pub fn terminal(&self) -> bool {
        matches!(self.desired_status.as_str(), "stop" | "evict") || self.client_terminal()
    }

    pub fn pending_or_running(&self) -> bool {
        matches!(self.client_status.as_str(), "pending" | "running")
    }
}
