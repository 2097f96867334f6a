"""The TLS operations (TLS INGRESS|EGRESS ..., REST /tls): one direction's settings, files,
verify modes and ciphers, applied only when a context builds from them (``core.tls``)."""

from __future__ import annotations

from amqpprox.core.context import Context
from amqpprox.core.tls import FILE_FIELDS, VERIFY_MODES, Direction, TlsSettings
from amqpprox.errors import InvalidArgument

# The control socket's file sub-commands (KEY_FILE, ...), by the field each sets.
TLS_FILE_COMMANDS = {field.upper(): field for field in FILE_FIELDS}


def tls_settings(ctx: Context, direction: Direction) -> TlsSettings:
    return ctx.tls.settings(direction)


def _configure_tls(ctx: Context, direction: Direction, settings: TlsSettings) -> None:
    """Always rebuilt (the files may have been replaced); a new configuration version if
    the settings differ. ``InvalidArgument``: the previous context stays."""
    before = ctx.tls.settings(direction)
    ctx.tls.configure(direction, settings)
    if settings != before:
        ctx.state.touch()


def put_tls_settings(ctx: Context, direction: Direction, settings: TlsSettings) -> TlsSettings:
    """Replace the whole of a direction's settings (REST PUT); used only if a context builds."""
    _configure_tls(ctx, direction, settings)
    return settings


def set_tls_file(ctx: Context, direction: Direction, command: str, path: str) -> TlsSettings:
    """TLS <direction> KEY_FILE|CERT_CHAIN_FILE|... <path>: used only if a context builds."""
    field = TLS_FILE_COMMANDS.get(command.upper())
    if field is None:
        raise InvalidArgument(f"unknown TLS file command {command!r}")
    settings = ctx.tls.settings(direction).with_changes(**{field: path})
    _configure_tls(ctx, direction, settings)
    return settings


def set_tls_verify_mode(ctx: Context, direction: Direction, modes: list[str]) -> TlsSettings:
    """TLS <direction> VERIFY_MODE mode...: the modes replace the previous ones (OR-ed)."""
    upper = [mode.upper() for mode in modes]
    for mode in upper:
        if mode not in VERIFY_MODES:
            raise InvalidArgument(
                f"unknown verify mode {mode!r}", legacy_text=f"Unknown mode: {mode}\n"
            )
    settings = ctx.tls.settings(direction).with_changes(verify_mode=frozenset(upper) - {"NONE"})
    _configure_tls(ctx, direction, settings)
    return settings


def set_tls_ciphers(ctx: Context, direction: Direction, ciphers: str) -> list[str]:
    """TLS <direction> CIPHERS SET: the TLS 1.2 cipher list; the enabled ciphers after it."""
    settings = ctx.tls.settings(direction).with_changes(ciphers=ciphers)
    _configure_tls(ctx, direction, settings)
    return ctx.tls.ciphers(direction)


def tls_ciphers(ctx: Context, direction: Direction) -> list[str]:
    return ctx.tls.ciphers(direction)
