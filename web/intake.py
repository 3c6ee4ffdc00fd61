"""From a validated trigger to a stored sync (or a reasoned skip).

Guarantees:
- screening runs first (:func:`screen_trigger`): an excluded or invalid address
  is a :class:`~sync_worker.screening.Skip` and nothing is queued; a trigger that
  names only a contact id is screened on the addresses it carries and otherwise
  left to the worker, which reads the contact's email from Intercom;
- :func:`store` returns only once the sync is stored in Redis (queued, or folded
  into the contact's waiting sync); when Redis cannot be reached it raises a 503
  ``queue_unavailable`` :class:`~web.errors.ApiError` with ``Retry-After``, so the
  caller never holds an acknowledgement for a trigger that was not stored;
- each outcome is counted (queued / folded / skipped) under the trigger's source.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from flask import g

from sync_worker.dispatch import (
    IDEMPOTENCY_TTL_SECONDS,
    EnqueueResult,
    QueueUnavailable,
    SyncRequest,
    enqueue_sync,
)
from sync_worker.logs import log_event
from sync_worker.screening import INVALID_EMAIL, Skip, screen
from web import metrics
from web.context import web_context
from web.errors import ApiError

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 30


def screen_trigger(
    *,
    email: str | None,
    contact_id: str | None,
    author_email: str | None = None,
    reply_to: str | None = None,
    excluded: Iterable[str],
) -> Skip | None:
    """The skip for this trigger, if any (pure)."""
    skip = screen(email, author_email=author_email, reply_to=reply_to, excluded=excluded)
    if skip is not None and skip.reason_code == INVALID_EMAIL and email is None and contact_id:
        return None  # no address to judge yet: the worker reads it from the contact
    return skip


def queue_unavailable() -> ApiError:
    return ApiError(
        503,
        "queue_unavailable",
        "The sync queue cannot be reached; nothing was stored. Retry later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def enqueue_failed(
    source: str, contact_id: str | None, request_id: str | None, exc: QueueUnavailable
) -> ApiError:
    """Log a trigger that could not be stored; the 503 to answer it with."""
    log_event(
        logger,
        "enqueue_failed",
        logging.WARNING,
        request_id=request_id,
        source=source,
        contact_id=contact_id,
        cause=str(exc),
    )
    return queue_unavailable()


def skipped(skip: Skip, source: str) -> None:
    metrics.count("skipped", source=source, reason=skip.reason_code)
    g.outcome = f"skipped:{skip.reason_code}"


def store(
    sync: SyncRequest,
    source: str,
    *,
    idempotency_key: str | None = None,
    idempotency_ttl: int = IDEMPOTENCY_TTL_SECONDS,
) -> EnqueueResult:
    """Queue ``sync`` or fold it into the contact's waiting sync; 503 when Redis is unreachable.

    With ``idempotency_key`` a key already set is a ``duplicate`` result: nothing stored or
    counted here (the caller answers it); see :func:`~sync_worker.dispatch.enqueue_sync`.
    """
    context = web_context()
    g.contact_id = sync.contact_id
    try:
        result = enqueue_sync(
            sync,
            context.redis,
            context.celery,
            idempotency_key=idempotency_key,
            idempotency_ttl=idempotency_ttl,
        )
    except QueueUnavailable as exc:
        raise enqueue_failed(source, sync.contact_id, g.get("request_id"), exc) from None
    if result.status == "duplicate":
        return result
    metrics.count(result.status, source=source)
    g.outcome = result.status
    return result
