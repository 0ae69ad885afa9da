//! The VMs themselves, as `instances.get` and `instances.list` show them
//! (zonal: `/compute/v1/projects/{p}/zones/{z}/instances[/{name}]`). Every
//! managed instance whose VM exists (it has an `id`) is a VM of its zone,
//! whichever group made it; one still being created without an id is not
//! listed, and a deleted one is listed until it is gone.
//!
//! `filter`: the Compute API evaluates two filter languages (a regular
//! expression form and AIP-160). This fake evaluates exactly one shape,
//! the one the operator sends: `name eq <regex>` (quoted or not), where the
//! regex is a name or an alternation of names, e.g. `name eq
//! "(a-1|a-2)"`. Compute reads the literal as an RE2 expression that must
//! match the whole field (the `filter` parameter's description, e.g. in
//! google-cloud-compute-v1's `model.rs`), and instance names hold no RE2 metacharacter
//! (lowercase letters, digits, `-`), so that is set membership. Every other
//! filter is refused with a `400` rather than answered unevaluated.

use super::{Instance, Key, Scope, URL_BASE, World};
use crate::clock::timestamp;
use crate::error::GceError;
use crate::wire;

/// instances.list `maxResults` default and maximum.
pub const MAX_RESULTS: u32 = 500;

/// The names a filter accepts; `None`: every instance (no filter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFilter(pub Option<Vec<String>>);

impl NameFilter {
    fn admits(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|n| n.iter().any(|x| x == name))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Parses the one filter shape this fake evaluates (module docs).
pub fn parse_filter(filter: Option<&str>) -> Result<NameFilter, GceError> {
    let Some(f) = filter.map(str::trim).filter(|f| !f.is_empty()) else {
        return Ok(NameFilter(None));
    };
    let refuse = || {
        GceError::Invalid(format!(
            "gce-sim evaluates only `name eq <name>` or `name eq \"(<name>|<name>…)\"` filters on instances.list, not: {f}"
        ))
    };
    let words: Vec<&str> = f.splitn(3, ' ').collect();
    let ["name", "eq", literal] = words.as_slice() else {
        return Err(refuse());
    };
    let literal = literal.trim();
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|q| literal.strip_prefix(*q)?.strip_suffix(*q))
        .unwrap_or(literal);
    let body = unquoted
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or(unquoted);
    let names: Vec<String> = body.split('|').map(str::to_string).collect();
    if !names.iter().all(|n| is_name(n)) {
        return Err(refuse());
    }
    Ok(NameFilter(Some(names)))
}

fn zone_url(project: &str, zone: &str) -> String {
    format!("{URL_BASE}projects/{project}/zones/{zone}")
}

fn vm(project: &str, i: &Instance, id: u64) -> wire::Instance {
    let zone = zone_url(project, &i.zone);
    wire::Instance {
        kind: "compute#instance".into(),
        id: id.to_string(),
        creation_timestamp: timestamp(i.created_ns),
        name: i.name.clone(),
        self_link: format!("{zone}/instances/{}", i.name),
        zone,
        status: i
            .instance_status
            .clone()
            .unwrap_or_else(|| "PROVISIONING".into()),
    }
}

impl World {
    /// Every VM of `project` in `zone`, in name order.
    fn vms_in(&self, project: &str, zone: &str) -> Vec<wire::Instance> {
        let mut out: Vec<wire::Instance> = (self.groups.values())
            .filter(|g| g.key.project == project)
            .flat_map(|g| g.instances.values())
            .filter(|i| i.zone == zone)
            .filter_map(|i| Some(vm(project, i, i.id?)))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The fake has no zone resources: a zone is known when a group of the
    /// project is in it, and any other is Compute's `404` for a zone that
    /// does not exist (stricter than Compute for a real zone without
    /// groups, which the operator never lists).
    fn known_zone(&self, project: &str, zone: &str) -> Result<(), GceError> {
        let known = (self.groups.values())
            .any(|g| g.key.project == project && g.zones.iter().any(|z| z == zone));
        if known {
            Ok(())
        } else {
            Err(GceError::NotFound(format!(
                "projects/{project}/zones/{zone}"
            )))
        }
    }

    /// instances.get: `key` names the VM (its scope is the zone).
    pub fn instance_view(&self, key: &Key) -> Result<wire::Instance, GceError> {
        let Scope::Zone(zone) = &key.scope else {
            return Err(GceError::NotFound(key.path("instances")));
        };
        self.vms_in(&key.project, zone)
            .into_iter()
            .find(|v| v.name == key.name)
            .ok_or_else(|| GceError::NotFound(key.path("instances")))
    }

    /// instances.list in `zone` (`key.name` unused): the VMs the filter
    /// admits, `max_results` a page (0 or absent: 500), `page_token` the
    /// hex of the first name of the page.
    pub fn instance_list(
        &self,
        project: &str,
        zone: &str,
        filter: &NameFilter,
        max_results: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<wire::InstanceList, GceError> {
        self.known_zone(project, zone)?;
        let start = match page_token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(super::views::unhex(t).ok_or_else(|| {
                GceError::Invalid(format!("Invalid value for field 'pageToken': '{t}'."))
            })?),
        };
        let max = match max_results {
            None | Some(0) => MAX_RESULTS,
            Some(m) => m,
        } as usize;
        let mut page: Vec<wire::Instance> = (self.vms_in(project, zone).into_iter())
            .filter(|v| filter.admits(&v.name))
            .filter(|v| start.as_deref().is_none_or(|s| v.name.as_str() >= s))
            .take(max + 1)
            .collect();
        let next = (page.len() > max).then(|| super::views::hex(&page[max].name));
        page.truncate(max);
        let zone_url = zone_url(project, zone);
        Ok(wire::InstanceList {
            kind: "compute#instanceList".into(),
            id: format!("projects/{project}/zones/{zone}/instances"),
            items: page,
            next_page_token: next,
            self_link: format!("{zone_url}/instances"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_the_fake_evaluates() {
        let names = |v: &[&str]| NameFilter(Some(v.iter().map(|s| s.to_string()).collect()));
        assert_eq!(parse_filter(None).unwrap(), NameFilter(None));
        assert_eq!(parse_filter(Some("")).unwrap(), NameFilter(None));
        assert_eq!(
            parse_filter(Some("name eq ci-ab12")).unwrap(),
            names(&["ci-ab12"])
        );
        assert_eq!(
            parse_filter(Some("name eq \"(ci-a|ci-b)\"")).unwrap(),
            names(&["ci-a", "ci-b"])
        );
        assert_eq!(
            parse_filter(Some("name eq 'ci-a|ci-b'")).unwrap(),
            names(&["ci-a", "ci-b"])
        );
        for refused in [
            "name eq ci-.*",
            "name ne ci-a",
            "name = ci-a",
            "(name eq ci-a) (status eq RUNNING)",
            "status eq RUNNING",
            "name eq \"(ci-a|)\"",
        ] {
            assert!(parse_filter(Some(refused)).is_err(), "{refused}");
        }
    }
}
