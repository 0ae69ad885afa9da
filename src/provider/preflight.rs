//! Pre-flight: decide, before a node is drained, whether the cloud will let
//! the pool remove its VM afterwards. Draining a node whose VM then cannot be
//! terminated leaves capacity idle and the pool stuck, so every refusal here
//! names what an admin has to change.

use std::fmt;

use super::{GroupState, Lifecycle};

/// Why a retirement must not start. [`preflight`] reports the Terminate
/// process first (it blocks every instance), then problems with the instance,
/// then lack of room: fixing the size alone would not help a protected or
/// missing instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreflightRefusal {
    TerminateSuspended {
        group: String,
    },
    AtMinSize {
        group: String,
        desired: u32,
        min: u32,
        in_flight: u32,
    },
    InstanceNotInGroup {
        group: String,
        instance_id: String,
    },
    InstanceNotInService {
        group: String,
        instance_id: String,
        state: Lifecycle,
    },
    ProtectedFromScaleIn {
        group: String,
        instance_id: String,
    },
}

impl fmt::Display for PreflightRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PreflightRefusal::TerminateSuspended { group } => write!(
                f,
                "Auto Scaling group {group} has the Terminate process suspended; resume it with \
                 `aws autoscaling resume-processes --auto-scaling-group-name {group} --scaling-processes Terminate` \
                 or the pool cannot retire nodes"
            ),
            PreflightRefusal::AtMinSize {
                group,
                desired,
                min,
                in_flight,
            } => write!(
                f,
                "group {group} cannot shrink: desired capacity {desired} minus {in_flight} retirement(s) \
                 already in flight minus this one would go below its minimum size {min}; lower the group's \
                 minimum size (`aws autoscaling update-auto-scaling-group --auto-scaling-group-name {group} --min-size N`) \
                 or retire with replacement"
            ),
            PreflightRefusal::InstanceNotInGroup { group, instance_id } => write!(
                f,
                "instance {instance_id} is not in group {group}: it was already terminated or detached, \
                 or the node runs in another group; check the pool's provider settings"
            ),
            PreflightRefusal::InstanceNotInService {
                group,
                instance_id,
                state,
            } => write!(
                f,
                "instance {instance_id} in group {group} is {state}, not InService; only in-service \
                 instances are retired: wait for it to finish launching, or move it out of standby \
                 (`aws autoscaling exit-standby --auto-scaling-group-name {group} --instance-ids {instance_id}`)"
            ),
            PreflightRefusal::ProtectedFromScaleIn { group, instance_id } => write!(
                f,
                "instance {instance_id} in group {group} is protected from scale-in; remove the protection \
                 (`aws autoscaling set-instance-protection --auto-scaling-group-name {group} --instance-ids {instance_id} \
                 --no-protected-from-scale-in`) or stop asking the pool to retire it"
            ),
        }
    }
}

impl std::error::Error for PreflightRefusal {}

/// Pre-flight for a retirement that shrinks the group (terminate with
/// decrement). `in_flight_decrements` counts retirements already committed
/// whose decrement has not happened yet: each of them will lower desired
/// capacity too, so they use up room above the minimum.
pub fn preflight(
    group: &GroupState,
    instance_id: &str,
    in_flight_decrements: u32,
) -> Result<(), PreflightRefusal> {
    preflight_with(group, instance_id, in_flight_decrements, true)
}

/// Like [`preflight`], for either kind of retirement. With `decrement =
/// false` the group launches a replacement, so its size never approaches the
/// minimum and only the checks on the instance and the Terminate process apply.
pub fn preflight_with(
    group: &GroupState,
    instance_id: &str,
    in_flight_decrements: u32,
    decrement: bool,
) -> Result<(), PreflightRefusal> {
    let name = || group.name.clone();
    if group.terminate_suspended {
        return Err(PreflightRefusal::TerminateSuspended { group: name() });
    }
    let Some(instance) = group.instance(instance_id) else {
        return Err(PreflightRefusal::InstanceNotInGroup {
            group: name(),
            instance_id: instance_id.to_owned(),
        });
    };
    if instance.lifecycle != Lifecycle::InService {
        return Err(PreflightRefusal::InstanceNotInService {
            group: name(),
            instance_id: instance_id.to_owned(),
            state: instance.lifecycle.clone(),
        });
    }
    if instance.protected_from_scale_in {
        return Err(PreflightRefusal::ProtectedFromScaleIn {
            group: name(),
            instance_id: instance_id.to_owned(),
        });
    }
    let after = i64::from(group.desired_capacity) - i64::from(in_flight_decrements) - 1;
    if decrement && after < i64::from(group.min_size) {
        return Err(PreflightRefusal::AtMinSize {
            group: name(),
            desired: group.desired_capacity,
            min: group.min_size,
            in_flight: in_flight_decrements,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::InstanceState;
    use super::*;

    fn instance(id: &str, lifecycle: Lifecycle) -> InstanceState {
        InstanceState {
            id: id.into(),
            lifecycle,
            protected_from_scale_in: false,
            zone: Some("us-east-1a".into()),
            healthy: true,
            launched_at: None,
            launch_spec: None,
        }
    }

    fn group(min: u32, desired: u32) -> GroupState {
        GroupState {
            name: "ci-clients".into(),
            min_size: min,
            max_size: 10,
            desired_capacity: desired,
            terminate_suspended: false,
            suspended_processes: vec![],
            instances: vec![
                instance("i-a", Lifecycle::InService),
                instance("i-b", Lifecycle::InService),
                instance("i-c", Lifecycle::InService),
            ],
            owner_tag: None,
            launch_specs: vec![],
            reads_launch_times: true,
        }
    }

    #[test]
    fn in_service_instance_with_room_passes() {
        assert_eq!(preflight(&group(1, 3), "i-a", 0), Ok(()));
        assert_eq!(preflight(&group(0, 1), "i-a", 0), Ok(()));
    }

    #[test]
    fn room_counts_decrements_already_in_flight() {
        let g = group(1, 3);
        assert_eq!(preflight(&g, "i-a", 1), Ok(()));
        assert_eq!(
            preflight(&g, "i-a", 2),
            Err(PreflightRefusal::AtMinSize {
                group: "ci-clients".into(),
                desired: 3,
                min: 1,
                in_flight: 2
            })
        );
    }

    #[test]
    fn at_min_size_refuses_shrinking_but_not_replacing() {
        let g = group(3, 3);
        assert!(matches!(
            preflight(&g, "i-a", 0),
            Err(PreflightRefusal::AtMinSize { .. })
        ));
        assert_eq!(preflight_with(&g, "i-a", 0, false), Ok(()));
    }

    #[test]
    fn in_flight_beyond_desired_does_not_underflow() {
        let g = group(0, 1);
        assert!(matches!(
            preflight(&g, "i-a", u32::MAX),
            Err(PreflightRefusal::AtMinSize { .. })
        ));
        assert!(matches!(
            preflight(&group(0, 0), "i-a", 0),
            Err(PreflightRefusal::AtMinSize { .. })
        ));
    }

    #[test]
    fn suspended_terminate_refuses_before_anything_else() {
        let mut g = group(3, 3);
        g.terminate_suspended = true;
        g.suspended_processes = vec!["Terminate".into(), "AZRebalance".into()];
        let refusal = preflight(&g, "i-missing", 0).unwrap_err();
        assert_eq!(
            refusal,
            PreflightRefusal::TerminateSuspended {
                group: "ci-clients".into()
            }
        );
        let msg = refusal.to_string();
        assert!(
            msg.contains("aws autoscaling resume-processes --auto-scaling-group-name ci-clients --scaling-processes Terminate"),
            "{msg}"
        );
        assert_eq!(
            preflight_with(&g, "i-a", 0, false),
            Err(refusal),
            "replacing needs Terminate too"
        );
    }

    #[test]
    fn unknown_instance_is_not_in_group() {
        let refusal = preflight(&group(0, 3), "i-zzz", 0).unwrap_err();
        assert_eq!(
            refusal,
            PreflightRefusal::InstanceNotInGroup {
                group: "ci-clients".into(),
                instance_id: "i-zzz".into()
            }
        );
        assert!(refusal.to_string().contains("i-zzz"));
    }

    #[test]
    fn only_in_service_instances_are_retired() {
        for state in [
            Lifecycle::Pending,
            Lifecycle::Standby,
            Lifecycle::Terminating,
            Lifecycle::Terminated,
            Lifecycle::Detaching,
            Lifecycle::Other("Warmed:Running".into()),
        ] {
            let mut g = group(0, 3);
            g.instances[1].lifecycle = state.clone();
            let refusal = preflight(&g, "i-b", 0).unwrap_err();
            assert_eq!(
                refusal,
                PreflightRefusal::InstanceNotInService {
                    group: "ci-clients".into(),
                    instance_id: "i-b".into(),
                    state: state.clone()
                }
            );
            assert!(
                refusal
                    .to_string()
                    .contains(&format!("is {state}, not InService")),
                "{refusal}"
            );
            assert_eq!(
                preflight(&g, "i-a", 0),
                Ok(()),
                "other instances unaffected"
            );
        }
    }

    #[test]
    fn protected_instance_is_refused_with_the_fix() {
        let mut g = group(0, 3);
        g.instances[2].protected_from_scale_in = true;
        let refusal = preflight_with(&g, "i-c", 0, false).unwrap_err();
        assert_eq!(
            refusal,
            PreflightRefusal::ProtectedFromScaleIn {
                group: "ci-clients".into(),
                instance_id: "i-c".into()
            }
        );
        assert!(
            refusal
                .to_string()
                .contains("--instance-ids i-c --no-protected-from-scale-in"),
            "{refusal}"
        );
    }

    #[test]
    fn instance_problems_are_reported_before_size() {
        // At min size and protected: the instance is the thing to fix first;
        // lowering min size alone would still not let it go.
        let mut g = group(3, 3);
        g.instances[0].protected_from_scale_in = true;
        assert!(matches!(
            preflight(&g, "i-a", 0),
            Err(PreflightRefusal::ProtectedFromScaleIn { .. })
        ));
    }

    #[test]
    fn at_min_size_message_names_numbers_and_fix() {
        let msg = preflight(&group(2, 3), "i-a", 1).unwrap_err().to_string();
        assert!(
            msg.contains("desired capacity 3 minus 1 retirement(s)"),
            "{msg}"
        );
        assert!(msg.contains("minimum size 2"), "{msg}");
        assert!(msg.contains("--min-size"), "{msg}");
    }
}
