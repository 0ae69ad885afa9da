"""Render a group's instances in DescribeAutoScalingGroups from a cache.

AWS answers DescribeAutoScalingGroups for one group in a fraction of a
second; a group's instances come in that one record whatever their number.
moto 5.2.5 renders each instance through its generic serializer: about ten
members per instance, each found by trying a chain of attribute aliases, then
turned into XML by xmltodict. For one group of 20,000 instances that is
seconds of Python per call (7 s here), for a record whose 20,000 `<member>`
elements hardly change between two calls. That cost is an artifact of
moto's serializer, not of the API.

This patch renders each instance's `<member>...</member>` element with
moto's own serializer, exactly as moto would inside the whole answer, keeps
it on the instance's `InstanceState` together with everything the element
was rendered from (the state's own attributes, its group's launch
configuration name and launch template, the serializer and the path in the
answer), and reuses it while all of that is unchanged. The answer is
serialized by moto as usual except that each group's instance list becomes
a placeholder, which is then replaced by the joined elements: the body is
the same text moto would produce, only cheaper. The list still holds every
instance; nothing is truncated.

Outside the cases this covers exactly (pretty-printed responses, response
transformers registered with moto, an instance state carrying a mutable
attribute, an empty list) moto's serializer renders the list as before.
"""

from __future__ import annotations

import re
import uuid

from moto import settings
from moto.autoscaling.models import InstanceState
from moto.autoscaling.responses import AutoScalingResponse
from moto.core.responses import ActionResult
from moto.core.serialize import XFormedAttributePicker

_CACHE = "_npo_member_xml"
# Attributes of an InstanceState that are not rendered as such: the EC2
# instance and the group (whose rendered properties are part of the key),
# and the cache itself.
_NOT_KEYED = {"instance", "auto_scaling_group", _CACHE}
_IMMUTABLE = (str, int, float, bool, type(None))
_SERIALIZERS: dict[type, type] = {}
_ABSENT = object()


def _state_key(state, group_props: dict):
    """Everything the serializer may read from `state`, or None when the state
    holds a value that could change without the key changing."""
    own = []
    for name, value in state.__dict__.items():
        if name in _NOT_KEYED:
            continue
        if not isinstance(value, _IMMUTABLE):
            return None
        own.append((name, value))
    group = state.__dict__.get("auto_scaling_group")
    props = group_props.get(id(group))
    if props is None:
        # Read as the serializer reads them: a property that raises
        # AttributeError counts as absent.
        name = getattr(state, "launch_configuration_name", _ABSENT)
        template = getattr(state, "launch_template", _ABSENT)
        if isinstance(template, dict):
            template = tuple(template.items())
            if not all(isinstance(v, _IMMUTABLE) for _, v in template):
                return None
        elif not isinstance(template, _IMMUTABLE) and template is not _ABSENT:
            return None
        if not isinstance(name, _IMMUTABLE) and name is not _ABSENT:
            return None
        props = (name, template)
        group_props[id(group)] = props
    return (type(state), tuple(own), props)


def _cached_serializer(base: type) -> type:
    """`base` with a list renderer that splices cached instance elements."""
    if base in _SERIALIZERS:
        return _SERIALIZERS[base]

    class Cached(base):  # type: ignore[misc, valid-type]
        def _serialize_type_list(self, serialized, value, shape, key):
            members = self._npo_members(value, shape)
            if members is None:
                return super()._serialize_type_list(serialized, value, shape, key)
            token = f"npo-instances-{uuid.uuid4().hex}"
            self._npo_splices[token] = members
            self._default_serialize(serialized, token, shape, key)

        def _npo_members(self, value, shape):
            member = shape.member
            if (
                shape.is_flattened
                or member.name != "Instance"
                or type(value) is not list
                or not value
                or any(type(s) is not InstanceState for s in value)
            ):
                return None
            items_name = self.get_serialized_name(member, "member")
            context = (type(self), tuple(self.path), items_name)
            group_props: dict = {}
            parts = []
            for state in value:
                key = _state_key(state, group_props)
                cached = state.__dict__.get(_CACHE)
                if key is not None and cached is not None and cached[0] == (context, key):
                    parts.append(cached[1])
                    continue
                xml = self._npo_render(state, member, items_name)
                if key is not None:
                    state.__dict__[_CACHE] = ((context, key), xml)
                parts.append(xml)
            joined = "".join(parts)
            # moto writes an empty element for a list whose items all render
            # empty; let it.
            return joined or None

        def _npo_render(self, state, member, items_name) -> str:
            """One `<member>` element as moto's list serializer writes it."""
            wrapper: dict = {}
            self._serialize(wrapper, state, member, member.name)
            if not wrapper:
                return ""
            rendered = wrapper[self.get_serialized_name(member, member.name)]
            if rendered == {}:
                return ""
            return self._serialize_body({items_name: rendered})

    _SERIALIZERS[base] = Cached
    return Cached


class _SplicedResult(ActionResult):
    """ActionResult.execute_result with the cached list renderer."""

    def execute_result(self, context):
        transformers = getattr(context.response, "RESPONSE_KEY_PATH_TO_TRANSFORMER", None)
        if settings.PRETTIFY_RESPONSES or transformers:
            return super().execute_result(context)
        serializer = _cached_serializer(context.serializer_class)(
            operation_model=context.operation_model,
            pretty_print=False,
            value_picker=XFormedAttributePicker(response_transformers=transformers),
        )
        serializer._npo_splices = {}
        serialized = serializer.serialize(self.result)
        body = serialized["body"]
        splices = serializer._npo_splices
        if splices:
            pattern = re.compile("|".join(map(re.escape, splices)))
            body = pattern.sub(lambda m: splices[m.group(0)], body)
        return serialized["status_code"], serialized["headers"], body


def apply() -> None:
    original = AutoScalingResponse.describe_auto_scaling_groups

    def describe_auto_scaling_groups(self):
        return _SplicedResult(original(self).result)

    AutoScalingResponse.describe_auto_scaling_groups = describe_auto_scaling_groups

