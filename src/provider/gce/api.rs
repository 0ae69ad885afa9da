//! The SDK calls the provider makes, once for zonal and once for regional
//! groups: the two are separate services in the Compute API with the same
//! resources (§1), so this is the only place that knows which is which.
//! Sections (§N) refer to `shared/reference/gce-mig.md`.

use google_cloud_compute_v1::client::{
    Autoscalers, InstanceGroupManagers, Instances, RegionAutoscalers, RegionInstanceGroupManagers,
};
use google_cloud_compute_v1::model::{
    Autoscaler, Instance, InstanceGroupManager, InstanceGroupManagersDeleteInstancesRequest,
    InstanceGroupManagersRecreateInstancesRequest, ManagedInstance, Operation,
    RegionInstanceGroupManagersDeleteInstancesRequest, RegionInstanceGroupManagersRecreateRequest,
};
use google_cloud_gax::error::Error as SdkError;
use google_cloud_lro::Poller;

use super::GceLocation;
use super::mapping::Intent;

/// The two services behind one group.
#[derive(Clone, Debug)]
pub(super) enum Services {
    Zonal {
        igm: InstanceGroupManagers,
        autoscalers: Autoscalers,
    },
    Regional {
        igm: RegionInstanceGroupManagers,
        autoscalers: RegionAutoscalers,
    },
}

/// One group's calls.
#[derive(Clone, Debug)]
pub(super) struct GroupApi {
    pub project: String,
    pub location: GceLocation,
    pub name: String,
    pub services: Services,
    /// The VMs themselves (zonal in both kinds of group): only for their
    /// creation times (`launch`).
    pub instances: Instances,
}

impl GroupApi {
    pub async fn get(&self) -> Result<InstanceGroupManager, SdkError> {
        match &self.services {
            Services::Zonal { igm, .. } => {
                igm.get()
                    .set_project(&self.project)
                    .set_zone(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .send()
                    .await
            }
            Services::Regional { igm, .. } => {
                igm.get()
                    .set_project(&self.project)
                    .set_region(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .send()
                    .await
            }
        }
    }

    /// One page of listManagedInstances; `token` is "" for the first. A
    /// `PAGELESS` group answers everything at once and no token (§1.3).
    pub async fn list_page(
        &self,
        token: &str,
        page_size: u32,
    ) -> Result<(Vec<ManagedInstance>, Option<String>), SdkError> {
        match &self.services {
            Services::Zonal { igm, .. } => {
                let r = igm
                    .list_managed_instances()
                    .set_project(&self.project)
                    .set_zone(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .set_max_results(page_size)
                    .set_page_token(token)
                    .send()
                    .await?;
                Ok((r.managed_instances, r.next_page_token))
            }
            Services::Regional { igm, .. } => {
                let r = igm
                    .list_managed_instances()
                    .set_project(&self.project)
                    .set_region(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .set_max_results(page_size)
                    .set_page_token(token)
                    .send()
                    .await?;
                Ok((r.managed_instances, r.next_page_token))
            }
        }
    }

    /// One page of instances.list in `zone` with `filter`; `token` is ""
    /// for the first.
    pub async fn list_instances(
        &self,
        zone: &str,
        filter: &str,
        token: &str,
    ) -> Result<(Vec<Instance>, Option<String>), SdkError> {
        let r = (self.instances.list())
            .set_project(&self.project)
            .set_zone(zone)
            .set_filter(filter)
            .set_page_token(token)
            .send()
            .await?;
        Ok((r.items, r.next_page_token))
    }

    pub async fn autoscaler(&self, name: &str) -> Result<Autoscaler, SdkError> {
        match &self.services {
            Services::Zonal { autoscalers, .. } => {
                autoscalers
                    .get()
                    .set_project(&self.project)
                    .set_zone(self.location.name())
                    .set_autoscaler(name)
                    .send()
                    .await
            }
            Services::Regional { autoscalers, .. } => {
                autoscalers
                    .get()
                    .set_project(&self.project)
                    .set_region(self.location.name())
                    .set_autoscaler(name)
                    .send()
                    .await
            }
        }
    }

    /// deleteInstances (Shrink) or recreateInstances (Replace) of one
    /// instance, polled until the Operation is `DONE`. The Operation's own
    /// `error` is the caller's to check: `until_done()` returns `Ok` for a
    /// failed Operation (§4.4).
    pub async fn act(
        &self,
        intent: Intent,
        instance_url: &str,
        request_id: &str,
    ) -> Result<Operation, SdkError> {
        let instances = [instance_url.to_owned()];
        match (&self.services, intent) {
            (Services::Zonal { igm, .. }, Intent::Shrink) => {
                igm.delete_instances()
                    .set_project(&self.project)
                    .set_zone(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .set_request_id(request_id)
                    // An instance already being deleted is skipped instead of
                    // failing the call, and is not counted again (§1.4, CA-5213).
                    .set_body(
                        InstanceGroupManagersDeleteInstancesRequest::new()
                            .set_instances(instances)
                            .set_skip_instances_on_validation_error(true),
                    )
                    .poller()
                    .until_done()
                    .await
            }
            (Services::Regional { igm, .. }, Intent::Shrink) => {
                igm.delete_instances()
                    .set_project(&self.project)
                    .set_region(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .set_request_id(request_id)
                    .set_body(
                        RegionInstanceGroupManagersDeleteInstancesRequest::new()
                            .set_instances(instances)
                            .set_skip_instances_on_validation_error(true),
                    )
                    .poller()
                    .until_done()
                    .await
            }
            (Services::Zonal { igm, .. }, Intent::Replace) => {
                igm.recreate_instances()
                    .set_project(&self.project)
                    .set_zone(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .set_request_id(request_id)
                    .set_body(
                        InstanceGroupManagersRecreateInstancesRequest::new()
                            .set_instances(instances),
                    )
                    .poller()
                    .until_done()
                    .await
            }
            (Services::Regional { igm, .. }, Intent::Replace) => {
                igm.recreate_instances()
                    .set_project(&self.project)
                    .set_region(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .set_request_id(request_id)
                    .set_body(
                        RegionInstanceGroupManagersRecreateRequest::new().set_instances(instances),
                    )
                    .poller()
                    .until_done()
                    .await
            }
        }
    }

    /// resize to an absolute size (repeating it is harmless), polled until `DONE`.
    pub async fn resize(&self, size: i32) -> Result<Operation, SdkError> {
        match &self.services {
            Services::Zonal { igm, .. } => {
                igm.resize()
                    .set_project(&self.project)
                    .set_zone(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .set_size(size)
                    .poller()
                    .until_done()
                    .await
            }
            Services::Regional { igm, .. } => {
                igm.resize()
                    .set_project(&self.project)
                    .set_region(self.location.name())
                    .set_instance_group_manager(&self.name)
                    .set_size(size)
                    .poller()
                    .until_done()
                    .await
            }
        }
    }
}
