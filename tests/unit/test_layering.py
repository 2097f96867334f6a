"""The import arrows of the design guide: amqp <- core <- proxy, core <- admin.

Every module under each layer is walked, sub-packages included (``admin/control/`` and
its ``commands/``); relative imports are resolved, so ``from ..x import y`` cannot hide
a wrong arrow.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "amqpprox"

# Which of our packages each layer may import.
ALLOWED = {
    "amqp": {"amqp"},
    "stream": {"stream"},
    "core": {"amqp", "stream", "core", "errors", "logsetup", "__version__"},
    "proxy": {"amqp", "stream", "core", "proxy", "errors", "logsetup", "__version__"},
    "admin": {"core", "admin", "errors", "logsetup", "__version__", "build"},
}


def _absolute(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``import from`` names, relative levels resolved against ``path``."""
    if node.level == 0:
        return node.module or ""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [_absolute(path, node)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "amqpprox":
                continue
            if len(parts) > 1:
                found.add(parts[1])
            elif isinstance(node, ast.ImportFrom):
                # ``from amqpprox import proxy`` imports the names, not just the package.
                found.update(alias.name for alias in node.names)
    return found


def test_each_layer_imports_only_what_it_may() -> None:
    wrong: list[str] = []
    for layer, allowed in ALLOWED.items():
        for path in sorted((PACKAGE / layer).rglob("*.py")):
            for imported in _our_imports(path) - allowed - {"__init__"}:
                wrong.append(f"{path.relative_to(PACKAGE)} imports amqpprox.{imported}")
    assert wrong == []


def test_codec_does_no_io() -> None:
    forbidden = {"asyncio", "socket", "ssl", "selectors"}
    offenders = []
    for path in sorted([*(PACKAGE / "amqp").glob("*.py"), *(PACKAGE / "stream").glob("*.py")]):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                mods = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = {node.module.split(".")[0]}
            else:
                continue
            offenders += [f"{path.name}: {m}" for m in mods & forbidden]
    assert offenders == []


def test_relative_imports_are_resolved() -> None:
    module = PACKAGE / "admin" / "control" / "commands" / "x.py"
    for source, module_name in (
        ("from ..registry import command", "amqpprox.admin.control.registry"),
        ("from ... import stats", "amqpprox.admin"),
        ("from .... import proxy", "amqpprox"),
    ):
        node = ast.parse(source).body[0]
        assert isinstance(node, ast.ImportFrom)
        assert _absolute(module, node) == module_name


def test_the_control_package_is_walked_and_imports_no_proxy_module() -> None:
    control = PACKAGE / "admin" / "control"
    modules = sorted(p.relative_to(control).as_posix() for p in control.rglob("*.py"))
    for expected in (
        "__init__.py",
        "output.py",
        "registry.py",
        "server.py",
        "helpers.py",
        "commands/__init__.py",
        "commands/sessions.py",
        "commands/limits.py",
        "commands/auth.py",
    ):
        assert expected in modules
    for name in modules:
        assert _our_imports(control / name) <= ALLOWED["admin"], name
    # Nor indirectly: importing the whole control socket loads nothing of the data plane.
    code = (
        "import sys, amqpprox.admin.control; "
        "print(sorted(m for m in sys.modules if m.startswith('amqpprox.proxy')))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert loaded.strip() == "[]"
