"""Terminating lifecycle hooks hold the instances a group removes, as AWS does.

moto 5.2.5 stores lifecycle hooks but never runs them: a group that scales in
terminates its victims at once, whatever hooks it has. In AWS a hook with
LifecycleTransition autoscaling:EC2_INSTANCE_TERMINATING puts every instance
the group removes into `Terminating:Wait` (still in the group, still running
in EC2, no longer counted in the desired capacity) until each hook's action
is completed or times out; then `Terminating:Proceed`, EC2 terminates it and
the group forgets it (reference: /work/shared/reference/aws-lifecycle-hooks.md
§1.1, §1.2, §4.3). This holds for SetDesiredCapacity, UpdateAutoScalingGroup,
ExecutePolicy (all of them go through the group's `set_desired_capacity`) and
TerminateInstanceInAutoScalingGroup with or without decrement (§1.2).

This module keeps the pending actions (one per waiting instance and hook,
with its token and deadlines) on moto's AutoScalingBackend, so
`POST /moto-api/reset` clears them, and patches the paths that remove
instances. A group without a terminating hook runs moto's code unchanged.
Completing actions, heartbeats and timeouts are in asg_lifecycle_actions.py,
notifications in asg_lifecycle_notify.py.

Choices where the reference is silent (tests/env/README.md lists them):
victims are the first unprotected InService instances in moto's order (moto's
own choice; AWS's termination policies are not modelled); the replacement
for a terminate without decrement is launched at once; `Terminating:Proceed`
lasts one reaper tick; groups with a mixed instances policy with overrides
keep moto's behaviour (its weighted capacity maths is not reproduced here).

Time: every hook duration is multiplied by the group's tag
`npo-moto:time-scale` (a positive number, default 1) so timeout tests run
in seconds; parallel tests share one moto, so the knob is per group.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.models import (
    AutoScalingBackend,
    FakeAutoScalingGroup,
    TerminateInstanceActivity,
)
from moto.autoscaling.responses import AutoScalingResponse

from asg_instance_index import states_by_id

TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
IN_SERVICE = "InService"
WAIT = "Terminating:Wait"
PROCEED = "Terminating:Proceed"
# §2.2: the global timeout is 48 h or 100 x HeartbeatTimeout, the smaller.
GLOBAL_TIMEOUT_CAP = 172800
TIME_SCALE_TAG = "npo-moto:time-scale"

# One lock for every request of the autoscaling service, the reaper thread
# and EC2's termination notice: moto's server is threaded and the state
# changed here spans the group, the pending actions and EC2.
LOCK = threading.RLock()
# Called as notifier(backend, group, hook, action) when an action starts.
NOTIFIERS: list = []
# Called as ticker(backend, now) on every reaper tick, under LOCK.
TICKERS: list = []
_BACKENDS: "weakref.WeakSet[AutoScalingBackend]" = weakref.WeakSet()


class Action:
    """One hook's pending lifecycle action for one instance."""

    __slots__ = ("token", "group", "hook", "instance_id", "deadline", "global_deadline")

    def __init__(self, group: str, hook, instance_id: str, now: float, scale: float):
        self.token = str(uuid.uuid4())
        self.group = group
        self.hook = hook.name
        self.instance_id = instance_id
        self.deadline = now + hook.heartbeat_timeout * scale
        self.global_deadline = now + global_timeout(hook.heartbeat_timeout) * scale


def global_timeout(heartbeat_timeout: int) -> int:
    return min(GLOBAL_TIMEOUT_CAP, 100 * heartbeat_timeout)


def actions(backend) -> dict:
    """The backend's pending actions by token (gone after a moto reset)."""
    _BACKENDS.add(backend)
    return backend.__dict__.setdefault("_npo_lifecycle_actions", {})


def proceeding(backend) -> dict:
    """Instance ID -> group name of instances in Terminating:Proceed."""
    _BACKENDS.add(backend)
    return backend.__dict__.setdefault("_npo_lifecycle_proceeding", {})


def backends() -> list:
    return list(_BACKENDS)


def terminating_hooks(backend, group_name: str) -> list:
    return [
        hook
        for hook in backend.lifecycle_hooks.values()
        if hook.auto_scaling_group_name == group_name
        and hook.lifecycle_transition == TERMINATING
    ]


def time_scale(group) -> float:
    for tag in group.tags:
        if tag.get("Key") == TIME_SCALE_TAG:
            try:
                scale = float(tag.get("Value"))
            except (TypeError, ValueError):
                return 1.0
            return scale if scale > 0 else 1.0
    return 1.0


def find_state(group, instance_id: str):
    states = states_by_id(group).get(instance_id)
    return states[0] if states else None


def begin_terminating(backend, group, states: list) -> None:
    """Move `states` to Terminating:Wait with one action per terminating hook
    (§1.1 steps 1-2); with no hook they proceed at once."""
    hooks = terminating_hooks(backend, group.name)
    now = time.monotonic()
    scale = time_scale(group)
    pending = actions(backend)
    for state in states:
        state.lifecycle_state = WAIT
        if not hooks:
            proceed(backend, group, state.instance.id)
            continue
        for hook in hooks:
            action = Action(group.name, hook, state.instance.id, now, scale)
            pending[action.token] = action
            for notifier in NOTIFIERS:
                notifier(backend, group, hook, action)


def record_result(backend, action: Action, result: str) -> None:
    """Apply one action's result: ABANDON ends the instance's other actions,
    CONTINUE waits for them (§2.4); either way the instance then proceeds."""
    pending = actions(backend)
    pending.pop(action.token, None)
    mine = [a for a in pending.values() if a.instance_id == action.instance_id]
    if result == "ABANDON":
        for other in mine:
            pending.pop(other.token, None)
        mine = []
    if mine:
        return
    group = backend.autoscaling_groups.get(action.group)
    if group is not None:
        proceed(backend, group, action.instance_id)


def proceed(backend, group, instance_id: str) -> None:
    """Terminating:Proceed; EC2 starts shutting the instance down. The next
    reaper tick terminates it and removes it from the group (§1.1 steps 3-4)."""
    state = find_state(group, instance_id)
    if state is None:
        return
    state.lifecycle_state = PROCEED
    ec2_state = getattr(state.instance, "_state", None)
    if ec2_state is not None and ec2_state.name == "running":
        ec2_state.name, ec2_state.code = "shutting-down", 32
    proceeding(backend)[instance_id] = group.name


def finish_proceeding(backend) -> None:
    # One removal per group and tick: each rebuilds the group's list (and
    # the ID index of asg_instance_index.py), O(group size).
    by_group: dict = {}
    for instance_id, group_name in proceeding(backend).items():
        by_group.setdefault(group_name, set()).add(instance_id)
    proceeding(backend).clear()
    for group_name, instance_ids in by_group.items():
        group = backend.autoscaling_groups.get(group_name)
        if group is not None:
            _remove_instances(backend, group, instance_ids)


def _remove_instances(backend, group, instance_ids: set) -> None:
    gone = [s for s in group.instance_states if s.instance.id in instance_ids]
    if not gone:
        return
    backend.ec2_backend.terminate_instances([s.instance.id for s in gone])
    # A new list, never an in-place change: readers in other threads keep
    # iterating the list they hold.
    group.instance_states = [
        s for s in group.instance_states if s.instance.id not in instance_ids
    ]
    backend.update_attached_elbs(group.name)
    backend.update_attached_target_groups(group.name)


def drop_actions(backend, instance_ids: set) -> None:
    pending = actions(backend)
    for token, action in list(pending.items()):
        if action.instance_id in instance_ids:
            del pending[token]
    for instance_id in instance_ids:
        proceeding(backend).pop(instance_id, None)


def _hooked(group) -> bool:
    backend = group.autoscaling_backend
    return (
        backend.autoscaling_groups.get(group.name) is group
        and not _mixed_with_overrides(group)
        and bool(terminating_hooks(backend, group.name))
    )


def _mixed_with_overrides(group) -> bool:
    policy = group.mixed_instances_policy or {}
    return bool(policy.get("LaunchTemplate", {}).get("Overrides", []))


def apply() -> None:
    original_set = FakeAutoScalingGroup.set_desired_capacity
    original_terminate = AutoScalingBackend.terminate_instance
    original_delete = AutoScalingBackend.delete_auto_scaling_group
    original_notify = AutoScalingBackend.notify_terminate_instances
    original_detach = AutoScalingBackend.detach_instances
    original_delete_hook = AutoScalingBackend.delete_lifecycle_hook
    original_call = AutoScalingResponse.call_action

    def set_desired_capacity(self, new_capacity):
        with LOCK:
            if not _hooked(self):
                return original_set(self, new_capacity)
            desired = (self.min_size if new_capacity is None else new_capacity) or 0
            active = self.active_instances()
            victims = [s for s in active if not s.protected_from_scale_in]
            victims = victims[: max(0, len(active) - desired)]
            begin_terminating(self.autoscaling_backend, self, victims)
            if len(active) - len(victims) <= desired:
                # moto's code now only launches (or does nothing).
                return original_set(self, new_capacity)
            # Protected instances keep the group above the new desired
            # capacity; moto would terminate whatever comes first.
            self.desired_capacity = desired

    def terminate_instance(self, instance_id, should_decrement):
        with LOCK:
            group = state = None
            for candidate in self.autoscaling_groups.values():
                state = find_state(candidate, instance_id)
                if state is not None:
                    group = candidate
                    break
            if group is None or not _hooked(group):
                return original_terminate(self, instance_id, should_decrement)
            if state.lifecycle_state in (WAIT, PROCEED):
                # Assumed text (not confirmed from AWS): the instance is
                # already being terminated and cannot be chosen again.
                raise ValidationError(
                    f"The instance {instance_id} is not in InService or Standby."
                )
            original_size = group.desired_capacity
            begin_terminating(self, group, [state])
            if should_decrement:
                group.desired_capacity = original_size - 1
            # Launches the replacement when the capacity was not decremented.
            group.set_desired_capacity(group.desired_capacity)
            return TerminateInstanceActivity(state.instance, original_size)

    def delete_auto_scaling_group(self, group_name):
        with LOCK:
            group = self.autoscaling_groups.get(group_name)
            if group is None:
                return original_delete(self, group_name)
            # The group's hooks and outstanding actions go with it (§1.2:
            # ForceDelete "also deletes any outstanding lifecycle actions").
            held = {
                s.instance.id
                for s in group.instance_states
                if s.lifecycle_state in (WAIT, PROCEED)
            }
            drop_actions(self, held)
            _remove_instances(self, group, held)
            for key, hook in list(self.lifecycle_hooks.items()):
                if hook.auto_scaling_group_name == group_name:
                    del self.lifecycle_hooks[key]
            return original_delete(self, group_name)

    def notify_terminate_instances(self, instance_ids):
        # EC2 TerminateInstances does not wait for hooks (§1.2); the
        # instance's actions end with it.
        with LOCK:
            drop_actions(self, set(instance_ids))
            return original_notify(self, instance_ids)

    def detach_instances(self, group_name, instance_ids, should_decrement):
        with LOCK:
            group = self.autoscaling_groups.get(group_name)
            if group is not None:
                for instance_id in instance_ids:
                    state = find_state(group, instance_id)
                    if state is not None and state.lifecycle_state in (WAIT, PROCEED):
                        # AWS's ValidationError for detaching an instance in
                        # another state ends in "is not in InService or Standby".
                        raise ValidationError(
                            f"The instance {instance_id} is not in InService or Standby."
                        )
            return original_detach(self, group_name, instance_ids, should_decrement)

    def delete_lifecycle_hook(self, as_name, name):
        # API DeleteLifecycleHook: "If there are any outstanding lifecycle
        # actions, they are completed first (... CONTINUE for terminating
        # instances)."
        with LOCK:
            original_delete_hook(self, as_name, name)
            for action in list(actions(self).values()):
                if action.group == as_name and action.hook == name:
                    record_result(self, action, "CONTINUE")

    def call_action(self):
        with LOCK:
            return original_call(self)

    FakeAutoScalingGroup.set_desired_capacity = set_desired_capacity
    AutoScalingBackend.terminate_instance = terminate_instance
    AutoScalingBackend.delete_auto_scaling_group = delete_auto_scaling_group
    AutoScalingBackend.notify_terminate_instances = notify_terminate_instances
    AutoScalingBackend.detach_instances = detach_instances
    AutoScalingBackend.delete_lifecycle_hook = delete_lifecycle_hook
    AutoScalingResponse.call_action = call_action
