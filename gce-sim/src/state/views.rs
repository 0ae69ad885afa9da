//! State to wire JSON: the InstanceGroupManager (§1.1), its managed
//! instances with PAGELESS/PAGINATED listing (§1.2, §1.3, §5.1.2), and the
//! Autoscaler (§2).

use super::{Group, Instance, Key, ListMode, Scope, URL_BASE, World};
use crate::clock::timestamp;
use crate::error::GceError;
use crate::wire;

/// listManagedInstances' `maxResults` default and maximum (§1.3).
pub const MAX_RESULTS: u32 = 500;

fn actions(g: &Group) -> wire::ActionsSummary {
    let mut s = wire::ActionsSummary::default();
    for i in g.instances.values() {
        let slot = match i.current_action.as_str() {
            "NONE" => &mut s.none,
            "CREATING" => &mut s.creating,
            "CREATING_WITHOUT_RETRIES" => &mut s.creating_without_retries,
            "VERIFYING" => &mut s.verifying,
            "RECREATING" => &mut s.recreating,
            "DELETING" => &mut s.deleting,
            "ABANDONING" => &mut s.abandoning,
            "RESTARTING" => &mut s.restarting,
            "REFRESHING" => &mut s.refreshing,
            "SUSPENDING" => &mut s.suspending,
            "RESUMING" => &mut s.resuming,
            "STOPPING" => &mut s.stopping,
            "STARTING" => &mut s.starting,
            _ => continue,
        };
        *slot += 1;
    }
    s
}

fn instance_url(project: &str, i: &Instance) -> String {
    format!(
        "{URL_BASE}projects/{project}/zones/{}/instances/{}",
        i.zone, i.name
    )
}

/// A template name or URL as a full URL.
pub fn template_url(project: &str, t: &str) -> String {
    if t.starts_with("https://") {
        t.to_string()
    } else if t.starts_with("projects/") {
        format!("{URL_BASE}{t}")
    } else {
        format!("{URL_BASE}projects/{project}/global/instanceTemplates/{t}")
    }
}

/// The API's default update policy: opportunistic; a regional group
/// redistributes proactively and may surge by one VM per zone.
fn update_policy(g: &Group) -> wire::UpdatePolicy {
    let (redistribution, surge) = match g.key.scope {
        Scope::Zone(_) => (None, 1),
        Scope::Region(_) => (Some("PROACTIVE".to_string()), g.zones.len() as i32),
    };
    let fixed = |n| wire::FixedOrPercent {
        fixed: Some(n),
        calculated: n,
    };
    wire::UpdatePolicy {
        kind: "OPPORTUNISTIC".into(),
        instance_redistribution_type: redistribution,
        minimal_action: "REPLACE".into(),
        max_surge: fixed(surge),
        max_unavailable: fixed(surge),
        replacement_method: "SUBSTITUTE".into(),
    }
}

impl World {
    pub fn igm_view(&self, key: &Key) -> Result<wire::InstanceGroupManager, GceError> {
        let g = self.group(key)?;
        let scope_url = key.scope.url(&key.project);
        let (zone, region, distribution_policy) = match &key.scope {
            Scope::Zone(_) => (Some(scope_url), None, None),
            Scope::Region(_) => (
                None,
                Some(scope_url),
                Some(wire::DistributionPolicy {
                    zones: g
                        .zones
                        .iter()
                        .map(|z| wire::ZoneRef {
                            zone: format!("{URL_BASE}projects/{}/zones/{z}", key.project),
                        })
                        .collect(),
                    target_shape: "EVEN".into(),
                }),
            ),
        };
        Ok(wire::InstanceGroupManager {
            kind: "compute#instanceGroupManager".into(),
            id: g.id.to_string(),
            creation_timestamp: timestamp(g.created_ns),
            name: key.name.clone(),
            description: g.description.clone(),
            zone,
            region,
            distribution_policy,
            instance_template: g.template.clone(),
            versions: vec![wire::IgmVersion {
                instance_template: g.template.clone(),
                name: None,
                target_size: wire::FixedOrPercent {
                    fixed: None,
                    calculated: g.target_size,
                },
            }],
            update_policy: update_policy(g),
            instance_group: key.url("instanceGroups"),
            base_instance_name: g.base_instance_name.clone(),
            fingerprint: g.fingerprint.clone(),
            current_actions: actions(g),
            status: wire::IgmStatus {
                is_stable: g.is_stable(),
                // "all instances are in their target version": false
                // after setInstanceTemplate until every VM is recreated.
                version_target: wire::VersionTarget {
                    is_reached: g.instances.values().all(|i| i.template == g.template),
                },
                stateful: wire::StatefulStatus {
                    has_stateful_config: false,
                    per_instance_configs: wire::PerInstanceConfigs {
                        all_effective: true,
                    },
                },
                autoscaler: g.autoscaler.clone(),
            },
            target_size: g.target_size,
            list_managed_instances_results: g.list_mode.as_str().into(),
            self_link: key.url("instanceGroupManagers"),
        })
    }

    fn managed_instance(project: &str, i: &Instance) -> wire::ManagedInstance {
        wire::ManagedInstance {
            instance: instance_url(project, i),
            id: i.id.map(|id| id.to_string()),
            instance_status: i.instance_status.clone(),
            current_action: i.current_action.clone(),
            name: i.name.clone(),
            version: wire::ManagedInstanceVersion {
                instance_template: i.template.clone(),
            },
            last_attempt: None,
        }
    }

    /// Every managed instance of the group, in name order (for `/sim/`).
    pub fn all_managed(&self, key: &Key) -> Result<Vec<wire::ManagedInstance>, GceError> {
        let g = self.group(key)?;
        Ok(g.instances
            .values()
            .map(|i| Self::managed_instance(&key.project, i))
            .collect())
    }

    /// One page of managed instances. PAGELESS ignores `max_results` and
    /// `page_token` (§1.3); PAGINATED honours both. The page token is the
    /// hex of the first name of the next page (opaque to clients).
    pub fn list_managed(
        &self,
        key: &Key,
        max_results: Option<u32>,
        page_token: Option<&str>,
    ) -> Result<wire::ListManagedInstancesResponse, GceError> {
        let g = self.group(key)?;
        let all = g.instances.values();
        if g.list_mode == ListMode::Pageless {
            return Ok(wire::ListManagedInstancesResponse {
                managed_instances: all
                    .map(|i| Self::managed_instance(&key.project, i))
                    .collect(),
                next_page_token: None,
            });
        }
        let start = match page_token.filter(|t| !t.is_empty()) {
            None => None,
            Some(t) => Some(unhex(t).ok_or_else(|| {
                GceError::Invalid(format!("Invalid value for field 'pageToken': '{t}'."))
            })?),
        };
        let max = match max_results {
            None | Some(0) => MAX_RESULTS,
            Some(m) => m,
        } as usize;
        let mut page: Vec<&Instance> = all
            .filter(|i| start.as_deref().is_none_or(|s| i.name.as_str() >= s))
            .take(max + 1)
            .collect();
        let next = (page.len() > max).then(|| hex(&page[max].name));
        page.truncate(max);
        Ok(wire::ListManagedInstancesResponse {
            managed_instances: page
                .into_iter()
                .map(|i| Self::managed_instance(&key.project, i))
                .collect(),
            next_page_token: next,
        })
    }

    pub fn autoscaler_view(&self, key: &Key) -> Result<wire::Autoscaler, GceError> {
        let a = self
            .autoscalers
            .get(key)
            .ok_or_else(|| GceError::NotFound(key.path("autoscalers")))?;
        let target_size = self
            .groups
            .get(&a.target)
            .map(|g| g.target_size)
            .unwrap_or_default();
        let scope_url = key.scope.url(&key.project);
        let (zone, region) = match key.scope {
            Scope::Zone(_) => (Some(scope_url), None),
            Scope::Region(_) => (None, Some(scope_url)),
        };
        Ok(wire::Autoscaler {
            kind: "compute#autoscaler".into(),
            id: a.id.to_string(),
            creation_timestamp: timestamp(a.created_ns),
            name: key.name.clone(),
            target: a.target.url("instanceGroupManagers"),
            autoscaling_policy: wire::AutoscalingPolicy {
                min_num_replicas: a.min_num_replicas,
                max_num_replicas: a.max_num_replicas,
                cool_down_period_sec: a.cool_down_period_sec,
                mode: a.mode.clone(),
            },
            zone,
            region,
            self_link: key.url("autoscalers"),
            status: "ACTIVE".into(),
            recommended_size: a.recommendation(target_size),
        })
    }
}

pub(super) fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Option<String> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
