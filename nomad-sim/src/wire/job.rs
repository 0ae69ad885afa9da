//! The job an allocation belongs to: what the simulator models of it, and
//! the embedded `Job` JSON, rendered once and shared by reference.

use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};

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
