"""``/healthz``, ``/readyz`` and ``/metrics``.

Guarantees:
- ``/healthz`` answers 200 from the process alone (no I/O): the process is up;
- ``/readyz`` answers 200 only when Redis answers ``PING`` and a worker heartbeat
  (``sync_worker.keys.worker_heartbeat()``, a Unix time) is at most
  ``HEARTBEAT_MAX_AGE_SECONDS`` old; otherwise 503 naming the failed check;
- ``/metrics`` is ``prometheus_client``'s text exposition of the app's registry: the
  receiver's and the workers' figures, read from Redis at each scrape
  (:mod:`web.exposition`; 503 when Redis cannot be read).
"""

from __future__ import annotations

import time
from typing import Any

import redis as redis_lib
from flask import Blueprint, Response

from sync_worker import keys
from web.context import web_context
from web.errors import ApiError, error_response
from web.exposition import CONTENT_TYPE, exposition

bp = Blueprint("health", __name__)

HEARTBEAT_MAX_AGE_SECONDS = 30.0


def heartbeat_age(raw: bytes | str | None, now: float) -> float | None:
    """Seconds since the heartbeat ``raw`` (a Unix time), or None when absent or unreadable (pure)."""
    if raw is None:
        return None
    try:
        return max(0.0, now - float(raw.decode() if isinstance(raw, bytes) else raw))
    except ValueError:
        return None


@bp.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> Any:
    client = web_context().redis
    try:
        client.ping()
        raw = client.get(keys.worker_heartbeat())
    except redis_lib.RedisError:
        return error_response(
            503, "redis_unavailable", "Redis does not answer PING.", checks={"redis": "down"}
        )
    age = heartbeat_age(raw, time.time())
    checks: dict[str, Any] = {"redis": "ok", "worker_heartbeat_age_seconds": age}
    if age is None or age > HEARTBEAT_MAX_AGE_SECONDS:
        return error_response(
            503,
            "no_worker",
            f"No worker heartbeat in the last {HEARTBEAT_MAX_AGE_SECONDS:.0f} seconds.",
            checks={**checks, "worker": "missing"},
        )
    return {"status": "ready", "checks": {**checks, "worker": "ok"}}


@bp.get("/metrics")
def metrics_text() -> Response:
    try:
        body = exposition(web_context().registry)
    except redis_lib.RedisError:
        raise ApiError(503, "redis_unavailable", "Metrics are kept in Redis, which cannot be read.") from None
    return Response(body, content_type=CONTENT_TYPE)
