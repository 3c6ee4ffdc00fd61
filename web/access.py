"""Per-request bookkeeping: request id, access log line, metrics.

Guarantees:
- every response carries ``X-Request-Id`` (the caller's when sane, else a new one);
- every request ends with one structured log line: request id, method, route
  template (never the raw path, which may hold ids or addresses), status,
  duration, and the contact id / outcome / error code when the view set them;
  no header, body or email is logged;
- every request adds to the shared metrics: ``accepted`` (by route) or
  ``rejected`` (by error code), its own counts, and its latency, buffered in
  memory (:class:`web.metrics.RedisMetrics` writes them to Redis in the background):
  metrics never fail or slow the request.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from sync_worker.logs import log_event
from web import metrics
from web.context import web_context
from web.requestid import HEADER, choose_request_id

logger = logging.getLogger("web.access")

UNMATCHED_ROUTE = "unmatched"


def _route() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED_ROUTE


def log_request(
    *,
    request_id: str,
    method: str,
    route: str,
    status: int,
    seconds: float,
    contact_id: str | None,
    notification_id: str | None,
    outcome: str | None,
    error_code: str | None,
) -> None:
    """The request's one access line (also written by :mod:`web.fastpath`)."""
    log_event(
        logger,
        "request",
        request_id=request_id,
        method=method,
        route=route,
        status=status,
        duration_ms=round(seconds * 1000, 1),
        contact_id=contact_id,
        notification_id=notification_id,
        outcome=outcome,
        error_code=error_code,
    )


def install_access_hooks(app: Flask) -> None:
    @app.before_request
    def _start() -> None:
        g.request_id = choose_request_id(request.headers.get(HEADER))
        g.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        request_id = g.get("request_id") or choose_request_id(None)
        response.headers[HEADER] = request_id
        route = _route()
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        if response.status_code < 400:
            metrics.count("accepted", route=route)
        else:
            metrics.count("rejected", reason=g.get("error_code") or str(response.status_code))
        web_context().metrics.record(g.get("metric_counts", []), route=route, seconds=seconds)
        log_request(
            request_id=request_id,
            method=request.method,
            route=route,
            status=response.status_code,
            seconds=seconds,
            contact_id=g.get("contact_id"),
            notification_id=g.get("notification_id"),
            outcome=g.get("outcome"),
            error_code=g.get("error_code"),
        )
        return response
