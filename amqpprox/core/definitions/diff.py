"""What applying a prepared ``Definitions`` would change, section by section.

Compares the exported configuration with the document's, by key (name, vhost, port)
for the lists and by value for the rest. Reads only; must not import ``proxy`` or ``admin``.
"""

from __future__ import annotations

from typing import Any

from amqpprox.core.context import Context
from amqpprox.core.definitions.codec import export, listener_json
from amqpprox.core.definitions.prepare import Definitions


def _section_diff(
    old: list[dict[str, Any]], new: list[dict[str, Any]], key: str
) -> dict[str, list[str]]:
    before = {str(item[key]): item for item in old}
    after = {str(item[key]): item for item in new}
    return {
        "added": sorted(k for k in after if k not in before),
        "removed": sorted(k for k in before if k not in after),
        "changed": sorted(k for k in after if k in before and after[k] != before[k]),
    }


def diff(ctx: Context, defs: Definitions) -> dict[str, Any]:
    """What applying ``defs`` would change, section by section."""
    current = export(ctx)
    target = defs.as_json()
    listeners = (
        current["listeners"]
        if defs.listeners is None
        else [listener_json(s) for s in sorted(defs.listeners, key=lambda s: s.port)]
    )
    changes: dict[str, Any] = {
        "backends": _section_diff(current["backends"], target["backends"], "name"),
        "farms": _section_diff(current["farms"], target["farms"], "name"),
        "mappings": _section_diff(current["mappings"], target["mappings"], "vhost"),
        "listeners": _section_diff(current["listeners"], listeners, "port"),
    }
    for scalar in (
        "datacenter",
        "default_farm",
        "limits",
        "auth",
        "tls",
        "paused_vhosts",
        "health",
    ):
        changes[scalar] = (
            None
            if current[scalar] == target[scalar]
            else {"from": current[scalar], "to": target[scalar]}
        )
    return changes
