"""``ssl.SSLContext`` building for both directions, and the contexts in use.

``TlsContexts`` implements ``core.tls.TlsControl``: each change of a direction's
``TlsSettings`` builds a whole new context from the files, and only a context that
built is swapped in, so a missing or unparsable file leaves the previous, working
context serving new connections. Connections already up keep the context they had.

Both contexts allow TLS 1.2 and 1.3 (the original pinned TLS 1.2). The ingress
(server) context prefers the server's cipher order; VERIFY_MODE PEER asks clients for
a certificate, PEER with FAIL_IF_NO_PEER_CERT requires one. The egress (client)
context sends SNI (the backend's host) and, with PEER, verifies the broker's
certificate and host name against CA_CERT_FILE (or the system's CAs when none is set).
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from amqpprox.core.tls import DIRECTIONS, Direction, TlsSettings
from amqpprox.errors import InvalidArgument, InvalidState

if TYPE_CHECKING:
    from amqpprox.core.context import Context

log = logging.getLogger("amqpprox.tls")

# OpenSSL 3 reports a failed system call as ERR_SYSTEM_FLAG | errno, which asio prints
# as a signed int: the original answers "Error: asio.ssl:-2147483646" for a missing file.
_ERR_SYSTEM_FLAG = -(2**31)
# Certificates, keys and CA bundles are small; anything bigger is not one (REST takes any path).
MAX_FILE_SIZE = 16 * 1024 * 1024


class TlsFileError(InvalidArgument):
    """A TLS file that cannot be read or parsed; the message names it and why."""


def _system_error(what: str, path: str, error: OSError) -> TlsFileError:
    code = _ERR_SYSTEM_FLAG + (error.errno or errno.EIO)
    reason = error.strerror or str(error)
    return TlsFileError(f"{what} {path!r}: {reason}", legacy_text=f"Error: asio.ssl:{code}")


def _parse_error(what: str, path: str, detail: str) -> TlsFileError:
    message = f"{what} {path!r}: {detail}"
    return TlsFileError(message, legacy_text=f"Error: {message}\n")


def _read(what: str, path: str) -> bytes:
    """A regular file's bytes: a FIFO or a device (``/dev/zero``) would block or never end."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise _parse_error(what, path, "not a regular file")
        if info.st_size > MAX_FILE_SIZE:
            raise _parse_error(what, path, f"larger than {MAX_FILE_SIZE} bytes")
        return Path(path).read_bytes()
    except OSError as error:
        raise _system_error(what, path, error) from error


def _check_key(path: str, *, rsa_only: bool) -> None:
    what = "RSA key file" if rsa_only else "key file"
    data = _read(what, path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as error:
        raise _parse_error(
            what, path, f"not a PEM private key without a passphrase ({error})"
        ) from error
    except Exception as error:  # cryptography's UnsupportedAlgorithm, say
        raise _parse_error(what, path, str(error)) from error
    if rsa_only and not isinstance(key, rsa.RSAPrivateKey):
        raise _parse_error(what, path, "not an RSA key")


def _check_certificates(path: str) -> None:
    data = _read("certificate chain file", path)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as error:
        raise _parse_error(
            "certificate chain file", path, f"no PEM certificate ({error})"
        ) from error
    if not certificates:
        raise _parse_error("certificate chain file", path, "no PEM certificate")


def build_context(direction: Direction, settings: TlsSettings) -> ssl.SSLContext:
    """A fresh context for ``direction``; raises ``TlsFileError`` naming the bad file."""
    server = direction == "INGRESS"
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if server:
        ctx.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    _load_identity(ctx, settings)
    if settings.tmp_dh_file is not None:
        _read("DH parameters file", settings.tmp_dh_file)
        try:
            ctx.load_dh_params(settings.tmp_dh_file)
        except (ssl.SSLError, ValueError) as error:
            raise _parse_error("DH parameters file", settings.tmp_dh_file, str(error)) from error
    if settings.ca_cert_file is not None:
        _read("CA file", settings.ca_cert_file)
        try:
            ctx.load_verify_locations(cafile=settings.ca_cert_file)
        except ssl.SSLError as error:
            raise _parse_error("CA file", settings.ca_cert_file, str(error)) from error
    if settings.ciphers is not None:
        ctx.set_ciphers(settings.ciphers)  # ssl.SSLError: the caller reports it
    _set_verification(ctx, settings, server=server)
    return ctx


def _load_identity(ctx: ssl.SSLContext, settings: TlsSettings) -> None:
    """Certificate chain and private key; each file is checked even when the other is missing."""
    key = settings.key_file or settings.rsa_key_file
    if settings.key_file is not None:
        _check_key(settings.key_file, rsa_only=False)
    if settings.rsa_key_file is not None:
        _check_key(settings.rsa_key_file, rsa_only=True)
    cert = settings.cert_chain_file
    if cert is None:
        return
    _check_certificates(cert)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as error:
        if key is None:
            # The key may come with a later KEY_FILE: the chain itself parsed, keep it pending.
            log.info("TLS certificate chain %s loaded; waiting for its key", cert)
            return
        raise _parse_error(
            "key file", key, f"does not match the certificate chain {cert!r} ({error})"
        ) from error


def _set_verification(ctx: ssl.SSLContext, settings: TlsSettings, *, server: bool) -> None:
    if server:
        if settings.require_peer_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
        elif settings.verify_peer:
            ctx.verify_mode = ssl.CERT_OPTIONAL
        else:
            ctx.verify_mode = ssl.CERT_NONE
        return
    if settings.verify_peer:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        if settings.ca_cert_file is None:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE


def _checked_build(direction: Direction, settings: TlsSettings) -> ssl.SSLContext:
    """``build_context`` with every failure an ``InvalidArgument`` that says what is wrong."""
    try:
        return build_context(direction, settings)
    except TlsFileError:
        raise
    except ssl.SSLError as error:
        reason = getattr(error, "reason", None) or " ".join(str(arg) for arg in error.args)
        if settings.ciphers is not None and "cipher" in reason.lower():
            raise InvalidArgument(
                f"TLS {direction}: the cipher list {settings.ciphers!r} selects no cipher"
            ) from error
        raise InvalidArgument(f"TLS {direction}: {reason}") from error
    except ValueError as error:  # a file name the OS refuses, say
        raise InvalidArgument(f"TLS {direction}: {error}") from error


def cipher_names(ctx: ssl.SSLContext) -> list[str]:
    return [str(cipher["name"]) for cipher in ctx.get_ciphers()]


class TlsContexts:
    """The current context of each direction (implements ``core.tls.TlsControl``)."""

    def __init__(self) -> None:
        self._settings: dict[Direction, TlsSettings] = {d: TlsSettings() for d in DIRECTIONS}
        self._contexts: dict[Direction, ssl.SSLContext] = {
            d: build_context(d, TlsSettings()) for d in DIRECTIONS
        }

    def settings(self, direction: Direction) -> TlsSettings:
        return self._settings[direction]

    def configure(self, direction: Direction, settings: TlsSettings) -> None:
        self.configure_all({direction: settings})

    def check(self, direction: Direction, settings: TlsSettings) -> None:
        _checked_build(direction, settings)

    def configure_all(self, changes: Mapping[Direction, TlsSettings]) -> Callable[[], None]:
        built: dict[Direction, ssl.SSLContext] = {}
        for direction, settings in changes.items():
            try:
                built[direction] = _checked_build(direction, settings)
            except InvalidArgument as error:
                log.error("TLS %s not changed: %s", direction, error.message)
                raise
        previous = (dict(self._settings), dict(self._contexts))
        for direction, ctx in built.items():
            self._settings[direction] = changes[direction]
            self._contexts[direction] = ctx
            log.info("TLS %s context updated", direction)

        def undo() -> None:
            self._settings.update(previous[0])
            self._contexts.update(previous[1])
            log.info("TLS %s contexts restored", ", ".join(built))

        return undo

    def ciphers(self, direction: Direction) -> list[str]:
        return cipher_names(self._contexts[direction])

    def context(self, direction: Direction) -> ssl.SSLContext:
        """The context new connections of ``direction`` use."""
        return self._contexts[direction]

    def ingress_ready(self) -> bool:
        """True when the ingress context holds a certificate (a client can complete a handshake)."""
        return self._settings["INGRESS"].has_certificate and (
            self._settings["INGRESS"].key_file is not None
            or self._settings["INGRESS"].rsa_key_file is not None
            or _chain_has_key(self._settings["INGRESS"].cert_chain_file)
        )


def _chain_has_key(path: str | None) -> bool:
    if path is None:
        return False
    try:
        return b"PRIVATE KEY-----" in Path(path).read_bytes()
    except OSError:
        return False


def contexts_of(ctx: Context) -> TlsContexts:
    """The data plane's TLS contexts (``runtime`` installs them in the Context)."""
    tls = ctx.tls
    if not isinstance(tls, TlsContexts):
        raise InvalidState("TLS contexts are not installed in this process")
    return tls
