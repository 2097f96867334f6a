"""Small parsing and rendering helpers the command modules share, and CONN's line layout.

:func:`shown` is how every name from outside (a vhost a client sent, a backend, farm or
datacenter name, a host) is rendered in a reply: control characters escaped
(``logsetup.escape_controls``), printable text byte-identical, so one name is never more
than one field of one line.

Keeps no state. Imports ``core`` and ``logsetup`` only, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from collections.abc import Callable

from amqpprox.core.digits import ascii_digits
from amqpprox.core.sessions import SessionBase
from amqpprox.logsetup import escape_controls

shown = escape_controls


def yn(flag: bool) -> str:
    return "Y" if flag else "N"


def tcp_port(text: str | None) -> int | None:
    """A TCP port 1..65535 given as decimal digits, else None."""
    if text is None or not ascii_digits(text):
        return None
    port = int(text)
    return port if 1 <= port <= 65535 else None


def arg(args: list[str], index: int) -> str | None:
    """The token at ``index``, or None when the line has fewer tokens."""
    return args[index] if len(args) > index else None


def conn_line(session: SessionBase, now: float, name: Callable[[str], str] = str) -> str:
    """CONN's key=value line for one session (PR #120 layout); ``name`` maps IPs (MAPHOSTNAME)."""
    ih, ip = session.client
    eh, ep = session.egress_local
    rh, rp = session.egress_remote

    def host(address: str) -> str:  # a reverse-DNS answer is text from outside too
        return shown(name(address))

    return (
        f"id={session.id} vhost={shown(session.vhost)} disconnected={yn(session.finished)} "
        f"paused={yn(session.paused)} authDenied={yn(session.auth_denied)} "
        f"ingressRemote={host(ih)}:{ip} ingressLocal={host(session.local[0])} "
        f"egressLocal={host(eh)}:{ep} egressRemote={host(rh)}:{rp} "
        f"inBytes={session.in_bytes} inFrames={session.in_frames} inPackets={session.in_packets} "
        f"outBytes={session.out_bytes} outFrames={session.out_frames} "
        f"outPackets={session.out_packets} "
        f"{now - session.last_in_at:g}:{now - session.last_out_at:g}"
    )
