"""Celery tasks: thin wrappers that decide what happens after a run.

Guarantees of :func:`sync_contact`:
- it claims the contact's pending marker first, so a trigger arriving during
  the run queues one more sync (:mod:`sync_worker.dispatch`);
- waiting for a rate-limit token longer than a moment, or an upstream's 429,
  reschedules the task (same task id, ``countdown`` = the wait) without
  spending an error retry, however many times it takes; only a contact that has
  waited longer than ``SYNC_RATE_LIMIT_MAX_WAIT_SECONDS`` in all (an upstream that
  keeps refusing, not a long backlog) is parked; that clock starts at the first
  wait and goes on through error retries (``waiting_since`` travels with the
  task), so a transient error between two waits does not restart it;
- transient errors retry with exponential backoff and full jitter up to
  ``SYNC_TASK_MAX_RETRIES``; permanent errors, and transient ones that ran out
  of retries, park the contact in the dead-letter store and end the task
  (acknowledged: a parked contact is replayed by an operator, not redelivered);
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
- an email-only trigger whose contact is not in Intercom's search yet searches again
  with backoff (:mod:`sync_worker.searchwait`), spending no error retry, for
  ``SYNC_CONTACT_SEARCH_WAIT_SECONDS`` from its first miss (the wait travels with the task
  through retries of any kind); then it ends with the outcome ``not_found``, recorded and
  logged (``contact_not_found``), no dead letter;
- a message that killed its worker ``MAX_DELIVERIES`` times (e.g. a poison
  contact killing the process) is parked instead of run again. Each run adds a
  token of its own under ``keys.delivery_runs`` (per task id and retry) and a
  run that hands its message back (below) takes its token out again, so the
  tokens a run finds are runs that died, never hand-backs (best effort: where
  Redis refuses that ``SREM`` too, as it does every write unless it only ran out
  of memory, or is unreachable, that run counts); a run that ends without handing its
  message back (done, parked, failed, or retried: a retry is a new message) deletes the key,
  so acknowledged messages leave none (best effort: one left behind expires after
  :data:`DELIVERY_RUNS_TTL_SECONDS`);
- a run that cannot use Redis hands its message back to the broker
  (``Reject(requeue=True)``, after a pause of :data:`HAND_BACK_PAUSE_SECONDS`, so
  a message whose requeue works cannot loop at full speed): Redis unreachable (a restart, a network cut), or
  answering but refusing to store anything (a read-only replica after a
  failover, out of memory, persistence failing: ``MISCONF``, too few replicas:
  ``NOREPLICAS``). It is run again at once, or, while Redis is still away, once
  the visibility timeout brings it back; it is never acknowledged as failed with
  nothing stored (the contact would be lost). Where Redis refuses the hand-back
  itself (out of memory refuses its ``LPUSH``), Celery stops that worker and the
  message stays unacknowledged, back on the queue like a dead worker's once
  Redis takes writes again. Any other Redis error (a bug in one of our scripts,
  a wrong key type) fails the task as before: it must not loop;
- every run leaves its outcome under the contact's ``last-result`` key and a
  structured log line with the contact id, and is counted for ``/metrics`` by trigger,
  outcome and error code (``Runtime.metrics``: memory only, written in the background), as
  are its retries, reschedules, hand-backs and parks;
- a run that finds an upstream halted (:mod:`sync_worker.halts`), or meets an error that concerns
  the whole workspace (a revoked token, a schema problem) and halts it, is rescheduled for
  ``SYNC_HALT_PROBE_SECONDS`` (at most ``SYNC_MAX_RESCHEDULE_SECONDS``) and looks again: it spends
  no retry, starts no rate-limit clock, is never parked for the halt, and syncs once it clears;
- every message it publishes (retry, reschedule, fresh sync) shows Celery only the
  trigger and contact id (``kwargsrepr``), never an email.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import redis as redis_lib
from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from celery.signals import celeryd_init, setup_logging, task_failure, worker_process_shutdown, worker_ready
from kombu.exceptions import OperationalError

from sync_worker import heartbeat, keys, replayruns
from sync_worker.attributes import InvalidAttributeName
from sync_worker.celery_app import REPLAY_DEAD_LETTERS_TASK, SYNC_TASK, app, longest_countdown
from sync_worker.config import MissingSetting, require
from sync_worker.dispatch import SyncRequest, claim, enqueue_replay
from sync_worker.errors import PermanentError, SyncError, TransientError
from sync_worker.formatting import UnknownTimezone
from sync_worker.halts import UpstreamHalted
from sync_worker.integrations import UnknownIntegration
from sync_worker.intercom import IntercomRateLimited
from sync_worker.logs import configure_logging, log_event
from sync_worker.platform import PlatformRateLimited
from sync_worker.ratelimit import RateLimitWait
from sync_worker.runtime import get_runtime
from sync_worker.schema import names_may_be_stale
from sync_worker.searchwait import SearchWait, carried, next_search
from sync_worker.sync import ContactNotFoundYet, SyncOutcome
from sync_worker.taskmessage import BuiltMessage, task_messages

logger = logging.getLogger(__name__)

MAX_DELIVERIES = 3
DELIVERY_RUNS_TTL_SECONDS = 24 * 3600
#: Fresh syncs tried after a stale write, while the platform stays unreadable, before the contact is parked.
MAX_STALE_REFRESHES = 100
#: A run handing its message back first waits a random time in this range (seconds): where the
#: requeue itself works (Redis refused only our client), the message must not loop at full speed.
HAND_BACK_PAUSE_SECONDS = (0.5, 2.0)
#: How long a contact's stale-refresh claim outlives the refresh's countdown plus the hard time
#: limit: time for a worker to take the message and start it.
STALE_REFRESH_MARGIN_SECONDS = 60.0
RATE_LIMIT_SIGNALS = (RateLimitWait, IntercomRateLimited, PlatformRateLimited)
#: Redis (the broker and the shared state) cannot be used: redis-py's connection errors (loading
#: after a restart included), kombu's for a publish (a retry, a fresh sync), and the replies of a
#: Redis that answers but refuses to store: a read-only replica (``READONLY``), out of memory
#: (``OOM``: ``maxmemory`` with ``noeviction``).
REDIS_UNAVAILABLE = (
    redis_lib.ConnectionError,
    redis_lib.TimeoutError,
    redis_lib.ReadOnlyError,
    redis_lib.OutOfMemoryError,
    redis_lib.exceptions.MasterDownError,
    OperationalError,
)
#: Error replies meaning the same that redis-py has no class for (a plain ``ResponseError``):
#: persistence failing (``stop-writes-on-bgsave-error``, an AOF write error), too few replicas
#: (``min-replicas-to-write``), a replica cut off from its master (``replica-serve-stale-data no``;
#: ``MasterDownError`` outside a pipeline), a script running past ``busy-reply-threshold``.
REFUSED_WRITE_REPLIES = ("MISCONF ", "NOREPLICAS ", "MASTERDOWN ", "BUSY ")
#: What redis-py puts before the reply of a pipeline's failed command.
_PIPELINE_NOTE = " of pipeline caused error: "
LAST_RESULT_TTL_SECONDS = 7 * 24 * 3600
HEARTBEAT_SECONDS = 10

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


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: a random wait in [0.5, 1] x min(cap, base x 2^attempt)."""
    return min(cap, base * (2**attempt)) * random.uniform(0.5, 1.0)


def _record_result(contact_key: str, result: dict[str, Any]) -> None:
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
    _record_result(request.contact_key, result)
    return result


def _deliveries(task: Task, run: str) -> int:
    """How many runs of this message (this retry of it) did not hand it back, this one included.

    Each run adds its own token ``run``; one that hands the message back takes it out again
    (:func:`_take_back_delivery`), so each other run either was the last (acknowledged) or died
    with its worker.
    """
    runtime = get_runtime()
    key = keys.delivery_runs(task.request.id, task.request.retries)
    pipe = runtime.redis.pipeline()
    pipe.sadd(key, run)
    pipe.expire(key, DELIVERY_RUNS_TTL_SECONDS)
    pipe.scard(key)
    _, _, count = pipe.execute()
    return int(count)


def _take_back_delivery(task: Task, run: str) -> None:
    """This run hands its message back: it was no worker death, so it no longer counts.

    Best effort, one quick try: Redis may be what failed (SREM still works when Redis is out of
    memory; not when it is unreachable or refuses writes otherwise, and then this run counts as a
    death). Never raises: the hand-back must go on.
    """
    try:
        key = keys.delivery_runs(task.request.id, task.request.retries)
        get_runtime().redis_best_effort.srem(key, run)
    except Exception as exc:  # whatever it is, the Reject that follows matters more
        log_event(logger, "delivery_take_back_failed", logging.WARNING, exc_info=exc)


def _forget_deliveries(task: Task) -> None:
    """The message is acknowledged (the run ended, a retry is a new message): its tokens are of no
    more use, so the key goes now instead of after :data:`DELIVERY_RUNS_TTL_SECONDS`.

    Best effort, one quick try, never raises: a key left behind only expires later.
    """
    try:
        get_runtime().redis_best_effort.delete(keys.delivery_runs(task.request.id, task.request.retries))
    except Exception as exc:  # the run's outcome is stored: nothing else depends on this
        log_event(logger, "delivery_forget_failed", logging.WARNING, exc_type=type(exc).__name__)


@app.task(bind=True, name=SYNC_TASK, max_retries=None)
def sync_contact(
    self: Task,
    attempt: int = 0,
    refreshes: int = 0,
    waiting_since: float | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]] | dict[str, Any]:
    """Sync the contact of ``kwargs`` (a :class:`SyncRequest`'s fields); see the module's guarantees.

    Messages queued by earlier versions may also carry ``waits`` (a count of rate-limit
    reschedules, unread since the wait cap is time-based): it lands in ``kwargs`` and is ignored.
    """
    run = uuid.uuid4().hex
    try:
        result = _sync(self, run, attempt, refreshes, waiting_since, kwargs)
    except (redis_lib.RedisError, OperationalError, Reject) as error:
        cause = redis_unavailable(error)
        if cause is None:
            _forget_deliveries(self)
            raise
        # Neither the outcome nor a retry nor a dead letter can be stored: hand the message back
        # (now, or by the visibility timeout when Redis is still away) instead of acking it.
        _take_back_delivery(self, run)
        get_runtime().metrics.sync(
            "requeued",
            trigger=kwargs.get("trigger", ""),
            error_code="redis_unavailable",
            integration=kwargs.get("integration") or keys.LEGACY_INTEGRATION,
        )
        log_event(
            logger,
            "sync_requeued_redis_unavailable",
            level=logging.WARNING,
            contact_id=kwargs.get("contact_id"),
            error_type=type(cause).__name__,
        )
        time.sleep(random.uniform(*HAND_BACK_PAUSE_SECONDS))
        raise Reject(repr(cause), requeue=True) from None
    except BaseException:  # a retry (a new message, counted afresh), a failure: this one is acked
        _forget_deliveries(self)
        raise
    _forget_deliveries(self)
    return result


def redis_unavailable(error: BaseException) -> BaseException | None:
    """The Redis error behind ``error`` when it means Redis cannot be used now, else None.

    Unreachable, or answering but refusing to store (:data:`REDIS_UNAVAILABLE`,
    :data:`REFUSED_WRITE_REPLIES`); any other error reply (a bug in a script, a wrong key type)
    is not, or its message would be handed back for ever. Celery turns a retry it could not
    publish into ``Reject(requeue=False)``, which would drop the message: that one counts too.
    """
    if isinstance(error, Reject) and not error.requeue:
        error = error.reason if isinstance(error.reason, BaseException) else error
    if isinstance(error, REDIS_UNAVAILABLE):
        return error
    if isinstance(error, redis_lib.ResponseError) and _reply(error).startswith(REFUSED_WRITE_REPLIES):
        return error
    return None


def _reply(error: redis_lib.ResponseError) -> str:
    """The error reply as Redis sent it (without what redis-py adds for a pipeline's command)."""
    text = str(error)
    if text.startswith("Command # ") and _PIPELINE_NOTE in text:
        text = text.split(_PIPELINE_NOTE, 1)[1]
    return text


def _sync(
    self: Task,
    run: str,
    attempt: int,
    refreshes: int,
    waiting_since: float | None,
    kwargs: dict[str, Any],
) -> list[dict[str, Any]] | dict[str, Any]:
    runtime = get_runtime()
    settings = runtime.settings
    request = SyncRequest.from_kwargs(kwargs)
    # A refresh lets the contact's claim go as it starts (under the key it was scheduled with): a run
    # that ends stale meanwhile schedules the next refresh itself (its stale write may land after this
    # run's live one). Nothing takes it back for this run but its own retry or next refresh, so no
    # other end of the run has a claim to let go. In the same call it takes the newest request of the
    # stale runs that deferred to it (an email changed during the outage): the run, its retries and
    # its next refresh go on with those fields.
    request = _start_refresh(self, request, refreshes)
    if _deliveries(self, run) > MAX_DELIVERIES:
        return park_contact(
            request,
            SyncError("the worker process died while syncing this contact", code="worker_lost"),
            attempt + 1,
        )
    request = claim(runtime.redis, request)
    started = time.monotonic()
    try:
        outcomes = _run_unless_halted(request)
    except UpstreamHalted as halted:
        _wait_out_halt(self, request, halted, attempt, refreshes, waiting_since, kwargs)
    except RATE_LIMIT_SIGNALS as wait:
        waiting_since = waiting_since or time.time()
        if time.time() - waiting_since > settings.rate_limit_max_wait_seconds:
            return park_contact(request, wait, attempt + 1)
        countdown = min(settings.max_reschedule_seconds, max(0.1, wait.retry_after or 1.0))
        runtime.metrics.sync(
            "rescheduled", trigger=request.trigger, integration=request.integration, error_code=wait.code
        )
        log_event(
            logger,
            "sync_rescheduled_rate_limit",
            contact_id=request.contact_id,
            integration=request.integration,
            error_code=wait.code,
            countdown=round(countdown, 2),
        )
        carry = {
            **carried(kwargs),
            "attempt": attempt,
            "refreshes": refreshes,
            "waiting_since": waiting_since,
        }
        raise _run_again(self, request, countdown, carry) from None
    except ContactNotFoundYet:
        outcomes = [_search_again_or_give_up(self, request, attempt, refreshes, waiting_since, kwargs)]
    except (SyncError, SoftTimeLimitExceeded) as error:
        if isinstance(error, SoftTimeLimitExceeded):
            error = TransientError("the sync ran past its time limit", code="time_limit")
        if error.transient and attempt < settings.task_max_retries:
            countdown = backoff_seconds(
                attempt, settings.retry_backoff_base_seconds, settings.retry_backoff_max_seconds
            )
            if isinstance(error, TransientError) and error.retry_after:
                countdown = max(countdown, min(error.retry_after, settings.max_reschedule_seconds))
            runtime.metrics.sync(
                "retried", trigger=request.trigger, integration=request.integration, error_code=error.code
            )
            log_event(
                logger,
                "sync_retry",
                level=logging.WARNING,
                contact_id=request.contact_id,
                integration=request.integration,
                error_code=error.code,
                attempt=attempt + 1,
                countdown=round(countdown, 2),
            )
            carry = {
                **carried(kwargs),
                "attempt": attempt + 1,
                "refreshes": refreshes,
                "waiting_since": waiting_since,  # the rate-limit wait cap counts from the first wait
            }
            raise _run_again(self, request, countdown, carry) from None
        return park_contact(request, error, attempt + 1)
    results = [outcome.to_dict() for outcome in outcomes]
    elapsed = round(time.monotonic() - started, 3)
    for outcome in outcomes:
        runtime.metrics.sync(outcome.status, trigger=outcome.trigger, integration=request.integration)
        log_event(
            logger,
            "sync_finished",
            contact_id=outcome.contact_id,
            status=outcome.status,
            trigger=outcome.trigger,
            seconds=elapsed,
        )
    _record_result(request.contact_key, {"status": outcomes[0].status, "outcomes": results})
    if any(outcome.status == "stale" for outcome in outcomes):
        _schedule_fresh_sync(self.request.id, request, attempt, refreshes)
    elif not refreshes:  # a refresh took the newest note as it started
        _note_live_run(request)
    return results


def _run_unless_halted(request: SyncRequest) -> list[SyncOutcome]:
    """The run, unless an upstream it calls is halted (:class:`UpstreamHalted`); an error that
    concerns the whole workspace halts its upstream and is raised as that halt (:mod:`sync_worker.halts`)."""
    runtime = get_runtime()
    runtime.halts.check()
    try:
        try:
            return _pipeline(request).run(request)
        except SyncError as refused:
            if not names_may_be_stale(refused):
                raise
            runtime.schema.forget()  # archived or deleted since it was cached: list it again, once
            return _pipeline(request).run(request)
    except SyncError as error:
        halted = runtime.halts.escalate(error, contact_id=request.contact_id, trigger=request.trigger)
        if halted is None:
            raise
        raise halted from error


def _pipeline(request: SyncRequest) -> Any:
    """The pipeline of the request's integration; a message for one that does not run here (not
    in ``SYNC_INTEGRATIONS``) is a permanent error: parked, not lost, replayable once it runs."""
    try:
        return get_runtime().pipeline(request.integration)
    except UnknownIntegration as unknown:
        raise PermanentError(str(unknown), code="integration_not_running") from None


def _wait_out_halt(
    task: Task,
    request: SyncRequest,
    halted: UpstreamHalted,
    attempt: int,
    refreshes: int,
    waiting_since: float | None,
    kwargs: dict[str, Any],
) -> NoReturn:
    """Reschedule the run for when the halt may be cleared, spending no retry and starting no
    rate-limit clock: a halt lasts until it is fixed, and the contact must not be parked for it."""
    countdown = max(0.1, halted.retry_after or 1.0)
    get_runtime().metrics.sync(
        "waiting_halt", trigger=request.trigger, integration=request.integration, error_code=halted.halt.code
    )
    log_event(
        logger,
        "sync_waiting_halt",
        contact_id=request.contact_id,
        integration=request.integration,
        upstream=halted.halt.upstream,
        error_code=halted.halt.code,
        countdown=round(countdown, 2),
    )
    carry = {**carried(kwargs), "attempt": attempt, "refreshes": refreshes, "waiting_since": waiting_since}
    raise _run_again(task, request, countdown, carry) from None


def _search_again_or_give_up(
    task: Task,
    request: SyncRequest,
    attempt: int,
    refreshes: int,
    waiting_since: float | None,
    kwargs: dict[str, Any],
) -> SyncOutcome:
    """No contact has the email yet: search again later (:mod:`.searchwait`; no error retry spent),
    or, once ``SYNC_CONTACT_SEARCH_WAIT_SECONDS`` have passed since the first miss, the outcome
    ``not_found`` (no dead letter)."""
    settings = get_runtime().settings
    now = time.time()
    wait = SearchWait.from_kwargs(kwargs, now)
    step = next_search(
        wait,
        now,
        wait_seconds=settings.contact_search_wait_seconds,
        backoff=lambda tries: backoff_seconds(
            tries, settings.retry_backoff_base_seconds, settings.retry_backoff_max_seconds
        ),
    )
    if step is None:
        waited = round(now - wait.since, 1)
        log_event(
            logger,
            "contact_not_found",
            level=logging.WARNING,
            trigger=request.trigger,
            searches=wait.tries + 1,
            waited_seconds=waited,
        )
        reason = f"no Intercom contact has this email after {waited:.0f} s of searching"
        return SyncOutcome("not_found", None, request.trigger, reason=reason)
    countdown, wait = step
    log_event(
        logger,
        "sync_search_again",
        trigger=request.trigger,
        searches=wait.tries,
        countdown=round(countdown, 2),
    )
    carry = {**wait.to_kwargs(), "attempt": attempt, "refreshes": refreshes, "waiting_since": waiting_since}
    raise _run_again(task, request, countdown, carry) from None


def _run_again(task: Task, request: SyncRequest, countdown: float, carry: dict[str, Any]) -> Exception:
    """The retry that runs ``request`` again after ``countdown`` with the task state ``carry``
    (``attempt``, ``refreshes``, ``waiting_since``, a search wait), for the caller to raise; a
    refresh takes its claim again until then."""
    _keep_refresh_claim(task, request, int(carry.get("refreshes") or 0), countdown)
    again = {**request.to_kwargs(), **carry}
    return task.retry(kwargs=again, countdown=countdown, kwargsrepr=request.describe())


def _claim_lifetime_ms(countdown: float) -> int:
    """How long a stale-refresh claim lasts for a refresh due in ``countdown`` seconds."""
    settings = get_runtime().settings
    return int(1000 * (countdown + settings.task_time_limit_seconds + STALE_REFRESH_MARGIN_SECONDS))


def _keep_refresh_claim(task: Task, request: SyncRequest, refreshes: int, countdown: float) -> None:
    """A refresh retried or rescheduled (same task id) takes the contact's claim again until it runs,
    unless another refresh was scheduled meanwhile (then both are pending; they merge at the next
    scheduling)."""
    if not refreshes:  # not a stale refresh: it holds no claim
        return
    claim_key = keys.stale_refresh(request.contact_key)
    get_runtime().redis.eval(
        _KEEP_REFRESH_CLAIM, 1, claim_key, task.request.id, _claim_lifetime_ms(countdown)
    )


def _start_refresh(task: Task, request: SyncRequest, refreshes: int) -> SyncRequest:
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


def _note_live_run(request: SyncRequest) -> None:
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


def _schedule_fresh_sync(task_id: str, request: SyncRequest, attempt: int, refreshes: int) -> None:
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
    countdown = min(backoff + runtime.circuit.opens_in(), longest_countdown(settings))
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
        queue=app.conf.task_default_queue,
        kwargsrepr=request.describe(),
        eta=datetime.now(UTC) + timedelta(seconds=countdown),
    )
    pending = _note_stale_run(
        task_id, request, refresh_id=refresh_id, lifetime_ms=_claim_lifetime_ms(countdown), message=message
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
    a fresh sync once the platform may answer, unless one is pending for the contact already."""
    _schedule_fresh_sync(by, request, 0, 0)


@app.task(
    name=REPLAY_DEAD_LETTERS_TASK,
    autoretry_for=REDIS_UNAVAILABLE,
    retry_backoff=True,
    retry_kwargs={"max_retries": 8},
)
def replay_dead_letters(run_id: str | None = None, step: int = 0) -> dict[str, Any] | None:
    """One step of a replay run (:mod:`sync_worker.replayruns`): ``retry-all`` from the admin API or
    the CLI, or, without ``run_id``, beat's periodic replay (``SYNC_DEAD_LETTER_REPLAY_CRON``), which
    starts a run of every contact parked now. Publishes the next step until the run is finished; a
    step that cannot use Redis is retried (Celery's ``autoretry_for``, with backoff), so a restart of
    Redis does not leave the run without its next step (a step's replays are safe twice).

    Each replay re-reads the platform; a contact that still fails is parked again (its
    attempts grow). Returns the run's record after the step (beat's call: the run started; None:
    a step not this run's turn).
    """
    runtime = get_runtime()
    if run_id is None:  # beat: start a run, its steps on sync.bulk like every other run's
        return replayruns.start(runtime.redis, app, "schedule").to_dict()
    runs = replayruns.ReplayRuns(runtime.redis)
    after = replayruns.run_step(
        runs, runtime.dead_letters, lambda kwargs: enqueue_replay(kwargs, runtime.redis, app), run_id, step
    )
    if after is not None and after.status != replayruns.FINISHED:
        replayruns.publish_step(app, run_id, step + 1)
    return after.to_dict() if after is not None else None


@task_failure.connect
def _park_on_unexpected_failure(
    sender: Task | None = None,
    exception: BaseException | None = None,
    kwargs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """A task that failed outside its own handling (a bug, a hard time limit) still parks its contact."""
    if sender is None or sender.name != SYNC_TASK or not kwargs:
        return
    try:
        request = SyncRequest.from_kwargs(kwargs)
        error = exception if isinstance(exception, Exception) else RuntimeError(repr(exception))
        park_contact(request, error, int(kwargs.get("attempt", 0)) + 1)
    except Exception:  # never let the signal handler take the worker down
        logger.exception("dead_letter_park_failed")


@celeryd_init.connect
def _check_required_settings(**_: Any) -> None:
    """A worker without its credentials, or with a display zone or attribute names the profile
    refuses, stops at start with one line naming what is wrong (not a dead letter per contact)."""
    runtime = get_runtime()
    try:
        require(runtime.settings, "intercom_access_token", "platform_api_url", "platform_api_token")
        for name in runtime.integrations:  # builds each profile (no call): zone and names are checked
            runtime.pipeline(name)
    except UnknownIntegration as unknown:
        _refuse_to_start(f"SYNC_INTEGRATIONS: {unknown}")
    except MissingSetting as missing:
        _refuse_to_start(str(missing))
    except UnknownTimezone as zone:
        _refuse_to_start(f"SYNC_DISPLAY_TIMEZONE: {zone}")
    except InvalidAttributeName as name:
        _refuse_to_start(f"SYNC_ATTRIBUTE_NAMES: {name}")


def _refuse_to_start(line: str) -> NoReturn:
    print(f"intercom-sync worker: {line}", file=sys.stderr, flush=True)
    raise SystemExit(2)


@setup_logging.connect
def _json_logging(loglevel: str | int | None = None, **_: Any) -> None:
    """Celery's processes log JSON lines too (and Celery adds no handlers of its own)."""
    configure_logging(loglevel or "INFO")


@worker_ready.connect
def _start_heartbeat(sender: Any = None, **_: Any) -> None:
    """Keep this worker's heartbeat fresh (``/healthz/workers``; Redis's clock: :mod:`.heartbeat`)."""
    configure_logging()
    hostname = getattr(sender, "hostname", None) or "worker"

    def beat() -> None:
        runtime = get_runtime()
        while True:
            try:
                heartbeat.beat(runtime.redis, hostname)
            except Exception:
                logger.warning("heartbeat_failed", exc_info=True)
            time.sleep(HEARTBEAT_SECONDS)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()


@worker_process_shutdown.connect
def _flush_metrics(**_: Any) -> None:
    """A pool child ends with ``os._exit`` (no ``atexit``): it writes its buffered counts first
    (quietly, never raising: the child's exit must go on)."""
    try:
        get_runtime().metrics.flush()
    except Exception:
        logger.warning("metrics_flush_at_exit_failed")
