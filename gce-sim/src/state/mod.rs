//! The simulated project state: managed instance groups (zonal and
//! regional), their managed instances, operations and autoscalers, and the
//! timers that move instances through `currentAction` and operations
//! through `PENDING`/`RUNNING`/`DONE`. Timers run lazily: every request
//! first calls [`World::settle`] with the simulated "now".

pub mod actions;
mod autoscale;
pub mod instances;
pub mod ops;
pub mod templates;
pub mod views;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub use actions::{InstanceRef, RefError, parse_instance_ref};
pub use ops::{OpFailure, OpKey, Operation};

/// Public host of resource URLs in answers (reference §1.2: instance URLs
/// are `https://www.googleapis.com/compute/v1/projects/…`).
pub const URL_BASE: &str = "https://www.googleapis.com/compute/v1/";

/// A zone or a region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    Zone(String),
    Region(String),
}

impl Scope {
    /// `zones` or `regions`, the path segment.
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Zone(_) => "zones",
            Scope::Region(_) => "regions",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Scope::Zone(n) | Scope::Region(n) => n,
        }
    }

    /// `projects/P/zones/Z` (partial URL).
    pub fn path(&self, project: &str) -> String {
        format!("projects/{project}/{}/{}", self.kind(), self.name())
    }

    pub fn url(&self, project: &str) -> String {
        format!("{URL_BASE}{}", self.path(project))
    }
}

/// A resource in a project and a zone or region.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    pub project: String,
    pub scope: Scope,
    pub name: String,
}

impl Key {
    /// `projects/P/zones/Z/<collection>/N`: the path the API's 404 names.
    pub fn path(&self, collection: &str) -> String {
        format!(
            "{}/{collection}/{}",
            self.scope.path(&self.project),
            self.name
        )
    }

    pub fn url(&self, collection: &str) -> String {
        format!("{URL_BASE}{}", self.path(collection))
    }
}

/// `ManagedInstance.currentAction` values (reference §1.2).
pub const CURRENT_ACTIONS: &[&str] = &[
    "NONE",
    "CREATING",
    "CREATING_WITHOUT_RETRIES",
    "RECREATING",
    "DELETING",
    "ABANDONING",
    "RESTARTING",
    "REFRESHING",
    "VERIFYING",
    "RESUMING",
    "STARTING",
    "STOPPING",
    "SUSPENDING",
];

/// `ManagedInstance.instanceStatus` values (reference §1.2).
pub const INSTANCE_STATUSES: &[&str] = &[
    "PROVISIONING",
    "STAGING",
    "RUNNING",
    "STOPPING",
    "STOPPED",
    "SUSPENDING",
    "SUSPENDED",
    "TERMINATED",
    "REPAIRING",
    "PENDING",
    "PENDING_STOP",
    "DEPROVISIONING",
];

#[derive(Debug, Clone)]
pub struct Instance {
    pub name: String,
    pub zone: String,
    /// `None` while the VM does not exist yet (§1.2).
    pub id: Option<u64>,
    pub instance_status: Option<String>,
    pub current_action: String,
    /// Simulated time at which the current action ends.
    pub due_ns: Option<i64>,
    pub template: String,
    /// When the VM was created (the instance resource's
    /// `creationTimestamp`); a recreated VM is a new VM with a new time.
    pub created_ns: i64,
}

/// How `listManagedInstances` pages (§1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ListMode {
    #[default]
    #[serde(rename = "PAGELESS")]
    Pageless,
    #[serde(rename = "PAGINATED")]
    Paginated,
}

impl ListMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ListMode::Pageless => "PAGELESS",
            ListMode::Paginated => "PAGINATED",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Group {
    pub key: Key,
    pub id: u64,
    pub created_ns: i64,
    pub base_instance_name: String,
    pub description: Option<String>,
    pub template: String,
    pub target_size: i32,
    pub list_mode: ListMode,
    /// The zone of a zonal group, the distribution zones of a regional one.
    pub zones: Vec<String>,
    pub fingerprint: String,
    pub instances: BTreeMap<String, Instance>,
    /// Operations on this group that are not DONE yet.
    pub open_ops: BTreeSet<OpKey>,
    /// URL of the attached autoscaler.
    pub autoscaler: Option<String>,
    /// Simulated time `targetSize` last changed (autoscaler cool-down).
    pub changed_ns: i64,
}

impl Group {
    /// Size cap per request and per group (R-INS: 1000 zonal, 2000 regional).
    pub fn max_size(&self) -> i32 {
        match self.key.scope {
            Scope::Zone(_) => 1000,
            Scope::Region(_) => 2000,
        }
    }

    pub fn is_stable(&self) -> bool {
        self.open_ops.is_empty() && self.instances.values().all(|i| i.current_action == "NONE")
    }
}

#[derive(Debug, Clone)]
pub struct Autoscaler {
    pub id: u64,
    pub created_ns: i64,
    /// The group it scales.
    pub target: Key,
    pub min_num_replicas: i32,
    pub max_num_replicas: i32,
    pub cool_down_period_sec: i32,
    pub mode: String,
    pub recommended_size: Option<i32>,
}

/// Timings and switches; changed at run time through `/sim/config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timing {
    /// Polls (operations get/wait) an operation answers `RUNNING` before
    /// it can be `DONE`.
    pub operation_polls: u32,
    /// Simulated seconds from insert before an operation can be `DONE`.
    pub operation_duration_s: f64,
    /// Simulated seconds an instance stays `DELETING` before it is gone.
    pub delete_duration_s: f64,
    /// Simulated seconds an instance stays `ABANDONING`.
    pub abandon_duration_s: f64,
    /// Simulated seconds an instance stays `CREATING`.
    pub create_duration_s: f64,
    /// Simulated seconds an instance stays `RECREATING`.
    pub recreate_duration_s: f64,
    /// Longest real time an `operations/…/wait` call waits (the API: about
    /// two minutes, §1.6).
    pub wait_max_ms: u64,
    /// Include `error.status` in HTTP errors (§1.7: not confirmed either way).
    pub error_status: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            operation_polls: 1,
            operation_duration_s: 0.0,
            delete_duration_s: 30.0,
            abandon_duration_s: 5.0,
            create_duration_s: 30.0,
            recreate_duration_s: 60.0,
            wait_max_ms: 120_000,
            error_status: true,
        }
    }
}

pub struct World {
    pub groups: BTreeMap<Key, Group>,
    pub ops: BTreeMap<OpKey, Operation>,
    /// Operations not `DONE` yet.
    pub open_ops: BTreeSet<OpKey>,
    /// `(project, requestId)` → the operation it created (§1.4).
    pub request_ids: HashMap<(String, String), OpKey>,
    pub autoscalers: BTreeMap<Key, Autoscaler>,
    /// Full URLs of the instance templates that exist (`templates`).
    pub templates: BTreeSet<String>,
    pub timing: Timing,
    pub now: i64,
    rng: StdRng,
}

impl World {
    pub fn new(seed: Option<u64>, timing: Timing) -> World {
        World {
            groups: BTreeMap::new(),
            ops: BTreeMap::new(),
            open_ops: BTreeSet::new(),
            request_ids: HashMap::new(),
            autoscalers: BTreeMap::new(),
            templates: BTreeSet::new(),
            timing,
            now: 0,
            rng: match seed {
                Some(s) => StdRng::seed_from_u64(s),
                None => StdRng::from_os_rng(),
            },
        }
    }

    /// A 19-digit resource id, as Compute's uint64 ids look.
    pub fn new_id(&mut self) -> u64 {
        self.rng
            .random_range(1_000_000_000_000_000_000..10_000_000_000_000_000_000)
    }

    /// `n` lowercase letters and digits (MIG instance-name suffixes).
    pub fn suffix(&mut self, n: usize) -> String {
        const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| A[self.rng.random_range(0..A.len())] as char)
            .collect()
    }

    pub fn fingerprint(&mut self) -> String {
        let bytes: [u8; 8] = self.rng.random();
        base64_url(&bytes)
    }

    pub fn random_hex(&mut self, digits: usize) -> String {
        (0..digits)
            .map(|_| char::from_digit(self.rng.random_range(0..16), 16).unwrap())
            .collect()
    }

    /// Runs every timer due at `now`: instances finish their action,
    /// operations whose polls and time are used up become `DONE`.
    pub fn settle(&mut self, now: i64) {
        self.now = now.max(self.now);
        let now = self.now;
        let recreate_ids: Vec<(Key, String)> = self
            .groups
            .values_mut()
            .flat_map(|g| {
                let mut recreated = Vec::new();
                g.instances.retain(|name, i| match i.due_ns {
                    Some(due) if due <= now => match i.current_action.as_str() {
                        "DELETING" | "ABANDONING" => false,
                        "RECREATING" => {
                            recreated.push((g.key.clone(), name.clone()));
                            true
                        }
                        _ => {
                            i.current_action = "NONE".into();
                            i.instance_status = Some("RUNNING".into());
                            i.due_ns = None;
                            true
                        }
                    },
                    _ => true,
                });
                recreated
            })
            .collect();
        for (key, name) in recreate_ids {
            // A recreated VM is a new VM: a new id and creation time under
            // the same name, made from the group's current template
            // ("recreated using the group's current configuration").
            let id = self.new_id();
            let g = self.groups.get_mut(&key).expect("collected above");
            let template = g.template.clone();
            let i = g.instances.get_mut(&name).expect("collected above");
            i.id = Some(id);
            i.created_ns = now;
            i.template = template;
            i.current_action = "NONE".into();
            i.instance_status = Some("RUNNING".into());
            i.due_ns = None;
        }
        self.finish_due_operations();
        self.autoscale();
    }

    pub fn group(&self, key: &Key) -> Result<&Group, crate::error::GceError> {
        self.groups
            .get(key)
            .ok_or_else(|| crate::error::GceError::NotFound(key.path("instanceGroupManagers")))
    }

    pub fn group_mut(&mut self, key: &Key) -> Result<&mut Group, crate::error::GceError> {
        self.groups
            .get_mut(key)
            .ok_or_else(|| crate::error::GceError::NotFound(key.path("instanceGroupManagers")))
    }
}

/// URL-safe base64 with padding (the SDK decodes `fingerprint` as
/// `Base64<UrlSafe>`, §1.1).
pub fn base64_url(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
