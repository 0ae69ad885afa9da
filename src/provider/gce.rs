//! Google Compute Engine managed instance groups (MIGs), zonal or regional,
//! through Google's `google-cloud-compute-v1` client. Sections (§N) refer to
//! `shared/reference/gce-mig.md`.
//!
//! - describe: `instanceGroupManagers.get`, every page of
//!   `listManagedInstances`, and the attached autoscaler if there is one.
//!   Sizes come from `targetSize`; an autoscaler's `minNumReplicas` /
//!   `maxNumReplicas` are the group's bounds (a MIG has none of its own, §2).
//!   An autoscaler in mode `ON` resizes the group itself and would undo what
//!   the pool does, so describe and resize refuse it ([`GceError::AutoscalerOn`]).
//! - terminate: `deleteInstances` (shrink: `targetSize` drops by one) or
//!   `recreateInstances` (replace), each preceded by a fresh listing, waited
//!   for to `DONE`, its Operation's `error` checked (the SDK's `until_done()`
//!   returns `Ok` for a failed Operation, §4.4), and verified by a re-read.
//!   The `requestId` is derived from the group, the VM id and the intent, so
//!   a call repeated after a crash or a lost answer is ignored by Compute.
//!   Compute answers a repeated `requestId` with the first call's
//!   Operation even when that one failed, so after an Operation that ended
//!   `DONE` with an error (nothing changed) the next try gets the next ID
//!   of the sequence ([`mapping::request_id_attempt`]). An ID is only
//!   given up on once its Operation was seen failed: when the answer or a
//!   poll was lost or refused, the next try repeats the ID, which Compute
//!   answers with the same Operation (so the repeat reads its outcome and
//!   can never act twice). The count is kept in memory: a restarted
//!   operator starts again at the first ID, is answered with the old failed
//!   Operation (no effect) and moves on, one ID per failure it replays; it
//!   never skips an ID whose outcome it does not know.
//! - instances are identified by VM id, which the Nomad client fingerprints
//!   as `unique.platform.gce.id` (§2.1).
//! - launch facts: each VM's template is its managed instance's
//!   `version.instanceTemplate` (always read: it is in the listing);
//!   its creation time is only on the instance resource, read with
//!   `instances.list` while `spec.maxNodeAge` wants it ([`launch`]).
//!
//! Retries: the SDK never retries a POST and never retries a 403
//! `rateLimitExceeded` (§4.5). Reads (`get`, `listManagedInstances`, the
//! autoscaler) are retried here with back-off on rate limits, 5xx and lost
//! connections; mutating calls are not, their failures are resolved by
//! reading the group back, as the AWS provider does.
//!
//! Build cost: only the MIG, zone/region operation and autoscaler features
//! of the SDK are enabled (default features off). The generated model is
//! one 24 MB source file whatever the features, so the crate still costs
//! minutes of release build; the figures measured for issue 17 are in
//! `deploy/gce.md` ("Build cost").

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use google_cloud_compute_v1::client::{
    Autoscalers, InstanceGroupManagers, Instances, RegionAutoscalers, RegionInstanceGroupManagers,
};
use google_cloud_compute_v1::model::InstanceGroupManager;
use google_cloud_compute_v1::model::autoscaling_policy::Mode;
use google_cloud_gax::error::Error as SdkError;
use tracing::{info, warn};

use super::{CloudProvider, GroupState, Lifecycle, ProviderError, TerminateOutcome};

mod api;
mod credentials;
pub mod errors;
mod launch;
pub mod mapping;

use api::{GroupApi, Services};
pub use credentials::{GceCredentials, SERVICE_ACCOUNT_KEY};
pub use errors::GceError;
use errors::{classify, operation_error};
use launch::LaunchTimes;
use mapping::{Intent, Member, last_segment, owner_from_description, request_id_attempt};

pub const KIND: &str = "gce-mig";

/// The Nomad client fingerprints the VM id under this attribute (§2.1);
/// it is the `id` of the managed instance.
pub const INSTANCE_ID_ATTRIBUTE: &str = "unique.platform.gce.id";

/// Largest zonal and regional groups (§1.1): a MIG has no max size of its own.
const ZONAL_MAX: u32 = 1000;
const REGIONAL_MAX: u32 = 2000;

/// A zonal or a regional group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GceLocation {
    Zone(String),
    Region(String),
}

impl GceLocation {
    pub fn name(&self) -> &str {
        match self {
            GceLocation::Zone(z) | GceLocation::Region(z) => z,
        }
    }

    fn collection(&self) -> &'static str {
        match self {
            GceLocation::Zone(_) => "zones",
            GceLocation::Region(_) => "regions",
        }
    }
}

/// Where a [`GceManagedInstanceGroup`] finds its group and credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GceMigConfig {
    pub project: String,
    pub location: GceLocation,
    pub name: String,
    /// Compute API endpoint override (emulators in tests, Private Service Connect).
    pub endpoint: Option<String>,
    pub credentials: GceCredentials,
}

/// How patient the provider is.
#[derive(Clone, Debug)]
pub struct GceSettings {
    /// Operation polling: first pause and longest pause (the SDK doubles it).
    pub poll_initial: Duration,
    pub poll_max: Duration,
    /// Longest wait for an Operation to be `DONE` before the group is read
    /// back instead.
    pub operation_timeout: Duration,
    /// Attempts per read, and the first pause between them (doubled each time).
    pub read_attempts: u32,
    pub read_backoff: Duration,
    /// listManagedInstances `maxResults` for `PAGINATED` groups (at most 500, §1.3).
    pub page_size: u32,
}

impl Default for GceSettings {
    fn default() -> Self {
        Self {
            // deleteInstances is DONE "when the action is scheduled" (§1.4):
            // usually seconds, so poll quickly at first.
            poll_initial: Duration::from_millis(500),
            poll_max: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(120),
            // Rate quotas refill each minute (§1.7): 1 + 2 + 4 s rides out a
            // burst; a longer one is the reconciler's to retry.
            read_attempts: 4,
            read_backoff: Duration::from_secs(1),
            page_size: 500,
        }
    }
}

/// A Compute Engine managed instance group as a [`CloudProvider`].
#[derive(Clone)]
pub struct GceManagedInstanceGroup {
    api: GroupApi,
    endpoint: Option<String>,
    settings: GceSettings,
    /// Values scrubbed from every error message this provider produces.
    secrets: Vec<String>,
    /// Operations that ended `DONE` with an error, per `verb/vm id`: the
    /// attempt number of the next `requestId` for that intent.
    failed: Arc<Mutex<HashMap<String, u32>>>,
    /// VM creation times, read only while `spec.maxNodeAge` wants them.
    launch: Arc<LaunchTimes>,
}

impl fmt::Debug for GceManagedInstanceGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GceManagedInstanceGroup")
            .field("project", &self.api.project)
            .field("location", &self.api.location)
            .field("name", &self.api.name)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl GceManagedInstanceGroup {
    /// Build the clients. Makes no API call: Application Default Credentials
    /// are resolved on first use, so a missing Workload Identity binding
    /// shows up as [`ProviderError::Unauthorized`] from the first describe.
    pub async fn new(cfg: GceMigConfig) -> Result<Self, ProviderError> {
        Self::with_settings(cfg, GceSettings::default()).await
    }

    pub async fn with_settings(
        cfg: GceMigConfig,
        settings: GceSettings,
    ) -> Result<Self, ProviderError> {
        Ok(Self::build(cfg, settings).await?)
    }

    async fn build(cfg: GceMigConfig, settings: GceSettings) -> Result<Self, GceError> {
        let config_error = |message: String| GceError::Config { message };
        for (what, value) in [
            ("project", &cfg.project),
            ("group name", &cfg.name),
            ("zone or region", &cfg.location.name().to_owned()),
        ] {
            if value.trim().is_empty() || value.contains('/') {
                return Err(config_error(format!(
                    "the managed instance group's {what} {value:?} is empty or contains '/'"
                )));
            }
        }
        let credentials = cfg.credentials.build()?;
        let secrets = cfg.credentials.secrets();
        // Not Clone: one per client.
        let poll = || {
            google_cloud_gax::exponential_backoff::ExponentialBackoffBuilder::new()
                .with_initial_delay(settings.poll_initial)
                .with_maximum_delay(settings.poll_max)
                .build()
                .map_err(|e| config_error(format!("polling back-off: {e}")))
        };
        macro_rules! client {
            ($t:ty) => {{
                let mut b = <$t>::builder().with_polling_backoff_policy(poll()?);
                if let Some(c) = &credentials {
                    b = b.with_credentials(c.clone());
                }
                if let Some(e) = &cfg.endpoint {
                    b = b.with_endpoint(e.clone());
                }
                b.build()
                    .await
                    .map_err(|e| config_error(format!("Compute client: {e}")))?
            }};
        }
        let services = match &cfg.location {
            GceLocation::Zone(_) => Services::Zonal {
                igm: client!(InstanceGroupManagers),
                autoscalers: client!(Autoscalers),
            },
            GceLocation::Region(_) => Services::Regional {
                igm: client!(RegionInstanceGroupManagers),
                autoscalers: client!(RegionAutoscalers),
            },
        };
        Ok(Self {
            api: GroupApi {
                project: cfg.project,
                location: cfg.location,
                name: cfg.name,
                services,
                instances: client!(Instances),
            },
            endpoint: cfg.endpoint,
            settings,
            secrets,
            failed: Arc::default(),
            launch: Arc::default(),
        })
    }

    pub fn group_name(&self) -> &str {
        &self.api.name
    }

    /// `projects/P/zones/Z/instanceGroupManagers/N`: part of every request ID.
    fn group_path(&self) -> String {
        format!(
            "projects/{}/{}/{}/instanceGroupManagers/{}",
            self.api.project,
            self.api.location.collection(),
            self.api.location.name(),
            self.api.name
        )
    }

    fn classify(&self, err: &SdkError) -> GceError {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        classify(err, &self.api.name, &secrets)
    }

    /// A read, repeated with back-off while its failure is transient (§4.5:
    /// the SDK retries neither a POST read nor a 403 rate limit).
    async fn read<T, F, Fut>(&self, call: F) -> Result<T, GceError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, SdkError>>,
    {
        let mut pause = self.settings.read_backoff;
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let e = self.classify(&e);
                    if !e.is_transient() || attempt >= self.settings.read_attempts {
                        return Err(e);
                    }
                    warn!(group = %self.api.name, attempt, error = %e, "Compute read failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2);
                    attempt += 1;
                }
            }
        }
    }

    /// Every managed instance, across pages (§1.3).
    async fn members(&self) -> Result<Vec<Member>, GceError> {
        let mut out = Vec::new();
        let mut token = String::new();
        loop {
            let (page, next) = self
                .read(|| self.api.list_page(&token, self.settings.page_size))
                .await?;
            out.extend(page.iter().filter_map(Member::from_api));
            match next {
                Some(t) if !t.is_empty() => token = t,
                _ => return Ok(out),
            }
        }
    }

    /// The instance whose VM id is `vm_id`, read from Compute now.
    async fn member(&self, vm_id: &str) -> Result<Option<Member>, GceError> {
        Ok(self.members().await?.into_iter().find(|m| m.id == vm_id))
    }

    /// The group's bounds from its autoscaler, or an error when the
    /// autoscaler is in mode `ON`. `None`: no autoscaler, or one in mode `OFF`.
    async fn autoscaler_bounds(
        &self,
        igm: &InstanceGroupManager,
    ) -> Result<Option<(u32, u32)>, GceError> {
        let Some(url) = igm
            .status
            .as_ref()
            .and_then(|s| s.autoscaler.as_deref())
            .filter(|u| !u.is_empty())
        else {
            return Ok(None);
        };
        let name = last_segment(url).to_owned();
        let autoscaler = self.read(|| self.api.autoscaler(&name)).await?;
        let policy = autoscaler.autoscaling_policy.unwrap_or_default();
        // The API's default mode is ON.
        match policy.mode.unwrap_or(Mode::On) {
            Mode::Off => Ok(None),
            Mode::OnlyScaleOut | Mode::OnlyUp => Ok(Some((
                size(policy.min_num_replicas),
                size(policy.max_num_replicas),
            ))),
            _ => Err(GceError::AutoscalerOn {
                group: self.api.name.clone(),
                autoscaler: name,
            }),
        }
    }

    async fn describe(&self) -> Result<GroupState, GceError> {
        let igm = self.read(|| self.api.get()).await?;
        let bounds = self.autoscaler_bounds(&igm).await?;
        let members = self.members().await?;
        let cap = match self.api.location {
            GceLocation::Zone(_) => ZONAL_MAX,
            GceLocation::Region(_) => REGIONAL_MAX,
        };
        let (min_size, max_size) = bounds.unwrap_or((0, cap));
        let mut state = GroupState {
            name: self.api.name.clone(),
            min_size,
            max_size,
            desired_capacity: size(igm.target_size),
            // A MIG cannot suspend deletions: no such process exists (§2).
            terminate_suspended: false,
            suspended_processes: Vec::new(),
            instances: members.iter().map(Member::to_state).collect(),
            owner_tag: igm.description.as_deref().and_then(owner_from_description),
            // In the group's own answer: no call is spared by leaving it out.
            launch_specs: mapping::group_templates(&igm),
            // Filled in below from instances.list when maxNodeAge wants them.
            reads_launch_times: true,
        };
        self.launch.fill(self, &members, &mut state).await?;
        Ok(state)
    }

    /// `Some` is the answer to give without calling Compute; `None` means
    /// `member` is in service in this group and may be acted on.
    fn already(member: Option<&Member>) -> Option<TerminateOutcome> {
        match member.map(Member::lifecycle) {
            None | Some(Lifecycle::Detaching) => Some(TerminateOutcome::NotInGroup),
            Some(l) if l.is_terminating() => Some(TerminateOutcome::AlreadyTerminating),
            Some(_) => None,
        }
    }

    async fn terminate(
        &self,
        vm_id: &str,
        decrement: bool,
    ) -> Result<TerminateOutcome, ProviderError> {
        if vm_id.trim().is_empty() {
            return Err(ProviderError::Refused {
                message: "cannot terminate an instance with an empty ID".into(),
            });
        }
        let intent = if decrement {
            Intent::Shrink
        } else {
            Intent::Replace
        };
        // The re-read the trait asks for: never act twice on one VM.
        let member = self.member(vm_id).await?;
        let attempt_key = format!("{}/{vm_id}", intent.verb());
        if let Some(outcome) = Self::already(member.as_ref()) {
            info!(vm_id, group = %self.api.name, ?outcome, "not terminating: instance already leaving the group");
            self.forget_attempts(&attempt_key);
            return Ok(outcome);
        }
        let member = member.expect("checked by already()");
        let attempt = self.failed_attempts(&attempt_key);
        let rid = request_id_attempt(&self.group_path(), vm_id, intent, attempt);
        info!(vm_id, group = %self.api.name, verb = intent.verb(), request_id = %rid, "terminating instance");
        let call = self.api.act(intent, &member.url, &rid);
        let err = match tokio::time::timeout(self.settings.operation_timeout, call).await {
            Ok(Ok(op)) => match operation_error(&op, &self.secret_refs()) {
                None => {
                    let outcome = self.verify(vm_id, intent).await?;
                    self.forget_attempts(&attempt_key);
                    return Ok(outcome);
                }
                Some(e) => {
                    // DONE with an error: nothing was done, and this ID
                    // would only ever be answered with this Operation again.
                    self.failed
                        .lock()
                        .expect("failed-attempts lock")
                        .insert(attempt_key, attempt + 1);
                    e
                }
            },
            Ok(Err(e)) => self.classify(&e),
            Err(_) => GceError::OperationTimedOut {
                operation: format!("{} of {} (requestId {rid})", intent.verb(), member.name),
            },
        };
        if matches!(
            err,
            GceError::RateLimited { .. }
                | GceError::Forbidden { .. }
                | GceError::Credentials { .. }
        ) {
            return Err(err.into());
        }
        // A lost answer or a timeout may hide a call that was carried out.
        // Report what the group shows now; a repeated call would carry the
        // same requestId anyway.
        match self.member(vm_id).await {
            Ok(now) => match Self::already(now.as_ref()) {
                Some(outcome) => {
                    warn!(vm_id, group = %self.api.name, error = %err, ?outcome, "terminate failed but the instance is leaving the group");
                    Ok(outcome)
                }
                None => Err(err.into()),
            },
            Err(_) => Err(err.into()),
        }
    }

    /// After a `DONE` Operation without error: the instance must now be on
    /// its way out (or gone), since DONE only means "scheduled" (§1.4).
    async fn verify(&self, vm_id: &str, intent: Intent) -> Result<TerminateOutcome, GceError> {
        let now = self.member(vm_id).await?;
        match now.as_ref().map(Member::lifecycle) {
            None | Some(Lifecycle::Terminating | Lifecycle::Terminated) => {
                info!(vm_id, group = %self.api.name, verb = intent.verb(), "instance is leaving the group");
                Ok(TerminateOutcome::Terminated)
            }
            Some(l) => Err(GceError::NotApplied {
                verb: intent.verb(),
                instance: vm_id.to_owned(),
                state: l.to_string(),
            }),
        }
    }

    async fn set_desired(&self, desired: u32) -> Result<(), GceError> {
        let size_i32 = i32::try_from(desired).map_err(|_| GceError::Config {
            message: format!("target size {desired} is out of range"),
        })?;
        // A resize under an autoscaler in mode ON would be undone by it.
        let igm = self.read(|| self.api.get()).await?;
        self.autoscaler_bounds(&igm).await?;
        let op = tokio::time::timeout(self.settings.operation_timeout, self.api.resize(size_i32))
            .await
            .map_err(|_| GceError::OperationTimedOut {
                operation: format!("resize to {desired}"),
            })?
            .map_err(|e| self.classify(&e))?;
        if let Some(e) = operation_error(&op, &self.secret_refs()) {
            return Err(e);
        }
        info!(group = %self.api.name, desired, "resized managed instance group");
        Ok(())
    }

    fn failed_attempts(&self, key: &str) -> u32 {
        let failed = self.failed.lock().expect("failed-attempts lock");
        failed.get(key).copied().unwrap_or(0)
    }

    /// The VM is leaving the group: its intent will not be tried again, so
    /// its count goes (the map holds only VMs with a failure still open).
    /// Were it tried again, the first ID would be answered with the old
    /// failed Operation and the next one used, as after a restart.
    fn forget_attempts(&self, key: &str) {
        self.failed
            .lock()
            .expect("failed-attempts lock")
            .remove(key);
    }

    fn secret_refs(&self) -> Vec<&str> {
        self.secrets.iter().map(String::as_str).collect()
    }
}

impl CloudProvider for GceManagedInstanceGroup {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn group(&self) -> String {
        format!("mig/{} ({})", self.api.name, self.api.location.name())
    }

    fn describe_group(&self) -> BoxFuture<'_, Result<GroupState, ProviderError>> {
        async move { Ok(self.describe().await?) }.boxed()
    }

    fn terminate_instance<'a>(
        &'a self,
        instance_id: &'a str,
        decrement: bool,
    ) -> BoxFuture<'a, Result<TerminateOutcome, ProviderError>> {
        self.terminate(instance_id, decrement).boxed()
    }

    // terminate_new_instance keeps the trait's default (the re-read): the
    // listing is also where the instance URL deleteInstances takes comes from.

    fn set_desired_capacity(&self, desired: u32) -> BoxFuture<'_, Result<(), ProviderError>> {
        async move { Ok(self.set_desired(desired).await?) }.boxed()
    }

    fn instance_id_attribute(&self) -> &'static str {
        INSTANCE_ID_ATTRIBUTE
    }

    // Launch specs (instance templates) come with every describe: they are
    // in the group's and the managed instances' own answers.
    fn read_launch_facts(&self, facts: super::LaunchFacts) {
        self.launch.want(facts.launch_time);
    }
}

fn size(v: Option<i32>) -> u32 {
    v.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests;
