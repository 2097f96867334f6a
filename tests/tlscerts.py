"""Throwaway PKI for TLS tests: a CA, a server certificate for ``localhost`` and a client.

The certificates come from ``bench/pki.py``, which the benchmark's TLS column uses too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from bench.pki import key_pem, make_ca, make_leaf


@dataclass(frozen=True)
class Pki:
    ca_cert: str
    server_cert: str
    server_key: str
    client_cert: str
    client_key: str
    other_ca_cert: str  # a CA that signed nothing here
    garbage: str  # a file that is not PEM


def _write(path: str, data: bytes) -> str:
    with open(path, "wb") as out:
        out.write(data)
    return path


def make_pki(directory: str) -> Pki:
    ca_key, ca_cert = make_ca("amqpprox test CA")
    _other_key, other_ca = make_ca("another CA")
    server_key, server_cert = make_leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = make_leaf(ca_key, ca_cert, "amqpprox test client", server=False)
    pem = serialization.Encoding.PEM
    return Pki(
        ca_cert=_write(os.path.join(directory, "ca.pem"), ca_cert.public_bytes(pem)),
        server_cert=_write(os.path.join(directory, "server.pem"), server_cert.public_bytes(pem)),
        server_key=_write(os.path.join(directory, "server.key"), key_pem(server_key)),
        client_cert=_write(os.path.join(directory, "client.pem"), client_cert.public_bytes(pem)),
        client_key=_write(os.path.join(directory, "client.key"), key_pem(client_key)),
        other_ca_cert=_write(os.path.join(directory, "other-ca.pem"), other_ca.public_bytes(pem)),
        garbage=_write(os.path.join(directory, "garbage.pem"), b"this is not PEM\n"),
    )
