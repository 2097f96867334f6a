"""Which build of the compiled modules runs: mypyc extensions, or their Python source.

Owns :data:`COMPILED_MODULES` (what setup.py compiles with mypyc: the handshake codec, the
session and its read coalescing), :func:`prefer_source` (the ``AMQPPROX_PURE_PYTHON=1``
switch: an import hook that loads those modules from their ``.py`` files even when
compiled ones sit beside them, which Python would otherwise load first) and
:func:`build_in_use`.
``amqpprox/__init__.py`` calls :func:`prefer_source` before any of them can be imported.
Imports nothing of ours, so setup.py can run it in a build environment without the
project's dependencies.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import sysconfig
from collections.abc import Sequence
from importlib.machinery import PathFinder
from types import ModuleType

__all__ = [
    "COMPILED_MODULES",
    "NATIVE_GROUP",
    "PURE_PYTHON_ENV",
    "build_in_use",
    "module_base",
    "native_library",
    "prefer_source",
    "pure_python_requested",
    "source_paths",
]

PACKAGE = "amqpprox"
# Dotted names below the package: setup.py and the Makefile read this list (by running
# this file), the import hook and the tests import it.
COMPILED_MODULES = (
    "amqp.fields",
    "amqp.frames",
    "amqp.methods",
    "amqp.handshake",
    "core.sessions",
    "proxy.coalescing",
    "proxy.session",
)
PURE_PYTHON_ENV = "AMQPPROX_PURE_PYTHON"
# mypyc compiles the list as one group: each module's extension is a small shim, the code
# is in this shared library, which sits beside the package (top level).
NATIVE_GROUP = "amqpprox_native"
_HERE = os.path.dirname(os.path.abspath(__file__))


def module_base(name: str) -> str:
    """The path of a module of the list without its suffix (``.py`` or the extension's)."""
    return os.path.join(_HERE, *name.split("."))


def native_library() -> str:
    """The path of the group's shared library, as this interpreter names extensions."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    return os.path.join(os.path.dirname(_HERE), f"{NATIVE_GROUP}__mypyc{suffix}")


def source_paths() -> list[str]:
    """The list's source files relative to the project root, as setup.py compiles them."""
    return [f"{PACKAGE}/{name.replace('.', '/')}.py" for name in COMPILED_MODULES]


_SOURCES = {f"{PACKAGE}.{name}": module_base(name) + ".py" for name in COMPILED_MODULES}


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the compiled modules as source files, ahead of the path finder."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        source = _SOURCES.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def pure_python_requested() -> bool:
    """True when ``AMQPPROX_PURE_PYTHON`` asks for the sources (set and not ``0``)."""
    return os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0")


def prefer_source() -> bool:
    """Install the source-first hook if ``AMQPPROX_PURE_PYTHON`` is set; True if it is."""
    if not pure_python_requested():
        return False
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        # Just ahead of the path finder (where a compiled module would win), behind any
        # hook that wraps the finders after it, such as atheris's instrumenting one.
        meta_path = sys.meta_path
        at = meta_path.index(PathFinder) if PathFinder in meta_path else len(meta_path)
        meta_path.insert(at, _SourceFirst())
    return True


def build_in_use() -> str:
    """``"compiled"`` when the loaded modules of the list are mypyc builds, else ``"python"``."""
    loaded = [sys.modules.get(name) for name in _SOURCES]
    files = [getattr(module, "__file__", "") or "" for module in loaded if module is not None]
    if files and all(not name.endswith(".py") for name in files):
        return "compiled"
    return "python"


if __name__ == "__main__":
    # `python amqpprox/_build.py`: the Makefile's list of sources; with `--library`, the
    # path of the group's shared library as this interpreter names it.
    if sys.argv[1:] == ["--library"]:
        print(native_library())
    else:
        print(" ".join(source_paths()))
