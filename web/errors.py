"""JSON error answers for every failure, including Flask's own 404/405/413/500.

Guarantees:
- every error response has the body ``{"error": {"code", "message"}, "request_id"}``
  with a stable machine ``code`` and a message a person can act on;
- views signal a refusal by raising :class:`ApiError` (status, code, message);
- a Redis failure that reaches here is 503 ``redis_unavailable`` (retry later);
- an unexpected exception becomes a 500 ``internal_error`` whose message names no
  internals; its log line carries the request id and the traceback, every exception
  message in it scrubbed of client data (:mod:`sync_worker.scrub`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis as redis_lib
from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from sync_worker.logs import log_event

logger = logging.getLogger(__name__)

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    429: "too_many_requests",
    431: "headers_too_large",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """A refusal with its HTTP status, machine code and human message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ):
        super().__init__(f"{status} {code}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


def error_body(code: str, message: str, request_id: str | None, **extra: Any) -> dict[str, Any]:
    """The error envelope (pure)."""
    return {"error": {"code": code, "message": message}, "request_id": request_id, **extra}


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **extra: Any
) -> Response:
    """A JSON error response; remembers the code for the access log and the metrics."""
    g.error_code = code
    response = jsonify(error_body(code, message, g.get("request_id"), **extra))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def unexpected(exc: BaseException, request_id: str | None) -> tuple[str, str]:
    """Log an exception no handler expected (traceback scrubbed); the 500's code and message."""
    log_event(
        logger,
        "unhandled_error",
        logging.ERROR,
        request_id=request_id,
        exc_info=exc,  # the traceback, its messages scrubbed (sync_worker.scrub)
    )
    return "internal_error", "Internal error; quote the request id when reporting it."


def _http_message(exc: HTTPException, max_body: int | None) -> str:
    status = exc.code or 500
    if status == 404:
        return "No such route; see /openapi.json for the routes this service serves."
    if status == 405:
        return "Method not allowed on this route."
    if status == 413:
        limit = f" of {max_body} bytes" if max_body else ""
        return f"Request body exceeds the limit{limit}."
    return exc.description or exc.name


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {
            name: value for name, value in exc.get_headers() if name.lower() in {"allow", "retry-after"}
        }
        code = _CODES.get(status, exc.name.lower().replace(" ", "_"))
        return error_response(
            status, code, _http_message(exc, app.config.get("MAX_CONTENT_LENGTH")), headers=headers
        )

    @app.errorhandler(redis_lib.RedisError)
    def _redis_down(exc: redis_lib.RedisError) -> Response:
        log_event(
            logger,
            "redis_error",
            logging.WARNING,
            request_id=g.get("request_id"),
            exc_type=type(exc).__name__,
        )
        return error_response(
            503,
            "redis_unavailable",
            "Redis cannot be reached; nothing was changed. Retry later.",
            headers={"Retry-After": "30"},
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        code, message = unexpected(exc, g.get("request_id"))
        return error_response(500, code, message)
