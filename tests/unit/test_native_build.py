"""The two builds of the compiled modules: mypyc (what `make venv` installs) and Python.

`make test` runs the whole suite against the compiled build, then the unit and
integration tests again with ``AMQPPROX_PURE_PYTHON=1``; these tests check that each run
got the build it asked for, so a build that silently stopped compiling cannot pass as
one that did.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import amqpprox
import amqpprox.proxy.session  # the last of the compiled modules, so all are loaded
from amqpprox import _build

PACKAGE_DIR = Path(amqpprox.__file__).parent
SUFFIX = sysconfig.get_config_var("EXT_SUFFIX")
PURE = _build.pure_python_requested()
NOT_BUILT = bool(os.environ.get("AMQPPROX_NO_MYPYC"))


def _file_of(name: str) -> Path:
    return Path(_build.module_base(name))


def _loaded_in_subprocess(pure: bool) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != _build.PURE_PYTHON_ENV}
    if pure:
        env[_build.PURE_PYTHON_ENV] = "1"
    script = (
        "import amqpprox, amqpprox.proxy.session as s, amqpprox.amqp.fields as f\n"
        "print(amqpprox.build()); print(s.__file__); print(f.__file__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


@pytest.mark.skipif(NOT_BUILT, reason="built with AMQPPROX_NO_MYPYC=1: nothing compiled")
def test_setup_compiles_exactly_what_the_switch_covers() -> None:
    # A compiled module outside the list would escape AMQPPROX_PURE_PYTHON.
    compiled = {
        ".".join(path.relative_to(PACKAGE_DIR).parts).removesuffix(SUFFIX)
        for path in PACKAGE_DIR.rglob(f"*{SUFFIX}")
    }
    assert compiled - {"amqp._framescan"} == set(_build.COMPILED_MODULES)


def test_this_run_has_the_build_it_asked_for() -> None:
    for name in _build.COMPILED_MODULES:
        module = sys.modules[f"amqpprox.{name}"]
        assert module.__file__ is not None
        expected = ".py" if PURE or NOT_BUILT else SUFFIX
        assert module.__file__ == str(_file_of(name)) + expected
    assert amqpprox.build() == ("python" if PURE or NOT_BUILT else "compiled")


@pytest.mark.skipif(NOT_BUILT, reason="built with AMQPPROX_NO_MYPYC=1: nothing compiled")
def test_compiled_modules_are_built_beside_their_sources() -> None:
    for name in _build.COMPILED_MODULES:
        assert Path(str(_file_of(name)) + SUFFIX).is_file(), name
    # The shared library of the group sits beside the package: mypyc derives each
    # compiled module's __file__ from its place.
    assert Path(_build.native_library()).is_file()


def test_pure_python_switch_loads_the_sources() -> None:
    build, session_file, fields_file = _loaded_in_subprocess(pure=True)
    assert build == "python"
    assert session_file == str(_file_of("proxy.session")) + ".py"
    assert fields_file == str(_file_of("amqp.fields")) + ".py"


@pytest.mark.skipif(NOT_BUILT, reason="built with AMQPPROX_NO_MYPYC=1: nothing compiled")
def test_default_import_loads_the_compiled_build() -> None:
    build, session_file, _fields_file = _loaded_in_subprocess(pure=False)
    assert build == "compiled"
    assert session_file == str(_file_of("proxy.session")) + SUFFIX
