"""The import arrows of the design guide: amqp <- core <- proxy, core <- admin."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "amqpprox"

# Which of our packages each layer may import.
ALLOWED = {
    "amqp": {"amqp"},
    "core": {"amqp", "core", "errors", "logsetup", "__version__"},
    "proxy": {"amqp", "core", "proxy", "errors", "logsetup", "__version__"},
    "admin": {"core", "admin", "errors", "logsetup", "__version__", "build"},
}


def _our_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
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
    for path in sorted((PACKAGE / "amqp").glob("*.py")):
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
