"""What the benchmarks watch while a run goes (not a test).

Guarantees:
- :class:`GroupWatch` keeps, for one :class:`~sync_worker.devtools.processes.Child`'s process group
  (a worker: its parent and pool children), each process's peak RSS (``VmHWM`` from ``/proc``,
  sampled by the caller) and the group's peak summed RSS; :class:`Cpu` reads the CPU seconds of
  the workers, beat, this process (the in-process sandboxes) and Redis;
- :class:`WindowedIntercomState` is the Intercom sandbox's state noting, for every rate-limit
  window, when its first and last admitted call came; :func:`window_figures` summarises the
  windows of one run (how many were full, and when their calls came, in seconds after the
  window opened); :class:`IndexedIntercomState` also answers searches and uniqueness checks by
  email or external id from an index, and a company's ``user_count`` from a count kept as
  memberships change (:class:`CountedCompanyBook`): the same answers, without a scan of the
  workspace;
- :func:`compare_peak_rss` compares each process's peak RSS between the smallest and the largest
  population a bench measured at one limit;
- :func:`start_service` starts the workers and beat a re-sync bench watches (the caller stops
  ``service.children``); :func:`start_run` starts a manual re-sync run with the workers' settings
  and :func:`follow_run` waits for its end, sampling the watches meanwhile, and raises
  ``TimeoutError`` when it outlives its time.
"""

from __future__ import annotations

import math
import os
import resource
import statistics
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import redis as redis_lib

from bench._harness import group_pids, start_workers
from sync_worker.devtools.processes import Child, beat_argv
from sync_worker.devtools.sandbox.intercom import Admission, IntercomState
from sync_worker.devtools.sandbox.intercom_companies import CompanyBook
from sync_worker.resync.runs import RUNNING, RunOptions, RunRecord, RunStore

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


#: The fields :class:`IndexedIntercomState` indexes (a search's ``=`` on them, a uniqueness check).
INDEXED_FIELDS = ("email", "external_id")


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


class CountedCompanyBook(CompanyBook):
    """:class:`CompanyBook` whose rendered companies take ``user_count`` (the contacts holding the
    company) from a count per company kept as memberships change, not from a scan of every
    contact's memberships: the sandbox's scan makes every attach, company write and listing of a
    contact's companies cost O(contacts), so at 20,000 users an attach took 4 ms of the benchmark's
    one process (1 ms at 5,000).

    Invariant: ``_user_counts[c]`` is the number of ``_members`` lists holding ``c`` (a list never
    holds a company twice); the three methods that change ``_members`` (attach, detach,
    forget_contact) keep it so, under the state's lock. Everything else a company answers is the
    base class's rendering, unchanged.
    """

    _user_counts: Counter[str]

    @classmethod
    def adopt(cls, book: CompanyBook) -> CountedCompanyBook:
        """A counted book taking over ``book``'s parts (its lock, clock and the state's callbacks);
        ``book`` must be a fresh one (no memberships yet), as a state's reset makes."""
        if book._members:
            raise ValueError("only a book without memberships can be adopted")
        counted = cls.__new__(cls)
        counted.__dict__.update(book.__dict__)
        counted._user_counts = Counter()
        return counted

    def _holds(self, contact_id: str, intercom_id: Any) -> bool:
        return intercom_id in self._members.get(contact_id, ())

    def attach(self, contact_id: str, intercom_id: Any) -> dict[str, Any]:
        with self._lock:
            held = self._holds(contact_id, intercom_id)
            super().attach(contact_id, intercom_id)  # refuses (raises) as the sandbox does
            if not held:
                self._user_counts[intercom_id] += 1
            return self._render(self._companies[intercom_id])  # rendered again: the count now held

    def detach(self, contact_id: str, intercom_id: str) -> dict[str, Any]:
        with self._lock:
            held = self._holds(contact_id, intercom_id)
            super().detach(contact_id, intercom_id)
            if held:
                self._user_counts[intercom_id] -= 1
            return self._render(self._companies[intercom_id])

    def forget_contact(self, contact_id: str) -> None:
        with self._lock:
            for intercom_id in self._members.get(contact_id, ()):
                self._user_counts[intercom_id] -= 1
            super().forget_contact(contact_id)

    def _render(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        # The base rendering, given no memberships to scan, then the count (the same key, in place).
        company = CompanyBook._render(SimpleNamespace(_members={}, _app_id=self._app_id), stored)  # type: ignore[arg-type]
        company["user_count"] = self._user_counts[stored["id"]]
        return company

    def scanned_user_counts(self) -> dict[str, tuple[int, int]]:
        """Every company's ``user_count`` as kept and as the sandbox's scan gives it (a check that
        the two agree; O(companies x contacts))."""
        with self._lock:
            return {
                i: (self._user_counts[i], CompanyBook._render(self, stored)["user_count"])
                for i, stored in self._companies.items()
            }


class IndexedIntercomState(WindowedIntercomState):
    """:class:`WindowedIntercomState` whose searches by email or external id, and whose uniqueness
    checks, look only at the contacts that ever held that value (an index by normalised value), not
    the whole workspace: the sandbox's own scan makes each new user cost O(contacts) of the
    benchmark's one process, so at 10,000 users the sandbox, not the service, set the pace.

    The index is a superset (values are added, never removed), and every candidate is still tested
    by the sandbox's own filters, so what a search or a check answers is unchanged; a query with no
    ``=`` on an indexed field (under ORs, or in one branch of an AND) is answered by the full scan.
    Its companies are a :class:`CountedCompanyBook` (``user_count`` without a scan).
    """

    _index: dict[tuple[str, Any], set[str]]

    def reset(self) -> None:
        with self._lock:
            super().reset()
            self._index = {}
            self.companies = CountedCompanyBook.adopt(self.companies)

    def _note(self, contact_id: str) -> None:
        contact = self._contacts[contact_id]
        for name in INDEXED_FIELDS:
            if contact.get(name):
                self._index.setdefault((name, _norm(contact[name])), set()).add(contact_id)

    def add_contact(self, seed: Mapping[str, Any]) -> dict[str, Any]:
        rendered = super().add_contact(seed)
        with self._lock:
            self._note(rendered["id"])
        return rendered

    def update_contact(
        self, contact_id: str, body: Mapping[str, Any], *, preview: bool = False
    ) -> dict[str, Any]:
        rendered = super().update_contact(contact_id, body, preview=preview)
        with self._lock:
            if contact_id in self._contacts:
                self._note(contact_id)
        return rendered

    def user_counts_agree(self) -> bool:
        """Whether every company's kept ``user_count`` is the sandbox's scan's (O(companies x
        contacts): a check at the end of a run)."""
        assert isinstance(self.companies, CountedCompanyBook)
        return all(kept == scanned for kept, scanned in self.companies.scanned_user_counts().values())

    def _ordered(self, ids: set[str]) -> list[tuple[str, dict[str, Any]]]:
        return [(i, self._contacts[i]) for i in sorted(ids, key=self._position.__getitem__)]

    def _lookup(self, query: Mapping[str, Any]) -> set[str] | None:
        """Ids that may match ``query``, or None when the index cannot say (a full scan then)."""
        operator = query.get("operator")
        parts = query.get("value") or []
        if operator == "OR":
            found = [self._lookup(part) for part in parts]
            return None if any(f is None for f in found) else set().union(*found)
        if operator == "AND":
            known = [f for f in (self._lookup(part) for part in parts) if f is not None]
            return min(known, key=len) if known else None
        if operator == "=" and query.get("field") in INDEXED_FIELDS:
            return set(self._index.get((query["field"], _norm(query.get("value"))), ()))
        return None

    def _search_candidates(self, query: Mapping[str, Any]) -> Any:
        ids = self._lookup(query)
        return super()._search_candidates(query) if ids is None else self._ordered(ids)

    def _identity_candidates(self, email: Any, external_id: Any) -> Any:
        ids: set[str] = set()
        for name, value in (("email", email), ("external_id", external_id)):
            if value:
                ids |= self._index.get((name, _norm(value)), set())
        return self._ordered(ids)


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


def peak_rss_by_role(result: dict[str, Any]) -> dict[str, float]:
    """Peak RSS (MiB) by role in one bench result: beat, the worker parent, its largest pool child."""
    worker = result["worker_rss"][0]
    return {
        "beat": result["beat_rss"]["peak_rss_mib_parent"],
        "worker_parent": worker["peak_rss_mib_parent"],
        "worker_child_largest": max(worker["peak_rss_mib_children"], default=0.0),
    }


def compare_peak_rss(
    results: list[dict[str, Any]], *, size: str, tolerance_mib: float
) -> list[dict[str, Any]]:
    """For each limit measured at several sizes (``result[size]``): each role's peak RSS at the
    largest size against the smallest, and whether every role stayed within ``tolerance_mib``."""
    out = []
    for limit in sorted({r["rate_limit"]["calls"] for r in results}):
        sized = sorted((r for r in results if r["rate_limit"]["calls"] == limit), key=lambda r: r[size])
        if len(sized) < 2:
            continue
        small, large = sized[0], sized[-1]
        before, after = peak_rss_by_role(small), peak_rss_by_role(large)
        growth = {role: round(after[role] - before[role], 1) for role in before}
        out.append(
            {
                "limit": limit,
                size: [small[size], large[size]],
                "peak_rss_mib": {role: [before[role], after[role]] for role in before},
                "growth_mib": growth,
                "tolerance_mib": tolerance_mib,
                "flat": all(abs(g) <= tolerance_mib for g in growth.values()),
            }
        )
    return out


@dataclass
class Service:
    """The processes a re-sync bench runs and watches: the workers, then beat (last)."""

    children: list[Child]
    watches: list[GroupWatch]
    cpu: Cpu


def start_service(
    env: dict[str, str], log_dir: Path, *, workers: int, concurrency: int, redis_pid: int
) -> Service:
    """``workers`` workers (each with ``concurrency`` pool processes, started and ready) and beat."""
    children = start_workers(workers, env=env, log_dir=log_dir, concurrency=concurrency)
    try:
        beat = Child(
            "beat",
            beat_argv(schedule_file=str(log_dir / "beat-schedule"), loglevel="WARNING"),
            env=env,
            log_path=log_dir / "beat.log",
        ).start()
    except BaseException:
        for child in children:
            child.stop()
        raise
    children.append(beat)
    watches = [GroupWatch(child) for child in children]
    for watch in watches:
        watch.refresh()
    return Service(children, watches, Cpu(watches[:-1], watches[-1], redis_pid))


def start_run(client: redis_lib.Redis, env: dict[str, str], options: RunOptions) -> tuple[RunStore, str]:
    """Start a re-sync run with ``options`` and the workers' settings (``env``): its store and id."""
    from sync_worker.celery_app import create_celery
    from sync_worker.config import Settings
    from sync_worker.resync.settings import ResyncSettings
    from sync_worker.resync.starter import make_store, start

    settings = ResyncSettings(**env)
    result = start(client, create_celery(Settings(**env)), options, settings)
    if result.status != "started" or result.run_id is None:
        raise RuntimeError(f"could not start a run: {result}")
    return make_store(client, settings), result.run_id


def follow_run(
    store: RunStore,
    run_id: str,
    watches: list[GroupWatch],
    *,
    timeout: float,
    every: int = 4,
    on_sample: Callable[[], None] = lambda: None,
) -> RunRecord:
    """Wait (polls of 0.25 s) for the run to end, sampling the watches (and ``on_sample``) every
    ``every`` polls and once at the end; its final record."""
    deadline = time.monotonic() + timeout
    polls = 0
    while (record := store.load(run_id)).status == RUNNING:
        if polls % 40 == 0:
            for watch in watches:
                watch.refresh()
        if polls % every == 0:
            for watch in watches:
                watch.sample()
            on_sample()
        polls += 1
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} still running after {timeout}s: {record.counts}")
        time.sleep(0.25)
    for watch in watches:
        watch.sample()
    on_sample()
    return record
