"""Turn a trigger into at most one pending sync per contact.

Guarantees:
- :func:`enqueue_sync` either stores the trigger (a pending marker and the
  message on the queue, both in Redis) and returns, or raises
  :class:`QueueUnavailable`: a caller that acknowledges only after it returns
  never acknowledges a trigger that was not stored;
- one pending sync per contact: while a sync for the contact waits on the
  queue, a newer trigger is folded into it (its details replace the pending
  ones, which the task reads when it starts) instead of queueing another;
- a trigger that arrives while the contact's sync is running queues one more,
  because the task clears the pending marker as it starts (:func:`claim`);
- the marker expires after ``PENDING_TTL_SECONDS``, so a marker whose message
  was lost (a publish that died half-way) blocks that contact for a bounded time.

The receiver calls :func:`enqueue_sync`; the task calls :func:`claim`.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import redis as redis_lib
from celery import Celery

from sync_worker import keys
from sync_worker.celery_app import BULK_QUEUE, REALTIME_QUEUE, SYNC_TASK

PENDING_TTL_SECONDS = 900

Trigger = Literal["webhook", "manual", "connector", "replay", "schedule", "stale_refresh", "retry"]


class QueueUnavailable(RuntimeError):
    """The trigger could not be stored (Redis unreachable): the caller must not acknowledge it."""


@dataclass(frozen=True)
class SyncRequest:
    """What a trigger asks for: the contact (id and/or email) and where the trigger came from."""

    contact_id: str | None = None
    email: str | None = None
    trigger: str = "manual"
    reply_to: str | None = None
    author_email: str | None = None
    force_write: bool = True
    requested_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.contact_id and not self.email:
            raise ValueError("a sync needs a contact_id or an email")

    @property
    def contact_key(self) -> str:
        return keys.contact_key(self.contact_id, self.email)

    def to_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> SyncRequest:
        known = {name: kwargs[name] for name in cls.__dataclass_fields__ if name in kwargs}
        return cls(**known)


@dataclass(frozen=True)
class EnqueueResult:
    status: Literal["queued", "folded"]
    contact_key: str
    task_id: str | None


# KEYS[1] pending marker, KEYS[2] pending payload; ARGV[1] task id, ARGV[2] payload json, ARGV[3] ttl.
# Returns the task id that will run this contact's sync and 1 when this call created it.
_MARK_PENDING = """
local existing = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', tonumber(ARGV[3]))
if existing then
  return {existing, 0}
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
return {ARGV[1], 1}
"""

# KEYS[1] marker, KEYS[2] payload: take the latest payload and clear both (the sync is now running).
_CLAIM = """
local payload = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return payload
"""


def _queue_for(request: SyncRequest) -> str:
    return BULK_QUEUE if request.trigger == "schedule" else REALTIME_QUEUE


def enqueue_sync(
    request: SyncRequest, client: redis_lib.Redis, celery_app: Celery, *, queue: str | None = None
) -> EnqueueResult:
    """Store the trigger: fold it into the contact's pending sync, or queue a new one.

    ``client`` and ``celery_app`` must point at the same Redis (the broker).
    """
    contact_key = request.contact_key
    marker, payload_key = keys.pending(contact_key), keys.pending_payload(contact_key)
    task_id = str(uuid.uuid4())
    try:
        owner, created = client.eval(
            _MARK_PENDING,
            2,
            marker,
            payload_key,
            task_id,
            json.dumps(request.to_kwargs()),
            PENDING_TTL_SECONDS,
        )
    except redis_lib.RedisError as exc:
        raise QueueUnavailable(f"queue unreachable: {exc.__class__.__name__}") from exc
    owner = owner.decode() if isinstance(owner, bytes) else owner
    if not created:
        return EnqueueResult("folded", contact_key, owner)
    try:
        celery_app.send_task(
            SYNC_TASK,
            kwargs=request.to_kwargs(),
            task_id=task_id,
            queue=queue or _queue_for(request),
        )
    except Exception as exc:  # kombu raises OperationalError and friends
        with contextlib.suppress(redis_lib.RedisError):  # else the marker expires on its own
            client.delete(marker)
        raise QueueUnavailable(f"queue unreachable: {exc.__class__.__name__}") from exc
    return EnqueueResult("queued", contact_key, task_id)


def enqueue_replay(kwargs: Mapping[str, Any], client: redis_lib.Redis, celery_app: Celery) -> EnqueueResult:
    """Queue a dead letter's sync again (realtime queue); the worker re-reads the platform."""
    request = SyncRequest.from_kwargs({**kwargs, "trigger": "replay", "requested_at": time.time()})
    return enqueue_sync(request, client, celery_app, queue=REALTIME_QUEUE)


def claim(client: redis_lib.Redis, request: SyncRequest) -> SyncRequest:
    """Mark the contact's sync as running; return the newest trigger details folded into it."""
    contact_key = request.contact_key
    payload = client.eval(_CLAIM, 2, keys.pending(contact_key), keys.pending_payload(contact_key))
    if not payload:
        return request
    latest = SyncRequest.from_kwargs(json.loads(payload))
    # The newest trigger wins, but never loses an identifier the first one had.
    return SyncRequest(
        contact_id=latest.contact_id or request.contact_id,
        email=latest.email or request.email,
        trigger=latest.trigger,
        reply_to=latest.reply_to,
        author_email=latest.author_email,
        force_write=latest.force_write or request.force_write,
        requested_at=latest.requested_at,
    )
