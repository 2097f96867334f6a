"""Immutable configuration values with their validation: backends, farms, mappings, listeners.

Validation lives here so that every front end rejects the same input with the same
error. Nothing here does I/O; name resolution happens in ``core.operations``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from amqpprox.errors import InvalidArgument

ROUND_ROBIN = "round-robin"
SELECTORS = frozenset({ROUND_ROBIN})
DATACENTER_AFFINITY = "datacenter-affinity"
PARTITION_POLICIES = frozenset({DATACENTER_AFFINITY})

_NAME = re.compile(r"^[^\s]{1,255}$")


def validate_name(kind: str, name: str) -> str:
    """A name is 1..255 characters without white space (the text protocol splits on it)."""
    if not _NAME.match(name):
        raise InvalidArgument(f"{kind} name must be 1..255 characters without spaces: {name!r}")
    return name


def validate_port(port: int, *, allow_zero: bool = False) -> int:
    low = 0 if allow_zero else 1
    if not low <= port <= 65535:
        raise InvalidArgument(f"port must be between {low} and 65535: {port}")
    return port


@dataclass(frozen=True, slots=True)
class Backend:
    """One broker endpoint.

    ``ip`` is the address resolved when the backend was added (BACKEND ADD); it is
    ``None`` for a DNS backend (BACKEND ADD_DNS), whose host is resolved at each connect.
    ``proxy_protocol`` is 0 (off), 1 (PROXY v1 text) or 2 (PROXY v2 binary).
    """

    name: str
    datacenter: str
    host: str
    port: int
    ip: str | None = None
    proxy_protocol: int = 0
    tls: bool = False

    def __post_init__(self) -> None:
        validate_name("backend", self.name)
        validate_port(self.port)
        if not self.host:
            raise InvalidArgument("backend host must not be empty")
        if self.proxy_protocol not in (0, 1, 2):
            raise InvalidArgument(f"proxy_protocol must be 0, 1 or 2: {self.proxy_protocol}")

    @property
    def dns(self) -> bool:
        return self.ip is None

    def describe(self) -> str:
        """The original's one-line form, as BACKEND PRINT and its errors show it."""
        flags = ""
        if self.proxy_protocol == 1:
            flags += " PROXY PROTOCOL V1 ENABLED"
        elif self.proxy_protocol == 2:
            flags += " PROXY PROTOCOL V2 ENABLED"
        if self.tls:
            flags += " TLS"
        return f"{self.name} ({self.datacenter}): {self.host} {self.ip or ''}:{self.port}{flags}"


@dataclass(frozen=True, slots=True)
class Farm:
    """A named, ordered set of backends with a selector and ordered partition policies."""

    name: str
    members: tuple[str, ...]
    selector: str = ROUND_ROBIN
    partitions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        validate_name("farm", self.name)
        if not self.members:
            raise InvalidArgument("a farm needs at least one backend")
        if self.selector not in SELECTORS:
            raise InvalidArgument(
                f"unknown selector {self.selector!r}",
                legacy_text=f"Selector '{self.selector}' not found\n",
            )
        for policy in self.partitions:
            if policy not in PARTITION_POLICIES:
                raise InvalidArgument(
                    f"unknown partition policy {policy!r}",
                    legacy_text=f"Partition policy '{policy}' not found\n",
                )
        if len(set(self.members)) != len(self.members):
            raise InvalidArgument("a farm lists each backend at most once")


TargetKind = Literal["farm", "backend"]


@dataclass(frozen=True, slots=True)
class Mapping:
    """A vhost routed to exactly one farm or one backend."""

    vhost: str
    kind: TargetKind
    target: str

    def describe(self) -> str:
        """MAP PRINT's line for this mapping."""
        label = "Farm" if self.kind == "farm" else "Backend"
        return f'"{self.vhost}" => {label}:{self.target}'


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """An AMQP listening port; ``tls`` means START_SECURE (the ingress TLS context).

    ``proxy_protocol`` (LISTEN START port PROXY) makes every connection start with a
    PROXY protocol v1 or v2 header from a load balancer; its source address becomes the
    session's client address. Without it a PROXY header is never interpreted.
    """

    port: int
    tls: bool = False
    host: str = "0.0.0.0"
    proxy_protocol: bool = False

    def __post_init__(self) -> None:
        validate_port(self.port, allow_zero=True)
