"""``POST /v1/connector/client-attributes``: Intercom's data connector asks for a contact's values.

Guarantees (in order):
1. auth by its own token, ``SYNC_CONNECTOR_TOKEN`` (the answer holds a client's name, phone,
   invoices and appointments; the trigger token, pasted into every workflow action, does not
   open it): 401 when missing or wrong; when the token is unset, or set to the trigger token's
   value, the route is disabled (403 ``not_configured`` to every call) and the receiver logs
   ``connector_disabled`` naming why once at start (:func:`log_if_disabled`), while every other
   route is served;
2. the body is :class:`ConnectorBody` (``email``, optional ``contact_id``, nothing
   else; validated like ``/v1/sync``'s): anything else is 4xx naming the field;
3. an excluded or invalid address answers 200 ``{"status": "skipped", "reason",
   "message"}``, reads nothing and queues nothing;
4. otherwise a sync is stored first (queued, or folded into the contact's waiting
   one; source ``connector``), so the worker writes the contact whatever this answer
   holds; Redis unreachable is 503 before anything is read;
5. the answer comes within the deadline (``SYNC_CONNECTOR_DEADLINE_SECONDS``, counted
   from the start of the view): one platform read
   (:meth:`web.platform_read.PlatformReader.read_clients`, on the process's platform
   client) gets what is left of it less :data:`FALLBACK_RESERVE_SECONDS`, kept for the
   fallback, as one total for connecting, sending and waiting for the answer;
6. the body is flat JSON (:func:`flat_answer`): every attribute key of the client
   profile plus ``stale``. Live: the values computed now, ``data_status`` ``Live``,
   ``stale: false``. When the platform is slow, down, rate-limited, behind an open
   circuit, not configured or answers records that cannot be computed (any failure of
   :func:`sync_worker.compute.compute_values`, a type check's included): the contact's
   last known values (by contact id, else by email) with ``data_status`` ``Stale -
   platform unavailable since <date-time>`` and ``stale: true``, computed as the
   worker's stale writes are (:func:`sync_worker.sync.stale_values`); with none known,
   every key but ``data_status`` and ``stale`` is ``null``. A platform problem is
   never a 5xx;
7. every answer is counted (``connector_answers``, labels ``freshness`` ``live`` or
   ``stale`` and ``reason``) and logged (``connector_answered``, its ``reason``) with
   why it is stale: ``deadline`` when the connector's own deadline cut the read short
   or left no time to start it (a timeout the workers' circuit does not count),
   ``unavailable`` only for a platform failure as the circuit counts it, the other
   reasons of :mod:`web.platform_read` (``rate_limited``, ``circuit_open``,
   ``platform_not_configured``, a platform error's code), or ``platform_data_invalid``;
   a live answer's reason is ``none`` in the metric and ``null`` in the log line.

Nothing computed here is stored as last known values: only the worker stores what
Intercom accepted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, g, request
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sync_worker.compute import PlatformDataError, compute_values
from sync_worker.config import Settings, secret
from sync_worker.dispatch import SyncRequest
from sync_worker.logs import log_event
from sync_worker.profiles import AttributeSpec
from sync_worker.sync import stale_values
from web import metrics
from web.auth import require_bearer
from web.context import WebContext, web_context
from web.errors import ApiError
from web.intake import screen_trigger, skipped, store
from web.jsonbody import json_body
from web.notifications import ID_PATTERN
from web.platform_read import DEADLINE, PlatformRead
from web.triggers import MAX_ADDRESS_LENGTH, MAX_BODY_BYTES

logger = logging.getLogger(__name__)

bp = Blueprint("connector", __name__)

ROUTE = "/v1/connector/client-attributes"
SOURCE = "connector"
#: Kept back from the platform read for the fallback (two Redis reads and the answer).
FALLBACK_RESERVE_SECONDS = 0.2
#: A platform read with less time than this is not worth starting.
MIN_READ_SECONDS = 0.05
STALE_KEY = "stale"
DATA_STATUS = "data_status"
DATA_INVALID = PlatformDataError.code


class ConnectorBody(BaseModel):
    """Whose values: the contact's email (required) and Intercom id."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=MAX_ADDRESS_LENGTH, description="The contact's email address.")
    contact_id: str | None = Field(None, pattern=ID_PATTERN, description="The Intercom contact id.")

    @field_validator("email", "contact_id", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value


def flat_answer(
    attributes: Sequence[AttributeSpec], values: Mapping[str, str | None], *, stale: bool
) -> dict[str, Any]:
    """Every attribute key (``None`` when ``values`` lacks it) and the ``stale`` flag (pure)."""
    answer: dict[str, Any] = {spec.key: values.get(spec.key) for spec in attributes}
    answer[STALE_KEY] = stale
    return answer


def _live_values(context: WebContext, read: PlatformRead) -> dict[str, str | None] | None:
    if read.records is None:
        return None
    try:
        return compute_values(context.profile, read.records, now=datetime.now(UTC))
    except PlatformDataError:  # any failure to compute: stale, never a 5xx
        return None


TOKEN_SETTING = "SYNC_CONNECTOR_TOKEN"


def _disabled_because(settings: Settings) -> str | None:
    """Why the route is disabled (pure; None: it is served)."""
    token = secret(settings.sync_connector_token)
    if token is None or not token.strip():
        return f"{TOKEN_SETTING} is not set"
    if token == secret(settings.sync_trigger_token):
        return f"{TOKEN_SETTING} is the same as SYNC_TRIGGER_TOKEN: the connector needs a token of its own"
    return None


def require_connector_token(authorization: str | None, settings: Settings) -> None:
    """:func:`web.auth.require_bearer` with the connector's own token; while the route is disabled,
    403 ``not_configured`` saying why."""
    why = _disabled_because(settings)
    if why is not None:
        raise ApiError(403, "not_configured", f"{why}: this route is disabled.")
    require_bearer(authorization, settings.sync_connector_token, setting=TOKEN_SETTING)


def log_if_disabled(settings: Settings) -> None:
    """One line at start when the route is disabled, naming the setting."""
    why = _disabled_because(settings)
    if why is not None:
        log_event(
            logger,
            "connector_disabled",
            level=logging.WARNING,
            route=ROUTE,
            setting=TOKEN_SETTING,
            reason=why,
        )


@bp.post(ROUTE)
def client_attributes() -> Any:
    started = time.monotonic()
    context = web_context()
    settings = context.settings
    deadline = started + settings.connector_deadline_seconds
    require_connector_token(request.headers.get("Authorization"), settings)
    body = json_body(ConnectorBody, MAX_BODY_BYTES)
    skip = screen_trigger(email=body.email, contact_id=body.contact_id, excluded=settings.excluded_emails)
    if skip is not None:
        skipped(skip, SOURCE)
        return {"status": "skipped", "reason": skip.reason_code, "message": skip.message}, 200
    stored = store(SyncRequest(contact_id=body.contact_id, email=body.email, trigger=SOURCE), SOURCE)
    budget = deadline - time.monotonic() - FALLBACK_RESERVE_SECONDS
    read = (
        context.platform.read_clients(body.email, timeout=budget)
        if budget >= MIN_READ_SECONDS
        else PlatformRead(None, DEADLINE)
    )
    values = _live_values(context, read)
    reason = read.reason if read.records is None else (DATA_INVALID if values is None else None)
    had_cache = None
    if values is None:
        runtime = context.runtime
        fallback = stale_values(
            context.profile,
            runtime.circuit,
            runtime.cache,
            body.contact_id,
            now=datetime.now(UTC),
            email=body.email,
        )
        values, had_cache = fallback.values, fallback.had_cache
    stale = reason is not None
    metrics.count("connector_answers", freshness="stale" if stale else "live", reason=reason or "none")
    g.outcome = f"{stored.status}:{'stale' if stale else 'live'}"
    log_event(
        logger,
        "connector_answered",
        request_id=g.get("request_id"),
        contact_id=body.contact_id,
        stale=stale,
        reason=reason,
        had_cache=had_cache,
        elapsed_ms=round((time.monotonic() - started) * 1000, 1),
    )
    return flat_answer(context.profile.attributes, values, stale=stale)
