//! The mutating group calls: deleteInstances, abandonInstances,
//! recreateInstances and resize (reference §1.4, §1.5, §5.1.5). Each one
//! validates, applies its effect when accepted (instances get their
//! `currentAction`, `targetSize` changes) and returns an Operation that
//! reaches `DONE` later. A failed operation (validation or injected) has
//! no effect. A replayed `requestId` returns the first call's operation
//! and does nothing else.

use std::collections::BTreeSet;

use super::{Group, Instance, Key, OpFailure, OpKey, World};
use crate::clock::secs;
use crate::error::GceError;

/// A parsed instance reference: project (when given), zone, name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    pub project: Option<String>,
    pub zone: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error("not an instance URL")]
    Malformed,
}

/// Hosts whose full URLs name Compute resources (§1.2: `www.googleapis.com`,
/// `compute.googleapis.com`; CA tests use `content.googleapis.com`).
const URL_PREFIXES: &[&str] = &[
    "https://www.googleapis.com/compute/v1/",
    "https://compute.googleapis.com/compute/v1/",
    "https://content.googleapis.com/compute/v1/",
];

fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && !n.ends_with('-')
}

/// Accepts a full URL, `projects/P/zones/Z/instances/N` or
/// `zones/Z/instances/N` (R-DEL, DISCO).
pub fn parse_instance_ref(s: &str) -> Result<InstanceRef, RefError> {
    let rest = URL_PREFIXES
        .iter()
        .find_map(|p| s.strip_prefix(p))
        .unwrap_or(s);
    let segs: Vec<&str> = rest.split('/').collect();
    let (project, zone, name) = match segs.as_slice() {
        ["projects", p, "zones", z, "instances", n] => (Some(p.to_string()), *z, *n),
        ["zones", z, "instances", n] => (None, *z, *n),
        _ => return Err(RefError::Malformed),
    };
    if !valid_name(zone) || !valid_name(name) || project.as_deref().is_some_and(str::is_empty) {
        return Err(RefError::Malformed);
    }
    Ok(InstanceRef {
        project,
        zone: zone.to_string(),
        name: name.to_string(),
    })
}

/// Which group call, for validation and effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Delete,
    Abandon,
    Recreate,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Delete => "deleteInstances",
            Verb::Abandon => "abandonInstances",
            Verb::Recreate => "recreateInstances",
        }
    }
}

/// Resolves the request's instance references against the group: a
/// malformed URL, another project or a zone outside the group always fails
/// the request (DISCO), as a `400 invalid`.
fn resolve(g: &Group, refs: &[String]) -> Result<BTreeSet<String>, GceError> {
    if refs.is_empty() {
        return Err(GceError::Invalid(
            "Required field 'instances' not specified".into(),
        ));
    }
    if refs.len() > 1000 {
        return Err(GceError::Invalid(format!(
            "Invalid value for field 'instances': the request lists {} instances; at most 1000 are allowed.",
            refs.len()
        )));
    }
    let mut names = BTreeSet::new();
    for (i, s) in refs.iter().enumerate() {
        let bad = |why: &str| {
            GceError::Invalid(format!(
                "Invalid value for field 'instances[{i}]': '{s}'. {why}"
            ))
        };
        let r = parse_instance_ref(s).map_err(|_| bad("Malformed instance URL."))?;
        if r.project.as_deref().is_some_and(|p| p != g.key.project) {
            return Err(bad("The instance is in another project than the group."));
        }
        if !g.zones.contains(&r.zone) {
            return Err(bad("The instance is in a zone other than the group's."));
        }
        names.insert(r.name);
    }
    Ok(names)
}

/// Members that can take the action, and the names that cannot (not a
/// member, or already `DELETING`/`ABANDONING`: §1.4).
fn split_members(g: &Group, names: BTreeSet<String>) -> (Vec<String>, Vec<String>) {
    names.into_iter().partition(|n| {
        g.instances
            .get(n)
            .is_some_and(|i| !matches!(i.current_action.as_str(), "DELETING" | "ABANDONING"))
    })
}

impl World {
    /// deleteInstances, abandonInstances or recreateInstances on `key`.
    /// `skip` is `skipInstancesOnValidationError` (deleteInstances only).
    pub fn act_on_instances(
        &mut self,
        key: &Key,
        verb: Verb,
        refs: &[String],
        skip: bool,
        request_id: Option<&str>,
        injected: Option<OpFailure>,
    ) -> Result<OpKey, GceError> {
        let g = self.group(key)?;
        if let Some(op) = self.replayed(&key.project, request_id) {
            return Ok(op);
        }
        let names = resolve(g, refs)?;
        let (act, invalid) = split_members(g, names);
        let failure = match (injected, invalid.first()) {
            (Some(f), _) => Some(f),
            // The operation fails (DISCO); how is not documented (§6): the
            // fake answers with the CA fixture's precondition failure.
            (None, Some(name)) if !skip => Some(OpFailure {
                code: "CONDITION_NOT_MET".into(),
                message: format!(
                    "Instance '{name}' is not a member of '{}' or is already being deleted or abandoned.",
                    key.path("instanceGroupManagers")
                ),
                http_status: 412,
                http_message: "PRECONDITION FAILED".into(),
            }),
            (None, _) => None,
        };
        if failure.is_none() {
            self.apply(key, verb, &act);
        }
        Ok(self.new_operation(key, verb.name(), request_id, failure))
    }

    fn apply(&mut self, key: &Key, verb: Verb, names: &[String]) {
        let t = self.timing.clone();
        let now = self.now;
        let g = self.groups.get_mut(key).expect("checked by the caller");
        for n in names {
            let i = g.instances.get_mut(n).expect("a member");
            let (action, dur) = match verb {
                Verb::Delete => ("DELETING", t.delete_duration_s),
                Verb::Abandon => ("ABANDONING", t.abandon_duration_s),
                Verb::Recreate => ("RECREATING", t.recreate_duration_s),
            };
            i.current_action = action.into();
            if verb != Verb::Abandon && i.instance_status.is_some() {
                i.instance_status = Some("STOPPING".into());
            }
            i.due_ns = Some(now + secs(dur));
        }
        if verb != Verb::Recreate && !names.is_empty() {
            // "reduces the targetSize … by the number of instances" (R-DEL).
            g.target_size = (g.target_size - names.len() as i32).max(0);
            g.changed_ns = now;
        }
    }

    /// resize to `size` (R-RSZ): grows with `CREATING` instances, shrinks
    /// by deleting instances the group picks (creating ones first).
    pub fn resize(
        &mut self,
        key: &Key,
        size: i64,
        request_id: Option<&str>,
        injected: Option<OpFailure>,
    ) -> Result<OpKey, GceError> {
        let g = self.group(key)?;
        if let Some(op) = self.replayed(&key.project, request_id) {
            return Ok(op);
        }
        if size < 0 || size > i64::from(g.max_size()) {
            return Err(GceError::Invalid(format!(
                "Invalid value for field 'size': '{size}'. Must be between 0 and {}.",
                g.max_size()
            )));
        }
        if injected.is_none() {
            self.apply_resize(key, size as i32);
        }
        Ok(self.new_operation(key, "resize", request_id, injected))
    }

    pub(super) fn apply_resize(&mut self, key: &Key, size: i32) {
        let g = &self.groups[key];
        let mut live: Vec<(bool, String)> = g
            .instances
            .values()
            .filter(|i| !matches!(i.current_action.as_str(), "DELETING" | "ABANDONING"))
            .map(|i| (i.current_action != "CREATING", i.name.clone()))
            .collect();
        let have = live.len() as i32;
        if size > have {
            let due = self.now + secs(self.timing.create_duration_s);
            for _ in have..size {
                self.add_instance(key, None, None, "CREATING", Some(due));
            }
        } else if size < have {
            // Instances still being created go first, then by name.
            live.sort();
            let victims: Vec<String> = live
                .into_iter()
                .take((have - size) as usize)
                .map(|(_, n)| n)
                .collect();
            let before = self.groups[key].target_size;
            self.apply(key, Verb::Delete, &victims);
            self.groups.get_mut(key).expect("exists").target_size = before;
        }
        let g = self.groups.get_mut(key).expect("exists");
        if g.target_size != size {
            g.changed_ns = self.now;
        }
        g.target_size = size;
    }

    /// Adds a managed instance (`name` default: base name + 4 characters;
    /// `zone` default: the group's zone with the fewest instances).
    ///
    /// A generated name is drawn again while it is taken (see
    /// [`World::instance_name_taken`]): 4 characters of 36 give even odds of
    /// a repeat among about 1,500 draws (a 1,000-instance group repeats one
    /// about a quarter of the time), and a repeat replaced an instance in
    /// the group's map while `targetSize` counted both.
    pub fn add_instance(
        &mut self,
        key: &Key,
        name: Option<String>,
        zone: Option<String>,
        current_action: &str,
        due_ns: Option<i64>,
    ) -> String {
        let id = self.new_id();
        let mut suffix = self.suffix(4);
        let g = &self.groups[key];
        let base = g.base_instance_name.clone();
        let zone = zone.unwrap_or_else(|| {
            g.zones
                .iter()
                .min_by_key(|z| g.instances.values().filter(|i| &i.zone == *z).count())
                .cloned()
                .expect("a group has a zone")
        });
        let name = match name {
            Some(n) => n,
            None => loop {
                let n = format!("{base}-{suffix}");
                if !self.instance_name_taken(key, &zone, &n) {
                    break n;
                }
                suffix = self.suffix(4);
            },
        };
        let g = self.groups.get_mut(key).expect("exists");
        let status = if current_action == "CREATING" {
            "PROVISIONING"
        } else {
            "RUNNING"
        };
        g.instances.insert(
            name.clone(),
            Instance {
                name: name.clone(),
                zone,
                id: Some(id),
                instance_status: Some(status.into()),
                current_action: current_action.into(),
                due_ns,
                template: g.template.clone(),
                created_ns: self.now,
            },
        );
        name
    }

    /// Whether a new instance of `group` in `zone` cannot be named `name`:
    /// instance names are unique per project and zone, and a group keys its
    /// instances by name whatever their zone (a regional group).
    pub fn instance_name_taken(&self, group: &Key, zone: &str, name: &str) -> bool {
        self.groups
            .values()
            .filter(|g| g.key.project == group.project)
            .any(|g| {
                g.instances
                    .get(name)
                    .is_some_and(|i| g.key == *group || i.zone == zone)
            })
    }
}
