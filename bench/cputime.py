"""CPU time of processes and of the whole machine, from ``/proc`` (bench helper, Linux only).

Guarantees: :func:`snapshot` reads user+system CPU seconds of every live process
in the given process groups (a :class:`~sync_worker.devtools.processes.Child` runs in its
own group, so this includes Celery's forked workers) and the
machine's busy and total CPU seconds; :func:`usage` turns two snapshots into
seconds per role and the CPU used by everything else on the machine, so a
benchmark can show that it ran on a quiet machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sync_worker.devtools.processes import process_table

_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Snapshot:
    processes: dict[int, tuple[str, float]]  # pid -> (role, cpu seconds)
    busy: float
    total: float
    steal: float


def _machine() -> tuple[float, float, float]:
    """Busy, total and stolen (by the hypervisor) CPU seconds of the machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle, steal = values[3] + values[4], values[7]
    return (sum(values) - idle - steal) / _TICK, sum(values) / _TICK, steal / _TICK


def snapshot(groups: Mapping[str, int], pids: Mapping[str, int] | None = None) -> Snapshot:
    """CPU seconds of every process in each group (role -> group leader pid) and of single ``pids``."""
    leaders = {leader: role for role, leader in groups.items()}
    singles = {pid: role for role, pid in (pids or {}).items()}
    found: dict[int, tuple[str, float]] = {}
    for pid, fields in process_table():
        role = singles.get(pid) or leaders.get(int(fields[2]))  # fields[2] is the process group
        if role is not None:
            found[pid] = (role, (int(fields[11]) + int(fields[12])) / _TICK)
    busy, total, steal = _machine()
    return Snapshot(found, busy, total, steal)


def usage(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds per role between two snapshots, plus ``other`` (the rest of the machine, kernel
    work that no process is charged for included), ``steal`` (taken by the hypervisor) and ``wall``."""
    per_role: dict[str, float] = {}
    for pid, (role, seconds) in after.processes.items():
        start = before.processes.get(pid, (role, 0.0))[1]
        per_role[role] = per_role.get(role, 0.0) + seconds - start
    cpus = os.cpu_count() or 1
    busy = after.busy - before.busy
    per_role["other"] = max(0.0, busy - sum(per_role.values()))
    per_role["steal"] = after.steal - before.steal
    per_role["wall"] = (after.total - before.total) / cpus
    return per_role


def machine_busy_share(seconds: float = 1.0) -> float:
    """Share (0-1) of the machine's CPU that was busy (or stolen by the hypervisor) over the next ``seconds``."""
    busy, total, steal = _machine()
    time.sleep(seconds)
    busy_after, total_after, steal_after = _machine()
    return (busy_after + steal_after - busy - steal) / max(1e-9, total_after - total)


def wait_for_quiet(threshold: float, timeout: float) -> tuple[bool, float]:
    """Wait (at most ``timeout`` s) for a second in which under ``threshold`` of the CPU was busy."""
    deadline = time.monotonic() + timeout
    share = machine_busy_share()
    while share >= threshold and time.monotonic() < deadline:
        share = machine_busy_share()
    return share < threshold, share
