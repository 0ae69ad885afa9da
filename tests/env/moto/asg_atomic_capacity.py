"""One change to a group's capacity or membership at a time, as AWS makes them.

AWS applies each TerminateInstanceInAutoScalingGroup with decrement, each
SetDesiredCapacity and each detach as one step on the group: calls sent side
by side all take effect. moto's threaded server runs them side by side in
Python, and its read-modify-write of the desired capacity interleaves: two
concurrent terminates with decrement both read 100 and both write 99, one
decrement is lost, and moto launches a replacement VM that AWS never would
(seen in this project's bench: 5 lost in 200 calls 16 at a time on a
5,000-instance group; since `asg_instance_index` shortened moto's window it
no longer shows at 2,000 instances, 32 at a time, but nothing rules it out).
With the lock it holds by construction (`tests/moto_scale.rs`).

The bench's proxy used to forward every mutating call one at a time to
avoid that, which also serialized the VM kill it does after each terminate
and held a 4,000-VM scale-in to ~20 terminates a second. Here the backend
calls that change a group hold one lock: calls stay concurrent on the wire,
as with AWS, and only moto's few milliseconds of bookkeeping are serial.
The lock is the lifecycle hooks' (`asg_lifecycle_hooks.LOCK`), which their
reaper already holds while it detaches: one lock taken first everywhere, so
no two orders can deadlock. Applied last, so it wraps the other patches'
versions.
"""

from __future__ import annotations

import functools

from moto.autoscaling.models import AutoScalingBackend

from asg_lifecycle_hooks import LOCK

# The backend calls that read and write a group's desired capacity or
# instance list.
MUTATORS = (
    "terminate_instance",
    "set_desired_capacity",
    "detach_instances",
    "attach_instances",
    "update_auto_scaling_group",
    "enter_standby_instances",
    "exit_standby_instances",
)


def _locked(original):
    @functools.wraps(original)
    def call(self, *args, **kwargs):
        with LOCK:
            return original(self, *args, **kwargs)

    return call


def apply() -> None:
    for name in MUTATORS:
        setattr(AutoScalingBackend, name, _locked(getattr(AutoScalingBackend, name)))
