"""``POST /webhooks/referrals``: the referral program's webhooks in, referral lead syncs stored.

Guarantees (in the order they are checked):
1. with no ``REFERRAL_WEBHOOK_TOKEN`` every call is refused (403 ``not_configured``); the request
   must carry ``X-Referral-Token: <REFERRAL_WEBHOOK_TOKEN>`` (constant-time compare; 401
   ``missing_token`` / ``invalid_token``, never echoing what was sent): the program signs nothing;
2. the body is capped (``SYNC_WEBHOOK_MAX_BODY_BYTES``: 413), must be JSON (415/400) of an object
   whose fields have the contract's types (400 ``invalid_body`` naming the field);
3. the body is never trusted: it only names the user, by ``id``, else ``code``, else ``email``
   (:func:`sync_request`, pure); a body naming none is 400 ``no_user`` with the reason; the
   worker reads the user through the program's API before acting;
4. an excluded address is acknowledged 200 ``skipped`` with the reason, and so is an invalid
   one when it is all that names the user (with an id or a code, an address the body carries is
   left out: the worker reads the user's own);
5. otherwise one sync (integration ``referral_leads``, ``source_id`` the user's id or
   ``code:<code>``, trigger ``webhook``) is stored before the 200 (:func:`web.intake.store`; a
   Redis that cannot be reached is 503 with ``Retry-After``), under an idempotency key of the
   event and the user (:func:`idempotency_key`) set in the same script: the same event for the
   same user delivered twice stores one sync and answers the second ``duplicate``; a delivery
   answered 503 stores nothing and sets no key, so its retry is stored;
6. the receiver never calls the program: the answer takes one Redis round trip.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from sync_worker.dispatch import SyncRequest
from sync_worker.screening import INVALID_EMAIL, Skip
from web import keys, metrics
from web.auth import require_header_token
from web.context import web_context
from web.errors import ApiError
from web.intake import screen_trigger, skipped, store
from web.jsonbody import json_body

bp = Blueprint("referrals", __name__)

ROUTE = "/webhooks/referrals"
TOKEN_HEADER = "X-Referral-Token"
TOKEN_SETTING = "REFERRAL_WEBHOOK_TOKEN"
INTEGRATION = "referral_leads"
SOURCE = "referral"
TRIGGER = "webhook"
#: The event a body without one is taken for (the program's "new user joined").
DEFAULT_EVENT = "user.join"
CODE_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
MAX_ADDRESS_LENGTH = 320


class ReferralWebhook(BaseModel):
    """What the program's webhook may carry that the service reads; the operator chooses the rest
    (other fields are ignored)."""

    model_config = ConfigDict(extra="ignore")

    event: str | None = Field(None, max_length=64, description="The program's event, e.g. user.join.")
    id: StrictInt | None = Field(None, ge=1, description="The program's user id.")
    code: str | None = Field(None, pattern=CODE_PATTERN, description="The user's referral code.")
    email: str | None = Field(None, max_length=MAX_ADDRESS_LENGTH, description="The user's email.")
    campaign_id: StrictInt | None = Field(None, ge=1, description="The user's campaign (not read).")

    @field_validator("event", "code", "email", mode="before")
    @classmethod
    def _blank_is_absent(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("id", mode="before")
    @classmethod
    def _digits_are_an_id(cls, value: object) -> object:
        """Programs send ids as numbers; a string of digits is the same id."""
        if isinstance(value, str) and value.strip().isdigit():
            return int(value.strip())
        return value


def no_user() -> ApiError:
    """The 400 of a body that names no user."""
    return ApiError(
        400, "no_user", "The body names no referral user: send its id, else its code, else its email."
    )


def source_id_of(body: ReferralWebhook) -> str | None:
    """The user's id in the program as a request carries it: ``<id>``, else ``code:<code>`` (pure)."""
    if body.id is not None:
        return str(body.id)
    if body.code:
        return f"code:{body.code}"
    return None


def sync_request(body: ReferralWebhook) -> SyncRequest:
    """The sync a webhook naming a user stores (pure); :func:`no_user` for a body naming none."""
    source_id = source_id_of(body)
    if source_id is None and not body.email:
        raise no_user()
    return SyncRequest(integration=INTEGRATION, source_id=source_id, email=body.email, trigger=TRIGGER)


def idempotency_key(body: ReferralWebhook, sync: SyncRequest) -> str:
    """One key per event and user (pure): a redelivery of the event for that user is a duplicate."""
    user = sync.source_id or f"email:{(sync.email or '').lower()}"
    return keys.webhook_seen(f"referral:{body.event or DEFAULT_EVENT}:{user}")


def screened(sync: SyncRequest, excluded: list[str]) -> tuple[SyncRequest, Skip | None]:
    """Guarantee 4: the request to store (an untrusted invalid address left out when the id or code
    names the user) and the skip, if any (pure)."""
    skip = screen_trigger(email=sync.email, contact_id=sync.source_id, excluded=excluded)
    if skip is not None and skip.reason_code == INVALID_EMAIL and sync.source_id:
        return SyncRequest(**{**sync.to_kwargs(), "email": None}), None
    return sync, skip


@bp.post(ROUTE)
def referral_webhook() -> Any:
    settings = web_context().settings
    require_header_token(
        request.headers.get(TOKEN_HEADER),
        settings.referral_webhook_token,
        setting=TOKEN_SETTING,
        header=TOKEN_HEADER,
    )
    body = json_body(ReferralWebhook, settings.webhook_max_body_bytes)
    sync, skip = screened(sync_request(body), settings.excluded_emails)
    if skip is not None:
        skipped(skip, SOURCE)
        return {"status": "skipped", "reason": skip.reason_code, "message": skip.message}
    result = store(
        sync,
        SOURCE,
        idempotency_key=idempotency_key(body, sync),
        idempotency_ttl=keys.WEBHOOK_SEEN_TTL_SECONDS,
    )
    if result.status == "duplicate":
        metrics.count("duplicate", source=SOURCE)
        g.outcome = "duplicate"
        return {"status": "duplicate", "source_id": sync.source_id}
    return {"status": result.status, "task_id": result.task_id, "source_id": sync.source_id}
