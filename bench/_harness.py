"""Pieces the benchmarks share: the service's environment and its worker processes (not a test).

Guarantees:
- :func:`service_env` is the environment a worker of the service gets in a benchmark:
  the private Redis, both sandboxes with their tokens, the Intercom budget of the run, a
  platform budget high enough never to be what limits it, and ``PYTHONPATH`` so a worker
  can load a bench-only Celery app (``bench/celery_task_rate.py``);
- :func:`start_workers` returns only when every ``celery worker`` it started has written
  its heartbeat (so a benchmark's clock starts with every worker ready), and raises with
  the end of its log if one exits first; the caller stops them (:func:`stop`);
- :func:`group_pids` and :func:`cpu_seconds` read a child's whole process group from
  ``/proc`` (a :class:`~sync_worker.devtools.processes.Child` runs in its own group, pool included);
- :func:`machine` describes where a figure was measured; :func:`merge_results` keeps a results
  file's earlier figures, replacing those of the same setup with the new ones.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import Any

import redis as redis_lib

from sync_worker import keys as service_keys
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.processes import Child, process_table, worker_argv

ROOT = Path(__file__).resolve().parent.parent

INTERCOM_TOKEN = "bench-intercom-token"
PLATFORM_TOKEN = "bench-platform-token"
#: The Celery ``rate_limit`` of the sync task in ``bench/celery_task_rate.py``'s workers.
TASK_RATE_ENV = "BENCH_SYNC_TASK_RATE_LIMIT"


def service_env(
    *, redis_url: str, intercom_url: str, platform_url: str, limit: int, window: float
) -> dict[str, str]:
    return {
        **os.environ,
        "REDIS_URL": redis_url,
        "INTERCOM_API_URL": intercom_url,
        "INTERCOM_ACCESS_TOKEN": INTERCOM_TOKEN,
        "PLATFORM_API_URL": platform_url,
        "PLATFORM_API_TOKEN": PLATFORM_TOKEN,
        "INTERCOM_CALLS_PER_WINDOW": str(limit),
        "INTERCOM_WINDOW_SECONDS": str(int(window)),
        "PLATFORM_CALLS_PER_SECOND": "1000",
        "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    }


def start_workers(
    count: int,
    *,
    env: dict[str, str],
    log_dir: Path,
    concurrency: int,
    app: str = "sync_worker.celery_app",
    prefix: str = "bench",
    loglevel: str = "WARNING",
    timeout: float = 60.0,
) -> list[Child]:
    """``count`` worker processes named ``{prefix}{n}@bench``, each with ``concurrency`` pool processes."""
    client = redis_lib.Redis.from_url(env["REDIS_URL"])
    begun = time.time() - 1
    children = []
    try:
        for n in range(count):
            argv = worker_argv(
                concurrency=concurrency, hostname=f"{prefix}{n}@bench", loglevel=loglevel, app=app
            )
            log_path = log_dir / f"{prefix}{n}.log"
            children.append(Child(f"{prefix}{n}", argv, env=env, log_path=log_path, cwd=ROOT).start())
        for n, child in enumerate(children):

            def up(n: int = n, child: Child = child) -> bool:
                if not child.alive():
                    raise RuntimeError(f"worker {child.name} exited:\n{child.log_text()[-3000:]}")
                beat = client.hget(service_keys.worker_heartbeats(), f"{prefix}{n}@bench")
                return float(beat or 0) >= begun

            wait_until(up, timeout, message=f"worker {child.name} (log: {child.log_path})")
    except BaseException:
        stop(children)
        raise
    finally:
        client.close()
    return children


def stop(children: Iterable[Child]) -> None:
    for child in children:
        child.stop()


def group_pids(leader: int) -> list[int]:
    """Every live process in ``leader``'s process group (a Child runs in its own group)."""
    return [pid for pid, fields in process_table() if int(fields[2]) == leader]


def cpu_seconds(child: Child) -> float:
    """User + system CPU time used so far by the live processes of ``child``'s group."""
    if child.pid is None:
        return 0.0
    ticks = sum(
        int(fields[11]) + int(fields[12]) for _, fields in process_table() if int(fields[2]) == child.pid
    )
    return ticks / os.sysconf("SC_CLK_TCK")


def machine() -> dict[str, object]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model or platform.processor(),
        "python": sys.version.split()[0],
    }


def merge_results(
    path: Path,
    new: list[dict[str, Any]],
    *,
    key: Callable[[dict[str, Any]], Hashable],
    order: Callable[[dict[str, Any]], Any],
    keep: Callable[[dict[str, Any]], bool] = lambda result: True,
) -> list[dict[str, Any]]:
    """The results already in ``path`` (those ``keep`` accepts) with any of the same ``key`` replaced
    by ``new``, sorted by ``order``."""
    try:
        old = json.loads(path.read_text())["results"]
    except (OSError, ValueError, KeyError):
        old = []
    replaced = {key(r) for r in new}
    kept = [r for r in old if keep(r) and key(r) not in replaced]
    return sorted(kept + new, key=order)
