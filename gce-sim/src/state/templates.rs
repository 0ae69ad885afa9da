//! Instance templates, as far as a group uses them: the templates that
//! exist (each group's own at creation, and those made with
//! `POST /sim/instance_templates`), and
//! `instanceGroupManagers.setInstanceTemplate`, which changes what the
//! group creates from now on. The group's update policy is opportunistic
//! (`views::update_policy`), so its VMs keep their template
//! (`version.instanceTemplate`) until they are recreated or new ones are
//! made; then `status.versionTarget.isReached` is false.

use super::views::template_url;
use super::{Key, OpFailure, OpKey, URL_BASE, World};
use crate::error::GceError;

/// `projects/P/global/instanceTemplates/N` or
/// `projects/P/regions/R/instanceTemplates/N`, from a full URL, that
/// partial form or `global/instanceTemplates/N` (Compute takes full and
/// partial URLs for a resource reference); `None` for anything else.
pub fn template_path(project: &str, reference: &str) -> Option<String> {
    let rest = reference.strip_prefix(URL_BASE).unwrap_or(reference);
    let segs: Vec<&str> = rest.split('/').collect();
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    match segs.as_slice() {
        ["projects", p, "global", "instanceTemplates", n] if ok(p) && ok(n) => {
            Some(format!("projects/{p}/global/instanceTemplates/{n}"))
        }
        ["projects", p, "regions", r, "instanceTemplates", n] if ok(p) && ok(r) && ok(n) => {
            Some(format!("projects/{p}/regions/{r}/instanceTemplates/{n}"))
        }
        ["global", "instanceTemplates", n] if ok(n) => {
            Some(format!("projects/{project}/global/instanceTemplates/{n}"))
        }
        _ => None,
    }
}

impl World {
    /// Records that the template at `url` (full URL) exists.
    pub fn add_template(&mut self, url: &str) {
        self.templates.insert(url.to_string());
    }

    /// setInstanceTemplate on `key`: a malformed reference is a `400`, a
    /// template that does not exist a `404` naming it; otherwise the group
    /// creates from `reference` from now on (`instanceTemplate` and its
    /// one version), and nothing happens to its VMs.
    pub fn set_instance_template(
        &mut self,
        key: &Key,
        reference: Option<&str>,
        request_id: Option<&str>,
        injected: Option<OpFailure>,
    ) -> Result<OpKey, GceError> {
        self.group(key)?;
        if let Some(op) = self.replayed(&key.project, request_id) {
            return Ok(op);
        }
        let reference = reference.filter(|r| !r.is_empty()).ok_or_else(|| {
            GceError::Invalid("Required field 'instance_template' not specified".into())
        })?;
        let path = template_path(&key.project, reference).ok_or_else(|| {
            GceError::Invalid(format!(
                "Invalid value for field 'resource.instanceTemplate': '{reference}'. The URL is malformed."
            ))
        })?;
        let url = template_url(&key.project, &path);
        if !self.templates.contains(&url) {
            return Err(GceError::NotFound(path));
        }
        if injected.is_none() {
            let g = self.group_mut(key)?;
            g.template = url;
        }
        Ok(self.new_operation(key, "setInstanceTemplate", request_id, injected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_references() {
        let global = "projects/p/global/instanceTemplates/ci-v2";
        assert_eq!(template_path("p", global).as_deref(), Some(global));
        assert_eq!(
            template_path("p", &format!("{URL_BASE}{global}")).as_deref(),
            Some(global)
        );
        assert_eq!(
            template_path("p", "global/instanceTemplates/ci-v2").as_deref(),
            Some(global)
        );
        assert_eq!(
            template_path("p", "projects/p/regions/us-central1/instanceTemplates/t").as_deref(),
            Some("projects/p/regions/us-central1/instanceTemplates/t")
        );
        for bad in [
            "ci-v2",
            "projects/p/instanceTemplates/x",
            "global/instanceTemplates/X",
            "",
        ] {
            assert_eq!(template_path("p", bad), None, "{bad}");
        }
    }
}
