"""A webhook's common case answered before Flask: verify, triage, store, answer (WSGI middleware).

Why our own: Flask's request machinery (request context, URL matching, hooks, proxies,
``Response`` objects) cost about as much CPU per webhook as everything a webhook must do
(``bench/README.md``, "Receiver cost"), and Intercom's notifications are nearly all this one
case. :func:`wrap` puts :class:`WebhookFastPath` in front of the app's ``wsgi_app``.

Guarantees:
- it answers only a ``POST /webhooks/intercom`` with a declared ``Content-Length`` within
  ``SYNC_WEBHOOK_MAX_BODY_BYTES``, a JSON content type and a valid ``X-Hub-Signature``
  (:func:`web.auth.signature_matches`, constant time) whose notification
  (:class:`~web.notifications.Notification`) is a subscribed topic about a contact that
  screening lets through (:func:`web.webhooks.triage`, the view's own checks), stored by
  :func:`~sync_worker.dispatch.enqueue_sync` (dedupe of the notification id in the same script)
  before the answer; every other request (any refusal, skip, ping, topic not subscribed, other routes)
  goes to the Flask app with the body it sent, untouched, so it is answered exactly as before;
- what it answers is what the view answers (``queued`` / ``folded`` with the task id,
  ``duplicate``, the 503 ``queue_unavailable`` with ``Retry-After`` when Redis cannot be
  reached, or the view's 500 ``internal_error``, logged with its scrubbed traceback, should the
  store fail unexpectedly), with the bookkeeping of :mod:`web.access`: ``X-Request-Id``, one access log line
  (:func:`web.access.log_request`), the metrics counts and latency (``RedisMetrics.record``).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from sync_worker.countbuffer import label_field
from sync_worker.dispatch import EnqueueResult, QueueUnavailable, enqueue_sync
from web import keys
from web.access import log_request
from web.auth import plain_secret, signature_matches
from web.context import WebContext
from web.errors import error_body, unexpected
from web.intake import enqueue_failed
from web.jsonbody import parse_json
from web.notifications import Notification, Subject
from web.requestid import choose_request_id
from web.webhooks import ROUTE as WEBHOOK_ROUTE
from web.webhooks import SOURCE, sync_request, triage

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_JSON_TYPES = ("application/json",)
_REASONS = {200: "200 OK", 500: "500 INTERNAL SERVER ERROR", 503: "503 SERVICE UNAVAILABLE"}


def _json(payload: dict[str, Any]) -> bytes:
    """The bytes Flask's ``jsonify`` writes for ``payload`` (compact, key order kept, newline)."""
    return (json.dumps(payload, separators=(",", ":")) + "\n").encode()


def _is_json(content_type: str) -> bool:
    mimetype = content_type.split(";", 1)[0].strip().lower()
    return mimetype in _JSON_TYPES or mimetype.endswith("+json")


class WebhookFastPath:
    """The middleware (see the module docstring); ``app`` is the Flask app's ``wsgi_app``."""

    def __init__(self, app: WsgiApp, context: WebContext):
        self._app = app
        self._context = context
        self._key = plain_secret(context.settings.intercom_client_secret)
        self._max_body = context.settings.webhook_max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if (
            environ.get("PATH_INFO") != WEBHOOK_ROUTE
            or environ.get("REQUEST_METHOD") != "POST"
            or self._key is None
        ):
            return self._app(environ, start_response)
        started = time.perf_counter()
        declared = environ.get("CONTENT_LENGTH") or ""
        if not declared.isdigit() or int(declared) > self._max_body:
            return self._app(environ, start_response)
        body = environ["wsgi.input"].read(int(declared))
        environ["wsgi.input"] = io.BytesIO(body)  # the app reads the same bytes if it answers
        try:
            work = self._verified(environ, body)
        except Exception:  # nothing is stored yet: the view answers it, its refusals included
            work = None
        if work is None:
            environ["wsgi.input"].seek(0)
            return self._app(environ, start_response)
        notification, subject = work
        request_id = choose_request_id(environ.get("HTTP_X_REQUEST_ID"))
        counts: list[tuple[str, str]] = []
        error_code = None
        extra_headers: list[tuple[str, str]] = []
        try:
            result = self._store(notification, subject)
        except QueueUnavailable as exc:
            refusal = enqueue_failed(SOURCE, subject.contact_id, request_id, exc)
            status, error_code, outcome = refusal.status, refusal.code, None
            payload = error_body(refusal.code, refusal.message, request_id)
            extra_headers = list(refusal.headers.items())
            counts.append(("rejected", label_field({"reason": refusal.code})))
        except Exception as exc:  # a bug: it may have stored, so the view must not run it again
            status, outcome = 500, None
            error_code, message = unexpected(exc, request_id)
            payload = error_body(error_code, message, request_id)
            counts.append(("rejected", label_field({"reason": error_code})))
        else:
            status, outcome = 200, result.status
            counts.append((result.status, label_field({"source": SOURCE})))
            counts.append(("accepted", label_field({"route": WEBHOOK_ROUTE})))
            payload = (
                {"status": "duplicate", "notification_id": notification.id}
                if result.status == "duplicate"
                else {"status": result.status, "task_id": result.task_id}
            )
        data = _json(payload)
        start_response(
            _REASONS.get(status, f"{status} ERROR"),
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                *extra_headers,
                ("X-Request-Id", request_id),
            ],
        )
        seconds = time.perf_counter() - started
        self._context.metrics.record(counts, route=WEBHOOK_ROUTE, seconds=seconds)
        log_request(
            request_id=request_id,
            method="POST",
            route=WEBHOOK_ROUTE,
            status=status,
            seconds=seconds,
            contact_id=subject.contact_id,
            notification_id=notification.id,
            outcome=outcome,
            error_code=error_code,
        )
        return [data]

    def _verified(self, environ: dict[str, Any], body: bytes) -> tuple[Notification, Subject] | None:
        """The notification and its subject when this is the common case, else None (see above)."""
        header = environ.get("HTTP_X_HUB_SIGNATURE")
        if not header or self._key is None or not signature_matches(body, header, self._key):
            return None
        if not _is_json(environ.get("CONTENT_TYPE", "")):
            return None
        notification = Notification.model_validate(parse_json(body))
        verdict = triage(notification, self._context.settings)
        if verdict.answer is not None or verdict.skip is not None or verdict.subject is None:
            return None
        return notification, verdict.subject

    def _store(self, notification: Notification, subject: Subject) -> EnqueueResult:
        return enqueue_sync(
            sync_request(subject),
            self._context.redis,
            self._context.celery,
            idempotency_key=keys.webhook_seen(notification.id),
            idempotency_ttl=keys.WEBHOOK_SEEN_TTL_SECONDS,
        )


def wrap(app: WsgiApp, context: WebContext) -> WebhookFastPath:
    return WebhookFastPath(app, context)
