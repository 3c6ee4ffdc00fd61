"""Parking a contact, and the outcome every run leaves.

Guarantees: :func:`park_contact` puts the contact's sync in the dead-letter store (one entry per
contact and integration, the attempts added up), counts it ``dead_lettered`` for ``/metrics``, logs
it with ids only (a traceback only when it says something: :func:`_worth_a_traceback`) and leaves
the ``failed`` outcome under the contact's ``last-result`` key, as :func:`record_result` does for
every run (with a worker heartbeat).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from sync_worker import heartbeat, keys
from sync_worker.dispatch import SyncRequest
from sync_worker.errors import SyncError
from sync_worker.logs import log_event
from sync_worker.runtime import get_runtime

logger = logging.getLogger(__name__)

LAST_RESULT_TTL_SECONDS = 7 * 24 * 3600


def record_result(contact_key: str, result: dict[str, Any]) -> None:
    runtime = get_runtime()
    document = {**result, "finished_at": time.time()}
    runtime.redis.set(keys.last_result(contact_key), json.dumps(document), ex=LAST_RESULT_TTL_SECONDS)
    heartbeat.beat(runtime.redis)


def _worth_a_traceback(error: BaseException) -> BaseException | None:
    """``error`` when its traceback says something: not one of our errors (a bug), or one of ours
    raised from another (a library's failure); None for our own errors alone (their code says it)."""
    if not isinstance(error, SyncError) or error.__cause__ is not None:
        return error
    return None


def park_contact(request: SyncRequest, error: SyncError | Exception, attempts: int) -> dict[str, Any]:
    runtime = get_runtime()
    code = getattr(error, "code", error.__class__.__name__)
    message = getattr(error, "message", str(error))
    runtime.dead_letters.park(
        contact_id=request.contact_id,
        integration=request.integration,
        source_id=request.source_id,
        email=request.email,
        error_code=code,
        error_message=message,
        trigger=request.trigger,
        kwargs=request.to_kwargs(),
        attempts=attempts,
    )
    runtime.metrics.sync(
        "dead_lettered", trigger=request.trigger, integration=request.integration, error_code=code
    )
    result = {
        "status": "failed",
        "contact_id": request.contact_id,
        "reason": f"{code}: {message}",
        "trigger": request.trigger,
        "attempts": attempts,
    }
    log_event(
        logger,
        "contact_dead_lettered",
        level=logging.ERROR,
        contact_id=request.contact_id,
        integration=request.integration,
        error_code=code,
        attempts=attempts,
        trigger=request.trigger,
        exc_info=_worth_a_traceback(error),
    )
    record_result(request.contact_key, result)
    return result
