"""CompleteLifecycleAction, RecordLifecycleActionHeartbeat and hook timeouts.

moto 5.2.5 has neither action: both answer HTTP 500 with an HTML body
(reference /work/shared/reference/aws-lifecycle-hooks.md §4.1), which the
AWS SDKs treat as a transient failure and retry. AWS (§2.3, §2.4):

- both find the pending action by group, hook and LifecycleActionToken, or
  by InstanceId; when there is none (never started, already completed,
  timed out) they answer code ValidationError with
  "No active Lifecycle Action found with token <token>" or
  "No active Lifecycle Action found with instance ID <id>";
- CompleteLifecycleAction takes CONTINUE or ABANDON; the instance proceeds
  once every hook continued, or at once on ABANDON;
- a heartbeat restarts the hook's HeartbeatTimeout from now, but never past
  the global timeout, min(48 h, 100 x HeartbeatTimeout), set when the wait
  began;
- at either timeout the hook's DefaultResult is applied, without any request
  arriving: a reaper thread here checks the deadlines every 0.25 s.

Choices where the reference is silent: with both a token and an instance ID
the token decides and the instance must match it (else the token error);
with neither, or a result other than CONTINUE/ABANDON, ValidationError with
the texts below (assumed, not seen from AWS). A token of a length other
than 36 fails the API model's length constraint with AWS's usual
"1 validation error detected" text.
"""

from __future__ import annotations

import threading
import time

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import EmptyResult

import asg_lifecycle_hooks as hooks

TICK_SECONDS = 0.25
RESULTS = ("CONTINUE", "ABANDON")


def _required(response, name: str, wire: str) -> str:
    value = response._get_param(name)
    if not value:
        raise ValidationError(
            f"1 validation error detected: Value null at '{wire}' failed to "
            "satisfy constraint: Member must not be null"
        )
    return value


def _find_action(response):
    """The pending action the request names, or ValidationError as AWS."""
    group = _required(response, "AutoScalingGroupName", "autoScalingGroupName")
    hook = _required(response, "LifecycleHookName", "lifecycleHookName")
    token = response._get_param("LifecycleActionToken")
    instance_id = response._get_param("InstanceId")
    backend = response.autoscaling_backend
    pending = hooks.actions(backend)
    if token:
        if len(token) != 36:
            raise ValidationError(
                f"1 validation error detected: Value '{token}' at "
                "'lifecycleActionToken' failed to satisfy constraint: Member "
                "must have length "
                + ("greater than or equal to 36" if len(token) < 36 else "less than or equal to 36")
            )
        action = pending.get(token)
        if (
            action is None
            or action.group != group
            or action.hook != hook
            or (instance_id and action.instance_id != instance_id)
        ):
            raise ValidationError(f"No active Lifecycle Action found with token {token}")
        return backend, action
    if instance_id:
        for action in pending.values():
            if (action.group, action.hook, action.instance_id) == (group, hook, instance_id):
                return backend, action
        raise ValidationError(
            f"No active Lifecycle Action found with instance ID {instance_id}"
        )
    raise ValidationError("Either LifecycleActionToken or InstanceId must be specified.")


def complete_lifecycle_action(self):
    result = _required(self, "LifecycleActionResult", "lifecycleActionResult")
    if result not in RESULTS:
        raise ValidationError(
            f"Invalid LifecycleActionResult {result}: must be one of CONTINUE, ABANDON."
        )
    with hooks.LOCK:
        backend, action = _find_action(self)
        hooks.record_result(backend, action, result)
    return EmptyResult()


def record_lifecycle_action_heartbeat(self):
    with hooks.LOCK:
        backend, action = _find_action(self)
        hook = backend.lifecycle_hooks.get(f"{action.group}_{action.hook}")
        group = backend.autoscaling_groups.get(action.group)
        if hook is not None and group is not None:
            now = time.monotonic()
            extended = now + hook.heartbeat_timeout * hooks.time_scale(group)
            action.deadline = min(extended, action.global_deadline)
    return EmptyResult()


def tick(now: float) -> None:
    """Apply DefaultResult to every action past a deadline, finish the
    instances that proceeded on the previous tick, run the other tickers."""
    for backend in hooks.backends():
        hooks.finish_proceeding(backend)
        for action in list(hooks.actions(backend).values()):
            if now < min(action.deadline, action.global_deadline):
                continue
            hook = backend.lifecycle_hooks.get(f"{action.group}_{action.hook}")
            result = hook.default_result if hook is not None else "ABANDON"
            hooks.record_result(backend, action, result)
        for ticker in hooks.TICKERS:
            ticker(backend, now)


def _reaper() -> None:
    while True:
        time.sleep(TICK_SECONDS)
        try:
            with hooks.LOCK:
                tick(time.monotonic())
        except Exception as error:  # keep reaping; show what went wrong
            print(f"npo lifecycle reaper: {error!r}", flush=True)


def apply() -> None:
    AutoScalingResponse.complete_lifecycle_action = complete_lifecycle_action
    AutoScalingResponse.record_lifecycle_action_heartbeat = record_lifecycle_action_heartbeat
    threading.Thread(target=_reaper, name="npo-lifecycle-reaper", daemon=True).start()
