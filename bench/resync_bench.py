"""Benchmark of the bulk re-sync against the sandboxes (not a test).

Starts a private Redis, the Intercom sandbox (``--limit`` calls per ``--window``-second
window, seeded with ``N`` contacts ``client{i}@example.com``), the platform sandbox
(serving the synthetic client of each), ``celery worker`` and ``celery beat`` processes,
then runs two re-syncs of the whole workspace:

1. full: every contact is new to the sync, so every one is written (one PUT each);
2. changed: between the runs ``--changed-pct`` % of the clients (default 5, a fixed random
   sample) get a new unpaid invoice on the platform; the second run must write exactly
   those contacts and leave the others (the unchanged ones) alone; the bench checks the
   contact ids Intercom saw a PUT for against the changed ones.

Figures printed and merged into ``--out`` (JSON, one entry per workspace size):
- time of each run; the calls it needed (pages of ``GET /contacts``, the data-attribute
  schema on the first run: one list and one create per custom attribute, and one PUT per
  contact written) and the floor they set at the allowed rate (needed / (limit / window));
  time / floor (1.0: only the rate limit held the run back); the calls Intercom admitted
  (more than needed means wasted calls);
- calls refused with 429 and windows that admitted more than the limit (both should be 0);
- per rate-limit window of the full run: when its first and its last call came, in seconds
  after the window opened (the last one well before the window's end means CPU to spare);
- the changed run's time as a % of the full run's;
- peak RSS (VmHWM) of beat and of each worker process (parent and pool children), and CPU
  seconds of the workers, the sandboxes (this process) and Redis in each run;
- with results for several sizes at one limit in ``--out``: each role's peak RSS at the
  largest size against the smallest, and whether it stayed within ``RSS_TOLERANCE_MIB``.

Usage: ``python bench/resync_bench.py --contacts 20000 --limit 1000 [--contacts 100000]``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis as redis_lib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    INTERCOM_TOKEN,
    PLATFORM_TOKEN,
    machine,
    merge_results,
    service_env,
    stop,
)
from bench._watch import (  # noqa: E402
    MIB,
    Cpu,
    GroupWatch,
    WindowedIntercomState,
    compare_peak_rss,
    follow_run,
    start_run,
    start_service,
    window_figures,
)
from sync_worker import integrations  # noqa: E402
from sync_worker.devtools.localredis import LocalRedis  # noqa: E402
from sync_worker.devtools.processes import Child  # noqa: E402
from sync_worker.devtools.sandbox.dataset import synthetic_record  # noqa: E402
from sync_worker.devtools.sandbox.intercom import create_app as intercom_app  # noqa: E402
from sync_worker.devtools.sandbox.platform import PlatformState  # noqa: E402
from sync_worker.devtools.sandbox.platform import create_app as platform_app  # noqa: E402
from sync_worker.devtools.sandbox.server import ServedApp  # noqa: E402
from sync_worker.resync.runs import RunOptions  # noqa: E402
from sync_worker.resync.settings import PAGE_SIZE  # noqa: E402

#: Peak RSS within this of the smaller run's counts as not grown: the same process varies by about
#: 1 MiB from run to run, and 80,000 more contacts at 25 bytes each would already exceed it.
RSS_TOLERANCE_MIB = 2.0


class BenchIntercomState(WindowedIntercomState):
    """The sandbox's state, also noting each window's first and last admitted call and who was written."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.written: set[str] = set()

    def update_contact(
        self, contact_id: str, body: Mapping[str, Any], *, preview: bool = False
    ) -> dict[str, Any]:
        rendered = super().update_contact(contact_id, body, preview=preview)
        if not preview:
            with self._lock:
                self.written.add(contact_id)
        return rendered


# --- one run -------------------------------------------------------------------------------


def _run(
    state: BenchIntercomState,
    platform_state: PlatformState,
    client: redis_lib.Redis,
    env: dict[str, str],
    watches: list[GroupWatch],
    cpu: Cpu,
    timeout: float,
) -> dict[str, Any]:
    before = state.stats()
    platform_before = platform_state.stats()
    with state._lock:
        state.written.clear()
    cpu_before = cpu.now()
    began = time.time()
    started = time.monotonic()
    store, run_id = start_run(client, env, RunOptions(trigger="manual"))
    record = follow_run(store, run_id, watches, timeout=timeout)
    elapsed = time.monotonic() - started
    cpu_after = cpu.now()
    after = state.stats()
    platform_after = platform_state.stats()
    by_op = {op: n - before["calls_by_operation"].get(op, 0) for op, n in after["calls_by_operation"].items()}
    with state._lock:
        written = set(state.written)
    return {
        "run_id": record.id,
        "status": record.status,
        "seconds": round(elapsed, 2),
        "counts": record.counts,
        "calls_admitted": after["admitted_total"] - before["admitted_total"],
        "calls_by_operation": {op: n for op, n in by_op.items() if n},
        "calls_refused_429": after["rate_limited"] - before["rate_limited"],
        "validation_failures": after["validation_failures"] - before["validation_failures"],
        "windows_over_limit": after["windows_over_limit"],
        "max_admitted_in_a_window": after["max_admitted_in_window"],
        "windows": window_figures(state, began, time.time()),
        "cpu_seconds": {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_after},
        "platform_lookups": platform_after["calls"].get("POST /v1/clients/lookup", 0)
        - platform_before["calls"].get("POST /v1/clients/lookup", 0),
        "platform_lookup_emails": platform_after["lookup_emails"] - platform_before["lookup_emails"],
        "_written_ids": written,
    }


# --- the platform change between the runs ---------------------------------------------------


def changed_record(i: int) -> dict[str, Any]:
    """Synthetic client ``i`` with one more unpaid invoice (its Unpaid Invoices value changes)."""
    record = synthetic_record(i)
    invoice = {
        "id": record["id"] * 10 + 9,  # the synthetic invoices are id * 10 + 0..2
        "status": "unpaid",
        "balance": "123.45",
        "currency": record["organization"]["currency"],
    }
    return {**record, "invoices": [*record["invoices"], invoice]}


def _schema_calls() -> int:
    """Calls the data-attribute schema needs in a fresh workspace: one list, one create per custom attribute."""
    profile = integrations.get("clients").profile()
    return 1 + sum(1 for spec in profile.attributes if spec.standard_field is None)


def _floor(run: dict[str, Any], needed: int, rate: float) -> None:
    run["calls_needed"] = needed
    run["calls_wasted"] = run["calls_admitted"] - needed
    run["floor_seconds"] = round(needed / rate, 2)
    run["time_over_floor"] = round(run["seconds"] / run["floor_seconds"], 3) if needed else None


def bench(
    contacts: int,
    *,
    limit: int,
    window: float,
    concurrency: int,
    workers: int,
    changed_pct: float,
    timeout: float,
    log_dir: Path,
) -> dict[str, Any]:
    redis_server = LocalRedis(persistent=False).start()
    state = BenchIntercomState(rate_limit=limit, window_seconds=window)
    contact_ids = [
        state.add_contact({"email": f"client{i}@example.com", "name": f"Client {i}"})["id"]
        for i in range(contacts)
    ]
    intercom = ServedApp(intercom_app(state, token=INTERCOM_TOKEN)).start()
    platform_state = PlatformState([], synthetic_count=contacts)
    platform_served = ServedApp(platform_app(token=PLATFORM_TOKEN, state=platform_state)).start()
    env = service_env(
        redis_url=redis_server.url,
        intercom_url=intercom.url,
        platform_url=platform_served.url,
        limit=limit,
        window=window,
    )
    children: list[Child] = []
    client = redis_lib.Redis.from_url(redis_server.url)
    changed = sorted(random.Random(contacts).sample(range(contacts), round(contacts * changed_pct / 100)))
    try:
        assert redis_server.process is not None
        service = start_service(
            env, log_dir, workers=workers, concurrency=concurrency, redis_pid=redis_server.process.pid
        )
        children, watches, cpu = service.children, service.watches, service.cpu
        full = _run(state, platform_state, client, env, watches, cpu, timeout)
        platform_state.upsert([changed_record(i) for i in changed])
        second = _run(state, platform_state, client, env, watches, cpu, timeout)
        redis_memory = client.info("memory")
    finally:
        stop(children)
        platform_state.close()
        intercom.stop()
        platform_served.stop()
        client.close()
        redis_server.cleanup()
    rate = limit / window
    pages = max(1, math.ceil(contacts / PAGE_SIZE))
    _floor(full, pages + _schema_calls() + contacts, rate)
    _floor(second, pages + len(changed), rate)
    expected = {contact_ids[i] for i in changed}
    written = second.pop("_written_ids")
    full_written = full.pop("_written_ids")
    second["written_check"] = {
        "changed_on_platform": len(changed),
        "written": len(written),
        "written_and_changed": len(written & expected),
        "written_not_changed": len(written - expected),
        "changed_not_written": len(expected - written),
        "ok": written == expected
        and second["counts"]["written"] == len(changed)
        and second["counts"]["unchanged"] == contacts - len(changed),
    }
    full["written_check"] = {"written": len(full_written), "ok": len(full_written) == contacts}
    for run in (full, second):
        run["contacts_per_second"] = round(contacts / run["seconds"], 1)
        run["cpu_ms_per_contact"] = {k: round(1000 * v / contacts, 2) for k, v in run["cpu_seconds"].items()}
    return {
        "contacts": contacts,
        "rate_limit": {"calls": limit, "window_seconds": window, "calls_per_second": rate},
        "workers": workers,
        "concurrency": concurrency,
        "changed_pct": changed_pct,
        "full": full,
        "changed": second,
        "changed_time_pct_of_full": round(100 * second["seconds"] / full["seconds"], 1),
        "worker_rss": [watch.figures() for watch in watches[:-1]],
        "beat_rss": watches[-1].figures(),
        "redis_used_memory_peak_mib": round(redis_memory["used_memory_peak"] / MIB, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }


def _print(result: dict[str, Any]) -> None:
    rate = result["rate_limit"]
    print(
        f"\n{result['contacts']:,} contacts, limit {rate['calls']}/{rate['window_seconds']:g}s"
        f" ({rate['calls_per_second']:g}/s), {result['workers']} worker(s) x {result['concurrency']}"
    )
    for name in ("full", "changed"):
        run = result[name]
        print(
            f"  {name:<8} {run['seconds']:8.1f}s  floor {run['floor_seconds']:7.1f}s  x{run['time_over_floor']}"
            f"  calls needed {run['calls_needed']:,} admitted {run['calls_admitted']:,}"
            f"  429s {run['calls_refused_429']}  windows over limit {run['windows_over_limit']}"
            f"  written ok {run['written_check']['ok']}"
        )
        windows = run["windows"]
        print(
            f"           full windows {windows['full_windows']}/{windows['count']}: first call at"
            f" {windows['median_first_call_s']}s, last at {windows['median_last_call_s']}s (median),"
            f" latest {windows['max_last_call_s']}s"
        )
        print(
            f"           platform lookups {run['platform_lookups']:,} for {run['platform_lookup_emails']:,}"
            f" emails  cpu ms/contact {run['cpu_ms_per_contact']}"
        )
        print(f"           counts {run['counts']}")
    print(f"  changed run = {result['changed_time_pct_of_full']}% of the full run's time")
    print(f"  {result['changed']['written_check']}")
    for figures in result["worker_rss"]:
        print(f"  worker RSS {figures}")
    print(f"  beat RSS {result['beat_rss']}  redis peak {result['redis_used_memory_peak_mib']} MiB")


def _key(result: dict[str, Any]) -> tuple[int, int]:
    return result["contacts"], result["rate_limit"]["calls"]


def _merge(path: Path, new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The results already in ``path`` with those of the same size and limit replaced by ``new``."""
    return merge_results(
        path,
        new,
        key=_key,
        order=lambda r: (r["rate_limit"]["calls"], r["contacts"]),
        keep=lambda r: "changed" in r,  # older formats dropped
    )


def compare_memory(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each limit measured at several sizes: each role's peak RSS at the largest size vs the smallest.

    "Does not grow" = within :data:`RSS_TOLERANCE_MIB` for every role.
    """
    return compare_peak_rss(results, size="contacts", tolerance_mib=RSS_TOLERANCE_MIB)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--contacts", type=int, action="append", help="workspace size (repeatable; default 20000)"
    )
    parser.add_argument("--limit", type=int, default=1000, help="Intercom calls per window (default 1000)")
    parser.add_argument("--window", type=float, default=10.0, help="window length in seconds (default 10)")
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes per worker (default 4)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--changed-pct", type=float, default=5.0, help="%% of clients changed before the second run"
    )
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
                changed_pct=args.changed_pct,
                timeout=args.timeout,
                log_dir=Path(tmp),
            )
            _print(result)
            results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    merged = _merge(args.out, results)
    memory = compare_memory(merged)
    for row in memory:
        print(f"memory at limit {row['limit']}: {row}")
    document = {"benchmark": "resync", "results": merged, "memory_comparison": memory}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
