"""The ``amqpprox`` command line: the original's flags (and exit codes), then runtime.run().

Exit codes as the original: 1 for --help or an unknown option, 2 when simple mode is
only partly configured, 3 for a console verbosity above 5. Ours: 2 for any other
setting out of range, and for an admin token file that cannot be used (``--adminTokenFile``:
missing, unreadable, empty, more than one line, readable or writable by others, or given
with ``--adminToken``/``AMQPPROX_ADMIN_TOKEN``), and for ``--watchDefinitions`` without
``--definitions`` or where inotify is unavailable.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import stat
import sys
from collections.abc import Sequence

from amqpprox.core.context import Settings
from amqpprox.core.model import listen_address
from amqpprox.errors import AmqpproxError
from amqpprox.filewatch import InotifyUnavailable, check_available
from amqpprox.logsetup import configure
from amqpprox.runtime import SimpleMode, run

DESCRIPTION = """\
amqpprox AMQP v0.9.1 proxy:
This is a proxy program for AMQP v0.9.1, designed to sit in front of a RabbitMQ
cluster. Most options for configuring the proxy and introspecting its state are
available through the amqpprox_ctl program, begin by sending 'HELP' to it.
This program supports the following options to allow running multiple instances
on a machine and a simplified configuration mode. In the simplified
configuration mode the --listenPort, --destinationDNS and --destinationPort
must all be specified, and after which it immediately starts listening on all
interfaces for that port and sends all vhosts to the destination DNS entry.
--listenHost binds that listener to one address instead (e.g. 127.0.0.1).
The HTTP admin plane (health, REST, dashboard, /metrics) listens on
--adminHost:--adminPort (port 0 picks a free port)."""

SIMPLE_MODE_ERROR = (
    "If configuring in simple mode, the --listenPort, --destinationPort and "
    "--destinationDNS must all be set"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"Unknown command line option: {message}", file=sys.stderr)
        self.print_help(sys.stderr)
        sys.exit(1)


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="amqpprox",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
        allow_abbrev=False,
    )
    parser.add_argument("--help", action="store_true", help="This help information")
    parser.add_argument("--logDirectory", default="logs", help="Set logging directory")
    parser.add_argument(
        "--controlSocket", default="/tmp/amqpprox", help="Set control UNIX domain socket location"
    )
    parser.add_argument(
        "--cleanupIntervalMs",
        type=int,
        default=1000,
        help="Set the cleanup interval to garbage collect connections",
    )
    parser.add_argument(
        "--listenPort", type=_port, default=0, help="Simple config mode: listening port"
    )
    parser.add_argument(
        "--listenHost",
        default=None,
        metavar="ADDRESS",
        help="Simple config mode: listening address, an IPv4 or IPv6 address or localhost"
        " (default 0.0.0.0, every interface)",
    )
    parser.add_argument(
        "--destinationPort", type=_port, default=0, help="Simple config mode: destination port"
    )
    parser.add_argument(
        "--destinationDNS", default="", help="Simple config mode: destination DNS address"
    )
    parser.add_argument(
        "-v",
        "--consoleVerbosity",
        type=int,
        default=0,
        help="Default console logging verbosity (0 = fatal .. 5 = trace)",
    )
    parser.add_argument("--adminHost", default="127.0.0.1", help="HTTP admin plane address")
    parser.add_argument("--adminPort", type=_port, default=15673, help="HTTP admin plane port")
    parser.add_argument(
        "--adminToken",
        default=None,
        help="Bearer token every mutating REST request needs (default: $AMQPPROX_ADMIN_TOKEN);"
        " visible in ps: prefer --adminTokenFile",
    )
    parser.add_argument(
        "--adminTokenFile",
        default=None,
        metavar="FILE",
        help="Read the admin token from FILE (one line; not readable by others)",
    )
    parser.add_argument(
        "--adminTokenForReads",
        action="store_true",
        help="Require the admin token for REST reads too (not /healthz, /readyz)",
    )
    parser.add_argument(
        "--adminAllowedHosts",
        default="",
        metavar="NAMES",
        help="Comma-separated Host names the admin plane answers to besides loopback and"
        " --adminHost (others get 421)",
    )
    parser.add_argument(
        "--coalesceReadsMs",
        type=int,
        default=0,
        metavar="MS",
        help="Read coalescing: leave a streaming connection unread for MS (1-100) between"
        " reads so that they batch up; 0 (default) relays every read at once",
    )
    parser.add_argument(
        "--streamAdvertisedHost",
        default="",
        metavar="HOST",
        help="RabbitMQ Streams: the host name the proxy gives stream clients in Open and"
        " Metadata responses (default: the address each client connected to); set it to"
        " the name in the ingress TLS certificate",
    )
    parser.add_argument(
        "--definitions",
        default=None,
        metavar="FILE",
        help="Apply this definitions document (as GET /api/v1/definitions gives) at startup;"
        " SIGHUP reloads it",
    )
    parser.add_argument(
        "--watchDefinitions",
        action="store_true",
        help="Reload the --definitions file when it changes (Linux inotify; a ConfigMap"
        " update too)",
    )
    parser.add_argument(
        "--stateFile",
        default=None,
        metavar="PATH",
        help="Save every configuration change to PATH (a definitions document) before"
        " acknowledging it, and restore it at start; when PATH exists it wins over"
        " --definitions, which only seeds a missing one",
    )
    parser.add_argument(
        "--traceDirectory",
        default=None,
        metavar="DIR",
        help='Where TRACE ... FILE name and REST\'s "file" write trace files (made 0700 if'
        " missing; default: traces under the log directory)",
    )
    parser.add_argument(
        "--farmChangeEvictPerSecond",
        type=int,
        default=_DEFAULTS["farm_change_evict_per_second"],
        metavar="N",
        help="When a farm is redefined without a backend, close that backend's sessions"
        " routed through the farm (Close 320) at N a second; 0 turns this off"
        " (default %(default)s)",
    )
    # Deadlines of the data plane (docs/architecture.md, "Deadlines and settings").
    for flag, setting, what in DEADLINE_FLAGS:
        parser.add_argument(
            flag,
            type=float,
            default=_DEFAULTS[setting],
            metavar="SECONDS",
            help=f"{what} (default %(default)s)",
        )
    return parser


_DEFAULTS = {field.name: field.default for field in dataclasses.fields(Settings)}
# (flag, Settings field, what it bounds): each a positive number of seconds, at most 3600.
DEADLINE_FLAGS = (
    ("--clientHandshakeTimeout", "client_handshake_timeout", "from accept to the client's Open"),
    ("--connectTimeout", "connect_timeout", "each TCP connect (and name lookup) to a broker"),
    ("--brokerHandshakeTimeout", "broker_handshake_timeout", "a broker's answer to the handshake"),
    (
        "--gracefulCloseTimeout",
        "graceful_close_timeout",
        "a CloseOk after the proxy's Close, and flushing a socket after the end",
    ),
    (
        "--adminHeaderTimeout",
        "admin_header_timeout",
        "an admin HTTP request's head, from connect or the previous response",
    ),
    ("--adminBodyTimeout", "admin_body_timeout", "an admin HTTP request's body, from its head"),
    (
        "--healthPassiveRetry",
        "health_passive_retry",
        "how long a backend that sessions failed to reach is passed over, without active"
        " checks, before a session tries it again",
    ),
)


class TokenFileError(Exception):
    """An --adminTokenFile that cannot be used; the message says why."""


def read_token_file(path: str) -> str:
    """The admin token in ``path``: its text without one trailing newline.

    Refused (``TokenFileError``): a file that cannot be read, that others may read or
    write (``chmod o-rwx``; the group may read it, so that a secret can be shared with
    a service group), that is not UTF-8, empty, or holds more than one line.
    """
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not stat.S_ISREG(mode):
                raise TokenFileError(f"--adminTokenFile {path} is not a regular file")
            if mode & (stat.S_IROTH | stat.S_IWOTH):
                raise TokenFileError(
                    f"--adminTokenFile {path} is readable or writable by others "
                    f"(mode {stat.S_IMODE(mode):04o}): chmod o-rwx it"
                )
            data = file.read(65536)
    except OSError as error:
        raise TokenFileError(f"cannot read --adminTokenFile {path}: {error.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenFileError(f"--adminTokenFile {path} is not UTF-8 text") from None
    text = text.removesuffix("\n").removesuffix("\r")
    if not text:
        raise TokenFileError(f"--adminTokenFile {path} is empty")
    if "\n" in text or "\r" in text:
        raise TokenFileError(f"--adminTokenFile {path} must hold the token on one line")
    return text


def admin_token(args: argparse.Namespace) -> str | None:
    """The token from --adminToken, AMQPPROX_ADMIN_TOKEN or --adminTokenFile (one only)."""
    given = args.adminToken or os.environ.get("AMQPPROX_ADMIN_TOKEN") or None
    if args.adminTokenFile is None:
        return given
    if given is not None:
        raise TokenFileError(
            "--adminTokenFile cannot be combined with --adminToken or AMQPPROX_ADMIN_TOKEN"
        )
    return read_token_file(args.adminTokenFile)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.help:
        parser.print_help()
        return 1
    simple_given = [bool(args.listenPort), bool(args.destinationPort), bool(args.destinationDNS)]
    if any(simple_given) and not all(simple_given):
        print(SIMPLE_MODE_ERROR)
        return 2
    listen_host = "0.0.0.0"
    if args.listenHost is not None:
        if not all(simple_given):
            print(
                "--listenHost is for simple mode: --listenPort, --destinationPort and "
                "--destinationDNS must be set too"
            )
            return 2
        try:
            listen_host = listen_address(args.listenHost)
        except AmqpproxError as error:
            print(f"--listenHost: {error.message}")
            return 2
    if not 0 <= args.consoleVerbosity <= 5:
        print("Console log verbosity must be between 0 and 5")
        return 3
    if args.cleanupIntervalMs <= 0:
        print("--cleanupIntervalMs must be positive")
        return 2
    if not 0 <= args.coalesceReadsMs <= 100:
        print("--coalesceReadsMs must be between 0 and 100")
        return 2
    if not 0 <= args.farmChangeEvictPerSecond <= 10_000:
        print("--farmChangeEvictPerSecond must be between 0 and 10000")
        return 2
    for flag, _setting, _what in DEADLINE_FLAGS:
        value = getattr(args, flag[2:])
        if not 0 < value <= 3600:
            print(f"{flag} must be more than 0 and at most 3600 seconds")
            return 2
    try:
        token = admin_token(args)
    except TokenFileError as error:
        print(error)
        return 2
    if args.adminTokenForReads and not token:
        print("--adminTokenForReads needs --adminToken, --adminTokenFile or AMQPPROX_ADMIN_TOKEN")
        return 2
    if args.watchDefinitions:
        if args.definitions is None:
            print("--watchDefinitions needs --definitions")
            return 2
        try:
            check_available()
        except InotifyUnavailable as error:
            print(f"--watchDefinitions cannot be used: {error}")
            return 2
    settings = Settings(
        control_socket=args.controlSocket,
        log_directory=args.logDirectory,
        cleanup_interval_ms=args.cleanupIntervalMs,
        console_verbosity=args.consoleVerbosity,
        admin_host=args.adminHost,
        admin_port=args.adminPort,
        admin_token=token,
        admin_token_for_reads=args.adminTokenForReads,
        admin_allowed_hosts=tuple(filter(None, map(str.strip, args.adminAllowedHosts.split(",")))),
        definitions_file=args.definitions,
        watch_definitions=args.watchDefinitions,
        state_file=args.stateFile,
        coalesce_reads_ms=args.coalesceReadsMs,
        farm_change_evict_per_second=args.farmChangeEvictPerSecond,
        stream_advertised_host=args.streamAdvertisedHost,
        trace_directory=args.traceDirectory,
        **{setting: getattr(args, flag[2:]) for flag, setting, _what in DEADLINE_FLAGS},
    )
    configure(settings.log_directory, settings.console_verbosity)
    print(
        f"Starting amqpprox, logging to: '{settings.log_directory}' "
        f"control using: '{settings.control_socket}'",
        flush=True,
    )
    simple = None
    if all(simple_given):
        simple = SimpleMode(args.listenPort, args.destinationDNS, args.destinationPort, listen_host)
    return run(settings, simple)


if __name__ == "__main__":
    sys.exit(main())
