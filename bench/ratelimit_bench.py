"""Benchmark: the shared Redis rate limiter against Celery's per-worker ``rate_limit`` (not a test).

One run, two modes, the same work and the same budget:

- ``shared``: the service as deployed; every Intercom call takes a token from the shared
  limiter (:mod:`sync_worker.ratelimit`), which also follows Intercom's headers and 429s;
- ``celery``: the same workers with the shared limiter out of the way and Celery's own
  ``rate_limit`` on the sync task instead (``bench/celery_task_rate.py``), set so that the
  workers together are allowed the same total: ``limit / window / calls_per_sync / workers``
  tasks per second per worker, where ``calls_per_sync`` is what a sync needs, measured in
  the ``shared`` run: a search and a PUT each, plus the one-time listing and creation of the
  data attributes spread over the syncs (repeated searches or PUTs after a reschedule are
  left out: they are a cost of the limiting, not of a sync). A 429 makes the task
  reschedule itself for the window's reset, as the service does.

Each mode gets a fresh Redis database and a fresh Intercom sandbox seeded with the same
``--contacts`` contacts ``client{i}@example.com`` (and the platform sandbox serving each),
allowing ``--limit`` calls per ``--window``-second window (aligned on the clock, as
Intercom's are). ``--workers`` real ``celery worker`` processes (``--concurrency`` pool
processes each) start, then one ``manual`` sync by email per contact is enqueued through
:func:`sync_worker.dispatch.enqueue_sync`, and the mode ends when every contact's sync has
recorded its result.

Everything is measured on the sandbox's side, per window (``IntercomState.stats()``):

- **calls over the limit**: calls the sandbox refused with 429 (Intercom would refuse them
  too; target 0), and windows in which at least one was refused;
- **share of the budget used**: work is *pending* from the first enqueue to the end of the
  last sync (``finished_at`` of the last result). The *full* windows are the aligned windows
  entirely inside that period (one in which no call arrived counts with 0 admitted); the
  share is ``sum(admitted in full windows) / (limit x number of full windows)`` (target at
  least 95 %). The first and last windows are only partly inside the period: they are
  reported on their own (admitted, seconds inside the period) and left out of the share,
  since a limiter may legitimately spend a whole window's budget in its first second. The
  whole run is also given pro rata, ``admitted / (limit x pending seconds / window)``
  (above 100 % when a partial window's whole budget was spent).

Also printed and written to ``--out`` (JSON): the per-window series, the run's time and its
floor (calls admitted / allowed rate), calls per sync and by operation, requests beyond one
search and one PUT per sync, task runs per sync and reschedules by cause (from the workers'
logs), the workers' CPU time, how long enqueueing took, outcomes.

Usage: ``flock /tmp/intercom-sync-heavy.lock .venv/bin/python bench/ratelimit_bench.py
[--contacts 3000] [--limit 300] [--window 10] [--workers 4] [--concurrency 1]``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis as redis_lib

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import _harness  # noqa: E402
from sync_worker import keys as service_keys  # noqa: E402
from sync_worker.devtools.localredis import LocalRedis  # noqa: E402
from sync_worker.devtools.sandbox.dataset import synthetic_email  # noqa: E402
from sync_worker.devtools.sandbox.intercom import IntercomState  # noqa: E402
from sync_worker.devtools.sandbox.intercom import create_app as intercom_app  # noqa: E402
from sync_worker.devtools.sandbox.platform import EXTENSION  # noqa: E402
from sync_worker.devtools.sandbox.platform import create_app as platform_app  # noqa: E402
from sync_worker.devtools.sandbox.server import ServedApp  # noqa: E402

MODES = ("shared", "celery")
CELERY_APP = {"shared": "sync_worker.celery_app", "celery": "bench.celery_task_rate"}
RESULT_BATCH = 500
#: The calls each sync by email makes once (Intercom's operation ids): the search, then the PUT.
ONCE_PER_SYNC = ("SearchContacts", "UpdateContact")


# --- the figures (pure) ---------------------------------------------------------------------


def pending_windows(
    windows: Sequence[Mapping[str, Any]],
    *,
    limit: int,
    window: float,
    pending_from: float,
    pending_until: float,
) -> list[dict[str, Any]]:
    """Every aligned window that overlaps [from, until), with ``seconds_pending`` inside it.

    ``windows`` are the sandbox's per-window records (``start``, ``end``, ``limit``,
    ``received``, ``admitted``, ``refused``); it keeps one only for a window in which a
    request arrived, so a window nobody called in is filled in here with zeros: it counts
    against the budget like any other.
    """
    recorded = {round(w["start"] / window): w for w in windows}
    found = []
    for k in range(math.floor(pending_from / window), math.ceil(pending_until / window)):
        empty = {"start": k * window, "end": (k + 1) * window, "limit": limit}
        record = {"received": 0, "admitted": 0, "refused": 0, **recorded.get(k, empty)}
        inside = min(record["end"], pending_until) - max(record["start"], pending_from)
        found.append({**record, "seconds_pending": round(inside, 3)})
    return found


def window_figures(
    windows: Sequence[Mapping[str, Any]],
    *,
    limit: int,
    window: float,
    pending_from: float,
    pending_until: float,
) -> dict[str, Any]:
    """Over-limit and budget figures of the sandbox's windows for work pending in [from, until).

    See the module docstring for the definitions.
    """
    touched = pending_windows(
        windows, limit=limit, window=window, pending_from=pending_from, pending_until=pending_until
    )
    full = [w for w in touched if w["seconds_pending"] >= window - 1e-6]
    edges = [w for w in touched if w not in full]
    per_full = [w["admitted"] for w in full]
    allowed_full = sum(w["limit"] for w in full)
    pending_seconds = pending_until - pending_from
    admitted_all = sum(w["admitted"] for w in touched)
    return {
        "pending_seconds": round(pending_seconds, 2),
        "full_windows": len(full),
        "budget_used_pct": round(100 * sum(per_full) / allowed_full, 1) if allowed_full else None,
        "admitted_per_full_window": {
            "min": min(per_full, default=0),
            "mean": round(statistics.fmean(per_full), 1) if per_full else 0,
            "max": max(per_full, default=0),
        },
        "edge_windows": [
            {key: w[key] for key in ("start", "seconds_pending", "admitted", "refused")} for w in edges
        ],
        "budget_used_pct_whole_run_pro_rata": (
            round(100 * admitted_all / (limit * pending_seconds / window), 1) if pending_seconds else None
        ),
        "calls_admitted": admitted_all,
        "calls_admitted_outside_pending": sum(w["admitted"] for w in windows) - admitted_all,
        "calls_refused_429": sum(w["refused"] for w in touched),
        "windows_with_429": sum(1 for w in touched if w["refused"]),
        "windows_admitting_over_limit": sum(1 for w in touched if w["admitted"] > w["limit"]),
        "max_received_in_a_window": max((w["received"] for w in touched), default=0),
        "max_admitted_in_a_window": max((w["admitted"] for w in touched), default=0),
        "series": {
            "columns": ["seconds_from_first_enqueue", "seconds_pending", "admitted", "refused_429"],
            "windows": [
                [round(w["start"] - pending_from, 2), w["seconds_pending"], w["admitted"], w["refused"]]
                for w in touched
            ],
        },
    }


def per_worker_task_rate(*, limit: int, window: float, calls_per_sync: float, workers: int) -> float:
    """Sync tasks per second per worker so that ``workers`` of them spend ``limit`` calls per ``window``."""
    return limit / window / calls_per_sync / workers


def log_events(lines: Iterable[str]) -> Counter[str]:
    """How many times each rescheduling / retry / parking event appears in JSON log lines, by cause."""
    counted: Counter[str] = Counter()
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        event = record.get("event")
        if event in ("sync_rescheduled_rate_limit", "sync_retry"):
            counted[f"{event}:{record.get('error_code')}"] += 1
        elif event in ("contact_dead_lettered", "rate_limit_paused"):
            counted[event] += 1
    return counted


# --- one mode (I/O) ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Setup:
    contacts: int
    limit: int
    window: float
    workers: int
    concurrency: int
    timeout: float


def seeded_state(setup: Setup) -> IntercomState:
    state = IntercomState(rate_limit=setup.limit, window_seconds=setup.window)
    for i in range(setup.contacts):
        state.add_contact({"id": f"{i + 1:024x}", "email": synthetic_email(i), "name": f"Client {i}"})
    return state


def enqueue_all(setup: Setup, env: dict[str, str], client: redis_lib.Redis) -> None:
    from sync_worker.celery_app import create_celery
    from sync_worker.config import Settings
    from sync_worker.dispatch import SyncRequest, enqueue_sync

    producer = create_celery(Settings(**env))
    for i in range(setup.contacts):
        result = enqueue_sync(SyncRequest(email=synthetic_email(i), trigger="manual"), client, producer)
        if result.status != "queued":
            raise RuntimeError(f"sync {i} was {result.status}, not queued")


def wait_for_results(setup: Setup, client: redis_lib.Redis, deadline: float) -> list[dict[str, Any]]:
    """Every contact's ``last-result`` document, once all are there."""
    names = [service_keys.last_result(f"email:{synthetic_email(i)}") for i in range(setup.contacts)]
    while True:
        found = [
            raw
            for start in range(0, len(names), RESULT_BATCH)
            for raw in client.mget(names[start : start + RESULT_BATCH])
        ]
        done = [json.loads(raw) for raw in found if raw is not None]
        if len(done) == len(names):
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(done)} of {len(names)} syncs finished in time")
        time.sleep(0.5)


def run_mode(
    mode: str,
    setup: Setup,
    *,
    redis_url: str,
    platform_url: str,
    log_dir: Path,
    task_rate: float | None = None,
) -> dict[str, Any]:
    state = seeded_state(setup)
    intercom = ServedApp(intercom_app(state, token=_harness.INTERCOM_TOKEN)).start()
    env = _harness.service_env(
        redis_url=redis_url,
        intercom_url=intercom.url,
        platform_url=platform_url,
        limit=setup.limit,
        window=setup.window,
    )
    if mode == "celery":
        assert task_rate is not None
        env[_harness.TASK_RATE_ENV] = f"{task_rate:.6f}/s"
    client = redis_lib.Redis.from_url(redis_url)
    client.flushall()
    children = []
    try:
        children = _harness.start_workers(
            setup.workers,
            env=env,
            log_dir=log_dir,
            concurrency=setup.concurrency,
            app=CELERY_APP[mode],
            prefix=mode,
            loglevel="INFO",
        )
        cpu_before = sum(_harness.cpu_seconds(child) for child in children)
        pending_from = time.time()
        enqueue_all(setup, env, client)
        enqueued_in = time.time() - pending_from
        results = wait_for_results(setup, client, time.monotonic() + setup.timeout)
        worker_cpu = sum(_harness.cpu_seconds(child) for child in children) - cpu_before
    finally:
        _harness.stop(children)
        intercom.stop()
        client.close()
    pending_until = max(result["finished_at"] for result in results)
    stats = state.stats()
    figures = window_figures(
        stats["windows"],
        limit=setup.limit,
        window=setup.window,
        pending_from=pending_from,
        pending_until=pending_until,
    )
    events = log_events(line for child in children for line in child.log_text().splitlines())
    rate = setup.limit / setup.window
    seconds = pending_until - pending_from
    requests = stats["calls_by_operation"]
    extra = sum(requests.get(op, 0) - setup.contacts for op in ONCE_PER_SYNC)
    reschedules = sum(n for event, n in events.items() if event.startswith("sync_rescheduled_rate_limit"))
    return {
        "mode": mode,
        "celery_task_rate_per_worker": env.get(_harness.TASK_RATE_ENV),
        "seconds": round(seconds, 2),
        "enqueue_seconds": round(enqueued_in, 2),
        "floor_seconds": round(figures["calls_admitted"] / rate, 2),
        "syncs_per_second": round(setup.contacts / seconds, 2),
        "calls_per_sync": round(figures["calls_admitted"] / setup.contacts, 3),
        # A search and a PUT per sync, plus the other calls (the one-time data-attribute listing
        # and creation) as made: repeats after a reschedule are a cost of the limiting, not of a sync.
        "calls_per_sync_needed": round(
            len(ONCE_PER_SYNC)
            + sum(n for op, n in requests.items() if op not in ONCE_PER_SYNC) / setup.contacts,
            4,
        ),
        **figures,
        "extra_requests": extra,
        "requests_by_operation": requests,  # 429s included
        "task_runs_per_sync": round(1 + reschedules / setup.contacts, 2),
        "worker_cpu_seconds": round(worker_cpu, 1),
        "responses_by_status": stats["responses_by_status"],
        "validation_failures": stats["validation_failures"],
        "outcomes": dict(Counter(result["status"] for result in results)),
        "log_events": dict(events),
    }


def bench(setup: Setup, log_dir: Path) -> dict[str, Any]:
    redis_server = LocalRedis(persistent=False).start()
    platform = platform_app(token=_harness.PLATFORM_TOKEN, synthetic_count=setup.contacts)
    platform_served = ServedApp(platform).start()
    common = {"redis_url": redis_server.url, "platform_url": platform_served.url, "log_dir": log_dir}
    try:
        shared = run_mode("shared", setup, **common)
        task_rate = per_worker_task_rate(
            limit=setup.limit,
            window=setup.window,
            calls_per_sync=shared["calls_per_sync_needed"],
            workers=setup.workers,
        )
        celery = run_mode("celery", setup, task_rate=task_rate, **common)
    finally:
        platform.extensions[EXTENSION].close()
        platform_served.stop()
        redis_server.cleanup()
    return {
        "contacts": setup.contacts,
        "rate_limit": {"calls": setup.limit, "window_seconds": setup.window},
        "workers": setup.workers,
        "concurrency": setup.concurrency,
        "modes": {"shared": shared, "celery": celery},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": _harness.machine(),
    }


def _print(result: dict[str, Any]) -> None:
    print(
        f"\n{result['contacts']:,} syncs, limit {result['rate_limit']['calls']}/"
        f"{result['rate_limit']['window_seconds']:g}s, {result['workers']} workers x {result['concurrency']}"
    )
    for name, run in result["modes"].items():
        rate = (
            f"  (rate_limit {run['celery_task_rate_per_worker']} per worker)"
            if run["celery_task_rate_per_worker"]
            else ""
        )
        print(f"  {name}{rate}")
        print(
            f"    429s {run['calls_refused_429']} in {run['windows_with_429']} windows; "
            f"budget used {run['budget_used_pct']}% over {run['full_windows']} full windows "
            f"(admitted {run['admitted_per_full_window']}); whole run pro rata "
            f"{run['budget_used_pct_whole_run_pro_rata']}%"
        )
        print(
            f"    {run['seconds']}s (floor {run['floor_seconds']}s), {run['syncs_per_second']} syncs/s, "
            f"{run['calls_per_sync']} calls/sync ({run['calls_per_sync_needed']} needed), "
            f"{run['extra_requests']} extra requests"
        )
        print(
            f"    {run['task_runs_per_sync']} task runs/sync, workers' CPU {run['worker_cpu_seconds']}s, "
            f"enqueueing took {run['enqueue_seconds']}s"
        )
        print(f"    requests {run['requests_by_operation']}  edges {run['edge_windows']}")
        print(f"    outcomes {run['outcomes']}  events {run['log_events']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=3000, help="syncs per mode (default 3000)")
    parser.add_argument("--limit", type=int, default=300, help="Intercom calls per window (default 300)")
    parser.add_argument("--window", type=float, default=10.0, help="window length in seconds (default 10)")
    parser.add_argument("--workers", type=int, default=4, help="worker processes (default 4)")
    parser.add_argument("--concurrency", type=int, default=1, help="pool processes per worker (default 1)")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up on a mode after this long")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ratelimit.json")
    args = parser.parse_args(argv)
    setup = Setup(args.contacts, args.limit, args.window, args.workers, args.concurrency, args.timeout)
    with tempfile.TemporaryDirectory(prefix="ratelimit-bench-") as tmp:
        result = bench(setup, Path(tmp))
    _print(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"benchmark": "ratelimit", "result": result}, indent=2) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
