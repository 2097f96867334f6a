"""Immutable configuration values with their validation: backends, farms, mappings, listeners.

Validation lives here so that every front end rejects the same input with the same
error. Nothing here does I/O; name resolution happens in ``core.operations``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from amqpprox.errors import InvalidArgument
from amqpprox.logsetup import has_controls

ROUND_ROBIN = "round-robin"
SELECTORS = frozenset({ROUND_ROBIN})
DATACENTER_AFFINITY = "datacenter-affinity"
PARTITION_POLICIES = frozenset({DATACENTER_AFFINITY})

_NAME = re.compile(r"^[^\s]{1,255}$")
MAX_NAME = 255


def validate_text(kind: str, text: str) -> str:
    """Text we store must be valid Unicode: a lone surrogate (from a JSON ``\\ud800``
    escape) cannot be encoded, so every page, PRINT or log line showing it would fail."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(f"{kind} must be valid Unicode (no lone surrogate)") from None
    return text


def validate_name(kind: str, name: str) -> str:
    """A backend or farm name: 1..255 printable characters without white space.

    White space is refused because the control protocol splits on it; control characters
    (C0, DEL, C1), the line and paragraph separators and lone surrogates because a name is
    printed on a line of its own kind (logs, CONN, BACKEND PRINT...). Everything else the
    original accepts, non-ASCII letters and punctuation included, is kept.
    """
    if not _NAME.match(name) or has_controls(name):
        raise InvalidArgument(
            f"{kind} name must be 1..255 printable characters without spaces: {name!r}"
        )
    return name


def validate_label(kind: str, text: str, *, allow_empty: bool = False) -> str:
    """A vhost or datacenter name: up to 255 characters, spaces allowed, no control character.

    A vhost is whatever a client may ask RabbitMQ for (spaces included); a datacenter may
    be empty (DATACENTER SET without a name, as the original).
    """
    if (not text and not allow_empty) or len(text) > MAX_NAME or has_controls(text):
        low = 0 if allow_empty else 1
        raise InvalidArgument(
            f"{kind} name must be {low}..255 characters without control characters: {text!r}"
        )
    return text


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
    stream_port: int = 5552  # RabbitMQ Streams (the rabbitmq_stream plugin's port)

    def __post_init__(self) -> None:
        validate_name("backend", self.name)
        validate_port(self.stream_port)
        validate_label("datacenter", self.datacenter, allow_empty=True)
        validate_text("backend host", self.host)
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

    def __post_init__(self) -> None:
        validate_label("vhost", self.vhost)

    def describe(self) -> str:
        """MAP PRINT's line for this mapping."""
        label = "Farm" if self.kind == "farm" else "Backend"
        return f'"{self.vhost}" => {label}:{self.target}'


ALL_INTERFACES = "0.0.0.0"  # the original's only bind address, still the default


def listen_address(text: str) -> str:
    """A listener's bind address in its canonical form: an IPv4 or IPv6 literal.

    ``localhost`` (any case) is ``127.0.0.1``; an IPv6 address is compressed (``::1``).
    Host names, IPv6 zone indexes (``fe80::1%eth0``) and brackets are refused.
    """
    if text.lower() == "localhost":
        return "127.0.0.1"
    try:
        if "%" in text:
            raise ValueError(text)
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise InvalidArgument(
            f"invalid listen address {text!r}: give an IPv4 or IPv6 address, or localhost"
        ) from None


LISTENER_PROTOCOLS = ("amqp", "stream")


@dataclass(frozen=True, slots=True)
class ListenerSpec:
    """An AMQP listening port; ``tls`` means START_SECURE (the ingress TLS context).

    ``proxy_protocol`` (LISTEN START port PROXY) makes every connection start with a
    PROXY protocol v1 or v2 header from a load balancer; its source address becomes the
    session's client address. Without it a PROXY header is never interpreted.
    ``host`` is the bind address (``listen_address``, kept in its canonical form); the
    listeners are keyed by port, so one port has one address.
    """

    port: int
    tls: bool = False
    host: str = ALL_INTERFACES
    proxy_protocol: bool = False
    protocol: str = "amqp"  # or "stream": RabbitMQ Streams clients
    node: str | None = None  # a stream node listener: every connection to this backend

    def __post_init__(self) -> None:
        validate_port(self.port, allow_zero=True)
        object.__setattr__(self, "host", listen_address(self.host))
        if self.protocol not in LISTENER_PROTOCOLS:
            raise InvalidArgument(f"protocol must be amqp or stream: {self.protocol!r}")
        if self.node is not None:
            if self.protocol != "stream":
                raise InvalidArgument("only a stream listener can be a node listener")
            validate_name("backend", self.node)


# The fields of a ``Limits``: the original's four (LIMIT CONN_RATE ... DATA_RATE_ALARM),
# then ours (LIMIT CONNECTIONS, LIMIT OUT_DATA_RATE, LIMIT CONNECTIONS TOTAL).
LIMIT_FIELDS = (
    "conn_rate",
    "conn_rate_alarm",
    "data_rate",
    "data_rate_alarm",
    "connections",
    "out_data_rate",
    "total_connections",
)
MAX_COUNT = 2**32 - 1  # the original reads numberOfConnections as a uint32
MAX_BYTES_PER_SECOND = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one vhost, or the default ones for every vhost; None is "not set".

    ``conn_rate``/``conn_rate_alarm``: new connections per one-second window (0 refuses
    all). ``data_rate``/``data_rate_alarm``: client->broker bytes per second of each
    connection. ``connections``: concurrent connections of the vhost. ``out_data_rate``:
    broker->client bytes per second of each connection. ``total_connections`` (the
    default only): concurrent connections of all vhosts together.
    """

    conn_rate: int | None = None
    conn_rate_alarm: int | None = None
    data_rate: int | None = None
    data_rate_alarm: int | None = None
    connections: int | None = None
    out_data_rate: int | None = None
    total_connections: int | None = None

    def __post_init__(self) -> None:
        for name in LIMIT_FIELDS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgument(f"{name} must be an integer: {value!r}")
            rate = name in ("data_rate", "data_rate_alarm", "out_data_rate")
            low, high = (1, MAX_BYTES_PER_SECOND) if rate else (0, MAX_COUNT)
            if not low <= value <= high:
                raise InvalidArgument(f"{name} must be between {low} and {high}: {value}")

    @property
    def empty(self) -> bool:
        return all(getattr(self, name) is None for name in LIMIT_FIELDS)

    def over(self, default: Limits) -> Limits:
        """These limits with each unset one taken from ``default`` (a vhost's effective ones)."""
        return Limits(
            *(
                getattr(self, name) if getattr(self, name) is not None else getattr(default, name)
                for name in LIMIT_FIELDS
            )
        )


AuthFormat = Literal["protobuf", "json"]


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """AUTH: ALWAYS_ALLOW (``host`` None) or an HTTP auth service called for each connection.

    ``format`` "protobuf" is the original's body (application/octet-stream, its AuthRequest
    and AuthResponse messages); "json" is the proto3 JSON mapping of the same messages.
    """

    host: str | None = None
    port: int = 0
    target: str = ""
    format: AuthFormat = "protobuf"

    def __post_init__(self) -> None:
        if self.host is None:
            return
        if not self.host or any(c.isspace() for c in self.host) or len(self.host) > 255:
            raise InvalidArgument(f"auth service host must be a host name: {self.host!r}")
        validate_port(self.port)
        if not self.target.startswith("/") or any(c.isspace() for c in self.target):
            raise InvalidArgument(f"auth service target must be a path: {self.target!r}")
        if self.format not in ("protobuf", "json"):
            raise InvalidArgument(f"auth format must be protobuf or json: {self.format!r}")

    @property
    def service(self) -> bool:
        return self.host is not None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"http://{host}:{self.port}{self.target}"
