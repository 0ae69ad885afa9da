"""Find an Auto Scaling group's instance by ID without scanning the group.

AWS answers DescribeAutoScalingInstances for one instance ID and
TerminateInstanceInAutoScalingGroup in about the same time whatever the size
of the group. moto 5.2.5 walks every instance of every group for each of
them (`describe_auto_scaling_instances`, `terminate_instance`), walks the
group twice more to detach the instance (`detach_instances`), and builds the
set of all the group's instance IDs twice on every capacity change just to
find out that no load balancer or target group is attached
(`update_attached_elbs`, `update_attached_target_groups`), and EC2
TerminateInstances rebuilds every group's instance list even for instances
in no group (`notify_terminate_instances`). At 20,000
instances that is tens of milliseconds of Python per call, all of it an
artifact of moto's lists.

This patch keeps, per group, a dict from instance ID to the group's
`InstanceState`s of that ID, and answers those calls from it in moto's order
and with moto's side effects. moto only ever changes a group's instance list
by appending to it in place (`replace_autoscaling_group_instances`,
`attach_instances`) or by assigning a new list, so the dict is valid while
the list is the same object, and its tail is indexed when the list grew.
Whatever the fast paths do not cover exactly (an unknown group or ID, an ID
held twice, no IDs at all) runs moto's original code.
"""

from __future__ import annotations

import threading

from moto.autoscaling.models import (
    ASG_NAME_TAG,
    AutoScalingBackend,
    DetachInstanceActivity,
    TerminateInstanceActivity,
)

_INDEX = "_npo_state_index"
_LOCK = threading.RLock()


def states_by_id(group) -> dict:
    """The group's instance states by instance ID, in the group's order."""
    with _LOCK:
        states = group.instance_states
        cached = group.__dict__.get(_INDEX)
        if cached is not None and cached[0] is states and cached[1] <= len(states):
            _, seen, index = cached
            if seen == len(states):
                return index
        else:
            seen, index = 0, {}
        for state in states[seen:]:
            index.setdefault(state.instance.id, []).append(state)
        group.__dict__[_INDEX] = (states, len(states), index)
        return index


def _replace_states(group, remaining: list, index: dict) -> None:
    with _LOCK:
        group.instance_states = remaining
        group.__dict__[_INDEX] = (remaining, len(remaining), index)


def apply() -> None:
    original_describe = AutoScalingBackend.describe_auto_scaling_instances
    original_terminate = AutoScalingBackend.terminate_instance
    original_detach = AutoScalingBackend.detach_instances
    original_elbs = AutoScalingBackend.update_attached_elbs
    original_target_groups = AutoScalingBackend.update_attached_target_groups
    original_notify = AutoScalingBackend.notify_terminate_instances

    def describe_auto_scaling_instances(self, instance_ids):
        if not instance_ids:
            return original_describe(self, instance_ids)
        wanted = set(instance_ids)
        answer = []
        for group in self.autoscaling_groups.values():
            index = states_by_id(group)
            hits = [s for i in wanted for s in index.get(i, ())]
            if len(hits) > 1:
                if any(len(index.get(i, ())) > 1 for i in wanted):
                    return original_describe(self, instance_ids)
                # moto lists a group's matches in the group's order.
                order = group.instance_states
                hits.sort(key=order.index)
            answer.extend(hits)
        return answer

    def terminate_instance(self, instance_id, should_decrement):
        for group in self.autoscaling_groups.values():
            states = states_by_id(group).get(instance_id)
            if states:
                break
        else:
            # moto's own failure for an instance in no group.
            return original_terminate(self, instance_id, should_decrement)
        instance = states[0].instance
        group = instance.autoscaling_group
        original_size = group.desired_capacity
        self.detach_instances(group.name, [instance.id], should_decrement)
        self.ec2_backend.terminate_instances([instance.id])
        return TerminateInstanceActivity(instance, original_size)

    def detach_instances(self, group_name, instance_ids, should_decrement):
        group = self.autoscaling_groups.get(group_name)
        if group is None:
            return original_detach(self, group_name, instance_ids, should_decrement)
        with _LOCK:
            index = states_by_id(group)
            wanted = set(instance_ids)
            if any(len(index.get(i, ())) != 1 for i in wanted):
                return original_detach(self, group_name, instance_ids, should_decrement)
            states = group.instance_states
            positions = sorted(states.index(index[i][0]) for i in wanted)
            original_size = group.desired_capacity
            activities = []
            for position in positions:
                instance = states[position].instance
                self.ec2_backend.delete_tags([instance.id], {ASG_NAME_TAG: group.name})
                activities.append(DetachInstanceActivity(instance))
            remaining = list(states)
            for position in reversed(positions):
                del remaining[position]
            for i in wanted:
                del index[i]
            _replace_states(group, remaining, index)
        if should_decrement:
            group.desired_capacity = original_size - len(instance_ids)
        group.set_desired_capacity(group.desired_capacity)
        return activities

    def notify_terminate_instances(self, instance_ids):
        # EC2 TerminateInstances tells every group; moto rebuilds each
        # group's instance list (and so drops this index) even when the
        # group holds none of the instances, as after a detach. Such a
        # group keeps its list, which is what moto's filter leaves it.
        wanted = set(instance_ids)
        for group in list(self.autoscaling_groups.values()):
            index = states_by_id(group)
            if any(i in index for i in wanted):
                return original_notify(self, instance_ids)
        return None

    def update_attached_elbs(self, group_name):
        if not self.autoscaling_groups[group_name].load_balancer_names:
            return
        original_elbs(self, group_name)

    def update_attached_target_groups(self, group_name):
        if not self.autoscaling_groups[group_name].target_group_arns:
            return
        original_target_groups(self, group_name)

    AutoScalingBackend.describe_auto_scaling_instances = describe_auto_scaling_instances
    AutoScalingBackend.terminate_instance = terminate_instance
    AutoScalingBackend.detach_instances = detach_instances
    AutoScalingBackend.notify_terminate_instances = notify_terminate_instances
    AutoScalingBackend.update_attached_elbs = update_attached_elbs
    AutoScalingBackend.update_attached_target_groups = update_attached_target_groups
