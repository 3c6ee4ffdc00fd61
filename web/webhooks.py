"""``HEAD/POST /webhooks/intercom``: Intercom's notifications in, syncs queued.

Guarantees (in the order they are checked):
1. ``HEAD`` answers 200 (Intercom checks the URL with it);
2. with no ``INTERCOM_CLIENT_SECRET`` every POST is refused (403);
3. the body is capped (413), then its ``X-Hub-Signature`` (HMAC-SHA1 of the raw
   bytes) must match (401), then it must be JSON (415/400) of Intercom's
   notification shape (400); nothing is parsed before the signature is checked;
4. ``ping`` and topics not subscribed are acknowledged with 200 and do nothing (never 410, which
   would disable the subscription); a conversation topic is subscribed by ``SYNC_WEBHOOK_TOPICS``
   for the clients integration (when it runs), a contact topic by the running integrations whose
   :attr:`~sync_worker.integrations.base.Integration.webhook_topics` name it: each of them says
   what sync the notification asks of it (``webhook_request``), and each sync is stored with its
   own idempotency key (the notification id and the integration), so a redelivery stores none
   and a partial failure (503) is made up by Intercom's retry without storing one twice;
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

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis as redis_lib
from flask import Blueprint, g, request
from pydantic import ValidationError

from sync_worker import integrations
from sync_worker.config import Settings
from sync_worker.dispatch import SyncRequest
from sync_worker.integrations import Integration
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
NOTHING_TO_SYNC = Skip("nothing_to_sync", "No running integration has anything to sync for this contact.")


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
    """What a verified notification asks for (pure): an answer with nothing to store, a skip, a
    sync of a conversation's contact (``subject``), or the syncs of a contact topic (``requests``)."""

    answer: dict[str, Any] | None = None  # ping / topic not subscribed: answered as is
    skip_reason: str | None = None  # with ``answer``: the skip counted for it
    subject: Subject | None = None
    skip: Skip | None = None  # set when nothing is to be stored (a skip to remember once)
    requests: tuple[SyncRequest, ...] = ()  # a contact topic's syncs, one per subscribed integration


def contact_topic_requests(
    notification: Notification, running: Iterable[Integration]
) -> tuple[SyncRequest, ...] | None:
    """The syncs a contact topic asks of the running integrations that subscribe to it (pure);
    None when none of them subscribes (the topic is not ours)."""
    subscribed = [each for each in running if notification.topic in each.webhook_topics]
    if not subscribed:
        return None
    item = notification.data.item
    asked = (each.webhook_request(notification.topic, item) for each in subscribed)
    return tuple(request for request in asked if request is not None)


def _screened(sync: SyncRequest, settings: Settings) -> Skip | None:
    """Guarantee 6 for one of a contact topic's syncs."""
    return screen_trigger(
        email=sync.email,
        contact_id=sync.contact_id or sync.source_id,
        author_email=sync.author_email,
        excluded=settings.excluded_emails,
    )


def triage(notification: Notification, settings: Settings) -> Triage:
    """Guarantees 4 and 6 for a notification whose signature and shape were checked (raises the 400
    of a conversation that does not validate)."""
    if notification.topic == PING:
        return Triage(answer={"status": "ok", "topic": PING})
    running = integrations.enabled(settings.integrations)
    requests = contact_topic_requests(notification, running)
    if requests is not None:
        skips = [_screened(each, settings) for each in requests]
        wanted = tuple(each for each, skip in zip(requests, skips, strict=True) if skip is None)
        if not wanted:
            return Triage(skip=next((skip for skip in skips if skip is not None), NOTHING_TO_SYNC))
        return Triage(requests=wanted)
    clients_run = any(each.name == integrations.DEFAULT for each in running)
    if notification.topic not in settings.webhook_topics or not clients_run:
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
    if verdict.requests:
        return _store_each(verdict.requests, notification.id)
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


def _store_each(requests: Iterable[SyncRequest], notification_id: str) -> dict[str, Any]:
    """Store a contact topic's syncs, each under its own idempotency key; ``duplicate`` only when
    every one of them was stored already."""
    stored = []
    for sync in requests:
        result = store(
            sync,
            SOURCE,
            idempotency_key=keys.webhook_seen(f"{notification_id}:{sync.integration}"),
            idempotency_ttl=keys.WEBHOOK_SEEN_TTL_SECONDS,
        )
        stored.append({"integration": sync.integration, "status": result.status, "task_id": result.task_id})
    if all(each["status"] == "duplicate" for each in stored):
        return _duplicate(notification_id)
    return {"status": "queued", "syncs": stored}
