//! Task states and task events inside an allocation, stored compactly
//! (a benchmark cluster holds 100,000 allocations) and rendered with every
//! field Nomad sends.

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::StrMap;

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
