//! The Compute Engine v1 JSON this fake speaks, as its own serde types (not
//! the operator's, not the SDK's): field names are the API's camelCase ones
//! (reference §1.1, §1.2, §1.6, §2), `id` fields are uint64 sent as JSON
//! strings and `targetSize` is an int32 number (§1.1 "Encodings"). Empty
//! optional fields are omitted, as Google's JSON encoding omits them.

use serde::{Deserialize, Serialize};

/// `InstanceGroupManagerActionsSummary` (§1.1): counts of managed instances
/// per `currentAction`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActionsSummary {
    pub none: i32,
    pub creating: i32,
    pub creating_without_retries: i32,
    pub verifying: i32,
    pub recreating: i32,
    pub deleting: i32,
    pub abandoning: i32,
    pub restarting: i32,
    pub refreshing: i32,
    pub suspending: i32,
    pub resuming: i32,
    pub stopping: i32,
    pub starting: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionTarget {
    pub is_reached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PerInstanceConfigs {
    pub all_effective: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatefulStatus {
    pub has_stateful_config: bool,
    pub per_instance_configs: PerInstanceConfigs,
}

/// `InstanceGroupManagerStatus` (§1.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgmStatus {
    pub is_stable: bool,
    pub version_target: VersionTarget,
    pub stateful: StatefulStatus,
    /// URL of the Autoscaler that targets this group (§1.1, AS-MG).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler: Option<String>,
}

/// `FixedOrPercent` (§1.1 `versions[].targetSize`, `updatePolicy.maxSurge`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FixedOrPercent {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<i32>,
    pub calculated: i32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgmVersion {
    pub instance_template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub target_size: FixedOrPercent,
}

/// `InstanceGroupManagerUpdatePolicy` (§1.1), the group's defaults.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatePolicy {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_redistribution_type: Option<String>,
    pub minimal_action: String,
    pub max_surge: FixedOrPercent,
    pub max_unavailable: FixedOrPercent,
    pub replacement_method: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ZoneRef {
    pub zone: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DistributionPolicy {
    pub zones: Vec<ZoneRef>,
    pub target_shape: String,
}

/// `InstanceGroupManager` (§1.1), the fields this fake models.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceGroupManager {
    pub kind: String,
    pub id: String,
    pub creation_timestamp: String,
    pub name: String,
    /// Omitted when the group has none, as for any unset optional field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution_policy: Option<DistributionPolicy>,
    pub instance_template: String,
    pub versions: Vec<IgmVersion>,
    pub update_policy: UpdatePolicy,
    pub instance_group: String,
    pub base_instance_name: String,
    /// URL-safe base64 bytes (§1.1).
    pub fingerprint: String,
    pub current_actions: ActionsSummary,
    pub status: IgmStatus,
    pub target_size: i32,
    pub list_managed_instances_results: String,
    pub self_link: String,
}

/// `ManagedInstanceVersion` (§1.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedInstanceVersion {
    pub instance_template: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptErrors {
    pub errors: Vec<AttemptError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastAttempt {
    pub errors: AttemptErrors,
}

/// `ManagedInstance` (§1.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagedInstance {
    /// Full URL of the VM (§1.2, §5.1.4).
    pub instance: String,
    /// Empty (omitted) while the VM does not exist (§1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_status: Option<String>,
    pub current_action: String,
    pub name: String,
    pub version: ManagedInstanceVersion,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<LastAttempt>,
}

/// The `listManagedInstances` answer (§1, §4.3).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListManagedInstancesResponse {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_instances: Vec<ManagedInstance>,
    /// Omitted on the last page (§5.1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
}

/// One `Operation.error.errors[]` item (§1.6: `code`, not `reason`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OperationErrorItem {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperationError {
    pub errors: Vec<OperationErrorItem>,
}

/// `Operation` (§1.6, §5.1.6).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Operation {
    pub kind: String,
    pub id: String,
    /// Always present: the SDK's poller needs it (§4.4).
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub operation_type: String,
    pub target_link: String,
    pub target_id: String,
    pub status: String,
    pub user: String,
    pub progress: i32,
    pub insert_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    pub self_link: String,
    /// The request's `requestId` (§1.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_operation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<OperationError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_error_status_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_error_message: Option<String>,
}

/// `AutoscalingPolicy` (§2), the fields the operator's pre-flight reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingPolicy {
    pub min_num_replicas: i32,
    pub max_num_replicas: i32,
    pub cool_down_period_sec: i32,
    pub mode: String,
}

/// `Autoscaler` (§2, §5.1.10).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Autoscaler {
    pub kind: String,
    pub id: String,
    pub creation_timestamp: String,
    pub name: String,
    pub target: String,
    pub autoscaling_policy: AutoscalingPolicy,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub self_link: String,
    pub status: String,
    pub recommended_size: i32,
}

/// `InstanceGroupManagersDeleteInstancesRequest` (§4.3).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteInstancesRequest {
    #[serde(default)]
    pub instances: Vec<String>,
    #[serde(default)]
    pub skip_instances_on_validation_error: Option<bool>,
}

/// The `{instances:[…]}` body of abandonInstances and recreateInstances
/// (§1.5).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancesRequest {
    #[serde(default)]
    pub instances: Vec<String>,
}

/// One `error.errors[]` item of an HTTP error (§1.7).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorItem {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    pub reason: String,
    /// Authentication errors name the header at fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_type: Option<String>,
}

/// The `error` object of an HTTP error body (§1.7).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorStatus {
    pub code: u16,
    pub message: String,
    pub errors: Vec<ErrorItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

/// `{"error": {...}}` (§1.7).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorStatus,
}

/// `Instance` (instances.get / instances.list), the fields this fake
/// models: a VM as the Compute API shows it, whichever group made it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Instance {
    pub kind: String,
    /// uint64 as a JSON string, as every Compute `id` (§1.1 "Encodings").
    pub id: String,
    /// RFC 3339 with milliseconds and the Pacific offset
    /// (`2026-12-02T11:22:33.123-08:00`), never `Z`.
    pub creation_timestamp: String,
    pub name: String,
    /// The zone's full URL.
    pub zone: String,
    pub status: String,
    pub self_link: String,
}

/// The `instances.list` answer (`InstanceList`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceList {
    pub kind: String,
    pub id: String,
    /// Omitted when nothing matched, as Google omits empty lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<Instance>,
    /// Omitted on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    pub self_link: String,
}

/// The `InstanceGroupManagersSetInstanceTemplateRequest` body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetInstanceTemplateRequest {
    #[serde(default)]
    pub instance_template: Option<String>,
}
