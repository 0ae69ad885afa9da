//! The simulator's own encoding of Nomad's JSON wire format.
//!
//! This deliberately duplicates the operator's Nomad API types instead of
//! sharing them: two independent encodings of one wire format, each pinned to
//! the JSON examples in Nomad's docs (`tests/fixtures/nomad/`), are what catch
//! a misspelled field or a wrong JSON type on either side. Do not "dedupe"
//! this with the operator's client.
//!
//! Field names are the Go field names (PascalCase), durations are integer
//! nanoseconds, times are RFC 3339 strings, and maps that were never set are
//! `null`, as in Nomad's HTTP responses.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Value, json};

pub type StrMap = BTreeMap<String, String>;

/// A shared, immutable JSON sub-document (for large static parts such as
/// `NodeResources` that every simulated node carries).
#[derive(Debug, Clone)]
pub struct Shared(pub Arc<Value>);

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DrainStrategy {
    /// ns; < 0 force, 0 no deadline, > 0 deadline.
    pub deadline: i64,
    pub ignore_system_jobs: bool,
    /// RFC 3339; `null` (the zero time as Nomad's HTTP JSON encodes it) when
    /// `Deadline <= 0`.
    pub force_deadline: Option<String>,
    pub started_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrainMetadata {
    #[serde(rename = "StartedAt")]
    pub started_at: String,
    #[serde(rename = "UpdatedAt")]
    pub updated_at: String,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "AccessorID")]
    pub accessor_id: String,
    #[serde(rename = "Meta")]
    pub meta: Option<StrMap>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeEvent {
    pub message: String,
    pub subsystem: String,
    pub details: Option<StrMap>,
    pub timestamp: String,
    pub create_index: u64,
}

/// Full `structs.Node` as `GET /v1/node/:id` returns it (sanitized:
/// `SecretID` is empty), including the synthetic `Drain` bool that Nomad's
/// JSON encoding extension adds.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    #[serde(rename = "Datacenter")]
    pub datacenter: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "CgroupParent")]
    pub cgroup_parent: String,
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    #[serde(rename = "TLSEnabled")]
    pub tls_enabled: bool,
    #[serde(rename = "Attributes")]
    pub attributes: StrMap,
    #[serde(rename = "NodeResources")]
    pub node_resources: Shared,
    #[serde(rename = "ReservedResources")]
    pub reserved_resources: Shared,
    #[serde(rename = "Links")]
    pub links: Option<StrMap>,
    #[serde(rename = "Meta")]
    pub meta: Option<StrMap>,
    #[serde(rename = "NodeClass")]
    pub node_class: String,
    #[serde(rename = "NodePool")]
    pub node_pool: String,
    #[serde(rename = "ComputedClass")]
    pub computed_class: String,
    #[serde(rename = "DrainStrategy")]
    pub drain_strategy: Option<DrainStrategy>,
    #[serde(rename = "SchedulingEligibility")]
    pub scheduling_eligibility: String,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "StatusDescription")]
    pub status_description: String,
    /// Unix seconds.
    #[serde(rename = "StatusUpdatedAt")]
    pub status_updated_at: i64,
    #[serde(rename = "Events")]
    pub events: Vec<NodeEvent>,
    #[serde(rename = "Drivers")]
    pub drivers: Shared,
    #[serde(rename = "CSIControllerPlugins")]
    pub csi_controller_plugins: Option<Value>,
    #[serde(rename = "CSINodePlugins")]
    pub csi_node_plugins: Option<Value>,
    #[serde(rename = "HostVolumes")]
    pub host_volumes: Option<Value>,
    #[serde(rename = "GCVolumesOnNodeGC")]
    pub gc_volumes_on_node_gc: bool,
    #[serde(rename = "HostNetworks")]
    pub host_networks: Option<Value>,
    #[serde(rename = "LastDrain")]
    pub last_drain: Option<DrainMetadata>,
    #[serde(rename = "NodeMaxAllocs")]
    pub node_max_allocs: i64,
    #[serde(rename = "IdentitySigningKeyID")]
    pub identity_signing_key_id: String,
    #[serde(rename = "LastMissedHeartbeatIndex")]
    pub last_missed_heartbeat_index: u64,
    #[serde(rename = "LastAllocUpdateIndex")]
    pub last_alloc_update_index: u64,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
    /// Synthetic: `DrainStrategy != nil` (nomad/structs/extensions.go).
    #[serde(rename = "Drain")]
    pub drain: bool,
}

/// `structs.NodeListStub`, borrowed from a [`Node`].
#[derive(Debug, Serialize)]
pub struct NodeListStub<'a> {
    #[serde(rename = "Address")]
    pub address: &'a str,
    #[serde(rename = "ID")]
    pub id: &'a str,
    #[serde(rename = "Attributes", skip_serializing_if = "Option::is_none")]
    pub attributes: Option<StrMap>,
    #[serde(rename = "Datacenter")]
    pub datacenter: &'a str,
    #[serde(rename = "Name")]
    pub name: &'a str,
    #[serde(rename = "NodeClass")]
    pub node_class: &'a str,
    #[serde(rename = "NodePool")]
    pub node_pool: &'a str,
    #[serde(rename = "Version")]
    pub version: &'a str,
    #[serde(rename = "Drain")]
    pub drain: bool,
    #[serde(rename = "SchedulingEligibility")]
    pub scheduling_eligibility: &'a str,
    #[serde(rename = "Status")]
    pub status: &'a str,
    #[serde(rename = "StatusDescription")]
    pub status_description: &'a str,
    #[serde(rename = "Drivers")]
    pub drivers: &'a Shared,
    #[serde(rename = "HostVolumes")]
    pub host_volumes: &'a Option<Value>,
    #[serde(rename = "NodeResources", skip_serializing_if = "Option::is_none")]
    pub node_resources: Option<&'a Shared>,
    #[serde(rename = "ReservedResources", skip_serializing_if = "Option::is_none")]
    pub reserved_resources: Option<&'a Shared>,
    #[serde(rename = "LastDrain")]
    pub last_drain: &'a Option<DrainMetadata>,
    #[serde(rename = "CreateIndex")]
    pub create_index: u64,
    #[serde(rename = "ModifyIndex")]
    pub modify_index: u64,
}

impl Node {
    pub fn stub(&self, resources: bool, os: bool) -> NodeListStub<'_> {
        let address = self
            .http_addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or(&self.http_addr);
        NodeListStub {
            address,
            id: &self.id,
            attributes: if os {
                let mut m = StrMap::new();
                if let Some(v) = self.attributes.get("os.name") {
                    m.insert("os.name".into(), v.clone());
                }
                Some(m)
            } else {
                None
            },
            datacenter: &self.datacenter,
            name: &self.name,
            node_class: &self.node_class,
            node_pool: &self.node_pool,
            version: self
                .attributes
                .get("nomad.version")
                .map(String::as_str)
                .unwrap_or(""),
            drain: self.drain_strategy.is_some(),
            scheduling_eligibility: &self.scheduling_eligibility,
            status: &self.status,
            status_description: &self.status_description,
            drivers: &self.drivers,
            host_volumes: &self.host_volumes,
            node_resources: resources.then_some(&self.node_resources),
            reserved_resources: resources.then_some(&self.reserved_resources),
            last_drain: &self.last_drain,
            create_index: self.create_index,
            modify_index: self.modify_index,
        }
    }
}

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

/// `structs.TaskEvent`. Stored compactly (100,000 allocations each carry a
/// few of these) and rendered with all 24 fields Nomad sends.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    pub kind: &'static str,
    pub time: i64,
    pub display_message: &'static str,
    /// Also rendered as `Details: {"message": ...}` when non-empty.
    pub message: &'static str,
    pub exit_code: i64,
}

impl TaskEvent {
    pub fn new(kind: &'static str, time: i64, display: &'static str) -> TaskEvent {
        TaskEvent {
            kind,
            time,
            display_message: display,
            message: "",
            exit_code: 0,
        }
    }
}

impl Serialize for TaskEvent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut details = StrMap::new();
        if !self.message.is_empty() {
            details.insert("message".into(), self.message.into());
        }
        let mut st = s.serialize_struct("TaskEvent", 24)?;
        st.serialize_field("Type", self.kind)?;
        st.serialize_field("Time", &self.time)?;
        st.serialize_field("DisplayMessage", self.display_message)?;
        st.serialize_field("Details", &details)?;
        st.serialize_field("Message", self.message)?;
        st.serialize_field("FailsTask", &false)?;
        st.serialize_field("RestartReason", "")?;
        st.serialize_field("SetupError", "")?;
        st.serialize_field("DriverError", "")?;
        st.serialize_field("DriverMessage", "")?;
        st.serialize_field("ExitCode", &self.exit_code)?;
        st.serialize_field("Signal", &0)?;
        st.serialize_field("KillTimeout", &0)?;
        st.serialize_field("KillError", "")?;
        st.serialize_field("KillReason", "")?;
        st.serialize_field("StartDelay", &0)?;
        st.serialize_field("DownloadError", "")?;
        st.serialize_field("ValidationError", "")?;
        st.serialize_field("DiskLimit", &0)?;
        st.serialize_field("FailedSibling", "")?;
        st.serialize_field("VaultError", "")?;
        st.serialize_field("TaskSignalReason", "")?;
        st.serialize_field("TaskSignal", "")?;
        st.serialize_field("GenericSource", "")?;
        st.end()
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskState {
    pub state: &'static str,
    pub failed: bool,
    pub restarts: u64,
    pub last_restart: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub events: Vec<TaskEvent>,
    pub task_handle: Option<Value>,
}

/// `TaskStates`: a JSON map of task name to state. A small vector instead
/// of a `BTreeMap` (one task per allocation; a B-tree node would reserve
/// room for eleven).
#[derive(Debug, Clone, Default)]
pub struct TaskStates(pub Vec<(String, TaskState)>);

impl TaskStates {
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut TaskState> {
        self.0.iter_mut().map(|(_, v)| v)
    }
}

impl Serialize for TaskStates {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// The job an allocation belongs to. Only what the simulator needs; the
/// embedded `Job` JSON is rendered from it by [`Job::to_json`].
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub job_type: String,
    pub namespace: String,
    pub region: String,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub priority: i64,
    pub count: u32,
    pub max_parallel: u32,
    pub min_healthy_time_ns: i64,
    /// The task's `kill_timeout` (ns): how long a stopped task keeps running
    /// on the client before it is killed (Nomad's default: 5 s).
    pub kill_timeout_ns: i64,
    /// The group's `disconnect { lost_after }` (formerly
    /// `max_client_disconnect`), ns; `None` = no disconnect tolerance.
    pub lost_after_ns: Option<i64>,
    pub create_index: u64,
    pub submit_time: i64,
    /// Rendered once: allocations embed it by reference.
    pub json: Arc<OnceLock<Value>>,
}

impl Job {
    /// Jobs are unique per namespace.
    pub fn key_of(namespace: &str, id: &str) -> String {
        format!("{namespace}\u{0}{id}")
    }

    pub fn key(&self) -> String {
        Self::key_of(&self.namespace, &self.id)
    }

    pub fn task_group(&self) -> &str {
        "main"
    }

    pub fn to_json(&self) -> &Value {
        self.json.get_or_init(|| {
            let migrate = if self.job_type == "service" {
                json!({"HealthCheck": "checks", "HealthyDeadline": 300_000_000_000i64,
                       "MaxParallel": self.max_parallel, "MinHealthyTime": self.min_healthy_time_ns})
            } else {
                Value::Null
            };
            // Canonicalized `disconnect` block (`structs.DisconnectStrategy`).
            let disconnect = match self.lost_after_ns {
                Some(l) => json!({"LostAfter": l, "Reconcile": "best_score", "Replace": true,
                                  "StopOnClientAfter": null}),
                None => Value::Null,
            };
            json!({
                "AllAtOnce": false,
                "Constraints": null,
                "CreateIndex": self.create_index,
                "Datacenters": self.datacenters,
                "ID": self.id,
                "JobModifyIndex": self.create_index,
                "Meta": null,
                "ModifyIndex": self.create_index,
                "Name": self.id,
                "Namespace": self.namespace,
                "NodePool": self.node_pool,
                "ParameterizedJob": null,
                "ParentID": "",
                "Payload": null,
                "Periodic": null,
                "Priority": self.priority,
                "Region": self.region,
                "Stable": false,
                "Status": "running",
                "StatusDescription": "",
                "Stop": false,
                "SubmitTime": self.submit_time,
                "TaskGroups": [{
                    "Constraints": null,
                    "Count": self.count,
                    "Disconnect": disconnect,
                    "EphemeralDisk": {"Migrate": false, "SizeMB": 300, "Sticky": false},
                    "MaxClientDisconnect": null,
                    "Meta": null,
                    "Migrate": migrate,
                    "Name": self.task_group(),
                    "ReschedulePolicy": {"Attempts": 0, "Delay": 30_000_000_000i64,
                        "DelayFunction": "exponential", "Interval": 0,
                        "MaxDelay": 3_600_000_000_000i64, "Unlimited": true},
                    "RestartPolicy": {"Attempts": 2, "Delay": 15_000_000_000i64,
                        "Interval": 1_800_000_000_000i64, "Mode": "fail"},
                    "Tasks": [{
                        "Artifacts": null,
                        "Config": {"command": "/bin/sim-task"},
                        "Constraints": null,
                        "DispatchPayload": null,
                        "Driver": "raw_exec",
                        "Env": null,
                        "KillSignal": "",
                        "KillTimeout": self.kill_timeout_ns,
                        "Leader": false,
                        "LogConfig": {"MaxFileSizeMB": 10, "MaxFiles": 10},
                        "Meta": null,
                        "Name": "task",
                        "Resources": {"CPU": 100, "DiskMB": 0, "MemoryMB": 300, "Networks": null},
                        "Services": null,
                        "ShutdownDelay": 0,
                        "Templates": null,
                        "User": "",
                        "Vault": null
                    }],
                    "Update": null
                }],
                "Type": self.job_type,
                "Update": {"AutoRevert": false, "Canary": 0, "HealthCheck": "",
                    "HealthyDeadline": 0, "MaxParallel": 0, "MinHealthyTime": 0, "Stagger": 0},
                "VaultToken": "",
                "Version": 0
            })
        })
    }
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

// ---- Requests and responses of the write endpoints ----

/// `api.DrainSpec`.
#[derive(Debug, Clone, Deserialize)]
pub struct DrainSpec {
    /// Go decodes a missing or null field as zero (no deadline); so do we.
    #[serde(rename = "Deadline", default, deserialize_with = "null_as_zero")]
    pub deadline: i64,
    #[serde(rename = "IgnoreSystemJobs", default)]
    pub ignore_system_jobs: bool,
}

fn null_as_zero<'de, D: serde::Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(d)?.unwrap_or(0))
}

/// Go's `encoding/json` matches object keys to struct fields
/// case-insensitively; Nomad decodes request bodies with it. Renames keys of
/// `v` (not of nested maps such as `Meta`) to the canonical field names.
pub fn canonical_keys(v: &mut Value, fields: &[&str], nested: &[(&str, &[&str])]) {
    let Value::Object(m) = v else {
        return;
    };
    let old = std::mem::take(m);
    for (k, mut val) in old {
        let name = fields
            .iter()
            .find(|f| f.eq_ignore_ascii_case(&k))
            .map(|f| f.to_string())
            .unwrap_or(k);
        if let Some((_, sub)) = nested.iter().find(|(n, _)| *n == name) {
            canonical_keys(&mut val, sub, &[]);
        }
        m.insert(name, val);
    }
}

/// `api.NodeUpdateDrainRequest`. Unknown fields are ignored, as Go does.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct DrainRequest {
    #[serde(rename = "DrainSpec", default)]
    pub drain_spec: Option<DrainSpec>,
    #[serde(rename = "MarkEligible", default)]
    pub mark_eligible: bool,
    #[serde(rename = "Meta", default)]
    pub meta: Option<StrMap>,
    #[serde(rename = "NodeID", default)]
    pub node_id: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
pub struct EligibilityRequest {
    #[serde(rename = "Eligibility", default)]
    pub eligibility: String,
    #[serde(rename = "NodeID", default)]
    pub node_id: Option<String>,
}

/// `structs.NodeDrainUpdateResponse` / `NodeEligibilityUpdateResponse`.
#[derive(Debug, Clone, Serialize)]
pub struct NodeUpdateResponse {
    #[serde(rename = "EvalCreateIndex")]
    pub eval_create_index: u64,
    #[serde(rename = "EvalIDs")]
    pub eval_ids: Option<Vec<String>>,
    #[serde(rename = "Index")]
    pub index: u64,
    #[serde(rename = "NodeModifyIndex")]
    pub node_modify_index: u64,
}

/// `structs.NodeUpdateResponse` as the purge endpoint returns it.
#[derive(Debug, Clone, Serialize)]
pub struct NodePurgeResponse {
    #[serde(rename = "EvalCreateIndex")]
    pub eval_create_index: u64,
    #[serde(rename = "EvalIDs")]
    pub eval_ids: Option<Vec<String>>,
    #[serde(rename = "HeartbeatTTL")]
    pub heartbeat_ttl: i64,
    #[serde(rename = "Index")]
    pub index: u64,
    #[serde(rename = "KnownLeader")]
    pub known_leader: bool,
    #[serde(rename = "LastContact")]
    pub last_contact: i64,
    #[serde(rename = "LeaderRPCAddr")]
    pub leader_rpc_addr: String,
    #[serde(rename = "NodeModifyIndex")]
    pub node_modify_index: u64,
    #[serde(rename = "NumNodes")]
    pub num_nodes: i64,
    #[serde(rename = "Servers")]
    pub servers: Option<Value>,
}

/// Static parts of a simulated client node.
pub fn default_node_resources() -> Shared {
    Shared(Arc::new(json!({
        "Cpu": {"CpuShares": 8000, "TotalCpuCores": 4, "ReservableCpuCores": null},
        "Memory": {"MemoryMB": 15803},
        "Disk": {"DiskMB": 50000},
        "Networks": [{"CIDR": "", "DNS": null, "Device": "eth0", "DynamicPorts": null, "IP": "",
                      "MBits": 1000, "Mode": "host", "ReservedPorts": null}],
        "NodeNetworks": [{"Addresses": null, "Device": "eth0", "MacAddress": "",
                          "Mode": "host", "Speed": 1000}],
        "Devices": null,
        "MinDynamicPort": 20000,
        "MaxDynamicPort": 32000
    })))
}

pub fn default_reserved_resources() -> Shared {
    Shared(Arc::new(json!({
        "Cpu": {"CpuShares": 0, "ReservedCpuCores": null},
        "Memory": {"MemoryMB": 0},
        "Disk": {"DiskMB": 0},
        "Networks": {"ReservedHostPorts": ""}
    })))
}

pub fn default_drivers(ts: &str) -> Shared {
    Shared(Arc::new(json!({
        "docker": {"Attributes": {"driver.docker": "true", "driver.docker.version": "27.3.1"},
                   "Detected": true, "HealthDescription": "Healthy", "Healthy": true, "UpdateTime": ts},
        "exec": {"Attributes": {"driver.exec": "true"},
                 "Detected": true, "HealthDescription": "Healthy", "Healthy": true, "UpdateTime": ts},
        "raw_exec": {"Attributes": {"driver.raw_exec": "true"},
                 "Detected": true, "HealthDescription": "Healthy", "Healthy": true, "UpdateTime": ts},
        "java": {"Attributes": null,
                 "Detected": false, "HealthDescription": "", "Healthy": false, "UpdateTime": ts}
    })))
}
