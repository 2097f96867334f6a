"""A client's AMQP identity, as its handshake told it: who, with what, and what was agreed.

``identify`` reads a ``Connection.StartOk`` and ``Connection.TuneOk`` into a
``ClientIdentity``: the user name (from the PLAIN or AMQPLAIN response; never the
password, which is dropped here), the SASL mechanism, the client's ``product``,
``version``, ``platform`` and ``connection_name`` properties, and the negotiated
``channel_max``, ``frame_max`` and ``heartbeat``. Sans-IO, like the rest of ``amqp``.
"""

from __future__ import annotations

from dataclasses import dataclass

from amqpprox.amqp.errors import ProtocolError
from amqpprox.amqp.fields import FieldValue, decode_table
from amqpprox.amqp.methods import ConnectionStartOk, ConnectionTuneOk

__all__ = ["ClientIdentity", "identify", "sasl_user"]

# Client property values longer than this are cut: they are shown, not relayed.
MAX_PROPERTY_CHARS = 256


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    """What the proxy keeps of a session's handshake (no credentials)."""

    user: str = ""
    mechanism: str = ""
    product: str = ""
    version: str = ""
    platform: str = ""
    connection_name: str = ""
    channel_max: int = 0
    frame_max: int = 0
    heartbeat: int = 0


def sasl_user(mechanism: str, response: bytes) -> str:
    """The user name a SASL response carries; "" when it names none (EXTERNAL, say).

    PLAIN is ``authzid NUL authcid NUL password`` (RFC 4616); AMQPLAIN a field table
    with LOGIN and PASSWORD. Only the name is read; the password is never returned.
    """
    if mechanism == "PLAIN":
        parts = response.split(b"\x00")
        if len(parts) == 3:
            return parts[1].decode("utf-8", "replace")
        return ""
    if mechanism == "AMQPLAIN":
        try:
            table = decode_table(response)
        except ProtocolError:
            try:  # some clients send the table with its 4-byte length prefix
                table = decode_table(response[4:])
            except ProtocolError:
                return ""
        login = table.get("LOGIN")
        if isinstance(login, bytes):
            return login.decode("utf-8", "replace")
        return login if isinstance(login, str) else ""
    return ""


def _text(properties: dict[str, FieldValue], name: str) -> str:
    value = properties.get(name)
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return ""
    return value[:MAX_PROPERTY_CHARS]


def identify(start_ok: ConnectionStartOk, tune_ok: ConnectionTuneOk | None) -> ClientIdentity:
    """The identity of a client whose StartOk (and TuneOk, once known) were read."""
    try:
        properties = start_ok.client_properties
    except ProtocolError:
        properties = {}
    return ClientIdentity(
        user=sasl_user(start_ok.mechanism, start_ok.response),
        mechanism=start_ok.mechanism,
        product=_text(properties, "product"),
        version=_text(properties, "version"),
        platform=_text(properties, "platform"),
        connection_name=_text(properties, "connection_name"),
        channel_max=tune_ok.channel_max if tune_ok is not None else 0,
        frame_max=tune_ok.frame_max if tune_ok is not None else 0,
        heartbeat=tune_ok.heartbeat if tune_ok is not None else 0,
    )
