//! Groups built by hand, for tests that decide on a group without a fake
//! provider behind it.

use super::super::{GroupState, InstanceState, Lifecycle};

/// A VM in `lifecycle`, healthy, with nothing else known: for tests that
/// build a group by hand.
pub fn vm(id: &str, lifecycle: Lifecycle) -> InstanceState {
    InstanceState {
        id: id.into(),
        lifecycle,
        protected_from_scale_in: false,
        zone: None,
        healthy: true,
        launched_at: None,
        launch_spec: None,
    }
}

/// A group "ci" of `instances`, its desired capacity their number.
pub fn group_of(instances: Vec<InstanceState>) -> GroupState {
    GroupState {
        name: "ci".into(),
        min_size: 0,
        max_size: 10,
        desired_capacity: instances.len() as u32,
        terminate_suspended: false,
        suspended_processes: vec![],
        instances,
        owner_tag: None,
        launch_specs: vec![],
        reads_launch_times: false,
    }
}
