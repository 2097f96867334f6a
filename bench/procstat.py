"""What an intermediary process costs, read from ``/proc`` (Linux only).

* CPU: ``utime + stime`` of ``/proc/<pid>/stat`` (every thread of the process),
  in clock ticks, converted with ``os.sysconf('SC_CLK_TCK')``.
* Memory: ``VmRSS`` of ``/proc/<pid>/status`` in KiB.

Readers return ``None`` when the process is gone or ``/proc`` is unavailable, so a
missing figure shows as ``n/a`` instead of failing the run.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path


def parse_stat_cpu_ticks(stat_line: str) -> int:
    """``utime + stime`` (clock ticks) from one ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may itself contain spaces or
    parentheses, so the numeric fields are counted from the last ``)``: after it
    come field 3 (state) onwards, which puts utime (14) at index 11, stime (15) at 12.
    """
    rest = stat_line[stat_line.rindex(")") + 2 :].split()
    return int(rest[11]) + int(rest[12])


def parse_status_rss_kib(status_text: str) -> int:
    """``VmRSS`` in KiB from the text of ``/proc/<pid>/status``."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            value, unit = line.split()[1:3]
            if unit != "kB":
                raise ValueError(f"unexpected VmRSS unit {unit!r}")
            return int(value)
    raise ValueError("no VmRSS line (a kernel thread or a zombie?)")


def cpu_seconds(pid: int | None) -> float | None:
    """CPU seconds (user + system) the process has used so far, or ``None``."""
    if pid is None:
        return None
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
        return parse_stat_cpu_ticks(line) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def rss_kib(pid: int | None) -> int | None:
    """Resident set size of the process in KiB, or ``None``."""
    if pid is None:
        return None
    try:
        return parse_status_rss_kib(Path(f"/proc/{pid}/status").read_text())
    except (OSError, ValueError):
        return None


def own_cpu_seconds() -> float:
    """User + system CPU seconds of the calling process (a forked worker starts at 0)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the RLIMIT_NOFILE soft limit to the hard limit; return (soft, hard).

    Children started afterwards (the proxy, haproxy, the forwarder) inherit it.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (OSError, ValueError):
            pass
    return soft, hard


def parse_limits_nofile(limits_text: str) -> int | None:
    """The soft "Max open files" limit from ``/proc/<pid>/limits`` (None = unlimited)."""
    for line in limits_text.splitlines():
        if line.startswith("Max open files"):
            soft = line[len("Max open files") :].split()[0]
            return None if soft == "unlimited" else int(soft)
    raise ValueError("no 'Max open files' line")


def nofile_limit(pid: int) -> int | None:
    """The process's soft RLIMIT_NOFILE, or ``None`` when unknown or unlimited."""
    try:
        return parse_limits_nofile(Path(f"/proc/{pid}/limits").read_text())
    except (OSError, ValueError):
        return None
