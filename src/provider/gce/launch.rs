//! VM creation times for `spec.maxNodeAge`, read only while a pool wants
//! them. The managed-instance listing has no time (§1.2); the instance
//! resource has `creationTimestamp` (RFC 3339, e.g.
//! `2026-12-02T11:22:33.123-08:00`: Compute answers Pacific time with
//! milliseconds).
//!
//! Which call: a VM's creation time never changes for its id (a recreated
//! VM has a new id), so each is read once and kept, and only VMs not read
//! yet are asked for. They are asked for with one `instances.list` per
//! zone filtered to their names (`name eq "(a|b|…)"`: Compute reads the
//! literal as an RE2 expression that must match the whole field, per the
//! `filter` parameter's description in google-cloud-compute-v1's
//! `model.rs`, and instance names hold only lowercase letters, digits
//! and `-`), at most
//! [`NAMES_PER_CALL`] names a call, rather than one `instances.get` per
//! VM: a reconcile that finds a few new VMs (the usual case) costs one
//! call either way, but the first reconcile of a 1,000-VM group costs 20
//! lists instead of 1,000 gets against the project's per-minute read quota,
//! and an unfiltered list would carry every VM of the zone, of every
//! group, in full (disks, networks, metadata) on every new VM.
//!
//! Times of VMs that left the group are forgotten; a VM not created yet
//! (no id) or not found is asked for again next time.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use tracing::warn;

use super::super::GroupState;
use super::GceManagedInstanceGroup;
use super::errors::GceError;
use super::mapping::Member;

/// Names in one filter: 50 names of at most 63 characters keep the
/// request URL under 4 KB once encoded.
pub const NAMES_PER_CALL: usize = 50;

#[derive(Debug, Default)]
pub(super) struct LaunchTimes {
    wanted: Mutex<bool>,
    /// Creation time by VM id.
    known: Mutex<HashMap<String, jiff::Timestamp>>,
}

impl LaunchTimes {
    pub fn want(&self, on: bool) {
        *self.wanted.lock().expect("launch times lock") = on;
    }

    /// Each instance's `launched_at` from the times known, after reading
    /// those of `members` not known yet; no call when none is wanted.
    pub async fn fill(
        &self,
        gce: &GceManagedInstanceGroup,
        members: &[Member],
        state: &mut GroupState,
    ) -> Result<(), GceError> {
        if !*self.wanted.lock().expect("launch times lock") {
            return Ok(());
        }
        let unread = {
            let mut known = self.known.lock().expect("launch times lock");
            unread(&mut known, members)
        };
        for (zone, names) in unread {
            for chunk in names.chunks(NAMES_PER_CALL) {
                let read = read_zone(gce, &zone, chunk).await?;
                self.known.lock().expect("launch times lock").extend(read);
            }
        }
        let known = self.known.lock().expect("launch times lock");
        for i in &mut state.instances {
            i.launched_at = known.get(&i.id).copied();
        }
        Ok(())
    }
}

/// Forgets the times of VMs no longer in the group and answers the names
/// of those with a VM whose time is not known, by zone.
fn unread(
    known: &mut HashMap<String, jiff::Timestamp>,
    members: &[Member],
) -> BTreeMap<String, Vec<String>> {
    let in_group: HashSet<&str> = members.iter().map(|m| m.id.as_str()).collect();
    known.retain(|id, _| in_group.contains(id.as_str()));
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in members {
        if !m.has_vm() || known.contains_key(&m.id) || !is_instance_name(&m.name) {
            continue;
        }
        if let Some(zone) = m.zone() {
            out.entry(zone).or_default().push(m.name.clone());
        }
    }
    out
}

/// Compute's instance names: lowercase letters, digits and `-` (none an
/// RE2 metacharacter, so a name is its own exact pattern).
fn is_instance_name(name: &str) -> bool {
    !name.is_empty()
        && (name.bytes()).all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The instances.list filter that answers exactly these VMs.
pub fn name_filter(names: &[String]) -> String {
    format!("name eq \"({})\"", names.join("|"))
}

/// `creationTimestamp` as a time; `None` when it is not RFC 3339.
pub fn parse_created(text: &str) -> Option<jiff::Timestamp> {
    text.parse().ok()
}

/// One filtered instances.list in `zone`, every page: (VM id, created).
async fn read_zone(
    gce: &GceManagedInstanceGroup,
    zone: &str,
    names: &[String],
) -> Result<Vec<(String, jiff::Timestamp)>, GceError> {
    let filter = name_filter(names);
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let (page, next) = gce
            .read(|| gce.api.list_instances(zone, &filter, &token))
            .await?;
        for vm in page {
            let (Some(id), Some(text)) = (vm.id, vm.creation_timestamp.as_deref()) else {
                continue;
            };
            match parse_created(text) {
                Some(at) => out.push((id.to_string(), at)),
                // Not kept: asked for again, and the VM is not called old.
                None => warn!(
                    vm_id = id,
                    creation_timestamp = text,
                    "unreadable VM creation time"
                ),
            }
        }
        match next {
            Some(t) if !t.is_empty() => token = t,
            _ => return Ok(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, name: &str, zone: &str) -> Member {
        Member {
            id: id.into(),
            name: name.into(),
            url: format!(
                "https://www.googleapis.com/compute/v1/projects/p/zones/{zone}/instances/{name}"
            ),
            current_action: "NONE".into(),
            instance_status: "RUNNING".into(),
            template: None,
        }
    }

    #[test]
    fn only_vms_not_read_yet_are_asked_for_by_zone_and_gone_ones_are_forgotten() {
        let t: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut known: HashMap<String, jiff::Timestamp> =
            [("111".to_string(), t), ("999".to_string(), t)].into();
        let members = [
            member("111", "ci-a", "us-central1-a"),
            member("222", "ci-b", "us-central1-a"),
            member("333", "ci-c", "us-central1-b"),
            // Not created yet: its name stands in for the id.
            member("ci-d", "ci-d", "us-central1-a"),
        ];
        let asked = unread(&mut known, &members);
        assert_eq!(
            asked,
            BTreeMap::from([
                ("us-central1-a".to_string(), vec!["ci-b".to_string()]),
                ("us-central1-b".to_string(), vec!["ci-c".to_string()]),
            ])
        );
        assert_eq!(
            known.keys().collect::<Vec<_>>(),
            vec!["111"],
            "999 left the group"
        );
        // Everything known: no call at all.
        known.insert("222".into(), t);
        known.insert("333".into(), t);
        assert!(unread(&mut known, &members).is_empty());
    }

    #[test]
    fn the_filter_names_exactly_the_vms() {
        let names = vec!["ci-ab12".to_string(), "ci-cd34".to_string()];
        assert_eq!(name_filter(&names), "name eq \"(ci-ab12|ci-cd34)\"");
        // A name with an RE2 metacharacter is never a Compute name: skipped.
        assert!(!is_instance_name("ci.*"));
        assert!(is_instance_name("ci-0a"));
    }

    #[test]
    fn creation_timestamps_are_read_with_their_offset() {
        let at = parse_created("2026-12-02T11:22:33.123-08:00").unwrap();
        assert_eq!(at, "2026-12-02T19:22:33.123Z".parse().unwrap());
        assert_eq!(
            parse_created("2026-07-02T11:22:33.000-07:00").unwrap(),
            "2026-07-02T18:22:33Z".parse().unwrap()
        );
        assert_eq!(parse_created("yesterday"), None);
    }
}
