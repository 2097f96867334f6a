"""TLS configuration as values: one frozen ``TlsSettings`` per direction.

INGRESS is the server side of secure listeners (LISTEN START_SECURE); EGRESS is the
client side towards backends flagged TLS. The settings say which files and modes to
use; building an ``ssl.SSLContext`` from them is the data plane's job
(``proxy.tls``), reached through the ``TlsControl`` protocol so that ``core`` and
``admin`` never import the data plane. A change is applied only if a context can be
built from it; otherwise the previous (working) context stays in place.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from amqpprox.errors import InvalidArgument

Direction = Literal["INGRESS", "EGRESS"]
DIRECTIONS: tuple[Direction, ...] = ("INGRESS", "EGRESS")

# The original's verify modes (OpenSSL's SSL_VERIFY_* flags), OR-ed together.
VERIFY_NONE = "NONE"
VERIFY_PEER = "PEER"
VERIFY_FAIL_IF_NO_PEER_CERT = "FAIL_IF_NO_PEER_CERT"
VERIFY_CLIENT_ONCE = "CLIENT_ONCE"
VERIFY_MODES = (VERIFY_NONE, VERIFY_PEER, VERIFY_FAIL_IF_NO_PEER_CERT, VERIFY_CLIENT_ONCE)

FILE_FIELDS = ("key_file", "cert_chain_file", "rsa_key_file", "tmp_dh_file", "ca_cert_file")


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """One direction's TLS configuration (paths as given; ``None`` = not set).

    ``verify_mode`` holds the modes given to the last VERIFY_MODE command (empty =
    NONE). ``ciphers`` is an OpenSSL cipher string for TLS 1.2 (``None`` = OpenSSL's
    default); TLS 1.3 suites are OpenSSL's defaults, as in the original.
    """

    key_file: str | None = None
    cert_chain_file: str | None = None
    rsa_key_file: str | None = None
    tmp_dh_file: str | None = None
    ca_cert_file: str | None = None
    verify_mode: frozenset[str] = frozenset()
    ciphers: str | None = None

    def __post_init__(self) -> None:
        unknown = sorted(self.verify_mode - set(VERIFY_MODES))
        if unknown:
            raise InvalidArgument(
                f"unknown verify mode {unknown[0]!r}", legacy_text=f"Unknown mode: {unknown[0]}\n"
            )
        for name in FILE_FIELDS:
            _check_path(name, getattr(self, name))
        if self.ciphers is not None and not (self.ciphers.isascii() and self.ciphers.isprintable()):
            raise InvalidArgument(f"ciphers must be printable ASCII: {self.ciphers!r}")

    @property
    def verify_peer(self) -> bool:
        return VERIFY_PEER in self.verify_mode

    @property
    def require_peer_cert(self) -> bool:
        """Server side: a client without a certificate is refused."""
        return self.verify_peer and VERIFY_FAIL_IF_NO_PEER_CERT in self.verify_mode

    @property
    def has_certificate(self) -> bool:
        return self.cert_chain_file is not None

    def with_changes(self, **changes: object) -> TlsSettings:
        return replace(self, **changes)  # type: ignore[arg-type]


def _check_path(name: str, path: str | None) -> None:
    """A path the OS can be asked about (REST and definitions take any JSON string)."""
    if path is None:
        return
    if not path or "\0" in path:
        raise InvalidArgument(f"{name} must be a non-empty path without NUL: {path!r}")
    try:
        os.fsencode(path)
    except UnicodeError as error:
        raise InvalidArgument(f"{name} is not a valid file name: {path!r}") from error


def parse_direction(text: str) -> Direction | None:
    upper = text.upper()
    if upper == "INGRESS":
        return "INGRESS"
    if upper == "EGRESS":
        return "EGRESS"
    return None


class TlsControl(Protocol):
    """What the control plane may do with the TLS contexts (``proxy.tls`` implements it)."""

    def settings(self, direction: Direction) -> TlsSettings:
        """The settings the current context of ``direction`` was built from."""
        ...

    def configure(self, direction: Direction, settings: TlsSettings) -> None:
        """Build a context from ``settings`` and use it for new connections.

        Raises ``InvalidArgument`` (the previous context stays) if it cannot be built.
        """
        ...

    def ciphers(self, direction: Direction) -> list[str]:
        """The OpenSSL names of the ciphers the current context enables, in order."""
        ...

    def check(self, direction: Direction, settings: TlsSettings) -> None:
        """Build a context from ``settings`` and throw it away: ``InvalidArgument`` if it fails."""
        ...

    def configure_all(self, changes: Mapping[Direction, TlsSettings]) -> Callable[[], None]:
        """Build a context for every direction of ``changes``, then use them all.

        Nothing changes unless every context builds (``InvalidArgument`` otherwise).
        Returns a function that puts the previous contexts back (it cannot fail).
        """
        ...


class NoTls:
    """The TLS control of a Context built without a data plane: settings only, no contexts."""

    def __init__(self) -> None:
        self._settings: dict[Direction, TlsSettings] = {d: TlsSettings() for d in DIRECTIONS}

    def settings(self, direction: Direction) -> TlsSettings:
        return self._settings[direction]

    def configure(self, direction: Direction, settings: TlsSettings) -> None:
        self._settings[direction] = settings

    def ciphers(self, direction: Direction) -> list[str]:
        return []

    def check(self, direction: Direction, settings: TlsSettings) -> None:
        return None

    def configure_all(self, changes: Mapping[Direction, TlsSettings]) -> Callable[[], None]:
        previous = dict(self._settings)
        self._settings.update(changes)

        def undo() -> None:
            self._settings.update(previous)

        return undo
