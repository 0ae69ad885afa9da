//! Pure translations between the Compute API's managed-instance vocabulary
//! and the provider trait's: lifecycle states, instance identities, the
//! owner tag, request IDs. No I/O, so every rule is unit-tested
//! (`gce/tests.rs`). Sections (§N) refer to `shared/reference/gce-mig.md`.

use google_cloud_compute_v1::model::managed_instance::{CurrentAction, InstanceStatus};
use google_cloud_compute_v1::model::{InstanceGroupManager, ManagedInstance};

use super::super::{InstanceState, LaunchSpec, Lifecycle, OWNER_TAG};

/// A managed instance as the provider needs it: the VM id (the value of the
/// Nomad fingerprint `unique.platform.gce.id`, §2.1), its name, the URL
/// deleteInstances takes, and its two state fields by their API names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// `ManagedInstance.id`, or the instance name when the VM does not exist
    /// yet ("empty when instance does not exist", §1.2). Instance names start
    /// with a letter, so they never collide with a numeric VM id.
    pub id: String,
    pub name: String,
    pub url: String,
    pub current_action: String,
    pub instance_status: String,
    /// `version.instanceTemplate`: the template the VM was created (or
    /// last updated) from.
    pub template: Option<LaunchSpec>,
}

impl Member {
    pub fn from_api(m: &ManagedInstance) -> Option<Self> {
        let name = m.name.clone()?;
        Some(Self {
            id: m.id.map_or_else(|| name.clone(), |id| id.to_string()),
            url: m.instance.clone().unwrap_or_default(),
            name,
            current_action: m
                .current_action
                .as_ref()
                .and_then(CurrentAction::name)
                .unwrap_or("NONE")
                .to_owned(),
            instance_status: m
                .instance_status
                .as_ref()
                .and_then(InstanceStatus::name)
                .unwrap_or("")
                .to_owned(),
            template: (m.version.as_ref())
                .and_then(|v| v.instance_template.as_deref())
                .map(instance_template),
        })
    }

    pub fn lifecycle(&self) -> Lifecycle {
        lifecycle(&self.current_action, &self.instance_status)
    }

    /// Whether the VM exists: it has a (numeric) VM id, not its name
    /// standing in for one.
    pub fn has_vm(&self) -> bool {
        !self.id.is_empty() && self.id.bytes().all(|b| b.is_ascii_digit())
    }

    /// The zone from the instance URL (`…/zones/{zone}/instances/{name}`).
    pub fn zone(&self) -> Option<String> {
        zone_of(&self.url)
    }

    pub fn to_state(&self) -> InstanceState {
        InstanceState {
            id: self.id.clone(),
            lifecycle: self.lifecycle(),
            // A MIG has no per-instance scale-in protection (§2).
            protected_from_scale_in: false,
            zone: self.zone(),
            healthy: self.instance_status == "RUNNING",
            // Not in the managed-instance listing (§1.2): `launch` fills
            // it in from the instance resource when it is wanted.
            launched_at: None,
            launch_spec: self.template.clone(),
        }
    }
}

/// Fold `currentAction` and `instanceStatus` (§1.2) into [`Lifecycle`].
///
/// Only `NONE` + `RUNNING` is in service: that is what the Nomad Autoscaler
/// picks victims from (§3). Both actions that end this VM (`DELETING`, and
/// `RECREATING`, after which the name carries a new VM id) are
/// `Terminating`, so a second terminate never follows. `ABANDONING` leaves
/// the group with the VM alive, as AWS `Detaching` does. A stopped or
/// suspended VM with no action is a standby-pool member (§2). Anything else
/// keeps its API names, `ACTION/STATUS`.
pub fn lifecycle(current_action: &str, instance_status: &str) -> Lifecycle {
    match (current_action, instance_status) {
        ("DELETING" | "RECREATING", _) => Lifecycle::Terminating,
        ("ABANDONING", _) => Lifecycle::Detaching,
        ("CREATING" | "CREATING_WITHOUT_RETRIES" | "VERIFYING", _) => Lifecycle::Pending,
        ("NONE", "RUNNING") => Lifecycle::InService,
        ("NONE", "PROVISIONING" | "STAGING" | "PENDING") => Lifecycle::Pending,
        ("NONE", "STOPPED" | "SUSPENDED") => Lifecycle::Standby,
        (action, status) => Lifecycle::Other(format!("{action}/{status}")),
    }
}

/// The zone in a Compute resource URL or partial URL.
pub fn zone_of(url: &str) -> Option<String> {
    let rest = url.split("/zones/").nth(1)?;
    let zone = rest.split('/').next()?;
    (!zone.is_empty()).then(|| zone.to_owned())
}

/// An instance template URL as a [`LaunchSpec`]: its path from
/// `projects/` on, so the same template read through another host name
/// (`compute.googleapis.com`, `www.googleapis.com`) or as a relative path
/// compares equal.
pub fn instance_template(url: &str) -> LaunchSpec {
    let path = url.find("projects/").map_or(url, |at| &url[at..]);
    LaunchSpec::InstanceTemplate(path.to_owned())
}

/// What the group creates VMs from now: every version's template while
/// `versions[]` is set (a canary rollout runs two), else the group's
/// `instanceTemplate`.
pub fn group_templates(igm: &InstanceGroupManager) -> Vec<LaunchSpec> {
    let versions: Vec<LaunchSpec> = (igm.versions.iter())
        .filter_map(|v| v.instance_template.as_deref())
        .map(instance_template)
        .collect();
    if !versions.is_empty() {
        return versions;
    }
    igm.instance_template
        .as_deref()
        .map(instance_template)
        .into_iter()
        .collect()
}

/// The last path segment of a resource URL (an autoscaler's name from the
/// group's `status.autoscaler`).
pub fn last_segment(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}

/// A MIG has no labels or tags (§1.1), so its owner says which pool drives
/// it in the group's `description` (set when the group is created), as one
/// whitespace-separated word `nomadpool.dev/pool=<namespace>/<name>`. The
/// first such word counts.
pub fn owner_from_description(description: &str) -> Option<String> {
    description
        .split_whitespace()
        .find_map(|w| w.strip_prefix(OWNER_TAG)?.strip_prefix('='))
        .map(str::to_owned)
}

/// What a terminate asks the group to do; part of its request ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// deleteInstances: the VM goes and `targetSize` drops by one.
    Shrink,
    /// recreateInstances: the VM is replaced under the same name.
    Replace,
}

impl Intent {
    pub fn verb(self) -> &'static str {
        match self {
            Intent::Shrink => "deleteInstances",
            Intent::Replace => "recreateInstances",
        }
    }
}

/// The `requestId` for one intent on one VM of one group: a UUID derived
/// from them, so that a call repeated after a crash or a lost answer carries
/// the same ID and "the server will know to ignore the request if it has
/// already been completed" (§1.4). The VM id (not the name) goes in, so a
/// VM recreated under the same name gets a new ID. The hash is FNV-1a
/// (128-bit), written out here because it must not change between builds:
/// an operator upgraded between a call and its retry must send the same ID.
pub fn request_id(group_path: &str, vm_id: &str, intent: Intent) -> String {
    request_id_attempt(group_path, vm_id, intent, 0)
}

/// As [`request_id`], for the `attempt`-th try after as many Operations
/// for the same intent ended `DONE` with an error. Compute answers a
/// repeated `requestId` with the first call's Operation, failed or not, so
/// a retry after a failure known to have changed nothing needs a new ID;
/// attempt 0 is [`request_id`] itself.
pub fn request_id_attempt(group_path: &str, vm_id: &str, intent: Intent, attempt: u32) -> String {
    const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013B;
    let mut h = OFFSET;
    let attempt = (attempt > 0).then(|| attempt.to_string());
    for part in [group_path, vm_id, intent.verb()]
        .into_iter()
        .chain(attempt.as_deref())
    {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u128::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    // RFC 9562 version 8 (custom) with the RFC variant: never all-zero,
    // which Compute refuses (§1.4).
    let mut bytes = h.to_be_bytes();
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
