"""TLS: set the key, certificate and CA files, verify mode and ciphers of either direction.

Imports the registry and ``core``, never ``amqpprox.proxy``.
"""

from __future__ import annotations

from amqpprox.admin.control.helpers import arg
from amqpprox.admin.control.output import ControlOutput
from amqpprox.admin.control.registry import command
from amqpprox.core import tls_ops
from amqpprox.core.context import Context
from amqpprox.core.tls import parse_direction
from amqpprox.errors import InvalidArgument


@command(
    "TLS",
    "(INGRESS | EGRESS) (KEY_FILE file | CERT_CHAIN_FILE file | RSA_KEY_FILE file | "
    "TMP_DH_FILE file | CA_CERT_FILE file | VERIFY_MODE mode* | CIPHERS (PRINT | SET "
    "ciphersuite(:ciphersuite)*))",
)
async def _tls(ctx: Context, args: list[str], out: ControlOutput) -> None:
    direction = parse_direction(arg(args, 0) or "")
    if direction is None:
        await out.write("Direction must be INGRESS or EGRESS\n")
        return
    sub, value = (arg(args, 1) or "").upper(), arg(args, 2)
    if value is None:
        await out.write("File must be specified\n")
        return
    if sub in tls_ops.TLS_FILE_COMMANDS:
        try:
            tls_ops.set_tls_file(ctx, direction, sub, value)
        except InvalidArgument as error:
            await out.write(error.legacy_text)
    elif sub == "VERIFY_MODE":
        tls_ops.set_tls_verify_mode(ctx, direction, args[2:])
    elif sub == "CIPHERS" and value == "PRINT":  # PRINT and SET are case-sensitive upstream
        await out.write(
            "Ciphers:\n" + "".join(f"{c}\n" for c in tls_ops.tls_ciphers(ctx, direction))
        )
    elif sub == "CIPHERS" and value == "SET":
        text = ""
        try:
            ciphers = tls_ops.set_tls_ciphers(ctx, direction, arg(args, 3) or "")
        except InvalidArgument:
            text, ciphers = "Failed to set cipher suite. ", tls_ops.tls_ciphers(ctx, direction)
        await out.write(text + "Updated cipher list:\n" + "".join(f"{c}\n" for c in ciphers))
    # As upstream, an unknown command is silently a no-op.
