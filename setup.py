"""Build hook: compiles the handshake codec and the session with mypyc (pyproject.toml
holds the rest).

The modules it compiles are what every connection runs through: the frame reader, field
tables, connection methods and both handshakes, then the session (handshake glue,
backend connect, relay callbacks) and its bookkeeping base. Compiled, a proxied
connection and a relayed read cost measurably less CPU (BENCHMARKS.md). The same ``.py``
files stay the source: they are what mypy checks, what the pure-Python fallback runs
and what the tests also exercise uncompiled (``AMQPPROX_PURE_PYTHON=1``).

Set ``AMQPPROX_NO_MYPYC=1`` when building to skip the compilation; the package then runs
those modules interpreted.
"""

from __future__ import annotations

import os
import runpy

from setuptools import setup

# The list lives in amqpprox/_build.py (the import hook that can bypass these modules
# reads it too); run from its file, since the package cannot be imported here.
_BUILD = runpy.run_path("amqpprox/_build.py")
COMPILED_MODULES: list[str] = _BUILD["source_paths"]()


def _compiled_extensions() -> list[object]:
    if os.environ.get("AMQPPROX_NO_MYPYC"):
        return []
    from mypyc.build import mypycify  # noqa: PLC0415 (only when compiling)

    # One shared library for the group, installed beside the package (top level): mypyc
    # derives each compiled module's __file__ from where that library is.
    # mypyc.ini, not pyproject's strict settings: see that file. A cache of its own keeps
    # the build apart from `make lint`'s.
    options = ["--config-file", "mypyc.ini", "--cache-dir", "build/mypyc-cache"]
    return list(
        mypycify([*options, *COMPILED_MODULES], group_name=_BUILD["NATIVE_GROUP"], opt_level="3")
    )


setup(ext_modules=_compiled_extensions())
