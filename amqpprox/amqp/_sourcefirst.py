"""Which build of the codec runs: mypyc-compiled modules, or their Python source.

Owns :data:`COMPILED_MODULES` (the modules setup.py compiles), :func:`prefer_source`
(the ``AMQPPROX_PURE_PYTHON=1`` switch: an import hook that loads those modules from
their ``.py`` files even when compiled ones sit beside them, which Python would
otherwise load first) and :func:`codec_build` (what is loaded). Imports nothing of ours.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import PathFinder
from types import ModuleType

__all__ = ["COMPILED_MODULES", "PURE_PYTHON_ENV", "codec_build", "prefer_source"]

PACKAGE = __name__.rpartition(".")[0]
COMPILED_MODULES = ("fields", "frames", "methods", "handshake")
PURE_PYTHON_ENV = "AMQPPROX_PURE_PYTHON"
_HERE = os.path.dirname(os.path.abspath(__file__))


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Finds the compiled codec modules as source files, ahead of the path finder."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in COMPILED_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, os.path.join(_HERE, f"{name}.py"))


def prefer_source() -> bool:
    """Install the source-first hook if ``AMQPPROX_PURE_PYTHON`` is set; True if it is."""
    if os.environ.get(PURE_PYTHON_ENV, "") in ("", "0"):
        return False
    if not any(isinstance(finder, _SourceFirst) for finder in sys.meta_path):
        # Just ahead of the path finder (where a compiled module would win), behind any
        # hook that wraps the finders after it, such as atheris's instrumenting one.
        meta_path = sys.meta_path
        at = meta_path.index(PathFinder) if PathFinder in meta_path else len(meta_path)
        meta_path.insert(at, _SourceFirst())
    return True


def codec_build() -> str:
    """``"compiled"`` when the loaded codec modules are mypyc builds, else ``"python"``."""
    loaded = [sys.modules.get(f"{PACKAGE}.{name}") for name in COMPILED_MODULES]
    files = [getattr(module, "__file__", "") or "" for module in loaded if module is not None]
    if files and all(not name.endswith(".py") for name in files):
        return "compiled"
    return "python"
