"""``/healthz``, ``/readyz``, ``/healthz/workers`` and ``/metrics``.

Guarantees:
- ``/healthz`` answers 200 from the process alone (no I/O): the process is up;
- ``/readyz`` is the receiver's own readiness: 200 exactly when Redis takes a write (a probe
  key with a short expiry), i.e. when a trigger can be stored; otherwise 503 naming the
  failed check (``redis_unavailable``: no answer; ``redis_refuses_writes``: an error reply such
  as a read-only replica, out of memory, ``MISCONF``). Workers being down never fails it: the
  receiver keeps queueing webhooks for them, and an orchestrator must not pull it for that.
  Its body carries the workers' health as information (``workers``);
- ``/healthz/workers`` is the workers' health, for alerting: 200 when some worker's heartbeat
  is at most ``HEARTBEAT_MAX_AGE_SECONDS`` old, else 503 ``no_worker``; ages are on Redis's
  clock (:mod:`sync_worker.heartbeat`), never this host's;
- ``/metrics`` is ``prometheus_client``'s text exposition of the app's registry: the
  receiver's and the workers' figures, read from Redis at each scrape
  (:mod:`web.exposition`; 503 when Redis cannot be read).
"""

from __future__ import annotations

from typing import Any

import redis as redis_lib
from flask import Blueprint, Response

from sync_worker.heartbeat import HEARTBEAT_MAX_AGE_SECONDS, worker_health
from web.context import web_context
from web.errors import ApiError, error_response
from web.exposition import CONTENT_TYPE, exposition
from web.keys import readiness_probe

bp = Blueprint("health", __name__)

READINESS_PROBE_TTL_MS = 10_000


@bp.get("/healthz")
def healthz() -> Any:
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> Any:
    client = web_context().redis
    try:
        client.set(readiness_probe(), "1", px=READINESS_PROBE_TTL_MS)
    except (redis_lib.ConnectionError, redis_lib.TimeoutError):
        return error_response(503, "redis_unavailable", "Redis does not answer.", checks={"redis": "down"})
    except redis_lib.RedisError as refused:  # an error reply: it answers, but stores nothing
        reply = str(refused).split(" ", 1)[0]
        return error_response(
            503,
            "redis_refuses_writes",
            f"Redis refuses writes ({reply}): no trigger can be stored.",
            checks={"redis": "refuses_writes"},
        )
    checks: dict[str, Any] = {"redis": "ok"}
    try:
        workers: dict[str, Any] | None = worker_health(client, HEARTBEAT_MAX_AGE_SECONDS).to_dict()
    except redis_lib.RedisError:  # information only: it never fails readiness
        workers = None
    return {"status": "ready", "checks": checks, "workers": workers}


@bp.get("/healthz/workers")
def workers_health() -> Any:
    try:
        health = worker_health(web_context().redis, HEARTBEAT_MAX_AGE_SECONDS)
    except redis_lib.RedisError:
        return error_response(503, "redis_unavailable", "Redis does not answer: heartbeats cannot be read.")
    body = health.to_dict()
    if not health.healthy:
        return error_response(
            503,
            "no_worker",
            f"No worker heartbeat in the last {HEARTBEAT_MAX_AGE_SECONDS:.0f} seconds (Redis's clock).",
            workers=body,
        )
    return {"status": "ok", "workers": body}


@bp.get("/metrics")
def metrics_text() -> Response:
    try:
        body = exposition(web_context().registry)
    except redis_lib.RedisError:
        raise ApiError(503, "redis_unavailable", "Metrics are kept in Redis, which cannot be read.") from None
    return Response(body, content_type=CONTENT_TYPE)
