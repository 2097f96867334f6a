"""``amqpprox_ctl <control_socket> ARGS...``: send one command line, print the reply.

As the original: the arguments are joined with single spaces; the reply is copied to
stdout until the proxy closes the connection (streaming commands run until killed).
Exit codes: 0 whatever the reply, 1 usage, 2 when the socket cannot be reached.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    if len(args) < 3:
        print("Usage: amqpprox_ctl <control_socket> ARGS", file=sys.stderr)
        return 1
    path = args[1]
    line = " ".join(args[2:]) + "\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(path)
            sock.sendall(line.encode())
            out = sys.stdout.buffer
            while True:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                out.write(chunk)
                out.flush()
    except KeyboardInterrupt:
        return 0
    except OSError as error:
        print(
            f"Exception: cannot reach control socket '{path}': {error.strerror or error}",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
