"""Celery tasks: thin wrappers that decide what happens after a run.

``sync_contact`` is built on :class:`~sync_worker.delivery.base.DeliveryTask` (:class:`SyncTask`),
which applies the poison count (a message that killed its worker ``MAX_DELIVERIES`` times is
parked instead of run again) and the hand-back when Redis cannot be used around every run (the
guarantees of :mod:`sync_worker.delivery.base`); the retry decision is
:func:`sync_worker.delivery.decision.retry_countdown`, shared with the re-sync's tasks; a stale
run's fresh sync is :mod:`sync_worker.stalerefresh`; parking is :mod:`sync_worker.parking`; the
worker process's signals are :mod:`sync_worker.workerprocess`.

Guarantees of :func:`sync_contact`:
- it claims the contact's pending marker first (after the halt check), so a trigger arriving
  during the run queues one more sync (:mod:`sync_worker.dispatch`);
- waiting for a rate-limit token longer than a moment, or an upstream's 429,
  reschedules the task (same task id, ``countdown`` = the wait) without
  spending an error retry, however many times it takes; a run takes its Intercom
  calls' tokens together (:func:`sync_worker.ratelimit.reserving`), and a wait for
  a token reserved for it carries the reservation (``reservation``) to the
  rescheduled run, which redeems it when its window starts; only a contact that has
  waited longer than ``SYNC_RATE_LIMIT_MAX_WAIT_SECONDS`` in all (an upstream that
  keeps refusing, not a long backlog) is parked; that clock starts at the first
  wait and goes on through error retries (``waiting_since`` travels with the
  task), so a transient error between two waits does not restart it;
- transient errors retry with exponential backoff and full jitter up to
  ``SYNC_TASK_MAX_RETRIES``; permanent errors, and transient ones that ran out
  of retries, park the contact in the dead-letter store and end the task
  (acknowledged: a parked contact is replayed by an operator, not redelivered);
- an email-only trigger whose contact is not in Intercom's search yet searches again
  with backoff (:mod:`sync_worker.searchwait`), spending no error retry, for
  ``SYNC_CONTACT_SEARCH_WAIT_SECONDS`` from its first miss (the wait travels with the task
  through retries of any kind); then it ends with the outcome ``not_found``, recorded and
  logged (``contact_not_found``), no dead letter;
- every run leaves its outcome under the contact's ``last-result`` key and a
  structured log line with the contact id and integration, and is counted for ``/metrics`` by
  integration, trigger, outcome and error code (``Runtime.metrics``: memory only, written in the background), as
  are its retries, reschedules, hand-backs and parks;
- a run that finds an upstream halted (:mod:`sync_worker.halts`), or meets an error that concerns
  the whole workspace (a revoked token, a schema problem) and halts it, is rescheduled for
  ``SYNC_HALT_PROBE_SECONDS`` (at most ``SYNC_MAX_RESCHEDULE_SECONDS``) and looks again: it spends
  no retry, is never parked for the halt, and syncs once it clears. It looks before claiming the
  contact's pending marker and, while it waits, the marker names it (a rate-limit reschedule's
  too): every trigger for the contact during the halt folds into it, one waiting message per
  contact. The halt's time counts on no clock: the rate-limit and search waits start afresh;
- a message redelivered after too many worker deaths is parked (``worker_lost``) with the
  contact's pending trigger folded in and consumed, so it cannot outlive the park;
- every message it publishes (retry, reschedule, fresh sync) shows Celery only the
  trigger and contact id (``kwargsrepr``), never an email.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NoReturn

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from sync_worker import replayruns, workerprocess  # noqa: F401  (workerprocess: the worker's signals)
from sync_worker.celery_app import REPLAY_DEAD_LETTERS_TASK, SYNC_TASK, app
from sync_worker.delivery.base import DeliveryTask
from sync_worker.delivery.decision import settings_backoff, task_retry_countdown
from sync_worker.delivery.redisloss import REDIS_UNAVAILABLE
from sync_worker.dispatch import PENDING_TTL_SECONDS, SyncRequest, claim, enqueue_replay, hold_pending
from sync_worker.errors import PermanentError, RateLimited, SyncError, TransientError
from sync_worker.halts import UpstreamHalted
from sync_worker.integrations import UnknownIntegration
from sync_worker.keys import LEGACY_INTEGRATION
from sync_worker.logs import log_event
from sync_worker.parking import park_contact, record_result
from sync_worker.ratelimit import RateLimitWait, Reservation, reserving
from sync_worker.ratelimit.hooks import INTERCOM
from sync_worker.runtime import get_runtime
from sync_worker.schema import names_may_be_stale
from sync_worker.searchwait import SINCE as SEARCH_SINCE
from sync_worker.searchwait import SearchWait, carried, next_search
from sync_worker.stalerefresh import keep_refresh_claim, note_live_run, schedule_fresh_sync, start_refresh
from sync_worker.sync import ContactNotFoundYet, SyncOutcome

logger = logging.getLogger(__name__)


class SyncTask(DeliveryTask):
    """``sync_contact``'s delivery: a poisoned message parks its contact (``worker_lost``), a
    hand-back is counted ``requeued`` and logged."""

    def poisoned(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        # A refresh lets the contact's claim go as it starts, poisoned or not (the claim's holder
        # parks: a run that ends stale later schedules the next refresh itself).
        request = start_refresh(self, SyncRequest.from_kwargs(kwargs), int(kwargs.get("refreshes") or 0))
        return park_contact(
            claim(get_runtime().redis, request),  # its folded trigger goes with it, not to a later run
            SyncError("the worker process died while syncing this contact", code="worker_lost"),
            int(kwargs.get("attempt") or 0) + 1,
        )

    def handed_back(self, kwargs: dict[str, Any], cause: BaseException) -> None:
        get_runtime().metrics.sync(
            "requeued",
            trigger=kwargs.get("trigger", ""),
            error_code="redis_unavailable",
            integration=kwargs.get("integration") or LEGACY_INTEGRATION,
        )
        log_event(
            logger,
            "sync_requeued_redis_unavailable",
            level=logging.WARNING,
            contact_id=kwargs.get("contact_id"),
            integration=kwargs.get("integration") or LEGACY_INTEGRATION,
            error_type=type(cause).__name__,
        )


@app.task(bind=True, base=SyncTask, name=SYNC_TASK, max_retries=None)
def sync_contact(
    self: Task,
    attempt: int = 0,
    refreshes: int = 0,
    waiting_since: float | None = None,
    reservation: dict[str, Any] | None = None,
    **kwargs: Any,
) -> list[dict[str, Any]] | dict[str, Any]:
    """Sync the contact of ``kwargs`` (a :class:`SyncRequest`'s fields); see the module's guarantees.

    Messages queued by earlier versions may also carry ``waits`` (a count of rate-limit
    reschedules, unread since the wait cap is time-based): it lands in ``kwargs`` and is ignored.
    """
    return _sync(self, attempt, refreshes, waiting_since, kwargs, Reservation.from_kwargs(reservation))


def _sync(
    self: Task,
    attempt: int,
    refreshes: int,
    waiting_since: float | None,
    kwargs: dict[str, Any],
    reserved: Reservation | None = None,
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
    request = start_refresh(self, request, refreshes)
    try:  # before the claim: the pending marker stays, so triggers meanwhile fold into this message
        runtime.halts.check()
    except UpstreamHalted as halted:
        _wait_out_halt(self, request, halted, attempt, refreshes, kwargs)
    request = claim(runtime.redis, request)
    started = time.monotonic()
    try:
        # The run's Intercom calls are taken together; a reservation it carries is redeemed first.
        with reserving(INTERCOM, _pipeline(request).intercom_calls(request), reserved):
            outcomes = _run_unless_halted(request)
    except UpstreamHalted as halted:
        _wait_out_halt(self, request, halted, attempt, refreshes, kwargs)
    except RateLimited as wait:  # ours or any upstream's 429: a wait, no retry spent
        waiting_since = waiting_since or time.time()
        if time.time() - waiting_since > settings.rate_limit_max_wait_seconds:
            return park_contact(request, wait, attempt + 1)
        countdown = min(settings.max_reschedule_seconds, max(0.1, wait.retry_after or 1.0))
        runtime.metrics.sync(
            "rescheduled", trigger=request.trigger, integration=request.integration, error_code=wait.code
        )
        _hold_pending(self, request, countdown)  # triggers meanwhile fold into this message
        log_event(
            logger,
            "sync_rescheduled_rate_limit",
            contact_id=request.contact_id,
            integration=request.integration,
            task_id=self.request.id,
            error_code=wait.code,
            countdown=round(countdown, 2),
        )
        carry = {
            **carried(kwargs),
            "attempt": attempt,
            "refreshes": refreshes,
            "waiting_since": waiting_since,
        }
        if isinstance(wait, RateLimitWait) and wait.reservation is not None:
            carry["reservation"] = wait.reservation.to_kwargs()  # the token(s) promised for the countdown
        raise _run_again(self, request, countdown, carry) from None
    except ContactNotFoundYet:
        outcomes = [_search_again_or_give_up(self, request, attempt, refreshes, waiting_since, kwargs)]
    except (SyncError, SoftTimeLimitExceeded) as error:
        if isinstance(error, SoftTimeLimitExceeded):
            error = TransientError("the sync ran past its time limit", code="time_limit")
        countdown = task_retry_countdown(error, attempt, settings)
        if countdown is not None:
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
        runtime.metrics.sync(
            outcome.status, trigger=outcome.trigger, integration=request.integration, error_code=outcome.code
        )
        log_event(
            logger,
            "sync_finished",
            contact_id=outcome.contact_id,
            status=outcome.status,
            trigger=outcome.trigger,
            seconds=elapsed,
        )
    record_result(request.contact_key, {"status": outcomes[0].status, "outcomes": results})
    if any(outcome.status == "stale" for outcome in outcomes):
        schedule_fresh_sync(self.request.id, request, attempt, refreshes)
    elif not refreshes:  # a refresh took the newest note as it started
        note_live_run(request)
    return results


def _run_unless_halted(request: SyncRequest) -> list[SyncOutcome]:
    """The run (the caller checked the halts before its claim); an error that concerns the whole
    workspace halts its upstream and is raised as that halt (:mod:`sync_worker.halts`)."""
    runtime = get_runtime()
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
    kwargs: dict[str, Any],
) -> NoReturn:
    """Reschedule the run for when the halt may be cleared, spending no retry, parking nothing.

    The contact's pending marker names this message while it waits (:func:`hold_pending`), so
    every trigger for the contact during the halt folds into it: one waiting message per contact
    however long the halt. The halt's time counts on no clock: the rate-limit wait and the
    search wait start afresh after it (their tries are kept)."""
    countdown = max(0.1, halted.retry_after or 1.0)
    get_runtime().metrics.sync(
        "waiting_halt", trigger=request.trigger, integration=request.integration, error_code=halted.halt.code
    )
    log_event(
        logger,
        "sync_waiting_halt",
        contact_id=request.contact_id,
        integration=request.integration,
        task_id=task.request.id,
        upstream=halted.halt.upstream,
        error_code=halted.halt.code,
        countdown=round(countdown, 2),
    )
    _hold_pending(task, request, countdown)
    search = {name: value for name, value in carried(kwargs).items() if name != SEARCH_SINCE}
    carry = {**search, "attempt": attempt, "refreshes": refreshes, "waiting_since": None}
    raise _run_again(task, request, countdown, carry) from None


def _hold_pending(task: Task, request: SyncRequest, countdown: float) -> None:
    """The contact's pending marker names this message until it runs again in ``countdown``."""
    runtime = get_runtime()
    ttl = int(countdown + runtime.settings.task_time_limit_seconds) + PENDING_TTL_SECONDS
    hold_pending(runtime.redis, request.contact_key, task.request.id, ttl=ttl)


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
        backoff=settings_backoff(settings),
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
    keep_refresh_claim(task, request, int(carry.get("refreshes") or 0), countdown)
    again = {**request.to_kwargs(), **carry}
    return task.retry(kwargs=again, countdown=countdown, kwargsrepr=request.describe())


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
