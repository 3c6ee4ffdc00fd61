"""The container health checks (the Dockerfile's ``HEALTHCHECK``, ``docker-compose.yml``).

``python -m sync_worker.healthcheck web [--url URL]`` exits 0 only when the receiver answers
``GET /healthz`` with 200 within :data:`TIMEOUT_SECONDS`; ``python -m sync_worker.healthcheck
worker [--hostname NAME]`` exits 0 only when that worker's own heartbeat (``keys.worker_heartbeats``,
written every ``workerprocess.HEARTBEAT_SECONDS`` by the worker's main process) is at most
:data:`MAX_HEARTBEAT_AGE_SECONDS` old in ``REDIS_URL``'s Redis, the age taken on Redis's clock
(:func:`sync_worker.heartbeat.worker_health`), never this container's: a host clock that is off
does not make a live worker look dead. Anything else exits 1 with one line saying why. The
worker's name defaults to Celery's own default, ``celery@<this host>``.
"""

from __future__ import annotations

import argparse
import socket
import sys
import urllib.error
import urllib.request

from sync_worker.heartbeat import HEARTBEAT_MAX_AGE_SECONDS

TIMEOUT_SECONDS = 3.0
#: Three missed heartbeats (``workerprocess.HEARTBEAT_SECONDS`` is 10): the heartbeat module's own rule.
MAX_HEARTBEAT_AGE_SECONDS = HEARTBEAT_MAX_AGE_SECONDS
DEFAULT_URL = "http://127.0.0.1:8000/healthz"


def heartbeat_problem(age: float | None, max_age: float = MAX_HEARTBEAT_AGE_SECONDS) -> str | None:
    """Why a worker whose latest heartbeat is ``age`` seconds old is not alive, or ``None`` (pure)."""
    if age is None:
        return "no heartbeat"
    if age > max_age:
        return f"heartbeat {age:.0f}s old (more than {max_age:.0f}s)"
    return None


def check_web(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:
            return None if answer.status == 200 else f"{url} answered {answer.status}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {exc}"


def check_worker(hostname: str) -> str | None:
    import redis as redis_lib

    from sync_worker.config import get_settings
    from sync_worker.heartbeat import worker_health

    client = redis_lib.Redis.from_url(
        get_settings().redis_url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )
    try:
        ages = worker_health(client).ages
    except redis_lib.RedisError as exc:
        return f"redis: {type(exc).__name__}"
    finally:
        client.close()
    problem = heartbeat_problem(ages.get(hostname))
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
