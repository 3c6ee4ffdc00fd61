"""Turn a trigger into at most one pending sync per contact.

Guarantees:
- :func:`enqueue_sync` either stores the trigger and returns, or raises
  :class:`QueueUnavailable`: a caller that acknowledges only after it returns
  never acknowledges a trigger that was not stored;
- storing is one Lua script call (``EVALSHA``: one round trip, atomic; the script's text is sent
  only when Redis does not have it yet): it writes the
  contact's pending payload and, when no sync is waiting, the pending marker
  *and* the Celery message on the queue's list together, so there is never a
  marker without its message (or a message without its marker) whatever
  process dies when; the message is built by Celery's and kombu's own code
  (:mod:`sync_worker.taskmessage`), exactly what ``send_task`` would push;
- one pending sync per contact: while a sync for the contact waits on the
  queue, a newer trigger is folded into it (its details replace the pending
  ones, which the task reads when it starts) instead of queueing another;
- a trigger that arrives while the contact's sync is running queues one more,
  because the task clears the pending marker as it starts (:func:`claim`); a sync that then
  waits to run again (a halt, a rate-limit wait) marks the contact pending again under its own
  id (:func:`hold_pending`), so triggers during the wait fold into it;
- with an ``idempotency_key`` (a webhook's notification id), a key already set
  answers ``duplicate`` and stores nothing; otherwise the key is set in the same
  script, so it exists exactly when the trigger was stored;
- the message's ``argsrepr``/``kwargsrepr`` (what Celery shows in task events and
  logs) name the trigger and the contact id, never an email;
- the marker expires after ``PENDING_TTL_SECONDS``, a bound on how long a
  contact stays blocked should its message be lost some other way (e.g. a queue
  deleted by hand);
- the pending payload (the folded trigger's details) has no expiry: it lives until a run
  consumes it (:func:`claim` deletes it) or the contact's next trigger replaces it, so a
  backlog of any length never loses a folded newer email (a message may wait on the queue far
  longer than any ttl). A run takes it unless it is older than the run's own request by more than
  ``FOLD_CLOCK_TOLERANCE_SECONDS`` (receivers' clocks may differ by less): a payload left by a
  lost message never takes a later retry or refresh back to older details.

The receiver calls :func:`enqueue_sync`; the task calls :func:`claim` and :func:`hold_pending`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import redis as redis_lib
from celery import Celery
from kombu.exceptions import KombuError
from redis.commands.core import Script

from sync_worker import keys
from sync_worker.celery_app import BULK_QUEUE, REALTIME_QUEUE, SYNC_TASK
from sync_worker.taskmessage import task_messages

PENDING_TTL_SECONDS = 900
#: How much older than a run's request a pending payload may look and still be folded in (the
#: receivers that stamped them may have clocks this far apart); older: left by a lost message.
FOLD_CLOCK_TOLERANCE_SECONDS = 60.0
#: Default lifetime of an ``idempotency_key`` (:func:`enqueue_sync`).
IDEMPOTENCY_TTL_SECONDS = 24 * 3600

#: What a contact's id in an integration's source (``SyncRequest.source_id``) may look like when a
#: trigger gives it: an id, never free text.
SOURCE_ID_PATTERN = r"^[A-Za-z0-9_.:@+-]{1,255}$"

Trigger = Literal["webhook", "manual", "connector", "replay", "schedule", "stale_refresh", "retry"]


class QueueUnavailable(RuntimeError):
    """The trigger could not be stored (Redis unreachable): the caller must not acknowledge it."""


@dataclass(frozen=True)
class SyncRequest:
    """What a trigger asks for: the integration, the contact (Intercom id and/or email, and/or its
    id in the integration's source, ``source_id``) and where the trigger came from. A message queued before requests named their integration has none in its
    kwargs and is read as :data:`~sync_worker.keys.LEGACY_INTEGRATION` (``clients``)."""

    contact_id: str | None = None
    email: str | None = None
    trigger: str = "manual"
    reply_to: str | None = None
    author_email: str | None = None
    force_write: bool = True
    requested_at: float = field(default_factory=time.time)
    integration: str = keys.LEGACY_INTEGRATION
    #: the contact's id in the integration's source (a dealer user's ``user_id``); None for clients
    source_id: str | None = None

    def __post_init__(self) -> None:
        if not self.contact_id and not self.email and not self.source_id:
            raise ValueError("a sync needs a contact_id, an email or a source_id")

    @property
    def contact_key(self) -> str:
        return keys.contact_key(self.contact_id, self.email, self.integration, self.source_id)

    def to_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def describe(self) -> str:
        """What Celery may show of this sync (``kwargsrepr``): the integration, the trigger and the
        contact's ids, no email."""
        shown = {"integration": self.integration, "trigger": self.trigger, "contact_id": self.contact_id}
        if self.source_id:
            shown["source_id"] = self.source_id
        return repr(shown)

    def folded(self, latest: SyncRequest) -> SyncRequest:
        """This request with a newer trigger's details folded in: the newest trigger wins, but never
        loses an identifier this one had, and a forced write stays forced; the integration and the
        source id are this one's (a contact's pending sync is kept per integration, under its source
        id when it has one)."""
        return SyncRequest(
            contact_id=latest.contact_id or self.contact_id,
            email=latest.email or self.email,
            trigger=latest.trigger,
            reply_to=latest.reply_to,
            author_email=latest.author_email,
            force_write=latest.force_write or self.force_write,
            requested_at=latest.requested_at,
            integration=self.integration,
            source_id=self.source_id or latest.source_id,
        )

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> SyncRequest:
        known = {name: kwargs[name] for name in cls.__dataclass_fields__ if name in kwargs}
        if not known.get("integration"):  # queued before requests named their integration
            known["integration"] = keys.LEGACY_INTEGRATION
        return cls(**known)


@dataclass(frozen=True)
class EnqueueResult:
    status: Literal["queued", "folded", "duplicate"]
    contact_key: str
    task_id: str | None


# KEYS[1] pending marker, KEYS[2] pending payload, KEYS[3] the queue's list, KEYS[4] (optional)
# idempotency key; ARGV[1] task id, ARGV[2] payload json, ARGV[3] pending ttl, ARGV[4] the message,
# ARGV[5] idempotency ttl (the payload has none: see the module's guarantees). Returns {status, task
# id that will run this contact's sync}.
# A script's writes are not undone by a later error, so the commands that can fail (GET, LPUSH on
# a key of the wrong type) run before the first write; SET cannot fail.
_ENQUEUE = """
if KEYS[4] and redis.call('EXISTS', KEYS[4]) == 1 then
  return {'duplicate', false}
end
local ttl = tonumber(ARGV[3])
local owner = redis.call('GET', KEYS[1])
local status = 'folded'
if not owner then
  redis.call('LPUSH', KEYS[3], ARGV[4])
  owner = ARGV[1]
  status = 'queued'
  redis.call('SET', KEYS[1], owner, 'EX', ttl)
end
redis.call('SET', KEYS[2], ARGV[2])
if KEYS[4] then
  redis.call('SET', KEYS[4], '1', 'EX', tonumber(ARGV[5]))
end
return {status, owner}
"""

#: redis-py's script object: ``EVALSHA`` with the digest computed once, the text loaded on ``NOSCRIPT``
#: (bytes, so it needs no client's encoder; every call names its client).
_ENQUEUE_SCRIPT = Script(None, _ENQUEUE.encode())

# KEYS[1] marker, KEYS[2] payload: take the latest payload and clear both (the sync is now running).
_CLAIM = """
local payload = redis.call('GET', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return payload
"""


# KEYS[1] marker; ARGV[1] task id, ARGV[2] ttl: the marker names the task unless another's is set.
_HOLD = """
local owner = redis.call('GET', KEYS[1])
if not owner or owner == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[2]))
  return ARGV[1]
end
return owner
"""


def _queue_for(request: SyncRequest) -> str:
    return BULK_QUEUE if request.trigger == "schedule" else REALTIME_QUEUE


def enqueue_sync(
    request: SyncRequest,
    client: redis_lib.Redis,
    celery_app: Celery,
    *,
    queue: str | None = None,
    idempotency_key: str | None = None,
    idempotency_ttl: int = IDEMPOTENCY_TTL_SECONDS,
) -> EnqueueResult:
    """Store the trigger: fold it into the contact's pending sync, or queue a new one (one round trip).

    ``client`` and ``celery_app`` must point at the same Redis (the broker).
    """
    contact_key = request.contact_key
    task_id = str(uuid.uuid4())
    kwargs = request.to_kwargs()
    try:
        message = task_messages(celery_app).build(
            SYNC_TASK,
            kwargs=kwargs,
            task_id=task_id,
            queue=queue or _queue_for(request),
            kwargsrepr=request.describe(),
        )
        keys_ = [keys.pending(contact_key), keys.pending_payload(contact_key), message.list_key]
        args: list[str | int] = [task_id, json.dumps(kwargs), PENDING_TTL_SECONDS, message.payload]
        if idempotency_key is not None:
            keys_.append(idempotency_key)
            args.append(idempotency_ttl)
        status, owner = _ENQUEUE_SCRIPT(keys=keys_, args=args, client=client)
    except (redis_lib.RedisError, KombuError, OSError) as exc:  # nothing was stored
        raise QueueUnavailable(f"queue unreachable: {exc.__class__.__name__}") from exc
    status = status.decode() if isinstance(status, bytes) else status
    owner = owner.decode() if isinstance(owner, bytes) else owner
    return EnqueueResult(status, contact_key, owner)


def enqueue_replay(kwargs: Mapping[str, Any], client: redis_lib.Redis, celery_app: Celery) -> EnqueueResult:
    """Queue a dead letter's sync again (realtime queue); the worker re-reads the platform."""
    request = SyncRequest.from_kwargs({**kwargs, "trigger": "replay", "requested_at": time.time()})
    return enqueue_sync(request, client, celery_app, queue=REALTIME_QUEUE)


def hold_pending(client: redis_lib.Redis, contact_key: str, task_id: str, *, ttl: int) -> None:
    """A claimed sync that waits to run again (a halt, a rate-limit wait) marks the contact as
    pending under its own task id for ``ttl`` seconds, so triggers meanwhile fold into it instead of
    queueing more messages; a marker another message holds is left (that one runs the contact too)."""
    client.eval(_HOLD, 1, keys.pending(contact_key), task_id, ttl)


def claim(client: redis_lib.Redis, request: SyncRequest) -> SyncRequest:
    """Mark the contact's sync as running; return the newest trigger details folded into it."""
    contact_key = request.contact_key
    payload = client.eval(_CLAIM, 2, keys.pending(contact_key), keys.pending_payload(contact_key))
    if not payload:
        return request
    pending = SyncRequest.from_kwargs(json.loads(payload))
    if pending.requested_at < request.requested_at - FOLD_CLOCK_TOLERANCE_SECONDS:  # a lost message's
        return request
    return request.folded(pending)
