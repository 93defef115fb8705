"""CPU time of process trees from /proc (Linux): utime + stime of a process and of all its live descendants.

Each process's reaped children are counted too (cutime + cstime), so a short-lived child (espeak-ng per TTS call,
run and waited for by the TTS model's stub) is not lost: while alive it is counted as a descendant, once reaped
in its parent's cutime/cstime. Differences of two snapshots are the CPU seconds a tree spent in between.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    pid: int
    ppid: int
    name: str
    cpu_s: float  # utime + stime + cutime + cstime


def read_stat(pid: int) -> Stat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # pid (comm) state ppid ... ; comm may hold spaces and parentheses: split at the last ')'
    head, _, rest = raw.rpartition(")")
    name = head.partition("(")[2]
    fields = rest.split()
    # rest[0] is field 3 (state): utime is field 14 -> rest[11], stime 15, cutime 16, cstime 17
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return Stat(pid, int(fields[1]), name, (utime + stime + cutime + cstime) / TICKS)


def all_stats() -> dict[int, Stat]:
    stats: dict[int, Stat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def tree(root: int, stats: dict[int, Stat]) -> list[Stat]:
    """``root`` and its live descendants."""
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    out: list[Stat] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out.append(stats[pid])
            todo.extend(children.get(pid, []))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class CpuMeter:
    """Named process trees; ``snapshot()`` returns CPU seconds per name (and per python-backend stub model)."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots

    def snapshot(self) -> dict[str, float]:
        stats = all_stats()
        out: dict[str, float] = {}
        for name, root in self.roots.items():
            members = tree(root, stats)
            out[name] = sum(s.cpu_s for s in members)
            if name == "triton":
                # split the tree: the server itself, and each model's stub (with its own children: apertium, espeak)
                stubs = [s for s in members if s.name.startswith("triton_python")]
                stub_total = 0.0
                for stub in stubs:
                    model = _stub_model(cmdline(stub.pid))
                    cpu = sum(s.cpu_s for s in tree(stub.pid, stats))
                    out[f"triton.{model}"] = out.get(f"triton.{model}", 0.0) + cpu
                    stub_total += cpu
                out["triton.server"] = out[name] - stub_total
        return out


def _stub_model(argv: str) -> str:
    # .../model_repository/<model>/1/model.py
    for part in argv.split():
        if part.endswith("/1/model.py"):
            return Path(part).parent.parent.name
    return "unknown"


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: after.get(name, 0.0) - before.get(name, 0.0) for name in after}


def self_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]
