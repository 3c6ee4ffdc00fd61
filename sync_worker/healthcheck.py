"""The container health checks (the Dockerfile's ``HEALTHCHECK``, ``docker-compose.yml``).

``python -m sync_worker.healthcheck web [--url URL]`` exits 0 only when the receiver answers
``GET /healthz`` with 200 within :data:`TIMEOUT_SECONDS`; ``python -m sync_worker.healthcheck
worker [--hostname NAME]`` exits 0 only when that worker's own heartbeat (``keys.worker_heartbeats``,
written every ``workerprocess.HEARTBEAT_SECONDS`` by the worker's main process) is at most
:data:`MAX_HEARTBEAT_AGE_SECONDS` old in ``REDIS_URL``'s Redis. Anything else exits 1 with one
line saying why. The worker's name defaults to Celery's own default, ``celery@<this host>``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.error
import urllib.request

TIMEOUT_SECONDS = 3.0
#: Three missed heartbeats (``workerprocess.HEARTBEAT_SECONDS`` is 10).
MAX_HEARTBEAT_AGE_SECONDS = 30.0
DEFAULT_URL = "http://127.0.0.1:8000/healthz"


def heartbeat_problem(
    beat: float | None, now: float, max_age: float = MAX_HEARTBEAT_AGE_SECONDS
) -> str | None:
    """Why a worker whose latest heartbeat is ``beat`` is not alive at ``now``, or ``None`` (pure)."""
    if beat is None:
        return "no heartbeat"
    if now - beat > max_age:
        return f"heartbeat {now - beat:.0f}s old (more than {max_age:.0f}s)"
    return None


def check_web(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            return None if answer.status == 200 else f"{url} answered {answer.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def check_worker(hostname: str) -> str | None:
    import redis as redis_lib

    from sync_worker import keys
    from sync_worker.config import get_settings

    client = redis_lib.Redis.from_url(
        get_settings().redis_url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )
    try:
        raw = client.hget(keys.worker_heartbeats(), hostname)
    except redis_lib.RedisError as exc:
        return f"redis: {type(exc).__name__}"
    finally:
        client.close()
    problem = heartbeat_problem(float(raw) if raw is not None else None, time.time())
    return f"{hostname}: {problem}" if problem else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Health check of a receiver or a worker.")
    parser.add_argument("role", choices=["web", "worker"])
    parser.add_argument("--url", default=DEFAULT_URL, help="the receiver's /healthz (web)")
    parser.add_argument("--hostname", default=f"celery@{socket.gethostname()}", help="the worker's name")
    args = parser.parse_args(argv)
    problem = check_web(args.url) if args.role == "web" else check_worker(args.hostname)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
