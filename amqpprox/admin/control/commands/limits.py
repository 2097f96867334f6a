"""LIMIT: connection-rate, data-rate and concurrent-connection limits, per vhost or default.

The original's syntax and replies are kept byte for byte (reference §4.1); our additions
(docs/limits.md) use the same shapes:

* ``LIMIT CONNECTIONS (VHOST vhostName | DEFAULT | TOTAL) numberOfConnections``
* ``LIMIT OUT_DATA_RATE (DEFAULT | VHOST vhostName) BytesPerSecond``
* ``LIMIT DISABLE (CONNECTIONS | OUT_DATA_RATE) (VHOST vhostName | DEFAULT | TOTAL)``

Keeps no state. Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import shown
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import limits as lim
from amqpprox.core.context import Context
from amqpprox.core.digits import ascii_digits
from amqpprox.core.model import MAX_BYTES_PER_SECOND, MAX_COUNT, Limits

# Sub-command -> the Limits field it sets.
FIELDS = {
    "CONN_RATE": "conn_rate",
    "CONN_RATE_ALARM": "conn_rate_alarm",
    "DATA_RATE": "data_rate",
    "DATA_RATE_ALARM": "data_rate_alarm",
    "CONNECTIONS": "connections",
    "OUT_DATA_RATE": "out_data_rate",
}
COUNTS = ("CONN_RATE", "CONN_RATE_ALARM", "CONNECTIONS")
TOTAL = "\0total"  # the target of LIMIT CONNECTIONS TOTAL (no vhost can be named so)
DEFAULT: str | None = None


def _target(args: list[str], at: int) -> tuple[str | None, int] | None:
    """``VHOST name`` -> (name, next index); ``DEFAULT`` -> (None, ...); ``TOTAL``; else None."""
    word = (args[at] if len(args) > at else "").upper()
    if word == "DEFAULT":
        return DEFAULT, at + 1
    if word == "TOTAL":
        return TOTAL, at + 1
    if word == "VHOST" and len(args) > at + 1:
        return args[at + 1], at + 2
    return None


def _number(text: str | None, high: int) -> int | None:
    if text is None or not ascii_digits(text):
        return None
    value = int(text)
    return value if value <= high else None


@command(
    "LIMIT",
    "(CONN_RATE_ALARM | CONN_RATE) (VHOST vhostName numberOfConnections | DEFAULT "
    "numberOfConnections) - Configure connection rate limits (normal or alarmonly) for incoming "
    "clients connections",
    "(DATA_RATE_ALARM | DATA_RATE) (DEFAULT | VHOST vhostName) BytesPerSecond - Configure "
    "data rate limits or alarms for incoming client data",
    "DISABLE (CONN_RATE_ALARM | CONN_RATE | DATA_RATE_ALARM | DATA_RATE) (VHOST vhostName | "
    "DEFAULT) - Disable configured limit thresholds",
    "PRINT [vhostName] - Print the configured default limits or specific vhost limits",
    "CONNECTIONS (VHOST vhostName | DEFAULT | TOTAL) numberOfConnections - Configure the "
    "most concurrent client connections of a vhost, of each vhost, or of all together",
    "OUT_DATA_RATE (DEFAULT | VHOST vhostName) BytesPerSecond - Configure data rate limits "
    "for outgoing data to clients",
    "DISABLE (CONNECTIONS | OUT_DATA_RATE) (VHOST vhostName | DEFAULT | TOTAL) - Disable "
    "concurrent connection or outgoing data rate limits (TOTAL: CONNECTIONS only)",
)
async def _limit(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand provided for LIMIT command.\n")
        return
    sub = args[0].upper()
    if sub == "PRINT":
        await out.write(print_limits(ctx, args[1] if len(args) > 1 else None))
        return
    if sub == "DISABLE":
        await _disable(ctx, args[1:], out)
        return
    parsed = _target(args, 1)
    if parsed is None:
        await out.write(f"Failed to read (VHOST vhostName | DEFAULT) for {args[0]}")
        return
    vhost, at = parsed
    field = FIELDS.get(sub)
    if field is None or (vhost == TOTAL and sub != "CONNECTIONS"):
        await out.write("Invalid subcommand provided for LIMIT command.\n")
        return
    text = args[at] if len(args) > at else None
    if sub in COUNTS:
        value = _number(text, MAX_COUNT)
        if value is None:
            await out.write("Invalid numberOfConnections provided.\n")
            return
    else:
        value = _number(text, MAX_BYTES_PER_SECOND)
        if not value:  # a rate of 0 would stop the connection for good
            await out.write("Failed to read bytesPerSecond")
            return
    if vhost == TOTAL:
        lim.set_limit(ctx, DEFAULT, "total_connections", value)
    else:
        lim.set_limit(ctx, vhost, field, value)
    await out.write(_set_reply(sub, vhost, value))


def _set_reply(sub: str, vhost: str | None, n: int) -> str:
    alarm_note = (
        "The limiter will only log at warning level with AMQPPROX_CONNECTION_LIMIT as a "
        "substring and the relevant limit details, when the new incoming connection violates "
    )
    v = "" if vhost is None else shown(vhost)
    if sub == "CONN_RATE":
        if vhost is None:
            return f"Default connection rate limit is set to {n} connections per second.\n"
        return f"For vhost {v}, Allow average {n} number of connections per 1 seconds\n"
    if sub == "CONN_RATE_ALARM":
        if vhost is None:
            return (
                f"Default connection rate limit is set to {n} connections per second in alarm "
                f"only mode.\n{alarm_note}the default limit for all vhosts.\n"
            )
        return (
            f"For vhost {v}, Allow average {n} number of connections per 1 seconds in alarm "
            f"only mode.\n{alarm_note}the specified limit.\n"
        )
    if sub == "CONNECTIONS":
        return _connections_line(vhost, n) + "\n"
    if sub == "OUT_DATA_RATE":
        return _out_rate_line(vhost, n) + "\n"
    return ""  # DATA_RATE, DATA_RATE_ALARM: the original says nothing


def _connections_line(vhost: str | None, n: int) -> str:
    if vhost == TOTAL:
        return f"Total limit for all vhosts, allow at most {n} concurrent connections."
    if vhost is None:
        return f"Default limit for any vhost, allow at most {n} concurrent connections."
    v = shown(vhost)
    return f"For vhost {v}, allow at most {n} concurrent connections."


def _out_rate_line(vhost: str | None, n: int) -> str:
    if vhost is None:
        return f"Default data limit for any vhost, allow max {n} bytes per second to clients."
    v = shown(vhost)
    return f"For vhost {v}, allow max {n} bytes per second to clients."


async def _disable(ctx: Context, args: list[str], out: ControlOutput) -> None:
    if not args:
        await out.write("No subcommand provided for LIMIT DISABLE command.\n")
        return
    sub = args[0]  # as upstream, not upper-cased: DISABLE's argument must be in capitals
    parsed = _target(args, 1)
    if parsed is None:
        await out.write(f"Failed to read (VHOST vhostName | DEFAULT) for {sub}")
        return
    vhost, _ = parsed
    field = FIELDS.get(sub)
    if field is None or (vhost == TOTAL and sub != "CONNECTIONS"):
        await out.write("Invalid subcommand provided for LIMIT command.\n")
        return
    if vhost == TOTAL:
        lim.set_limit(ctx, DEFAULT, "total_connections", None)
    else:
        lim.set_limit(ctx, vhost, field, None)
    await out.write(_disable_reply(sub, vhost))


def _disable_reply(sub: str, vhost: str | None) -> str:
    names = {
        "CONN_RATE": "connection rate limit",
        "CONN_RATE_ALARM": "alarm only connection rate limit",
        "CONNECTIONS": "concurrent connection limit",
        "OUT_DATA_RATE": "data rate limit to clients",
    }
    name = names.get(sub)
    if name is None:
        return ""  # DATA_RATE, DATA_RATE_ALARM: the original says nothing
    if vhost == TOTAL:
        return f"Successfully disabled total {name}\n"
    if vhost is None:
        # The original's stray space after the newline is kept for its two replies.
        return f"Successfully disabled default {name}\n" + (" " if sub in COUNTS[:2] else "")
    return f"Successfully disabled specific {name} for vhost {shown(vhost)}\n"


def print_limits(ctx: Context, vhost: str | None) -> str:
    """LIMIT PRINT [vhost]: the original's lines in its order, then ours."""
    default = lim.default_limits(ctx)
    lines: list[str] = []
    if vhost is None:
        d = default
        if d.conn_rate_alarm is not None:
            lines.append(
                f"Default limit for any vhost, allow average {d.conn_rate_alarm} connections "
                "per second in alarm only mode."
            )
        if d.conn_rate is not None:
            lines.append(
                f"Default limit for any vhost, allow average {d.conn_rate} connections per second."
            )
        if d.data_rate_alarm is not None:
            lines.append(
                f"Default data limit for any vhost, allow max {d.data_rate_alarm} bytes per "
                "second in alarm only mode."
            )
        if d.data_rate is not None:
            lines.append(
                f"Default data limit for any vhost, allow max {d.data_rate} bytes per second."
            )
        if d.connections is not None:
            lines.append(_connections_line(None, d.connections))
        if d.out_data_rate is not None:
            lines.append(_out_rate_line(None, d.out_data_rate))
        if d.total_connections is not None:
            lines.append(_connections_line(TOTAL, d.total_connections))
        if not lines:
            lines.append("No default limit configured for any vhost.")
        return "".join(f"{line}\n" for line in lines)
    own = ctx.state.vhost_limits.get(vhost) or Limits()
    v = shown(vhost)
    if own.conn_rate_alarm is not None:
        lines.append(
            f"Alarm only limit, for vhost {v}, Allow average {own.conn_rate_alarm} number "
            "of connections per 1 seconds."
        )
    elif default.conn_rate_alarm is not None:
        lines.append(
            f"Alarm only limit, for vhost {v}, allow average {default.conn_rate_alarm} "
            "number of connections per second."
        )
    if own.conn_rate is not None:
        lines.append(
            f"For vhost {v}, Allow average {own.conn_rate} number of connections per 1 seconds."
        )
    elif default.conn_rate is not None:
        lines.append(
            f"For vhost {v}, allow average {default.conn_rate} number of connections per second."
        )
    limits = own.over(default)
    if limits.data_rate_alarm is not None:
        lines.append(
            f"Alarm only data limit, for vhost {v}, allow max {limits.data_rate_alarm} "
            "bytes per second."
        )
    if limits.data_rate is not None:
        lines.append(f"For vhost {v}, allow max {limits.data_rate} bytes per second.")
    if limits.connections is not None:
        lines.append(_connections_line(vhost, limits.connections))
    if limits.out_data_rate is not None:
        lines.append(_out_rate_line(vhost, limits.out_data_rate))
    if not lines:
        lines.append(f"No limit configured for vhost {v}.")
    return "".join(f"{line}\n" for line in lines)
