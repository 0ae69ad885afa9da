//! Launch facts of the group's VMs, read from EC2 only while a pool feature
//! needs them (`spec.maxNodeAge`: launch times; `spec.replaceDrifted`:
//! launch specs). The Auto Scaling API has neither fact in a usable form:
//!
//! - a VM's launch time is only in EC2 `DescribeInstances` (`LaunchTime`);
//! - a VM's launch template version: EC2 tags every instance launched from
//!   a template with `aws:ec2launchtemplate:id` and
//!   `aws:ec2launchtemplate:version` (the number, whatever rule picked
//!   it), read here from the same `DescribeInstances` answer. The Auto
//!   Scaling listing's per-instance `LaunchTemplate.Version` is not used:
//!   moto 5.2 answers the template's *current* default version for every
//!   instance there (which would hide all drift), and a symbolic version
//!   there could not be compared without knowing when the VM launched;
//! - a VM's launch configuration is the listing's `LaunchConfigurationName`
//!   (configurations have no versions; moto answers the group's current
//!   one, so drift between configurations is not testable against it);
//! - the group's template version may be `$Latest` or `$Default` (or
//!   unset, which means `$Default`): EC2 `DescribeLaunchTemplates` resolves
//!   it to a number. Mixed-instances groups carry their template in the
//!   policy, and each instance-type override may name another.
//!
//! Both instance facts never change for an instance ID, so they are read
//! once per instance and kept: the calls grow with the VMs launched, not
//! with the reconciles.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification};
use aws_sdk_ec2::types::Filter;

use super::super::{GroupState, LaunchFacts, LaunchSpec, ProviderError};
use super::AwsAutoScalingGroup;

/// The tags EC2 puts on an instance launched from a launch template.
const TEMPLATE_ID_TAG: &str = "aws:ec2launchtemplate:id";
const TEMPLATE_VERSION_TAG: &str = "aws:ec2launchtemplate:version";

/// At most this many values in one `instance-id` filter: EC2 limits the
/// values of a filter, and a few hundred keep each request small. A
/// filter, unlike `InstanceIds`, does not fail the whole call for an
/// instance EC2 no longer knows.
const IDS_PER_CALL: usize = 200;

/// What EC2 said about one instance; never changes for its ID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct InstanceLaunch {
    launched_at: Option<jiff::Timestamp>,
    template: Option<LaunchSpec>,
}

pub(super) struct LaunchReader {
    ec2: aws_sdk_ec2::Client,
    wanted: Mutex<LaunchFacts>,
    known: Mutex<HashMap<String, InstanceLaunch>>,
}

/// A template the group names: by ID or by name, at a version that may be
/// symbolic.
#[derive(Clone, Debug, PartialEq, Eq)]
struct GroupTemplate {
    id: Option<String>,
    name: Option<String>,
    version: Option<String>,
}

impl LaunchReader {
    pub(super) fn new(sdk_config: &aws_config::SdkConfig, endpoint: Option<&str>) -> Self {
        let mut config = aws_sdk_ec2::config::Builder::from(sdk_config)
            .interceptor(super::requests::CountRequests);
        if let Some(endpoint) = endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            ec2: aws_sdk_ec2::Client::from_conf(config.build()),
            wanted: Mutex::new(LaunchFacts::default()),
            known: Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn want(&self, facts: LaunchFacts) {
        *self.wanted.lock().expect("launch facts lock") = facts;
    }

    /// Fill in the facts wanted: no call at all when none is.
    pub(super) async fn fill(
        &self,
        group: &AutoScalingGroup,
        state: &mut GroupState,
        aws: &AwsAutoScalingGroup,
    ) -> Result<(), ProviderError> {
        let wanted = *self.wanted.lock().expect("launch facts lock");
        if !wanted.any() {
            return Ok(());
        }
        self.read_new_instances(state, aws).await?;
        self.apply(group, state, wanted);
        if wanted.launch_spec {
            state.launch_specs = self.group_specs(group, aws).await?;
        }
        Ok(())
    }

    /// The facts read so far onto the group's instances.
    fn apply(&self, group: &AutoScalingGroup, state: &mut GroupState, wanted: LaunchFacts) {
        // By ID: a scan per instance would be quadratic in a group of
        // thousands.
        let configurations: HashMap<&str, &str> = (group.instances().iter())
            .filter_map(|a| Some((a.instance_id()?, a.launch_configuration_name()?)))
            .collect();
        let known = self.known.lock().expect("launch facts lock");
        for i in &mut state.instances {
            let launch = known.get(&i.id);
            if wanted.launch_time {
                i.launched_at = launch.and_then(|l| l.launched_at);
            }
            if wanted.launch_spec {
                i.launch_spec = launch.and_then(|l| l.template.clone()).or_else(|| {
                    (configurations.get(i.id.as_str()))
                        .map(|n| LaunchSpec::LaunchConfiguration((*n).to_owned()))
                });
            }
        }
    }

    /// `DescribeInstances` for the group's instances not read before; the
    /// ones that left the group are forgotten.
    async fn read_new_instances(
        &self,
        state: &GroupState,
        aws: &AwsAutoScalingGroup,
    ) -> Result<(), ProviderError> {
        let unread: Vec<String> = {
            let in_group: HashSet<&str> = state.instances.iter().map(|i| i.id.as_str()).collect();
            let mut known = self.known.lock().expect("launch facts lock");
            known.retain(|id, _| in_group.contains(id.as_str()));
            (state.instances.iter())
                .filter(|i| !known.contains_key(&i.id))
                .map(|i| i.id.clone())
                .collect()
        };
        for chunk in unread.chunks(IDS_PER_CALL) {
            let read = self.describe_instances(chunk, aws).await?;
            self.known.lock().expect("launch facts lock").extend(read);
        }
        Ok(())
    }

    async fn describe_instances(
        &self,
        ids: &[String],
        aws: &AwsAutoScalingGroup,
    ) -> Result<Vec<(String, InstanceLaunch)>, ProviderError> {
        let filter = Filter::builder()
            .name("instance-id")
            .set_values(Some(ids.to_vec()))
            .build();
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = (self.ec2.describe_instances())
                .filters(filter.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| aws.classify(e))?;
            for instance in page.reservations().iter().flat_map(|r| r.instances()) {
                let Some(id) = instance.instance_id() else {
                    continue;
                };
                out.push((id.to_owned(), launch_of(instance)));
            }
            token = page.next_token().map(str::to_owned);
            if token.as_deref().is_none_or(str::is_empty) {
                return Ok(out);
            }
        }
    }

    /// What the group launches from now, symbolic versions resolved.
    async fn group_specs(
        &self,
        group: &AutoScalingGroup,
        aws: &AwsAutoScalingGroup,
    ) -> Result<Vec<LaunchSpec>, ProviderError> {
        let mut specs: Vec<LaunchSpec> = (group.launch_configuration_name())
            .map(|n| LaunchSpec::LaunchConfiguration(n.to_owned()))
            .into_iter()
            .collect();
        let templates = group_templates(group);
        if templates.is_empty() {
            return Ok(specs);
        }
        let ids: Vec<String> = templates.iter().filter_map(|t| t.id.clone()).collect();
        let names: Vec<String> = (templates.iter())
            .filter(|t| t.id.is_none())
            .filter_map(|t| t.name.clone())
            .collect();
        let mut found = Vec::new();
        // One call per kind of reference: EC2 refuses IDs and names together.
        for (ids, names) in [(ids, vec![]), (vec![], names)] {
            if ids.is_empty() && names.is_empty() {
                continue;
            }
            let answer = (self.ec2.describe_launch_templates())
                .set_launch_template_ids((!ids.is_empty()).then_some(ids))
                .set_launch_template_names((!names.is_empty()).then_some(names))
                .send()
                .await
                .map_err(|e| aws.classify(e))?;
            found.extend(answer.launch_templates().iter().cloned());
        }
        for t in &templates {
            let Some(lt) = found.iter().find(|lt| {
                t.id.as_deref()
                    .map_or(lt.launch_template_name() == t.name.as_deref(), |id| {
                        lt.launch_template_id() == Some(id)
                    })
            }) else {
                continue;
            };
            let version = match t.version.as_deref() {
                Some("$Latest") => lt.latest_version_number().map(|v| v.to_string()),
                None | Some("$Default") => lt.default_version_number().map(|v| v.to_string()),
                Some(number) => Some(number.to_owned()),
            };
            if let (Some(id), Some(version)) = (lt.launch_template_id(), version) {
                specs.push(LaunchSpec::LaunchTemplate {
                    id: id.to_owned(),
                    version,
                });
            }
        }
        specs.sort();
        specs.dedup();
        Ok(specs)
    }
}

/// Every template the group may launch from: its own, or its
/// mixed-instances policy's and that policy's per-type overrides.
fn group_templates(group: &AutoScalingGroup) -> Vec<GroupTemplate> {
    let of = |s: &LaunchTemplateSpecification| GroupTemplate {
        id: s.launch_template_id().map(str::to_owned),
        name: s.launch_template_name().map(str::to_owned),
        version: s.version().map(str::to_owned),
    };
    let mut out: Vec<GroupTemplate> = group.launch_template().map(of).into_iter().collect();
    if let Some(lt) = (group.mixed_instances_policy()).and_then(|p| p.launch_template()) {
        out.extend(lt.launch_template_specification().map(of));
        out.extend(
            (lt.overrides().iter()).filter_map(|o| o.launch_template_specification().map(of)),
        );
    }
    out
}

fn launch_of(instance: &aws_sdk_ec2::types::Instance) -> InstanceLaunch {
    let tag = |key: &str| {
        (instance.tags().iter())
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    let template = match (tag(TEMPLATE_ID_TAG), tag(TEMPLATE_VERSION_TAG)) {
        (Some(id), Some(version)) => Some(LaunchSpec::LaunchTemplate {
            id: id.to_owned(),
            version: version.to_owned(),
        }),
        _ => None,
    };
    let launched_at = (instance.launch_time())
        .and_then(|t| jiff::Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok());
    InstanceLaunch {
        launched_at,
        template,
    }
}
