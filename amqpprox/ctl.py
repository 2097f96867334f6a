"""``amqpprox_ctl <control_socket> ARGS...``: send one command line, print the reply.

As the original: the arguments are joined with single spaces; the reply is copied to
stdout until the proxy closes the connection (streaming commands run until killed).

Before sending, the socket must be a socket owned by root or by the calling user (in a
world-writable folder anyone could have put one there to read the commands); when the
platform tells the peer's credentials (Linux ``SO_PEERCRED``), the serving process must
run as root or as the caller too.

Exit codes: 0 whatever the reply, and also when stdout's reader goes away (``... | head
-1``: the rest of the reply is dropped quietly); 1 usage; 2 when the socket cannot be
reached or is refused by the checks above. Imports nothing of ours.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
import sys
from collections.abc import Sequence


class _Refused(Exception):
    """The socket at the path is not one this user should talk to."""


def _trusted(uid: int) -> bool:
    return uid in (0, os.geteuid())


def check_socket(path: str) -> None:
    """Refuse a path that is not a socket, or a socket owned by neither root nor us.

    A missing path is left to ``connect`` (which reports it as unreachable).
    """
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(found.st_mode):
        raise _Refused(f"'{path}' is not a socket")
    if not _trusted(found.st_uid):
        raise _Refused(
            f"'{path}' is owned by uid {found.st_uid}, neither root nor you (uid {os.geteuid()})"
        )


def _check_peer(sock: socket.socket, path: str) -> None:
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, 12))
    if not _trusted(uid):
        raise _Refused(f"'{path}' is served by uid {uid}, neither root nor you")


def _quiet_stdout() -> None:
    """Stdout's reader has gone: point stdout at /dev/null so exiting flushes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    if len(args) < 3:
        print("Usage: amqpprox_ctl <control_socket> ARGS", file=sys.stderr)
        return 1
    path = args[1]
    line = " ".join(args[2:]) + "\n"
    out = sys.stdout.buffer
    try:
        check_socket(path)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            _check_peer(sock, path)
            sock.sendall(line.encode())
            while True:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                try:
                    out.write(chunk)
                    out.flush()
                except BrokenPipeError:
                    _quiet_stdout()  # ``| head -1`` has what it wanted: not an error
                    return 0
    except KeyboardInterrupt:
        return 0
    except _Refused as refused:
        print(f"Exception: refusing control socket {refused}", file=sys.stderr)
        return 2
    except OSError as error:
        print(
            f"Exception: cannot reach control socket '{path}': {error.strerror or error}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
