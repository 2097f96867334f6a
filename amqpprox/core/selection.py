"""Backend selection: partition policies and the round-robin selector.

A farm's members are split into ordered partitions (``datacenter-affinity`` puts the
members in this proxy's datacenter first). Round-robin keeps one marker per partition.
Each new session takes a snapshot of the markers and walks the candidates with a retry
count: the top partition from its marker onwards, then the next partition, and so on,
so every member is tried at most once per session. Unlike the original, the order
inside a partition is FARM ADD order rather than hash order.
"""

from __future__ import annotations

from collections.abc import Sequence

from amqpprox.core.model import DATACENTER_AFFINITY, Backend


def partition_members(
    members: Sequence[Backend], policies: Sequence[str], datacenter: str
) -> list[list[str]]:
    """Apply each policy in order to one partition holding every member."""
    partitions: list[list[Backend]] = [list(members)]
    for policy in policies:
        if policy == DATACENTER_AFFINITY:
            split: list[list[Backend]] = []
            for part in partitions:
                split.append([b for b in part if b.datacenter == datacenter])
                split.append([b for b in part if b.datacenter != datacenter])
            partitions = [p for p in split if p]
    return [[b.name for b in part] for part in partitions if part]


class RoundRobin:
    """Round-robin over ordered partitions, with a live marker per partition."""

    __slots__ = ("markers", "partitions")

    def __init__(self, partitions: list[list[str]]) -> None:
        self.partitions = partitions
        self.markers = [0] * len(partitions)

    def plan(self) -> ConnectionPlan:
        return ConnectionPlan(self, list(self.markers))


class ConnectionPlan:
    """The candidate backends of one session, in the order they are to be tried."""

    __slots__ = ("_retry", "_selector", "_snapshot")

    def __init__(self, selector: RoundRobin, snapshot: list[int]) -> None:
        self._selector = selector
        self._snapshot = snapshot
        self._retry = 0

    def next_backend(self) -> str | None:
        """The next backend name to try, or None when every member has been tried."""
        remaining = self._retry
        for index, part in enumerate(self._selector.partitions):
            size = len(part)
            if remaining >= size:
                remaining -= size
                continue
            self._retry += 1
            self._selector.markers[index] += 1
            return part[(self._snapshot[index] + remaining) % size]
        return None


class SingleBackendPlan:
    """A vhost mapped straight to one backend: one candidate, no retries across backends."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name: str | None = name

    def next_backend(self) -> str | None:
        name, self._name = self._name, None
        return name
