"""Refuse a desired capacity outside the group's MinSize..MaxSize, as AWS does.

moto 5.2.5 sets any desired capacity it is given. AWS answers HTTP 400 with
code ValidationError and these messages (quoted from AWS answers; see
tests/env/README.md for the sources):

- SetDesiredCapacity above MaxSize:
  "New SetDesiredCapacity value 2 is above max value 1 for the AutoScalingGroup."
- SetDesiredCapacity below MinSize:
  "New SetDesiredCapacity value 1 is below min value 2 for the AutoScalingGroup."
- UpdateAutoScalingGroup with a DesiredCapacity outside the (new) bounds:
  "Desired capacity:15 must be between the specified min size:0 and max size:10"

Without a DesiredCapacity, UpdateAutoScalingGroup moves the desired capacity
into the new bounds (moto already does that).
"""

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse


def _group(response, name):
    return response.autoscaling_backend.autoscaling_groups.get(name)


def apply() -> None:
    original_set = AutoScalingResponse.set_desired_capacity
    original_update = AutoScalingResponse.update_auto_scaling_group

    def set_desired_capacity(self):
        group = _group(self, self._get_param("AutoScalingGroupName"))
        desired = self._get_int_param("DesiredCapacity")
        if group is not None and desired is not None:
            if desired > group.max_size:
                raise ValidationError(
                    f"New SetDesiredCapacity value {desired} is above max value "
                    f"{group.max_size} for the AutoScalingGroup."
                )
            if desired < group.min_size:
                raise ValidationError(
                    f"New SetDesiredCapacity value {desired} is below min value "
                    f"{group.min_size} for the AutoScalingGroup."
                )
        return original_set(self)

    def update_auto_scaling_group(self):
        group = _group(self, self._get_param("AutoScalingGroupName"))
        desired = self._get_int_param("DesiredCapacity")
        if group is not None and desired is not None:
            min_size = self._get_int_param("MinSize")
            max_size = self._get_int_param("MaxSize")
            min_size = group.min_size if min_size is None else min_size
            max_size = group.max_size if max_size is None else max_size
            if not min_size <= desired <= max_size:
                raise ValidationError(
                    f"Desired capacity:{desired} must be between the specified "
                    f"min size:{min_size} and max size:{max_size}"
                )
        return original_update(self)

    AutoScalingResponse.set_desired_capacity = set_desired_capacity
    AutoScalingResponse.update_auto_scaling_group = update_auto_scaling_group
