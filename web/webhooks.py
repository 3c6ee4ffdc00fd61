"""``HEAD/POST /webhooks/intercom``: Intercom's notifications in, syncs queued.

Guarantees (in the order they are checked):
1. ``HEAD`` answers 200 (Intercom checks the URL with it);
2. with no ``INTERCOM_CLIENT_SECRET`` every POST is refused (403);
3. the body is capped (413), then its ``X-Hub-Signature`` (HMAC-SHA1 of the raw
   bytes) must match (401), then it must be JSON (415/400) of Intercom's
   notification shape (400); nothing is parsed before the signature is checked;
4. ``ping`` and topics not subscribed (``SYNC_WEBHOOK_TOPICS``) are acknowledged
   with 200 and do nothing (never 410, which would disable the subscription);
5. a notification id already handled is acknowledged as ``duplicate`` and not
   queued again; an id is remembered for a day, and only once its sync is stored
   (or it was skipped), so a delivery answered 503 can be retried: the id is
   checked and set in the same Lua script that stores the sync
   (:func:`sync_worker.dispatch.enqueue_sync`'s ``idempotency_key``), one round
   trip, and for a skip by one ``SET NX``;
6. an excluded or invalid address is acknowledged 200 ``skipped`` with the reason;
7. otherwise one sync is stored before the 200; a Redis that cannot be reached is 503.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis as redis_lib
from flask import Blueprint, g, request
from pydantic import ValidationError

from sync_worker.config import Settings
from sync_worker.dispatch import SyncRequest
from sync_worker.screening import Skip
from web import keys, metrics
from web.auth import SIGNATURE_HEADER, require_signature
from web.context import web_context
from web.errors import ApiError
from web.intake import queue_unavailable, screen_trigger, skipped, store
from web.jsonbody import describe_errors, parse_json, read_body, require_json, validate
from web.notifications import Conversation, Notification, Subject, subject_of

bp = Blueprint("webhooks", __name__)

ROUTE = "/webhooks/intercom"
SOURCE = "webhook"
PING = "ping"
NO_CONTACT = Skip("no_contact", "The conversation names no contact to sync.")


def _conversation(item: dict[str, Any]) -> Conversation:
    try:
        return Conversation.model_validate(item)
    except ValidationError as exc:
        raise ApiError(400, "invalid_body", "data.item: " + describe_errors(exc)) from None


def _first_sight(client: redis_lib.Redis, notification_id: str) -> bool:
    """Remember a notification that stores nothing (a skip); False when it was already seen."""
    try:
        return bool(
            client.set(keys.webhook_seen(notification_id), "1", ex=keys.WEBHOOK_SEEN_TTL_SECONDS, nx=True)
        )
    except redis_lib.RedisError:
        raise queue_unavailable() from None


def _duplicate(notification_id: str) -> dict[str, str]:
    metrics.count("duplicate", source=SOURCE)
    g.outcome = "duplicate"
    return {"status": "duplicate", "notification_id": notification_id}


@dataclass(frozen=True)
class Triage:
    """What a verified notification asks for (pure): an answer with nothing to store, a skip, or a sync."""

    answer: dict[str, Any] | None = None  # ping / topic not subscribed: answered as is
    skip_reason: str | None = None  # with ``answer``: the skip counted for it
    subject: Subject | None = None
    skip: Skip | None = None  # set when nothing is to be stored (a skip to remember once)


def triage(notification: Notification, settings: Settings) -> Triage:
    """Guarantees 4 and 6 for a notification whose signature and shape were checked (raises the 400
    of a conversation that does not validate)."""
    if notification.topic == PING:
        return Triage(answer={"status": "ok", "topic": PING})
    if notification.topic not in settings.webhook_topics:
        return Triage(
            answer={"status": "ignored", "topic": notification.topic}, skip_reason="topic_not_subscribed"
        )
    subject = subject_of(_conversation(notification.data.item))
    if subject is None:
        return Triage(skip=NO_CONTACT)
    skip = screen_trigger(
        email=subject.email,
        contact_id=subject.contact_id,
        author_email=subject.author_email,
        excluded=settings.excluded_emails,
    )
    return Triage(subject=subject, skip=skip)


def sync_request(subject: Subject) -> SyncRequest:
    """The sync a webhook about ``subject`` stores."""
    return SyncRequest(
        contact_id=subject.contact_id, email=subject.email, trigger=SOURCE, author_email=subject.author_email
    )


@bp.route(ROUTE, methods=["HEAD", "POST"])
def intercom_webhook() -> Any:
    if request.method == "HEAD":
        return "", 200
    context = web_context()
    settings = context.settings
    if settings.intercom_client_secret is None:
        require_signature(b"", None, None)  # raises the 403 with its reason
    body = read_body(settings.webhook_max_body_bytes)
    require_signature(body, request.headers.get(SIGNATURE_HEADER), settings.intercom_client_secret)
    require_json()
    notification = validate(Notification, parse_json(body))
    g.notification_id = notification.id
    verdict = triage(notification, settings)
    if verdict.answer is not None:
        if verdict.skip_reason:
            metrics.count("skipped", source=SOURCE, reason=verdict.skip_reason)
        return verdict.answer
    if verdict.subject is not None:
        g.contact_id = verdict.subject.contact_id
    if verdict.skip is not None:
        if not _first_sight(context.redis, notification.id):
            return _duplicate(notification.id)
        skipped(verdict.skip, SOURCE)
        return {"status": "skipped", "reason": verdict.skip.reason_code, "message": verdict.skip.message}
    assert verdict.subject is not None
    result = store(
        sync_request(verdict.subject),
        SOURCE,
        idempotency_key=keys.webhook_seen(notification.id),
        idempotency_ttl=keys.WEBHOOK_SEEN_TTL_SECONDS,
    )
    if result.status == "duplicate":
        return _duplicate(notification.id)
    return {"status": result.status, "task_id": result.task_id}
