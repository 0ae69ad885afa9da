"""Refuse a DetachInstances that AWS refuses, before it changes anything.

moto 5.2.5 detaches whatever IDs it is given: an ID that is not in the
group is skipped, yet the desired capacity still drops by the number of IDs
named (`original_size - len(instance_ids)`), and any number of IDs, any
lifecycle state and any resulting capacity are accepted. AWS validates the
whole request first and answers HTTP 400, code ValidationError (texts as
AWS's SDKs print them; see tests/env/README.md for the sources):

- more than 20 IDs (API reference: "You can specify up to 20 instances"):
  "List exceeds the maximum number of instances to detach. Please retry
  your request with fewer instances."
- an ID not in the group:
  "The instance i-0123 is not part of Auto Scaling group NAME."
- an instance in neither InService nor Standby (user guide: "You can detach
  an instance only when it's either in an InService or StandBy state"):
  "The instance i-0123 is not in InService or Standby."
- with ShouldDecrementDesiredCapacity, a desired capacity that would drop
  below MinSize:
  "AutoScalingGroup NAME has min-size=1, max-size=50, and desired-size=1.
  To detach 1 instance, please update the AutoScalingGroup sizes
  appropriately."

The checks and the detach run under the group lock (`asg_lifecycle_hooks.
LOCK`), so two concurrent detaches of one instance cannot both pass: the
second is refused, as AWS refuses an instance no longer in the group.
"""

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse

from asg_instance_index import states_by_id
from asg_lifecycle_hooks import LOCK

MOST_IDS = 20
DETACHABLE = ("InService", "Standby")


def check(group, instance_ids, should_decrement) -> None:
    """Raise AWS's ValidationError for a detach it would refuse."""
    if len(instance_ids) > MOST_IDS:
        raise ValidationError(
            "List exceeds the maximum number of instances to detach. "
            "Please retry your request with fewer instances."
        )
    index = states_by_id(group)
    for instance_id in instance_ids:
        states = index.get(instance_id)
        if not states:
            raise ValidationError(
                f"The instance {instance_id} is not part of Auto Scaling group "
                f"{group.name}."
            )
        if states[0].lifecycle_state not in DETACHABLE:
            raise ValidationError(
                f"The instance {instance_id} is not in InService or Standby."
            )
    wanted = len(set(instance_ids))
    if should_decrement and group.desired_capacity - wanted < group.min_size:
        noun = "instance" if wanted == 1 else "instances"
        raise ValidationError(
            f"AutoScalingGroup {group.name} has min-size={group.min_size}, "
            f"max-size={group.max_size}, and desired-size={group.desired_capacity}. "
            f"To detach {wanted} {noun}, please update the AutoScalingGroup "
            "sizes appropriately."
        )


def apply() -> None:
    original = AutoScalingResponse.detach_instances

    def detach_instances(self):
        group = self.autoscaling_backend.autoscaling_groups.get(
            self._get_param("AutoScalingGroupName")
        )
        with LOCK:
            if group is not None:
                check(
                    group,
                    self._get_param("InstanceIds", []),
                    self._get_bool_param("ShouldDecrementDesiredCapacity", False),
                )
            return original(self)

    AutoScalingResponse.detach_instances = detach_instances
