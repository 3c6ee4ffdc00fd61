"""Benchmark of the dealer users' bulk re-sync against the sandboxes (not a test).

Starts a private Redis, the Intercom sandbox (``--limit`` calls per ``--window``-second window,
an empty workspace: every user is new), the platform sandbox serving ``N`` synthetic dealer users
sharing ``--locations`` locations (2-4 each, the same population on every run: its control's
deterministic generator), ``celery worker`` (``SYNC_INTEGRATIONS=dealer_users``) and ``celery
beat`` processes, then runs two re-syncs of the dealer users integration (``platform_users`` walk:
``GET /v1/users``, 500 a page):

1. first: every user is new, so each gets its contact and memberships, and each location its
   company;
2. unchanged: nothing changed on the platform; the run must make no Intercom write at all.

Figures printed and merged into ``--out`` (JSON, one entry per population and limit):
- each run's time; its Intercom calls by operation, writes (every call but reads: GET and
  searches) and calls per user; company writes (``POST /companies``) against the distinct
  locations of the population (target: equal, not users x locations); the floor the first run's
  calls set at the allowed rate (admitted / (limit / window)) and time / floor (target <= 1.1);
  429s and windows over the limit (both should be 0); when each full window's calls came;
- peak RSS (``VmHWM``) of the worker's parent and pool children and of beat, and Redis's used
  memory (peak during the runs, and after them: the per-user and per-company state, which grows
  with the population by design); with results for two populations at one limit in ``--out``,
  each process's peak RSS at the larger against the smaller (target: flat within
  :data:`RSS_TOLERANCE_MIB`).

Usage: ``python bench/dealer_users_bench.py --users 10000 --locations 500 --limit 1000``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
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
    IndexedIntercomState,
    WindowedIntercomState,
    compare_peak_rss,
    follow_run,
    start_run,
    start_service,
    window_figures,
)
from sync_worker.devtools.localredis import LocalRedis  # noqa: E402
from sync_worker.devtools.processes import Child  # noqa: E402
from sync_worker.devtools.sandbox.dealer_users_dataset import synthetic_user  # noqa: E402
from sync_worker.devtools.sandbox.intercom import create_app as intercom_app  # noqa: E402
from sync_worker.devtools.sandbox.openapi import load_spec, shipped_spec  # noqa: E402
from sync_worker.devtools.sandbox.platform import PlatformState  # noqa: E402
from sync_worker.devtools.sandbox.platform import create_app as platform_app  # noqa: E402
from sync_worker.devtools.sandbox.platform_users import Synthetic  # noqa: E402
from sync_worker.devtools.sandbox.server import ServedApp  # noqa: E402
from sync_worker.resync.runs import RunOptions  # noqa: E402

INTEGRATION = "dealer_users"
#: Peak RSS within this of the smaller population's counts as flat (the same process varies by
#: about 1 MiB from run to run; 40,000 more users at 50 bytes each would exceed it).
RSS_TOLERANCE_MIB = 2.0
#: How often a run in progress prints its counts and memory (seconds).
PROGRESS_SECONDS = 60.0
#: The Intercom operation that writes a company (create or update by ``company_id``).
COMPANY_WRITE = "createOrUpdateCompany"
#: POST operations that only read.
READ_POSTS = ("SearchContacts", "listAllCompanies")


def operation_methods() -> dict[str, str]:
    """Intercom's operation ids -> HTTP method, from the OpenAPI description the sandbox enforces."""
    spec = load_spec(str(shipped_spec()))
    return {
        operation["operationId"]: method.upper()
        for item in spec["paths"].values()
        for method, operation in item.items()
        if isinstance(operation, dict) and "operationId" in operation
    }


def writes_of(calls: dict[str, int], methods: dict[str, str]) -> dict[str, int]:
    """The calls that write (every method but GET, and no search), by operation (pure)."""
    return {
        op: n
        for op, n in calls.items()
        if n and methods.get(op, "POST") != "GET" and op not in READ_POSTS and "Search" not in op
    }


def distinct_locations(users: int, locations: int, seed: int = 0) -> int:
    """How many of the ``locations`` at least one of the population's users has (pure)."""
    seen: set[str] = set()
    for i in range(users):
        seen.update(
            location["id"] for location in synthetic_user(i, locations=locations, seed=seed)["locations"]
        )
    return len(seen)


def _progress(counts: dict[str, Any], watches: list[GroupWatch], redis_used: int) -> None:
    """One line while a run goes: its counts, each process's peak RSS so far, Redis's used memory."""
    worker, beat = watches[0].figures(), watches[-1].figures()
    print(
        f"    {time.strftime('%H:%M:%S', time.gmtime())} counts {counts}"
        f"  worker parent {worker['peak_rss_mib_parent']} MiB children {worker['peak_rss_mib_children']}"
        f"  beat {beat['peak_rss_mib_parent']} MiB  redis used {round(redis_used / MIB, 1)} MiB"
    )


def _run(
    state: WindowedIntercomState,
    client: redis_lib.Redis,
    env: dict[str, str],
    watches: list[GroupWatch],
    cpu: Cpu,
    timeout: float,
    methods: dict[str, str],
) -> dict[str, Any]:
    before = state.stats()
    cpu_before = cpu.now()
    redis_peak = [0]
    last_shown = [time.monotonic()]

    def sample_redis() -> None:
        used = int(client.info("memory")["used_memory"])
        redis_peak[0] = max(redis_peak[0], used)
        if time.monotonic() - last_shown[0] >= PROGRESS_SECONDS:  # a long run shows as it goes
            last_shown[0] = time.monotonic()
            _progress(store.load(run_id).counts, watches, used)

    began = time.time()
    started = time.monotonic()
    store, run_id = start_run(client, env, RunOptions(trigger="manual", integration=INTEGRATION))
    record = follow_run(store, run_id, watches, timeout=timeout, on_sample=sample_redis)
    elapsed = time.monotonic() - started
    cpu_after = cpu.now()
    after = state.stats()
    by_op = {op: n - before["calls_by_operation"].get(op, 0) for op, n in after["calls_by_operation"].items()}
    by_op = {op: n for op, n in by_op.items() if n}
    writes = writes_of(by_op, methods)
    memory = client.info("memory")
    return {
        "run_id": record.id,
        "status": record.status,
        "seconds": round(elapsed, 2),
        "counts": record.counts,
        "calls_admitted": after["admitted_total"] - before["admitted_total"],
        "calls_by_operation": by_op,
        "writes_by_operation": writes,
        "writes": sum(writes.values()),
        "company_writes": by_op.get(COMPANY_WRITE, 0),
        "calls_refused_429": after["rate_limited"] - before["rate_limited"],
        "validation_failures": after["validation_failures"] - before["validation_failures"],
        "windows_over_limit": after["windows_over_limit"] - before["windows_over_limit"],
        "windows": window_figures(state, began, time.time()),
        "cpu_seconds": {k: round(cpu_after[k] - cpu_before[k], 1) for k in cpu_after},
        "redis_used_memory_peak_in_run_mib": round(redis_peak[0] / MIB, 1),
        "redis_used_memory_after_mib": round(int(memory["used_memory"]) / MIB, 1),
    }


def bench(
    users: int,
    *,
    locations: int,
    limit: int,
    window: float,
    concurrency: int,
    timeout: float,
    log_dir: Path,
) -> dict[str, Any]:
    methods = operation_methods()
    redis_server = LocalRedis(persistent=False).start()
    state = IndexedIntercomState(rate_limit=limit, window_seconds=window)
    intercom = ServedApp(intercom_app(state, token=INTERCOM_TOKEN)).start()
    platform_state = PlatformState([], users=[])
    platform_state.users.generate(Synthetic(users, locations, 0))
    platform_served = ServedApp(platform_app(token=PLATFORM_TOKEN, state=platform_state)).start()
    env = {
        **service_env(
            redis_url=redis_server.url,
            intercom_url=intercom.url,
            platform_url=platform_served.url,
            limit=limit,
            window=window,
        ),
        "SYNC_INTEGRATIONS": INTEGRATION,
    }
    children: list[Child] = []
    client = redis_lib.Redis.from_url(redis_server.url)
    try:
        empty_redis_mib = round(int(client.info("memory")["used_memory"]) / MIB, 1)
        assert redis_server.process is not None
        service = start_service(
            env, log_dir, workers=1, concurrency=concurrency, redis_pid=redis_server.process.pid
        )
        children, watches, cpu = service.children, service.watches, service.cpu
        first = _run(state, client, env, watches, cpu, timeout, methods)
        unchanged = _run(state, client, env, watches, cpu, timeout, methods)
        redis_memory = client.info("memory")
        user_counts_agree = state.user_counts_agree()
    finally:
        stop(children)
        platform_state.close()
        intercom.stop()
        platform_served.stop()
        client.close()
        redis_server.cleanup()
    rate = limit / window
    distinct = distinct_locations(users, locations)
    for run in (first, unchanged):
        run["calls_per_user"] = round(run["calls_admitted"] / users, 3)
        run["writes_per_user"] = round(run["writes"] / users, 3)
        run["floor_seconds"] = round(run["calls_admitted"] / rate, 2)
        run["time_over_floor"] = (
            round(run["seconds"] / run["floor_seconds"], 3) if run["calls_admitted"] else None
        )
        run["users_per_second"] = round(users / run["seconds"], 1)
    targets = {
        "company_writes_equal_distinct_locations": first["company_writes"] == distinct,
        "unchanged_run_writes_nothing": unchanged["writes"] == 0,
        "first_run_within_1_1_of_floor": first["time_over_floor"] is not None
        and first["time_over_floor"] <= 1.1,
        "no_429_no_window_over_limit": all(
            run["calls_refused_429"] == 0 and run["windows_over_limit"] == 0 for run in (first, unchanged)
        ),
        "sandbox_user_counts_agree_with_its_scan": user_counts_agree,
        "every_user_done": all(
            run["counts"]["seen"] == users and run["counts"]["failed"] == 0 for run in (first, unchanged)
        ),
    }
    return {
        "users": users,
        "locations": locations,
        "distinct_locations": distinct,
        "rate_limit": {"calls": limit, "window_seconds": window, "calls_per_second": rate},
        "concurrency": concurrency,
        "first": first,
        "unchanged": unchanged,
        "targets": targets,
        "worker_rss": [watch.figures() for watch in watches[:-1]],
        "beat_rss": watches[-1].figures(),
        "redis_used_memory_empty_mib": empty_redis_mib,
        "redis_used_memory_peak_mib": round(redis_memory["used_memory_peak"] / MIB, 1),
        "redis_bytes_per_user": round((int(redis_memory["used_memory"]) - empty_redis_mib * MIB) / users, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
    }


def _print(result: dict[str, Any]) -> None:
    rate = result["rate_limit"]
    print(
        f"\n{result['users']:,} users sharing {result['locations']} locations"
        f" ({result['distinct_locations']} used), limit {rate['calls']}/{rate['window_seconds']:g}s"
        f" ({rate['calls_per_second']:g}/s), 1 worker x {result['concurrency']}"
    )
    for name in ("first", "unchanged"):
        run = result[name]
        print(
            f"  {name:<9} {run['seconds']:8.1f}s  calls {run['calls_admitted']:,}"
            f" ({run['calls_per_user']}/user)  writes {run['writes']:,} ({run['writes_per_user']}/user)"
            f"  company writes {run['company_writes']}  floor {run['floor_seconds']}s"
            f" x{run['time_over_floor']}  429s {run['calls_refused_429']}"
            f"  windows over limit {run['windows_over_limit']}"
        )
        print(f"            by operation {run['calls_by_operation']}")
        windows = run["windows"]
        print(
            f"            full windows {windows['full_windows']}/{windows['count']}: first call at"
            f" {windows['median_first_call_s']}s, last at {windows['median_last_call_s']}s (median)"
        )
        print(f"            counts {run['counts']}  cpu s {run['cpu_seconds']}")
        print(
            f"            redis used: peak in run {run['redis_used_memory_peak_in_run_mib']} MiB,"
            f" after {run['redis_used_memory_after_mib']} MiB"
        )
    for figures in result["worker_rss"]:
        print(f"  worker RSS {figures}")
    print(
        f"  beat RSS {result['beat_rss']}  redis peak {result['redis_used_memory_peak_mib']} MiB"
        f" ({result['redis_bytes_per_user']} bytes/user over empty)"
    )
    print(f"  targets {result['targets']}")


def _key(result: dict[str, Any]) -> tuple[int, int, int]:
    return result["users"], result["locations"], result["rate_limit"]["calls"]


def compare_memory(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per limit with two populations or more: each process's peak RSS at the largest vs the smallest
    (flat: within :data:`RSS_TOLERANCE_MIB`), and Redis's peak used memory at both."""
    rows = compare_peak_rss(results, size="users", tolerance_mib=RSS_TOLERANCE_MIB)
    by_key = {(r["rate_limit"]["calls"], r["users"]): r for r in results}
    for row in rows:
        row["redis_used_memory_peak_mib"] = [
            by_key[(row["limit"], users)]["redis_used_memory_peak_mib"] for users in row["users"]
        ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, action="append", help="population (repeatable; default 10000)")
    parser.add_argument("--locations", type=int, default=500, help="locations they share (default 500)")
    parser.add_argument("--limit", type=int, default=1000, help="Intercom calls per window (default 1000)")
    parser.add_argument("--window", type=float, default=10.0, help="window length in seconds (default 10)")
    parser.add_argument("--concurrency", type=int, default=4, help="pool processes of the worker (default 4)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up on a run after this long")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dealer_users.json")
    args = parser.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # a long run shows as it goes
    with tempfile.TemporaryDirectory(prefix="dealer-users-bench-") as tmp:
        for users in args.users or [10_000]:
            result = bench(
                users,
                locations=args.locations,
                limit=args.limit,
                window=args.window,
                concurrency=args.concurrency,
                timeout=args.timeout,
                log_dir=Path(tmp),
            )
            _print(result)
            _record(args.out, result)  # each population as soon as it is measured


def _record(out: Path, result: dict[str, Any]) -> None:
    """Merge ``result`` into ``out`` (and the memory comparison of what it then holds)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    merged = merge_results(out, [result], key=_key, order=lambda r: (r["rate_limit"]["calls"], r["users"]))
    memory = compare_memory(merged)
    for row in memory:
        print(f"memory at limit {row['limit']}: {row}")
    document = {"benchmark": "dealer_users_resync", "results": merged, "memory_comparison": memory}
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"\nwritten: {out}", flush=True)


if __name__ == "__main__":
    main()
