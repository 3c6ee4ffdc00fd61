"""Benchmark of the bulk re-sync against the sandboxes (not a test).

Starts a private Redis, the Intercom sandbox (``--limit`` calls per ``--window``-second
window, seeded with ``N`` contacts ``client{i}@example.com``), the platform sandbox
(serving the synthetic client of each), ``celery worker`` and ``celery beat`` processes,
then runs two re-syncs of the whole workspace:

1. full: every contact is new to the sync, so every one is written (one PUT each);
2. unchanged: nothing changed on the platform, so nothing is written.

Figures printed and written to ``--out`` (JSON, one entry per size):
- time of each run, and the floor = Intercom calls / allowed rate (limit / window),
  and time / floor (1.0 = the rate limit is the only thing that limits the run);
- calls refused with 429 and windows that admitted more than the limit (both should be 0);
- the unchanged run's time as a % of the full run's;
- peak RSS (VmHWM) of the worker's processes (parent and pool children, largest and sum)
  and of beat.

Usage: ``python bench/resync_bench.py --contacts 20000 [--contacts 100000] [--concurrency 8]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis as redis_lib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import INTERCOM_TOKEN, PLATFORM_TOKEN  # noqa: E402
from bench._harness import group_pids as _group_pids  # noqa: E402
from sync_worker import keys as service_keys  # noqa: E402
from sync_worker.localredis import LocalRedis, wait_until  # noqa: E402
from sync_worker.processes import Child, beat_argv, worker_argv  # noqa: E402
from sync_worker.sandbox.intercom import IntercomState  # noqa: E402
from sync_worker.sandbox.intercom import create_app as intercom_app  # noqa: E402
from sync_worker.sandbox.platform import EXTENSION  # noqa: E402
from sync_worker.sandbox.platform import create_app as platform_app  # noqa: E402
from sync_worker.sandbox.server import ServedApp  # noqa: E402


def _kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class RssWatch:
    """Peak RSS of a process group: per-process high-water marks and the largest sum seen."""

    def __init__(self, child: Child):
        self.child = child
        self.peak_by_pid: dict[int, int] = {}
        self.peak_total = 0

    def sample(self) -> None:
        if self.child.pid is None:
            return
        pids = _group_pids(self.child.pid)
        for pid in pids:
            self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), _kib(pid, "VmHWM"))
        self.peak_total = max(self.peak_total, sum(_kib(pid, "VmRSS") for pid in pids))

    def figures(self) -> dict[str, float]:
        return {
            "processes": len(self.peak_by_pid),
            "peak_rss_mib_largest_process": round(max(self.peak_by_pid.values(), default=0) / 1024, 1),
            "peak_rss_mib_sum": round(self.peak_total / 1024, 1),
        }


def _run(
    state: IntercomState,
    client: redis_lib.Redis,
    env: dict[str, str],
    watches: list[RssWatch],
    timeout: float,
) -> dict[str, Any]:
    from sync_worker.celery_app import create_celery
    from sync_worker.config import Settings
    from sync_worker.resync.runs import RUNNING, RunOptions
    from sync_worker.resync.settings import ResyncSettings
    from sync_worker.resync.starter import make_store, start

    settings = ResyncSettings(**env)
    store = make_store(client, settings)
    before = state.stats()
    started = time.monotonic()
    result = start(client, create_celery(Settings(**env)), RunOptions(trigger="manual"), settings)
    if result.status != "started":
        raise RuntimeError(f"could not start a run: {result}")
    deadline = started + timeout
    while (record := store.load(result.run_id)).status == RUNNING:
        for watch in watches:
            watch.sample()
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {result.run_id} still running after {timeout}s: {record.counts}")
        time.sleep(0.25)
    elapsed = time.monotonic() - started
    after = state.stats()
    by_op = {op: n - before["calls_by_operation"].get(op, 0) for op, n in after["calls_by_operation"].items()}
    return {
        "run_id": record.id,
        "status": record.status,
        "seconds": round(elapsed, 2),
        "counts": record.counts,
        "calls_admitted": after["admitted_total"] - before["admitted_total"],
        "calls_by_operation": {op: n for op, n in by_op.items() if n},
        "calls_refused_429": after["rate_limited"] - before["rate_limited"],
        "windows_over_limit": after["windows_over_limit"],
        "max_admitted_in_a_window": after["max_admitted_in_window"],
    }


def bench(
    contacts: int, *, limit: int, window: float, concurrency: int, workers: int, timeout: float, log_dir: Path
) -> dict[str, Any]:
    redis_server = LocalRedis(persistent=False).start()
    state = IntercomState(rate_limit=limit, window_seconds=window)
    for i in range(contacts):
        state.add_contact({"email": f"client{i}@example.com", "name": f"Client {i}"})
    intercom = ServedApp(intercom_app(state, token=INTERCOM_TOKEN)).start()
    platform = platform_app(token=PLATFORM_TOKEN, synthetic_count=contacts)
    platform_served = ServedApp(platform).start()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "INTERCOM_API_URL": intercom.url,
        "INTERCOM_ACCESS_TOKEN": INTERCOM_TOKEN,
        "PLATFORM_API_URL": platform_served.url,
        "PLATFORM_API_TOKEN": PLATFORM_TOKEN,
        "INTERCOM_CALLS_PER_WINDOW": str(limit),
        "INTERCOM_WINDOW_SECONDS": str(int(window)),
        "PLATFORM_CALLS_PER_SECOND": "1000",
    }
    children: list[Child] = []
    client = redis_lib.Redis.from_url(redis_server.url)
    try:
        begun = time.time() - 1
        for n in range(workers):
            argv = [
                *worker_argv(concurrency=concurrency, hostname=f"bench{n}@bench", loglevel="WARNING"),
                "--include",
                "sync_worker.resync.tasks",
            ]
            children.append(Child(f"worker{n}", argv, env=env, log_path=log_dir / f"worker{n}.log").start())
        beat = Child(
            "beat",
            beat_argv(schedule_file=str(log_dir / "beat-schedule"), loglevel="WARNING"),
            env=env,
            log_path=log_dir / "beat.log",
        ).start()
        children.append(beat)
        for n in range(workers):
            wait_until(
                lambda n=n: (
                    float(client.hget(service_keys.worker_heartbeats(), f"bench{n}@bench") or 0) >= begun
                ),
                60,
                message=f"worker {n}",
            )
        watches = [RssWatch(child) for child in children]
        full = _run(state, client, env, watches, timeout)
        unchanged = _run(state, client, env, watches, timeout)
        for watch in watches:
            watch.sample()
    finally:
        for child in children:
            child.stop()
        platform.extensions[EXTENSION].close()
        intercom.stop()
        platform_served.stop()
        client.close()
        redis_server.cleanup()
    rate = limit / window
    for run in (full, unchanged):
        run["floor_seconds"] = round(run["calls_admitted"] / rate, 2)
        run["time_over_floor"] = (
            round(run["seconds"] / run["floor_seconds"], 2) if run["floor_seconds"] else None
        )
        run["contacts_per_second"] = round(contacts / run["seconds"], 1)
    worker_figures = [watch.figures() for watch in watches[:-1]]
    return {
        "contacts": contacts,
        "rate_limit": {"calls": limit, "window_seconds": window},
        "workers": workers,
        "concurrency": concurrency,
        "full": full,
        "unchanged": unchanged,
        "unchanged_time_pct_of_full": round(100 * unchanged["seconds"] / full["seconds"], 1),
        "worker_rss": worker_figures,
        "beat_rss": watches[-1].figures(),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
    }


def _print(result: dict[str, Any]) -> None:
    full, unchanged = result["full"], result["unchanged"]
    print(
        f"\n{result['contacts']:,} contacts, limit {result['rate_limit']['calls']}/"
        f"{result['rate_limit']['window_seconds']:g}s, {result['workers']} worker(s) x {result['concurrency']}"
    )
    for name, run in (("full", full), ("unchanged", unchanged)):
        print(
            f"  {name:<9} {run['seconds']:8.1f}s  floor {run['floor_seconds']:7.1f}s  x{run['time_over_floor']}"
            f"  calls {run['calls_admitted']:,}  429s {run['calls_refused_429']}  "
            f"windows over limit {run['windows_over_limit']}  {run['contacts_per_second']:,}/s"
        )
        print(f"            counts {run['counts']}")
    print(f"  unchanged run = {result['unchanged_time_pct_of_full']}% of the full run's time")
    print(f"  worker RSS {result['worker_rss']}  beat RSS {result['beat_rss']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--contacts", type=int, action="append", help="workspace size (repeatable; default 20000)"
    )
    parser.add_argument("--limit", type=int, default=1666, help="Intercom calls per window (default 1666)")
    parser.add_argument("--window", type=float, default=10.0, help="window length in seconds (default 10)")
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes per worker (default 4)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on a run after this long")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "resync.json")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory(prefix="resync-bench-") as tmp:
        for contacts in args.contacts or [20_000]:
            result = bench(
                contacts,
                limit=args.limit,
                window=args.window,
                concurrency=args.concurrency,
                workers=args.workers,
                timeout=args.timeout,
                log_dir=Path(tmp),
            )
            _print(result)
            results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "resync", "results": results}, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
