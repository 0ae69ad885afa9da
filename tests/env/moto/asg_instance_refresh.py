"""A minimal instance refresh whose replaced instances go through the hooks.

moto 5.2.5 has no instance refresh: StartInstanceRefresh,
DescribeInstanceRefreshes and CancelInstanceRefresh answer HTTP 500. In AWS
an instance refresh replaces the group's instances in batches, and each
replaced instance passes through the group's terminating hooks ("Instance
Refresh: Replacement instances", reference
/work/shared/reference/aws-lifecycle-hooks.md §1.2), so it waits in
Terminating:Wait like any scale-in victim.

What is modelled (API model text of botocore, RefreshPreferences and the
three operations, for what the reference does not cover):

- Strategy Rolling only. The instances to replace are the group's InService
  instances when the refresh starts, not protected from scale in (AWS's
  defaults ScaleInProtectedInstances=Ignore, StandbyInstances=Ignore).
- A batch is as large as the healthy bounds allow, at least one: the
  desired capacity (or MaxHealthyPercentage of it, rounded down, when set)
  minus MinHealthyPercentage (default 90) of it, rounded up. With
  MaxHealthyPercentage omitted AWS "terminates an instance and launches its
  replacement simultaneously"; with it set, or when the bounds allow no
  termination (MinHealthyPercentage 100), it launches a new instance before
  terminating an old one (API model; AWS's answer on re:Post about the
  instance maintenance policy). Here both start in the same reaper tick: the
  victims enter the hooks (Terminating:Wait) and their replacements are
  launched InService at once, so the group never has fewer InService
  instances than its desired capacity while the victims wait.
- The next batch starts when every victim of the last one has left the group
  (its hook actions completed or timed out) and the warmup has passed
  (InstanceWarmup, else the group's HealthCheckGracePeriod; scaled by the
  group's `npo-moto:time-scale` tag like the hook timeouts).
- Status Pending -> InProgress -> Successful; CancelInstanceRefresh makes it
  Cancelling until the current batch has left, then Cancelled (nothing is
  rolled back). PercentageComplete and InstancesToUpdate count the instances
  replaced or gone.
- Errors: a second refresh while one is Pending/InProgress/Cancelling ->
  InstanceRefreshInProgress "An Instance Refresh is already in progress and
  blocks the execution of this Instance Refresh."; Cancel with none active ->
  ActiveInstanceRefreshNotFound "No in progress or pending Instance Refresh
  found for Auto Scaling group <name>" (the text after "found" is assumed).
- Not modelled and refused with a ValidationError that says so (rather than
  silently ignored): ReplaceRootVolume, DesiredConfiguration, SkipMatching,
  CheckpointPercentages, AutoRollback, AlarmSpecification, BakeTime.
"""

from __future__ import annotations

import math
import time
import uuid
from datetime import datetime, timezone

from moto.autoscaling.exceptions import AutoscalingClientError, ValidationError
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult

import asg_lifecycle_hooks as hooks

ACTIVE = ("Pending", "InProgress", "Cancelling")
UNMODELLED = ("CheckpointPercentages", "AlarmSpecification", "BakeTime")


class InstanceRefreshInProgress(AutoscalingClientError):
    code = "InstanceRefreshInProgress"


class ActiveInstanceRefreshNotFound(AutoscalingClientError):
    code = "ActiveInstanceRefreshNotFound"


class Refresh:
    def __init__(self, group, preferences: dict, to_replace: list):
        self.id = str(uuid.uuid4())
        self.group = group.name
        self.status = "Pending"
        self.start_time = datetime.now(timezone.utc)
        self.end_time = None
        self.preferences = preferences
        self.to_replace = to_replace
        self.batch: set = set()
        self.batch_started = 0.0

    def render(self, backend) -> dict:
        left = len(self.remaining(backend))
        total = len(self.to_replace)
        done = 100 if total == 0 else (total - left) * 100 // total
        if self.status == "Successful":
            done, left = 100, 0
        answer = {
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group,
            "Status": self.status,
            "StartTime": self.start_time,
            "PercentageComplete": done,
            "InstancesToUpdate": left,
            "ProgressDetails": {
                "LivePoolProgress": {"PercentageComplete": done, "InstancesToUpdate": left}
            },
            "Preferences": self.preferences,
            "Strategy": "Rolling",
        }
        if self.end_time is not None:
            answer["EndTime"] = self.end_time
        return answer

    def remaining(self, backend) -> list:
        """Instances still to replace: in the group, InService, not in the
        current batch (replaced or gone ones count as done)."""
        group = backend.autoscaling_groups.get(self.group)
        if group is None:
            return []
        live = {
            s.instance.id
            for s in group.instance_states
            if s.lifecycle_state == hooks.IN_SERVICE and not s.protected_from_scale_in
        }
        return [i for i in self.to_replace if i in live or i in self.batch]

    def finish(self, status: str) -> None:
        self.status = status
        self.end_time = datetime.now(timezone.utc)


def refreshes(backend) -> dict:
    """Group name -> its refreshes, newest first (gone after a moto reset)."""
    hooks.actions(backend)  # registers the backend with the reaper
    return backend.__dict__.setdefault("_npo_instance_refreshes", {})


def _preferences(params: dict) -> dict:
    given = dict(params.get("Preferences") or {})
    for key in UNMODELLED:
        if key in given:
            raise ValidationError(f"npo moto: instance refresh {key} is not modelled")
    for key in ("SkipMatching", "AutoRollback"):
        if str(given.get(key, "false")).lower() == "true":
            raise ValidationError(f"npo moto: instance refresh {key} is not modelled")
    if params.get("DesiredConfiguration"):
        raise ValidationError("npo moto: instance refresh DesiredConfiguration is not modelled")
    low = int(given.get("MinHealthyPercentage", 90))
    high = given.get("MaxHealthyPercentage")
    if not 0 <= low <= 100:
        raise ValidationError("MinHealthyPercentage must be between 0 and 100.")
    if high is not None:
        high = int(high)
        if "MinHealthyPercentage" not in given or not 100 <= high <= 200 or high - low > 100:
            raise ValidationError(
                "MaxHealthyPercentage must be between 100 and 200, set together with "
                "MinHealthyPercentage, and at most 100 above it."
            )
        given["MaxHealthyPercentage"] = high
    given["MinHealthyPercentage"] = low
    if "InstanceWarmup" in given:
        given["InstanceWarmup"] = int(given["InstanceWarmup"])
    return given


def _batch_size(refresh: Refresh, desired: int) -> int:
    prefs = refresh.preferences
    floor = math.ceil(desired * prefs["MinHealthyPercentage"] / 100)
    ceiling = desired
    if prefs.get("MaxHealthyPercentage") is not None:
        ceiling = math.floor(desired * prefs["MaxHealthyPercentage"] / 100)
    return max(1, ceiling - floor)


def tick(backend, now: float) -> None:
    for runs in list(refreshes(backend).values()):
        refresh = next((r for r in runs if r.status in ACTIVE), None)
        if refresh is not None:
            _advance(backend, refresh, now)


def _advance(backend, refresh: Refresh, now: float) -> None:
    group = backend.autoscaling_groups.get(refresh.group)
    if group is None:
        refresh.finish("Cancelled")
        return
    if refresh.status == "Pending":
        refresh.status = "InProgress"
    present = {s.instance.id for s in group.instance_states}
    if refresh.batch & present:
        return  # victims still held by the hooks or proceeding
    warmup = refresh.preferences.get("InstanceWarmup")
    if warmup is None:
        warmup = group.health_check_grace_period or 0
    if refresh.batch and now < refresh.batch_started + warmup * hooks.time_scale(group):
        return
    refresh.batch = set()
    if refresh.status == "Cancelling":
        refresh.finish("Cancelled")
        return
    remaining = refresh.remaining(backend)
    if not remaining:
        refresh.finish("Successful")
        return
    victims_ids = remaining[: _batch_size(refresh, group.desired_capacity or 0)]
    victims = [hooks.find_state(group, i) for i in victims_ids]
    refresh.batch = set(victims_ids)
    refresh.batch_started = now
    hooks.begin_terminating(backend, group, victims)
    # The victims no longer count; this launches their replacements.
    group.set_desired_capacity(group.desired_capacity)


def start_instance_refresh(self):
    params = self._get_params()
    name = self._get_param("AutoScalingGroupName")
    strategy = self._get_param("Strategy") or "Rolling"
    if strategy != "Rolling":
        raise ValidationError(f"npo moto: instance refresh strategy {strategy} is not modelled")
    preferences = _preferences(params)
    backend = self.autoscaling_backend
    with hooks.LOCK:
        group = backend.autoscaling_groups.get(name)
        if group is None:
            raise ValidationError(
                f"AutoScalingGroup name not found - AutoScalingGroup '{name}' not found"
            )
        runs = refreshes(backend).setdefault(name, [])
        if any(r.status in ACTIVE for r in runs):
            raise InstanceRefreshInProgress(
                "An Instance Refresh is already in progress and blocks the execution "
                "of this Instance Refresh."
            )
        to_replace = [
            s.instance.id
            for s in group.instance_states
            if s.lifecycle_state == hooks.IN_SERVICE and not s.protected_from_scale_in
        ]
        refresh = Refresh(group, preferences, to_replace)
        runs.insert(0, refresh)
    return ActionResult({"InstanceRefreshId": refresh.id})


def describe_instance_refreshes(self):
    name = self._get_param("AutoScalingGroupName")
    wanted = set(self._get_param("InstanceRefreshIds", []) or [])
    backend = self.autoscaling_backend
    with hooks.LOCK:
        runs = refreshes(backend).get(name, [])
        answer = [r.render(backend) for r in runs if not wanted or r.id in wanted]
    return ActionResult({"InstanceRefreshes": answer})


def cancel_instance_refresh(self):
    name = self._get_param("AutoScalingGroupName")
    backend = self.autoscaling_backend
    with hooks.LOCK:
        runs = refreshes(backend).get(name, [])
        refresh = next((r for r in runs if r.status in ("Pending", "InProgress")), None)
        if refresh is None:
            raise ActiveInstanceRefreshNotFound(
                f"No in progress or pending Instance Refresh found for Auto Scaling group {name}"
            )
        refresh.status = "Cancelling"
    return ActionResult({"InstanceRefreshId": refresh.id})


def apply() -> None:
    AutoScalingResponse.start_instance_refresh = start_instance_refresh
    AutoScalingResponse.describe_instance_refreshes = describe_instance_refreshes
    AutoScalingResponse.cancel_instance_refresh = cancel_instance_refresh
    hooks.TICKERS.append(tick)
