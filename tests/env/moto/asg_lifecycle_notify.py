"""PutLifecycleHook keeps what it is given; lifecycle actions are announced.

moto 5.2.5's PutLifecycleHook ignores NotificationTargetARN, RoleARN and
NotificationMetadata and DescribeLifecycleHooks answers hard-coded ARNs and
GlobalTimeout 172800 whatever the heartbeat timeout; an update without
LifecycleTransition forgets the transition; no notification is ever sent
(reference /work/shared/reference/aws-lifecycle-hooks.md §4.1). AWS (§2.1,
§2.2, §3):

- the hook keeps its target, role and metadata; GlobalTimeout is
  min(172800, 100 x HeartbeatTimeout); parameters left out of an update keep
  their values; HeartbeatTimeout lies in 30..7200; a new hook needs its
  LifecycleTransition, and its RoleARN when it has a notification target;
  the group must exist;
- a request naming a notification target sends it a test message
  (`"Event": "autoscaling:TEST_NOTIFICATION"`); when that cannot be
  delivered the request fails with ValidationError "Unable to publish test
  message to notification target ..." (the prefix is what public tools
  match on; the tail after the ARN is assumed);
- every lifecycle action (not the test) goes to an SQS target as one flat
  JSON object (§3.2) and to EventBridge as `EC2 Instance-terminate Lifecycle
  Action` from `aws.autoscaling` with the group's ARN as resource (§3.1),
  delivered here to moto's SQS and EventBridge backends in this process.

Only SQS targets are delivered to (an SNS target gets nothing; not
modelled). The messages of the refusals in `_validate` are our own (§6:
AWS's not found); their code, ValidationError, is AWS's usual one. A hook
without NotificationMetadata sends messages without that field (whether
AWS sends it empty is not known).
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

from moto.autoscaling.exceptions import ValidationError
from moto.autoscaling.responses import AutoScalingResponse

import asg_lifecycle_hooks as hooks

SERVICE = "AWS Auto Scaling"
DETAIL_TYPE = "EC2 Instance-terminate Lifecycle Action"
TRANSITIONS = (hooks.TERMINATING, "autoscaling:EC2_INSTANCE_LAUNCHING")


def _now() -> str:
    stamp = datetime.now(timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def _sqs_queue(arn: str):
    """(sqs backend, queue name) of an SQS ARN, or None."""
    parts = arn.split(":")
    if len(parts) != 6 or parts[2] != "sqs":
        return None
    from moto.sqs import sqs_backends

    _, _, _, region, account, name = parts
    return sqs_backends[account][region], name


def _send(arn: str | None, body: dict) -> bool:
    """Deliver `body` to an SQS target; False when it cannot be delivered."""
    if not arn:
        return True
    target = _sqs_queue(arn)
    if target is None:
        return True  # SNS targets are not modelled
    backend, name = target
    if name not in backend.queues or name.endswith(".fifo"):
        # UG-prepare: FIFO queues "are not compatible with lifecycle hooks".
        return False
    backend.send_message(name, json.dumps(body))
    return True


def notify_action(backend, group, hook, action) -> None:
    detail = {
        "Origin": "AutoScalingGroup",
        "Destination": "EC2",
        "Service": SERVICE,
        "Time": _now(),
        "RequestId": str(uuid.uuid4()),
        "LifecycleActionToken": action.token,
        "AccountId": backend.account_id,
        "AutoScalingGroupName": group.name,
        "LifecycleHookName": hook.name,
        "EC2InstanceId": action.instance_id,
        "LifecycleTransition": hooks.TERMINATING,
    }
    metadata = getattr(hook, "notification_metadata", None)
    if metadata is not None:
        detail["NotificationMetadata"] = metadata
    _send(getattr(hook, "notification_target_arn", None), detail)
    _put_event(backend, group, action, metadata)


def _put_event(backend, group, action, metadata) -> None:
    from moto.events.models import events_backends

    detail = {
        "LifecycleActionToken": action.token,
        "AutoScalingGroupName": group.name,
        "LifecycleHookName": action.hook,
        "EC2InstanceId": action.instance_id,
        "LifecycleTransition": hooks.TERMINATING,
        "Origin": "AutoScalingGroup",
        "Destination": "EC2",
    }
    if metadata is not None:
        detail["NotificationMetadata"] = metadata
    events = events_backends[backend.account_id][backend.region_name]
    events.put_events(
        [
            {
                "Source": "aws.autoscaling",
                "DetailType": DETAIL_TYPE,
                "Resources": [group.arn],
                "Detail": json.dumps(detail),
            }
        ]
    )


def _test_notification(backend, group_name: str) -> dict:
    group = backend.autoscaling_groups.get(group_name)
    return {
        "Service": SERVICE,
        "Time": _now(),
        "RequestId": str(uuid.uuid4()),
        "Event": "autoscaling:TEST_NOTIFICATION",
        "AccountId": backend.account_id,
        "AutoScalingGroupName": group_name,
        "AutoScalingGroupARN": group.arn if group is not None else None,
    }


def _validate(request, backend, group_name: str, old) -> None:
    """The API's constraints on PutLifecycleHook (§2.1); the texts are our
    own (AWS's are not known), the code is AWS's."""
    if group_name not in backend.autoscaling_groups:
        raise ValidationError(
            f"AutoScalingGroup name not found - AutoScalingGroup '{group_name}' not found"
        )
    timeout = request._get_int_param("HeartbeatTimeout")
    if timeout is not None and not 30 <= timeout <= 7200:
        raise ValidationError(f"HeartbeatTimeout {timeout} must be between 30 and 7200 seconds.")
    transition = request._get_param("LifecycleTransition")
    if transition is None and old is None:
        raise ValidationError("LifecycleTransition is required for a new lifecycle hook.")
    if transition is not None and transition not in TRANSITIONS:
        raise ValidationError(f"Invalid LifecycleTransition {transition}.")
    result = request._get_param("DefaultResult")
    if result is not None and result not in ("CONTINUE", "ABANDON"):
        raise ValidationError(f"Invalid DefaultResult {result}: must be CONTINUE or ABANDON.")
    # RoleARN is "Required for new lifecycle hooks" whose target is an SNS
    # topic or SQS queue; hooks for EventBridge only have none.
    if old is None and request._get_param("NotificationTargetARN") and not request._get_param(
        "RoleARN"
    ):
        raise ValidationError("RoleARN is required for a new lifecycle hook with a notification target.")


def apply() -> None:
    original_put = AutoScalingResponse.put_lifecycle_hook

    def put_lifecycle_hook(self):
        backend = self.autoscaling_backend
        name = self._get_param("LifecycleHookName")
        group_name = self._get_param("AutoScalingGroupName")
        with hooks.LOCK:
            old = backend.lifecycle_hooks.get(f"{group_name}_{name}")
            _validate(self, backend, group_name, old)
            timeout = self._get_int_param("HeartbeatTimeout")
            values = {
                "lifecycle_transition": self._get_param("LifecycleTransition"),
                "heartbeat_timeout": timeout,
                "default_result": self._get_param("DefaultResult"),
                "role_arn": self._get_param("RoleARN"),
                "notification_target_arn": self._get_param("NotificationTargetARN"),
                "notification_metadata": self._get_param("NotificationMetadata"),
            }
            if old is not None:
                kept = {k: getattr(old, k, None) for k in values}
                values = {k: kept[k] if v is None else v for k, v in values.items()}
            target = self._get_param("NotificationTargetARN")
            if target and not _send(target, _test_notification(backend, group_name)):
                raise ValidationError(
                    f"Unable to publish test message to notification target {target} "
                    f"using IAM role {values['role_arn']}. Please check your target "
                    "and role configuration and try to put lifecycle hook again."
                )
            response = original_put(self)
            hook = backend.lifecycle_hooks[f"{group_name}_{name}"]
            for key, value in values.items():
                if value is not None or key not in ("heartbeat_timeout", "default_result"):
                    setattr(hook, key, value)
            if hook.notification_target_arn == "":
                # "" overrides (clears) the current target (§2.1).
                hook.notification_target_arn = None
            hook.global_timeout = hooks.global_timeout(hook.heartbeat_timeout)
            return response

    AutoScalingResponse.put_lifecycle_hook = put_lifecycle_hook
    hooks.NOTIFIERS.append(notify_action)
