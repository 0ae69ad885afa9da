"""Find an EC2 instance, volume or resource's tags by ID without scanning all.

AWS answers DescribeInstances for one ID, and terminates one instance, in the
same time whatever the account holds. moto 5.2.5 finds an instance by copying
every reservation and walking every instance (`get_instance`,
`get_multi_instances_by_id`, `get_reservations_by_instance_ids`), a volume by
walking every volume (`describe_volumes`), and an instance's tags by matching
a compiled pattern against every tagged resource (`describe_tags` with a
`resource-id` filter, which every instance rendering calls). With one Auto
Scaling group of 20,000 instances each of these costs milliseconds per call,
and launching the group costs O(n²) (each launch attaches a root volume,
which looks both the instance and the volume up). That is an artifact of
moto's data structures, not of the API.

This patch indexes instances by ID as moto appends them to a reservation, and
answers the lookups above from the index and from moto's own dicts
(`volumes`, `tags`), in the same order and with the same errors as moto.
Anything the fast paths do not cover exactly (filters other than one plain
resource ID, duplicate IDs in a request, an ID the index does not hold) goes
to moto's original code, so the answers stay moto's byte for byte.

moto only ever adds reservations (`run_instances`) and only ever appends to
a reservation's instance list; `get_reservations_by_instance_ids` replaces
the list on copies only. Every index entry is checked against the live
reservation before it is used.
"""

from __future__ import annotations

from moto.ec2.exceptions import InvalidVolumeIdError
from moto.ec2.models.elastic_block_store import EBSBackend
from moto.ec2.models.instances import InstanceBackend, Reservation
from moto.ec2.models.tags import TagBackend
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, filter_reservations, get_prefix

_INDEX = "_npo_instance_index"
# Characters that make a tag filter value a pattern rather than one ID
# (moto compiles filter values with fnmatch; an ID without them matches only
# itself).
_PATTERN_CHARS = set("*?[]\\")


class _IndexedInstances(list):
    """A reservation's instance list that records each instance appended to
    it in its backend's index: ID -> (reservation, position, instance)."""

    def __init__(self, reservation: Reservation) -> None:
        super().__init__()
        self._reservation = reservation

    def append(self, instance) -> None:  # type: ignore[override]
        position = len(self)
        super().append(instance)
        backend = instance.ec2_backend
        index = backend.__dict__.setdefault(_INDEX, {})
        index[instance.id] = (self._reservation, position, instance)


def _hit(backend, instance_id: str):
    """The index entry of `instance_id` if it still describes the live
    reservation (a reset backend or a replaced list drops it), else None."""
    index = backend.__dict__.get(_INDEX)
    if index is None:
        return None
    entry = index.get(instance_id)
    if entry is None:
        return None
    reservation, position, instance = entry
    if backend.reservations.get(reservation.id) is not reservation:
        return None
    instances = reservation.instances
    if position >= len(instances) or instances[position] is not instance:
        return None
    return entry


def apply() -> None:
    original_reservation_init = Reservation.__init__
    original_get_instance = InstanceBackend.get_instance
    original_get_instance_by_id = InstanceBackend.get_instance_by_id
    original_get_multi = InstanceBackend.get_multi_instances_by_id
    original_get_reservations = InstanceBackend.get_reservations_by_instance_ids
    original_describe_volumes = EBSBackend.describe_volumes
    original_describe_tags = TagBackend.describe_tags

    def reservation_init(self, *args, **kwargs) -> None:
        original_reservation_init(self, *args, **kwargs)
        self.instances = _IndexedInstances(self)

    def get_instance(self, instance_id: str):
        entry = _hit(self, instance_id)
        if entry is None:
            return original_get_instance(self, instance_id)
        return entry[2]

    def get_instance_by_id(self, instance_id: str):
        entry = _hit(self, instance_id)
        if entry is None:
            return original_get_instance_by_id(self, instance_id)
        return entry[2]

    def get_multi_instances_by_id(self, instance_ids, filters=None):
        entries = [_hit(self, i) for i in instance_ids]
        if any(e is None for e in entries):
            # moto's own answer, including its error for unknown IDs.
            return original_get_multi(self, instance_ids, filters)
        return [e[2] for e in entries if e[2].applies(filters)]

    def get_reservations_by_instance_ids(self, instance_ids, filters=None):
        entries = [_hit(self, i) for i in instance_ids]
        if (
            not entries
            or any(e is None for e in entries)
            or len(set(instance_ids)) != len(instance_ids)
        ):
            return original_get_reservations(self, instance_ids, filters)
        # moto lists the matching reservations in their order of creation,
        # each (a shallow copy, as all_reservations makes) holding only the
        # requested instances in their launch order.
        by_reservation: dict[str, tuple[Reservation, list]] = {}
        for reservation, position, instance in entries:
            by_reservation.setdefault(reservation.id, (reservation, []))[1].append(
                (position, instance)
            )
        chosen = list(by_reservation.values())
        if len(chosen) > 1:
            order = {rid: n for n, rid in enumerate(self.reservations)}
            chosen.sort(key=lambda pair: order[pair[0].id])
        reservations = []
        for reservation, hits in chosen:
            answer = Reservation.__new__(Reservation)
            answer.__dict__.update(reservation.__dict__)
            answer.instances = [instance for _, instance in sorted(hits, key=_first)]
            reservations.append(answer)
        if filters is not None:
            reservations = filter_reservations(reservations, filters)
        return reservations

    def describe_volumes(self, volume_ids=None, filters=None):
        if not volume_ids or len(volume_ids) != 1 or filters:
            return original_describe_volumes(self, volume_ids, filters)
        volume = self.volumes.get(volume_ids[0])
        if volume is None:
            # moto's error lists the IDs it did not find.
            raise InvalidVolumeIdError(set(volume_ids))
        return [volume]

    def describe_tags(self, filters=None):
        ids = (filters or {}).get("resource-id")
        if (
            filters is None
            or set(filters) != {"resource-id"}
            or len(ids) != 1
            or _PATTERN_CHARS & set(ids[0])
        ):
            return original_describe_tags(self, filters)
        resource_id = ids[0]
        tags = self.tags.get(resource_id)
        if not tags:
            return []
        resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
        return [
            {
                "resource_id": resource_id,
                "key": key,
                "value": value,
                "resource_type": resource_type,
            }
            for key, value in tags.copy().items()
        ]

    Reservation.__init__ = reservation_init
    InstanceBackend.get_instance = get_instance
    InstanceBackend.get_instance_by_id = get_instance_by_id
    InstanceBackend.get_multi_instances_by_id = get_multi_instances_by_id
    InstanceBackend.get_reservations_by_instance_ids = get_reservations_by_instance_ids
    EBSBackend.describe_volumes = describe_volumes
    TagBackend.describe_tags = describe_tags


def _first(pair):
    return pair[0]

