"""The codec's two builds: mypyc-compiled (what `make venv` installs) and pure Python.

`make test` runs the whole suite against the compiled build, then the unit tests again
with ``AMQPPROX_PURE_PYTHON=1``; these tests check that each run got the build it asked
for, so a build that silently stopped compiling cannot pass as one that did.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import amqpprox.amqp as codec
from amqpprox.amqp import _sourcefirst

ROOT = Path(__file__).resolve().parents[2]
PACKAGE_DIR = Path(codec.__file__).parent
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
PURE = os.environ.get(_sourcefirst.PURE_PYTHON_ENV, "") not in ("", "0")
NOT_BUILT = bool(os.environ.get("AMQPPROX_NO_MYPYC"))


def _setup_modules() -> list[str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "COMPILED_MODULES" for t in node.targets
        ):
            return [Path(p).stem for p in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no COMPILED_MODULES")


def _build_in_subprocess(pure: bool) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != _sourcefirst.PURE_PYTHON_ENV}
    if pure:
        env[_sourcefirst.PURE_PYTHON_ENV] = "1"
    script = (
        "import amqpprox.amqp as a, amqpprox.amqp.handshake as h, amqpprox.amqp.fields as f\n"
        "print(a.codec_build()); print(h.__file__); print(f.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_setup_compiles_exactly_what_the_switch_covers() -> None:
    assert _setup_modules() == list(_sourcefirst.COMPILED_MODULES)


def test_this_run_has_the_build_it_asked_for() -> None:
    for name in _sourcefirst.COMPILED_MODULES:
        module = sys.modules[f"amqpprox.amqp.{name}"]
        assert module.__file__ is not None
        if PURE or NOT_BUILT:
            assert module.__file__.endswith(f"{name}.py")
        else:
            assert module.__file__.endswith(f"{name}{SUFFIX}"), module.__file__
    assert codec.codec_build() == ("python" if PURE or NOT_BUILT else "compiled")


@pytest.mark.skipif(NOT_BUILT, reason="built with AMQPPROX_NO_MYPYC=1: nothing compiled")
def test_compiled_modules_are_built_beside_their_sources() -> None:
    for name in _sourcefirst.COMPILED_MODULES:
        assert (PACKAGE_DIR / f"{name}{SUFFIX}").is_file(), name
    assert (PACKAGE_DIR / f"_codec__mypyc{SUFFIX}").is_file()


def test_pure_python_switch_loads_the_sources() -> None:
    build, handshake_file, fields_file = _build_in_subprocess(pure=True)
    assert build == "python"
    assert handshake_file == str(PACKAGE_DIR / "handshake.py")
    assert fields_file == str(PACKAGE_DIR / "fields.py")


@pytest.mark.skipif(NOT_BUILT, reason="built with AMQPPROX_NO_MYPYC=1: nothing compiled")
def test_default_import_loads_the_compiled_build() -> None:
    build, handshake_file, _fields_file = _build_in_subprocess(pure=False)
    assert build == "compiled"
    assert handshake_file == str(PACKAGE_DIR / f"handshake{SUFFIX}")
