//! The cloud instance group a pool's VMs live in: one kind per cloud,
//! exactly one set (CEL), each with the limits its API enforces.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{LifecycleHookSpec, SecretRef};

/// The cloud instance group holding the pool's VMs. Exactly one kind is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.awsAutoScalingGroup), has(self.gceManagedInstanceGroup)].filter(x, x).size() == 1").message("provider must set exactly one of: awsAutoScalingGroup, gceManagedInstanceGroup"))]
pub struct ProviderSpec {
    /// An AWS EC2 Auto Scaling group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_auto_scaling_group: Option<AwsAutoScalingGroup>,
    /// A Google Compute Engine managed instance group, zonal or regional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gce_managed_instance_group: Option<GceManagedInstanceGroup>,
}

/// A Google Compute Engine managed instance group (MIG). Exactly one of
/// `zone` (a zonal group) or `region` (a regional group) is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.zone) != has(self.region)").message("provider.gceManagedInstanceGroup must set exactly one of zone (a zonal group) or region (a regional group)"))]
pub struct GceManagedInstanceGroup {
    /// Google Cloud project ID that owns the group, e.g. `ci-prod-123456`.
    #[schemars(length(min = 6, max = 30))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z][a-z0-9-]{4,28}[a-z0-9]$')").message("provider.gceManagedInstanceGroup.project must be a project ID such as ci-prod-123456 (not the project number or display name)"))]
    pub project: String,
    /// Zone of a zonal group, e.g. `us-central1-a`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]+-[a-z]+[0-9]+-[a-z]$')").message("provider.gceManagedInstanceGroup.zone must be a zone such as us-central1-a"))]
    pub zone: Option<String>,
    /// Region of a regional group, e.g. `us-central1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]+-[a-z]+[0-9]+$')").message("provider.gceManagedInstanceGroup.region must be a region such as us-central1"))]
    pub region: Option<String>,
    /// Instance group manager name.
    #[schemars(length(min = 1, max = 63))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("provider.gceManagedInstanceGroup.name must be a lower-case Compute Engine resource name"))]
    pub name: String,
    /// Compute API endpoint override (tests, Private Service Connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://')").message("provider.gceManagedInstanceGroup.endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    /// Secret whose key `key.json` holds a service-account key (the JSON file
    /// `gcloud iam service-accounts keys create` writes). Unset: Application
    /// Default Credentials (Workload Identity Federation for GKE, the
    /// metadata server, `GOOGLE_APPLICATION_CREDENTIALS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
}

/// An AWS EC2 Auto Scaling group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AwsAutoScalingGroup {
    /// Auto Scaling group name.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// AWS region of the group, e.g. `us-east-1`.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]{2}(-[a-z]+)+-[0-9]+$')").message("provider.awsAutoScalingGroup.region must be an AWS region such as us-east-1"))]
    pub region: String,
    /// Auto Scaling API endpoint override (tests, VPC endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.matches('^https?://')").message("provider.awsAutoScalingGroup.endpoint must be an http:// or https:// URL"))]
    pub endpoint: Option<String>,
    /// Secret with `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally
    /// `AWS_SESSION_TOKEN`. Unset: the standard AWS chain (IRSA, environment, IMDS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// The group's terminating lifecycle hook: terminations the group starts
    /// itself wait in `Terminating:Wait` until the client is drained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_hook: Option<LifecycleHookSpec>,
    /// Terminate up to 20 drained VMs per call instead of one: tag them,
    /// detach them from the group (`DetachInstances`, with the capacity
    /// change), then EC2 `TerminateInstances`. For large pools, where one
    /// `TerminateInstanceInAutoScalingGroup` per VM is what limits how fast
    /// drained VMs go. Needs `autoscaling:DetachInstances`,
    /// `autoscaling:DescribeLifecycleHooks`, `ec2:CreateTags`,
    /// `ec2:DeleteTags`, `ec2:DescribeInstances` and
    /// `ec2:TerminateInstances`. A detach runs no terminating lifecycle
    /// hook, so while the group has one other than `lifecycleHook`, VMs go
    /// one by one as without this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch_terminations: bool,
}
