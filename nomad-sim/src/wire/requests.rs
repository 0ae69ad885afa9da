//! Requests and responses of the write endpoints (drain, eligibility,
//! purge), decoded as Go's `encoding/json` decodes them: keys matched
//! case-insensitively, unknown fields ignored, `null` as zero.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::StrMap;

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
