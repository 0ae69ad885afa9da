//! Operations (reference §1.6, §4.4, §5.1.6–7): created by every mutating
//! call, `PENDING` in the call's answer, `RUNNING` for the configured number
//! of polls and simulated time, then `DONE`, with `error`,
//! `httpErrorStatusCode` and `httpErrorMessage` when the operation failed.
//! `requestId` de-duplication lives here too (§1.4, §5.1.9).

use serde::{Deserialize, Serialize};

use super::{Key, Scope, World};
use crate::clock::{secs, timestamp};
use crate::error::GceError;
use crate::wire;

/// An operation's address: project, zone or region, name.
pub type OpKey = Key;

/// Why an operation ended in error (the CA fixture's shape, §1.6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpFailure {
    /// `error.errors[].code`, e.g. `CONDITION_NOT_MET`, `QUOTA_EXCEEDED`.
    pub code: String,
    pub message: String,
    pub http_status: i32,
    pub http_message: String,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub key: OpKey,
    pub id: u64,
    /// `compute.instanceGroupManagers.deleteInstances` etc.
    pub operation_type: String,
    pub target: Key,
    pub target_id: u64,
    pub client_operation_id: Option<String>,
    pub insert_ns: i64,
    pub end_ns: Option<i64>,
    /// Polls still to be answered `RUNNING`.
    pub polls_left: u32,
    /// Earliest simulated time the operation can be `DONE`.
    pub done_at_ns: i64,
    pub failure: Option<OpFailure>,
    /// Answered at least once after its insert (then `RUNNING`, not `PENDING`).
    pub polled: bool,
}

impl Operation {
    pub fn done(&self) -> bool {
        self.end_ns.is_some()
    }
}

/// `requestId`: "a valid UUID with the exception that zero UUID is not
/// supported" (§1.4).
pub fn check_request_id(id: &str) -> Result<(), GceError> {
    let groups: Vec<&str> = id.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(shape)
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if !ok || id.bytes().all(|b| b == b'0' || b == b'-') {
        return Err(GceError::Invalid(format!(
            "Invalid value for field 'requestId': '{id}'. The requestId must be a valid UUID and must not be all zeros."
        )));
    }
    Ok(())
}

impl World {
    /// The operation an earlier call with this `requestId` created, if any
    /// (then the call has no second effect, §1.4).
    pub fn replayed(&self, project: &str, request_id: Option<&str>) -> Option<OpKey> {
        let id = request_id?;
        self.request_ids
            .get(&(project.to_string(), id.to_string()))
            .cloned()
    }

    /// Records a new operation on `target` and returns its key.
    pub fn new_operation(
        &mut self,
        target: &Key,
        verb: &str,
        request_id: Option<&str>,
        failure: Option<OpFailure>,
    ) -> OpKey {
        let collection = match target.scope {
            Scope::Zone(_) => "instanceGroupManagers",
            Scope::Region(_) => "regionInstanceGroupManagers",
        };
        let ms = self.now / 1_000_000;
        let name = format!(
            "operation-{ms}-{}-{}-{}",
            self.random_hex(13),
            self.random_hex(8),
            self.random_hex(8)
        );
        let key = Key {
            project: target.project.clone(),
            scope: target.scope.clone(),
            name,
        };
        let target_id = self.groups.get(target).map(|g| g.id).unwrap_or_default();
        let op = Operation {
            key: key.clone(),
            id: self.new_id(),
            operation_type: format!("compute.{collection}.{verb}"),
            target: target.clone(),
            target_id,
            client_operation_id: request_id.map(str::to_string),
            insert_ns: self.now,
            end_ns: None,
            polls_left: self.timing.operation_polls,
            done_at_ns: self.now + secs(self.timing.operation_duration_s),
            failure,
            polled: false,
        };
        if let Some(id) = request_id {
            self.request_ids
                .insert((target.project.clone(), id.to_string()), key.clone());
        }
        if let Some(g) = self.groups.get_mut(target) {
            g.open_ops.insert(key.clone());
        }
        self.open_ops.insert(key.clone());
        self.ops.insert(key.clone(), op);
        self.finish_due_operations();
        key
    }

    /// One poll (`operations.get` or `wait`) of `key`: uses up one of the
    /// polls the operation answers `RUNNING`, then settles it.
    pub fn poll(&mut self, key: &OpKey) -> Result<wire::Operation, GceError> {
        let op = self
            .ops
            .get_mut(key)
            .ok_or_else(|| GceError::NotFound(key.path("operations")))?;
        op.polled = true;
        if !op.done() && op.polls_left > 0 {
            op.polls_left -= 1;
            return Ok(self.op_view(key));
        }
        self.finish_due_operations();
        Ok(self.op_view(key))
    }

    /// Marks `DONE` every operation whose polls and time are used up.
    pub fn finish_due_operations(&mut self) {
        let now = self.now;
        let due: Vec<OpKey> = self
            .open_ops
            .iter()
            .filter(|k| {
                let op = &self.ops[*k];
                op.polls_left == 0 && op.done_at_ns <= now
            })
            .cloned()
            .collect();
        for k in due {
            self.open_ops.remove(&k);
            let op = self.ops.get_mut(&k).expect("open operations exist");
            op.end_ns = Some(now);
            if let Some(g) = self.groups.get_mut(&op.target) {
                g.open_ops.remove(&k);
            }
        }
    }

    /// The `Operation` JSON of `key` (which must exist).
    pub fn op_view(&self, key: &OpKey) -> wire::Operation {
        let op = &self.ops[key];
        let status = match (op.done(), op.polled) {
            (true, _) => "DONE",
            (false, true) => "RUNNING",
            (false, false) => "PENDING",
        };
        let failure = op.failure.as_ref().filter(|_| op.done());
        let (zone, region) = match &key.scope {
            Scope::Zone(_) => (Some(key.scope.url(&key.project)), None),
            Scope::Region(_) => (None, Some(key.scope.url(&key.project))),
        };
        wire::Operation {
            kind: "compute#operation".into(),
            id: op.id.to_string(),
            name: key.name.clone(),
            zone,
            region,
            operation_type: op.operation_type.clone(),
            target_link: op.target.url("instanceGroupManagers"),
            target_id: op.target_id.to_string(),
            status: status.into(),
            user: "gce-sim@example.iam.gserviceaccount.com".into(),
            progress: if op.done() { 100 } else { 0 },
            insert_time: timestamp(op.insert_ns),
            start_time: op
                .polled
                .then(|| timestamp(op.insert_ns))
                .or_else(|| op.end_ns.map(|_| timestamp(op.insert_ns))),
            end_time: op.end_ns.map(timestamp),
            self_link: key.url("operations"),
            client_operation_id: op.client_operation_id.clone(),
            error: failure.map(|f| wire::OperationError {
                errors: vec![wire::OperationErrorItem {
                    code: f.code.clone(),
                    message: f.message.clone(),
                }],
            }),
            http_error_status_code: failure.map(|f| f.http_status),
            http_error_message: failure.map(|f| f.http_message.clone()),
        }
    }
}
