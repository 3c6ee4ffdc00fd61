"""What the benchmarks watch while a run goes (not a test).

Guarantees:
- :class:`GroupWatch` keeps, for one :class:`~sync_worker.devtools.processes.Child`'s process group
  (a worker: its parent and pool children), each process's peak RSS (``VmHWM`` from ``/proc``,
  sampled by the caller) and the group's peak summed RSS; :class:`Cpu` reads the CPU seconds of
  the workers, beat, this process (the in-process sandboxes) and Redis;
- :class:`WindowedIntercomState` is the Intercom sandbox's state noting, for every rate-limit
  window, when its first and last admitted call came; :func:`window_figures` summarises the
  windows of one run (how many were full, and when their calls came, in seconds after the
  window opened).
"""

from __future__ import annotations

import math
import os
import resource
import statistics
from pathlib import Path
from typing import Any

from bench._harness import group_pids
from sync_worker.devtools.processes import Child
from sync_worker.devtools.sandbox.intercom import Admission, IntercomState

TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


class WindowedIntercomState(IntercomState):
    """The sandbox's state, also noting each window's first and last admitted call."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.admitted_at: dict[float, list[float]] = {}  # window start -> [first, last] (Unix seconds)

    def receive(self, *, authorized: bool) -> Admission:
        admission = super().receive(authorized=authorized)
        if admission.admitted:
            now = self.clock()
            start = math.floor(now / self.config.window_seconds) * self.config.window_seconds
            with self._lock:
                seen = self.admitted_at.setdefault(start, [now, now])
                seen[1] = now
        return admission


def kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


class GroupWatch:
    """One Child's process group: each process's peak RSS (VmHWM) and the group's CPU time."""

    def __init__(self, child: Child):
        self.child = child
        self.pids: list[int] = []
        self.peak_by_pid: dict[int, int] = {}
        self.role_by_pid: dict[int, str] = {}
        self.peak_total = 0

    def refresh(self) -> None:
        if self.child.pid is not None:
            self.pids = group_pids(self.child.pid)
            for pid in self.pids:
                self.role_by_pid.setdefault(pid, "parent" if pid == self.child.pid else "child")

    def sample(self) -> None:
        for pid in self.pids:
            self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), kib(pid, "VmHWM"))
        self.peak_total = max(self.peak_total, sum(kib(pid, "VmRSS") for pid in self.pids))

    def cpu(self) -> float:
        return sum(proc_cpu_seconds(pid) for pid in self.pids)

    def figures(self) -> dict[str, Any]:
        parent = [kib for pid, kib in self.peak_by_pid.items() if self.role_by_pid.get(pid) == "parent"]
        children = sorted(
            (kib for pid, kib in self.peak_by_pid.items() if self.role_by_pid.get(pid) == "child"),
            reverse=True,
        )
        return {
            "processes": len(self.peak_by_pid),
            "peak_rss_mib_parent": round(max(parent, default=0) / 1024, 1),
            "peak_rss_mib_children": [round(kib / 1024, 1) for kib in children],
            "peak_rss_mib_largest_process": round(max(self.peak_by_pid.values(), default=0) / 1024, 1),
            "peak_rss_mib_sum": round(self.peak_total / 1024, 1),
        }


class Cpu:
    """CPU seconds of the workers, beat, this process (the sandboxes' threads) and Redis."""

    def __init__(self, workers: list[GroupWatch], beat: GroupWatch, redis_pid: int):
        self.workers, self.beat, self.redis_pid = workers, beat, redis_pid

    def now(self) -> dict[str, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "workers": sum(w.cpu() for w in self.workers),
            "beat": self.beat.cpu(),
            "sandboxes_and_bench": usage.ru_utime + usage.ru_stime,
            "redis": proc_cpu_seconds(self.redis_pid),
        }


def window_figures(state: WindowedIntercomState, since: float, until: float) -> dict[str, Any]:
    """When each window's calls came, for the windows of one run (seconds after the window opened)."""
    stats = {w["start"]: w for w in state.stats()["windows"]}
    rows = []
    for start, (first, last) in sorted(state.admitted_at.items()):
        if start + state.config.window_seconds <= since or start >= until:
            continue
        rows.append(
            {
                "start": start,
                "admitted": stats.get(start, {}).get("admitted", 0),
                "first_call_s": round(first - start, 2),
                "last_call_s": round(last - start, 2),
            }
        )
    # Full: the budget was spent (the limiter keeps back a few tokens for calls still in flight).
    full = [r for r in rows if r["admitted"] >= 0.98 * state.config.rate_limit]
    return {
        "count": len(rows),
        "full_windows": len(full),
        "median_first_call_s": round(statistics.median(r["first_call_s"] for r in full), 2) if full else None,
        "median_last_call_s": round(statistics.median(r["last_call_s"] for r in full), 2) if full else None,
        "max_last_call_s": max((r["last_call_s"] for r in full), default=None),
        "rows": rows,
    }
