"""Build hook: compiles the handshake codec with mypyc (pyproject.toml holds the rest).

The four modules below are what a new connection runs through before its relay starts
(frame reader, field tables, connection methods, both handshakes). Compiled, a proxied
connection costs measurably less CPU (BENCHMARKS.md). The same ``.py`` files stay the
source: they are what mypy checks, what the pure-Python fallback runs and what the tests
also exercise uncompiled (``AMQPPROX_PURE_PYTHON=1``, tests/conftest.py).

Set ``AMQPPROX_NO_MYPYC=1`` when building to skip the compilation; the package then runs
those modules interpreted.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED_MODULES = [
    "amqpprox/amqp/fields.py",
    "amqpprox/amqp/frames.py",
    "amqpprox/amqp/methods.py",
    "amqpprox/amqp/handshake.py",
]


def _compiled_extensions() -> list[object]:
    if os.environ.get("AMQPPROX_NO_MYPYC"):
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (only when compiling)

    return list(mypycify(COMPILED_MODULES, group_name="amqpprox.amqp._codec", opt_level="3"))


setup(ext_modules=_compiled_extensions())
