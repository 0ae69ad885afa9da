"""moto's server with the project's corrections applied first.

moto is more lenient than AWS in places the operator depends on, and slower
than AWS in ways that grow with the group; each module listed in PATCHES
corrects one such place by monkeypatching moto and exposes `apply()`. Patches run in this process before the server starts (never with
`--reload`, which would restart without them). Arguments are moto_server's.
"""

import importlib
import os
import sys

# One module per correction, named for what it enforces.
PATCHES = [
    "asg_capacity_bounds",
    "asg_detach_checks",
    # Lookups and renderings that cost O(group size) per call in moto and
    # not in AWS (tests/env/README.md, "moto at scale").
    "ec2_instance_index",
    "asg_instance_index",
    "asg_group_render",
    # Terminating lifecycle hooks, enforced as AWS does (tests/env/README.md,
    # "Lifecycle hooks"); after the index modules, whose lookups they use.
    "asg_lifecycle_hooks",
    "asg_lifecycle_actions",
    "asg_lifecycle_notify",
    "asg_instance_refresh",
    "events_envelope",
    # Last: it wraps the versions the patches above installed.
    "asg_atomic_capacity",
]


def main() -> None:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    for name in PATCHES:
        importlib.import_module(name).apply()
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
