"""The one native part, the C frame scanner, and its switch ``AMQPPROX_NO_EXTENSIONS``.

The extension is optional (a build without a compiler runs the Python walk), and the
switch turns it off at build time (setup.py) and at run time (``amqpprox.amqp.scanner``).
These tests check what a run gets: the C scanner exactly when it was built and not
switched off, nothing else compiled in the package, and an ``import amqpprox`` that
leaves the import machinery alone.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import amqpprox
from amqpprox.amqp import scanner

PACKAGE_DIR = Path(amqpprox.__file__).parent
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
C_BUILT = importlib.util.find_spec("amqpprox.amqp._framescan") is not None
SWITCHED_OFF = os.environ.get("AMQPPROX_NO_EXTENSIONS", "") not in ("", "0")
needs_c = pytest.mark.skipif(not C_BUILT, reason="amqpprox.amqp._framescan was not built")


def _run(script: str, **env: str) -> list[str]:
    """``script``'s output lines in a fresh interpreter, AMQPPROX_NO_EXTENSIONS from ``env``."""
    environ = {k: v for k, v in os.environ.items() if k != "AMQPPROX_NO_EXTENSIONS"}
    environ.update(env)
    done = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


_WHICH = (
    "import sys, amqpprox, amqpprox.amqp.scanner as s\n"
    "print(s.IMPLEMENTATION, amqpprox.build(), type(s.FrameScanner(4096)).__name__,\n"
    "      s.scan.__module__, 'amqpprox.amqp._framescan' in sys.modules)"
)
PYTHON_WALK = ["python", "python", "PyFrameScanner", "amqpprox.amqp.scanner", "False"]


def test_this_run_has_the_scanner_it_asked_for() -> None:
    expected = "c" if C_BUILT and not SWITCHED_OFF else "python"
    assert expected == scanner.IMPLEMENTATION
    assert amqpprox.build() == expected
    assert (scanner.FrameScanner is scanner.PyFrameScanner) == (expected == "python")


def test_the_only_extension_in_the_package_is_the_frame_scanner() -> None:
    # A leftover of the mypyc build (before its removal) would shadow its .py file.
    extensions = {path.relative_to(PACKAGE_DIR).as_posix() for path in PACKAGE_DIR.rglob("*.so")}
    extensions |= {path.name for path in PACKAGE_DIR.parent.glob("amqpprox*.so")}
    assert extensions <= {f"amqp/_framescan{SUFFIX}"}, "leftovers: run `make clean venv`"


@needs_c
def test_the_built_extension_is_what_the_relay_runs_by_default() -> None:
    assert _run(_WHICH) == ["c", "c", "FrameScanner", "amqpprox.amqp._framescan", "True"]
    assert _run(_WHICH, AMQPPROX_NO_EXTENSIONS="0") == _run(_WHICH)
    assert _run(_WHICH, AMQPPROX_NO_EXTENSIONS="") == _run(_WHICH)


@pytest.mark.parametrize("value", ["1", "yes"])
def test_no_extensions_switch_runs_the_python_walk_even_when_built(value: str) -> None:
    # The extension is not even imported, though it is there to import.
    assert _run(_WHICH, AMQPPROX_NO_EXTENSIONS=value) == PYTHON_WALK
    found = "import importlib.util as u; print(u.find_spec('amqpprox.amqp._framescan') is not None)"
    assert _run(found, AMQPPROX_NO_EXTENSIONS=value) == [str(C_BUILT)]


@pytest.mark.parametrize(
    "env", [{}, {"AMQPPROX_NO_EXTENSIONS": "1"}, {"AMQPPROX_PURE_PYTHON": "1"}]
)
def test_import_amqpprox_installs_no_import_hook(env: dict[str, str]) -> None:
    script = (
        "import sys\n"
        "hooks = (list(sys.meta_path), list(sys.path_hooks), list(sys.path))\n"
        "import amqpprox\n"
        "print(hooks == (sys.meta_path, sys.path_hooks, sys.path))\n"
        "print(sorted(m for m in sys.modules if m.startswith('amqpprox')))"
    )
    assert _run(script, **env) == ["True", "['amqpprox']"]
