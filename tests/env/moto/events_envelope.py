"""EventBridge delivers the whole event envelope, `account` included.

An event EventBridge delivers to a target without an input transformer is
the full envelope: version, id, detail-type, source, account, time, region,
resources, detail (reference /work/shared/reference/aws-lifecycle-hooks.md
§3.1, the documented `EC2 Instance-terminate Lifecycle Action` example).
moto 5.2.5's default template for such targets leaves `account` out, so a
consumer would meet a shape AWS never sends. This restores it, in the
documented order.
"""

from moto.events.utils import EventTemplateParser


def apply() -> None:
    EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = (
        '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", '
        '"source": "<source>", "account": "<account>", "time": <time>, '
        '"region": "<region>", "resources": <resources>, "detail": <detail>}'
    )
