"""Stale refreshes: a fresh sync scheduled after a stale write, at most one waiting per contact.

Guarantees:
- a ``stale`` run (platform unreadable) schedules a fresh sync (trigger
  ``stale_refresh``) for when the platform may be readable again: after a
  backoff, and never before the open circuit lets a probe through. These
  refreshes wait for the platform: they do not spend the error-retry budget, and
  one that finds the platform still unreadable writes nothing when the contact
  already shows those stale values. The contact is parked with the outage as
  reason only after ``MAX_STALE_REFRESHES`` of them (hours with the defaults);
- at most one stale refresh is waiting to start per contact, however many
  triggers end stale during an outage: its task id is kept under
  ``keys.stale_refresh`` (the contact keyed as its pending marker is: its id,
  else its email), set in the same Lua script that pushes the refresh's message
  (never one without the other). A run that ends stale schedules a refresh only
  when no other task holds that claim; a refresh lets the claim go as it starts,
  so a run that ends stale while a refresh runs schedules the next one itself
  (its stale write may land after the refresh's live one: the contact is never
  left stale with nothing pending). A refresh retried or rescheduled takes the
  claim again unless another was scheduled meanwhile. The claim expires
  ``STALE_REFRESH_MARGIN_SECONDS`` after the refresh's countdown plus the hard
  time limit, so a refresh whose message was lost never keeps the contact from
  getting a new one; two chains that overlap (a dead worker's message back after
  the visibility timeout) merge at the next scheduling;
- a pending stale refresh runs with the newest request of the runs that deferred
  to it (an email changed during the outage is the one read once the platform is
  back): every run that ends stale notes its request under
  ``keys.stale_refresh_request`` in the same Lua script that checks the claim
  (kept only when no request with a later ``requested_at`` is noted), and a
  refresh, in the same call that lets its claim go, takes the noted request when
  it is newer than its own, folded in as a pending trigger is
  (``SyncRequest.folded``) but still a refresh (its trigger, ``force_write``
  false); its retries and its next refresh carry those fields. The note expires
  the visibility timeout plus ``STALE_REFRESH_MARGIN_SECONDS`` after the claim
  it was last written with, so a refresh that starts late (its claim expired, a
  dead worker's message back) or a second chain still finds it; a message
  without a newer note (queued before this, or after the note expired) runs
  with its own fields. A run (not itself a refresh) that ends live replaces a
  note older than its request with its own (it writes no note where there is
  none), so a refresh still pending from the outage runs with the newest
  request, live or stale, not with an older email than the live run read;
- a bulk chunk's deferred refreshes (:func:`defer_to_refresh`) go on ``sync.bulk``, never ahead of
  webhooks, their countdowns spread over up to ``DEFERRED_SPREAD_SECONDS`` more than the backoff.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from celery import Task

from sync_worker import keys
from sync_worker.celery_app import BULK_QUEUE, SYNC_TASK, app, longest_countdown
from sync_worker.delivery.decision import backoff_seconds
from sync_worker.dispatch import SyncRequest
from sync_worker.errors import TransientError
from sync_worker.logs import log_event
from sync_worker.parking import park_contact
from sync_worker.runtime import get_runtime
from sync_worker.taskmessage import BuiltMessage, task_messages

logger = logging.getLogger(__name__)

#: Fresh syncs tried after a stale write, while the platform stays unreadable, before the contact is parked.
MAX_STALE_REFRESHES = 100

#: How long a contact's stale-refresh claim outlives the refresh's countdown plus the hard time
#: limit: time for a worker to take the message and start it.
STALE_REFRESH_MARGIN_SECONDS = 60.0

#: A bulk chunk's deferred refreshes (:func:`defer_to_refresh`) are spread over up to this many
#: seconds more than their backoff, so a run's hundreds are not all due at one moment.
DEFERRED_SPREAD_SECONDS = 60.0

# KEYS[1] the contact's stale-refresh claim, KEYS[2] the contact's newest stale request (a hash),
# KEYS[3] the queue's list (only with a message); ARGV[1] the running task's id, ARGV[2] its request's
# requested_at, ARGV[3] its request (json), ARGV[4] how long the newest request outlives the claim (ms),
# ARGV[5] the new refresh's task id, ARGV[6] the claim's lifetime (ms), ARGV[7] the refresh's message,
# or '' to schedule none (the chain ends: a claim of the running task's own is let go).
# Unless another task holds the claim, pushes the message and hands the claim to it; either way notes
# the request as the contact's newest stale one unless a newer is noted (the refresh pending runs with
# it), expiring it no sooner than ARGV[4] after the claim. Returns the task id of the refresh pending
# now (false: none). The commands that can fail (HGET, GET, LPUSH on a key of the wrong type) run
# before the first write, so a failure leaves nothing.
_SCHEDULE_REFRESH = """
local noted = redis.call('HGET', KEYS[2], 'requested_at')
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  holder = false
end
if not holder then
  if ARGV[7] ~= '' then
    redis.call('LPUSH', KEYS[3], ARGV[7])
    redis.call('SET', KEYS[1], ARGV[5], 'PX', tonumber(ARGV[6]))
    holder = ARGV[5]
  else
    redis.call('DEL', KEYS[1])
  end
end
if not noted or tonumber(noted) <= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[2], 'requested_at', ARGV[2], 'request', ARGV[3])
end
local keep = math.max(redis.call('PTTL', KEYS[1]), 0) + tonumber(ARGV[4])
if redis.call('PTTL', KEYS[2]) < keep then
  redis.call('PEXPIRE', KEYS[2], keep)
end
return holder
"""

# KEYS[1] claim; ARGV[1] task id, ARGV[2] lifetime (ms). Takes (or extends) the claim unless another
# task holds it.
_KEEP_REFRESH_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return 1
"""

# KEYS[1] the contact's newest stale request; ARGV[1] a live run's requested_at, ARGV[2] its request
# (json). Only where a request is noted (a refresh may be pending): replaces it when not newer than the
# live run's, keeping its expiry. Writes nothing where none is noted.
_NOTE_LIVE_RUN = """
local noted = redis.call('HGET', KEYS[1], 'requested_at')
if noted and tonumber(noted) <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'requested_at', ARGV[1], 'request', ARGV[2])
  return 1
end
return 0
"""

# KEYS[1] claim, KEYS[2] the contact's newest stale request; ARGV[1] the refresh's task id, ARGV[2] its
# request's requested_at. Deletes the claim when the task holds it. Returns {the claim's holder when
# another task holds it, else false; the newest stale request (json) when newer than the task's own,
# else false}. Read in the same call as the release: a stale run noting a request after it finds the
# claim free and schedules a refresh of its own.
_RELEASE_REFRESH_CLAIM = """
local noted = redis.call('HMGET', KEYS[2], 'requested_at', 'request')
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
  holder = false
end
local newer = false
if noted[1] and tonumber(noted[1]) > tonumber(ARGV[2]) then
  newer = noted[2]
end
return {holder, newer}
"""


def claim_lifetime_ms(countdown: float) -> int:
    """How long a stale-refresh claim lasts for a refresh due in ``countdown`` seconds."""
    settings = get_runtime().settings
    return int(1000 * (countdown + settings.task_time_limit_seconds + STALE_REFRESH_MARGIN_SECONDS))


def keep_refresh_claim(task: Task, request: SyncRequest, refreshes: int, countdown: float) -> None:
    """A refresh retried or rescheduled (same task id) takes the contact's claim again until it runs,
    unless another refresh was scheduled meanwhile (then both are pending; they merge at the next
    scheduling)."""
    if not refreshes:  # not a stale refresh: it holds no claim
        return
    claim_key = keys.stale_refresh(request.contact_key)
    get_runtime().redis.eval(_KEEP_REFRESH_CLAIM, 1, claim_key, task.request.id, claim_lifetime_ms(countdown))


def start_refresh(task: Task, request: SyncRequest, refreshes: int) -> SyncRequest:
    """A refresh, as it starts, lets the contact's claim go when it holds it, and returns the request
    to run: its own, or the newest one a stale run of the contact noted (:data:`_SCHEDULE_REFRESH`)
    when that is newer, folded in as a pending trigger is (:meth:`SyncRequest.folded`) but still a
    refresh (its trigger and ``force_write``). A message without a newer request noted (an old one,
    or one whose note expired) runs as it is.
    """
    if not refreshes:  # not a stale refresh: it holds no claim
        return request
    contact_key = request.contact_key
    _, newer = get_runtime().redis.eval(
        _RELEASE_REFRESH_CLAIM,
        2,
        keys.stale_refresh(contact_key),
        keys.stale_refresh_request(contact_key),
        task.request.id,
        repr(float(request.requested_at)),
    )
    if not newer:
        return request
    latest = SyncRequest.from_kwargs(json.loads(newer))
    if latest.contact_key != contact_key:  # noted under this key, so never: keep the key scheduled with
        return request
    taken = replace(request.folded(latest), trigger=request.trigger, force_write=request.force_write)
    log_event(
        logger,
        "stale_refresh_took_newer_request",
        contact_id=request.contact_id,
        integration=request.integration,
        refreshes=refreshes,
        # The names of the fields that changed (never their values: an email is client data).
        changed=[name for name in ("email", "contact_id") if getattr(taken, name) != getattr(request, name)],
    )
    return taken


def note_live_run(request: SyncRequest) -> None:
    """A run that read the platform replaces the contact's noted stale request when that is not
    newer than its own (:data:`_NOTE_LIVE_RUN`), so a refresh pending from an outage does not read
    an older email than this run did."""
    get_runtime().redis.eval(
        _NOTE_LIVE_RUN,
        1,
        keys.stale_refresh_request(request.contact_key),
        repr(float(request.requested_at)),
        json.dumps(request.to_kwargs()),
    )


def _note_stale_run(
    task_id: str,
    request: SyncRequest,
    *,
    refresh_id: str = "",
    lifetime_ms: int = 0,
    message: BuiltMessage | None = None,
) -> str | None:
    """One call of :data:`_SCHEDULE_REFRESH` for a run that ended stale: schedule ``message`` (when
    given) unless another refresh of the contact is pending, and note the run's request for it.

    Returns the task id of the refresh pending now (None: none).
    """
    settings = get_runtime().settings
    contact_key = request.contact_key
    claim_keys = [keys.stale_refresh(contact_key), keys.stale_refresh_request(contact_key)]
    if message is not None:
        claim_keys.append(message.list_key)
    pending = get_runtime().redis.eval(
        _SCHEDULE_REFRESH,
        len(claim_keys),
        *claim_keys,
        task_id,
        repr(float(request.requested_at)),
        json.dumps(request.to_kwargs()),
        int(1000 * (settings.visibility_timeout_seconds + STALE_REFRESH_MARGIN_SECONDS)),
        refresh_id,
        lifetime_ms,
        message.payload if message is not None else "",
    )
    return pending.decode() if isinstance(pending, bytes) else pending


def schedule_fresh_sync(
    task_id: str, request: SyncRequest, attempt: int, refreshes: int, *, deferred: bool = False
) -> None:
    """After a stale write: sync again once the platform may answer; park when it stays unreadable.

    Schedules nothing when another refresh of the contact is pending (it will read the platform for
    this run too, with this run's request when it is the newest); see the module's guarantees.
    """
    runtime = get_runtime()
    settings = runtime.settings
    if refreshes >= MAX_STALE_REFRESHES:
        pending = _note_stale_run(task_id, request)
        if pending is not None:  # another chain goes on for the contact: it parks, when it must
            log_event(
                logger, "fresh_sync_already_pending", contact_id=request.contact_id, refreshes=refreshes
            )
            return
        park_contact(
            request,
            TransientError("the platform stayed unavailable", code="platform_unavailable"),
            refreshes + 1,
        )
        return
    backoff = backoff_seconds(
        refreshes, settings.retry_backoff_base_seconds, settings.retry_backoff_max_seconds
    )
    # Not before the open circuit lets a probe through; never past what the visibility timeout allows.
    countdown = backoff + runtime.circuit.opens_in()
    if deferred:  # a bulk chunk's contacts, all due at once otherwise: spread them
        countdown += random.uniform(0.0, DEFERRED_SPREAD_SECONDS)
    countdown = min(countdown, longest_countdown(settings))
    fresh = {
        **request.to_kwargs(),
        "trigger": "stale_refresh",
        "force_write": False,  # what the contact shows is known: write only what changes
        "attempt": attempt,
        "refreshes": refreshes + 1,
    }
    refresh_id = str(uuid.uuid4())
    message = task_messages(app).build(
        SYNC_TASK,
        kwargs=fresh,
        task_id=refresh_id,
        queue=BULK_QUEUE if deferred else app.conf.task_default_queue,  # never ahead of webhooks
        kwargsrepr=request.describe(),
        eta=datetime.now(UTC) + timedelta(seconds=countdown),
    )
    pending = _note_stale_run(
        task_id, request, refresh_id=refresh_id, lifetime_ms=claim_lifetime_ms(countdown), message=message
    )
    if pending != refresh_id:
        log_event(logger, "fresh_sync_already_pending", contact_id=request.contact_id, refreshes=refreshes)
        return
    log_event(
        logger,
        "fresh_sync_scheduled",
        contact_id=request.contact_id,
        integration=request.integration,
        refreshes=refreshes + 1,
        countdown=round(countdown, 2),
    )


def defer_to_refresh(request: SyncRequest, *, by: str) -> None:
    """Hand a contact whose platform records could not be read (a bulk chunk held past its bound,
    ``by`` naming it) a stale refresh, as a run that ended stale would, without writing stale values:
    a fresh sync once the platform may answer, unless one is pending for the contact already. It goes
    on ``sync.bulk`` (a chunk defers up to a hundred contacts at once: they must not queue ahead of
    webhooks), its countdown spread over up to :data:`DEFERRED_SPREAD_SECONDS` more."""
    schedule_fresh_sync(by, request, 0, 0, deferred=True)
