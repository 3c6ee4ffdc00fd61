"""Celery tasks of the referral program's intake on beat: the reconciliation walk and the backstop.

Guarantees (all on ``sync.bulk``, built on :class:`~sync_worker.delivery.base.DeliveryTask`: a
run that cannot use Redis hands its message back, a message that keeps killing its worker is
dropped with a log line):
- ``start_walk`` (beat's, every ``REFERRAL_POLL_CRON``) starts a walk unless one holds the walk's
  lock (one walk at a time, whatever the number of beats and workers); the walk begins at the
  newest user and stops at the high-water mark (:mod:`.highwater`) the walk found as it started;
- ``walk_step`` runs one step (:func:`.walk.walk_pages`, :data:`PAGES_PER_STEP` pages) and
  publishes the next from the page it stopped at; every page read refreshes the lock (a walk
  that stops making progress lets it expire after :data:`LOCK_TTL_SECONDS`; a step that finds
  the lock another walk's ends); a finished walk advances the mark to its first page's newest
  user and lets the lock go;
- a step that meets the program's rate limit (our shared limiter's wait, a 429) goes on from
  its page after the wait, spending nothing; a transient error retries its page with the tasks'
  backoff (``SYNC_TASK_MAX_RETRIES`` in a row); a halt of the referral upstream (a revoked
  token) holds the walk at its page for the halt's wait; a permanent error ends the walk
  (``referral_walk_failed``, the lock let go, the mark unmoved: the next beat walks again); the
  latest walk's end (finished or failed, its counts) is kept under :data:`LAST_WALK_KEY`
  (:mod:`.status`);
- ``qualify_backstop`` (beat's, every ``REFERRAL_QUALIFY_POLL_CRON``) searches Intercom for the
  pending referral contacts that qualify now (the pipeline's ``backstop_query``) and stores one
  sync per contact (``source_id`` its ``Referral ID``, ``contact_id`` its id, trigger
  ``schedule``): the pipeline decides and reports each once, with the task's retries and dead
  letters; a search that fails is retried by Celery with backoff; the latest backstop's end
  (finished, or failed after its retries: the contacts the search ``found`` and the syncs
  ``stored``) is kept under :data:`LAST_BACKSTOP_KEY`;
- both do nothing (``not_running``) in a deployment that does not run ``referral_leads``; log
  lines carry run ids, counts and referral or contact ids, never emails.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery import Task

from sync_worker.celery_app import BULK_QUEUE, app
from sync_worker.delivery.base import DeliveryTask
from sync_worker.delivery.decision import task_retry_countdown
from sync_worker.dispatch import SyncRequest, enqueue_sync
from sync_worker.errors import RateLimited, SyncError
from sync_worker.halts import REFERRAL, UpstreamHalted
from sync_worker.logs import log_event
from sync_worker.referral_intake.highwater import HighWater
from sync_worker.referral_intake.marks import Mark
from sync_worker.referral_intake.pagecache import PageCache
from sync_worker.referral_intake.schedule import BACKSTOP_TASK, INTEGRATION, WALK_START_TASK, WALK_STEP_TASK
from sync_worker.referral_intake.status import LAST_BACKSTOP_KEY, LAST_WALK_KEY, record_end
from sync_worker.referral_intake.status import WALK_LOCK_KEY as LOCK_KEY
from sync_worker.referral_intake.walk import WalkState, walk_pages
from sync_worker.resync.lock import RunLock
from sync_worker.runtime import Runtime, get_runtime

logger = logging.getLogger(__name__)

#: A walk that makes no progress for this long lets the next beat start another.
LOCK_TTL_SECONDS = 600.0
PAGES_PER_STEP = 4
BACKSTOP_TRIGGER = "schedule"


def walk_lock(runtime: Runtime) -> RunLock:
    return RunLock(runtime.redis, LOCK_KEY, ttl_seconds=LOCK_TTL_SECONDS)


def _running(runtime: Runtime) -> bool:
    return INTEGRATION in runtime.integrations


@app.task(bind=True, base=DeliveryTask, name=WALK_START_TASK)
def start_walk(self: Task) -> dict[str, Any]:
    runtime = get_runtime()
    if not _running(runtime):
        return {"status": "not_running"}
    run_id = uuid.uuid4().hex
    lock = walk_lock(runtime)
    if not lock.acquire(run_id):
        log_event(logger, "referral_walk_skipped", holder=lock.holder())
        return {"status": "running", "run_id": lock.holder()}
    mark = HighWater(runtime.redis).get()
    state = WalkState(run_id=run_id, stop_at=mark.to_text() if mark else None)
    log_event(logger, "referral_walk_started", run_id=run_id, stop_at=state.stop_at)
    return _step(runtime, state, attempt=0)


@app.task(bind=True, base=DeliveryTask, name=WALK_STEP_TASK)
def walk_step(self: Task, attempt: int = 0, **kwargs: Any) -> dict[str, Any]:
    runtime = get_runtime()
    state = WalkState.from_kwargs(kwargs)
    if not walk_lock(runtime).refresh(state.run_id):
        log_event(logger, "referral_walk_superseded", run_id=state.run_id)
        return {"status": "superseded", "run_id": state.run_id}
    return _step(runtime, state, attempt=attempt)


def _publish(state: WalkState, *, countdown: float = 0.0, attempt: int = 0) -> None:
    app.send_task(
        WALK_STEP_TASK,
        kwargs={**state.to_kwargs(), "attempt": attempt},
        queue=BULK_QUEUE,
        countdown=countdown or None,
    )


def _step(runtime: Runtime, state: WalkState, *, attempt: int) -> dict[str, Any]:
    lock = walk_lock(runtime)
    try:
        runtime.halts.check([REFERRAL])
    except UpstreamHalted as halted:
        return _held(state, halted, attempt)
    pipeline = runtime.pipeline(INTEGRATION)
    progress = [state]  # the state after the last page read, whatever ends the step

    def on_page(after: WalkState) -> None:
        progress[0] = after
        lock.refresh(after.run_id)

    try:
        state = walk_pages(
            state,
            client=runtime.referral,
            cache=PageCache(runtime.redis),
            handled=pipeline.handled,
            store=lambda request: _store(runtime, request),
            clock=time.time,
            max_pages=PAGES_PER_STEP,
            on_page=on_page,
        )
    except UpstreamHalted as halted:
        return _held(progress[0], halted, attempt)
    except SyncError as error:
        return _failed(runtime, progress[0], error, attempt if progress[0] is state else 0)
    if not state.finished:
        _publish(state)
        return {"status": "walking", **_counts(state)}
    if state.newest is not None:
        HighWater(runtime.redis).advance(Mark.from_text(state.newest) or Mark(0.0, 0))
    lock.release(state.run_id)
    log_event(logger, "referral_walk_finished", run_id=state.run_id, **_counts(state))
    return _ended(runtime, state, "finished")


def _ended(runtime: Runtime, state: WalkState, status: str, **more: Any) -> dict[str, Any]:
    """Record the walk's end (``LAST_WALK_KEY``); the task's result."""
    result = {"status": status, **more, **_counts(state)}
    record_end(runtime.redis, LAST_WALK_KEY, {**result, "run_id": state.run_id})
    return result


def _store(runtime: Runtime, request: SyncRequest) -> None:
    enqueue_sync(request, runtime.redis, app)


def _counts(state: WalkState) -> dict[str, Any]:
    return {"pages": state.pages, "stored": state.stored, "already": state.already, "newest": state.newest}


def _held(state: WalkState, halted: UpstreamHalted, attempt: int) -> dict[str, Any]:
    countdown = max(0.1, halted.retry_after or 1.0)
    log_event(logger, "referral_walk_held", run_id=state.run_id, error_code=halted.halt.code)
    _publish(state, countdown=countdown, attempt=attempt)
    return {"status": "held", **_counts(state)}


def _failed(runtime: Runtime, state: WalkState, error: SyncError, attempt: int) -> dict[str, Any]:
    halted = runtime.halts.escalate(error, run_id=state.run_id)
    if halted is not None:
        return _held(state, halted, attempt)
    if isinstance(error, RateLimited):  # the program's limit (ours or its 429): no retry spent
        countdown = min(runtime.settings.max_reschedule_seconds, max(0.1, float(error.retry_after or 1.0)))
        log_event(logger, "referral_walk_waiting", run_id=state.run_id, countdown=round(countdown, 2))
        _publish(state, countdown=countdown, attempt=attempt)
        return {"status": "waiting", **_counts(state)}
    countdown = task_retry_countdown(error, attempt, runtime.settings)
    if countdown is not None:
        log_event(
            logger,
            "referral_walk_retry",
            level=logging.WARNING,
            run_id=state.run_id,
            error_code=error.code,
            attempt=attempt + 1,
        )
        _publish(state, countdown=countdown, attempt=attempt + 1)
        return {"status": "retrying", **_counts(state)}
    walk_lock(runtime).release(state.run_id)
    log_event(logger, "referral_walk_failed", level=logging.ERROR, run_id=state.run_id, error_code=error.code)
    return _ended(runtime, state, "failed", error_code=error.code)


@app.task(bind=True, base=DeliveryTask, name=BACKSTOP_TASK, max_retries=6, default_retry_delay=30)
def qualify_backstop(self: Task) -> dict[str, Any]:
    from sync_worker.integrations.referral_leads.fieldmap import REFERRAL_ID
    from sync_worker.integrations.referral_leads.pipeline import backstop_query

    runtime = get_runtime()
    if not _running(runtime):
        return {"status": "not_running"}
    pipeline = runtime.pipeline(INTEGRATION)
    found = stored = 0
    try:
        for contact in runtime.intercom.iter_search(backstop_query(pipeline.options)):
            found += 1
            referral_id = str((contact.get("custom_attributes") or {}).get(REFERRAL_ID) or "").strip()
            if not referral_id.isdigit() or not contact.get("id"):
                continue
            email = contact.get("email") if isinstance(contact.get("email"), str) else None
            request = SyncRequest(
                integration=INTEGRATION,
                source_id=referral_id,
                contact_id=str(contact["id"]),
                email=email,
                trigger=BACKSTOP_TRIGGER,
                force_write=False,
            )
            enqueue_sync(request, runtime.redis, app)
            stored += 1
    except SyncError as error:
        countdown = task_retry_countdown(error, self.request.retries, runtime.settings)
        if countdown is None:
            log_event(logger, "referral_backstop_failed", level=logging.ERROR, error_code=error.code)
            return _backstop_ended(runtime, "failed", found=found, stored=stored, error_code=error.code)
        raise self.retry(countdown=countdown) from None
    log_event(logger, "referral_backstop_finished", found=found, stored=stored)
    return _backstop_ended(runtime, "finished", found=found, stored=stored)


def _backstop_ended(runtime: Runtime, status: str, **figures: Any) -> dict[str, Any]:
    """Record the backstop's end (``LAST_BACKSTOP_KEY``); the task's result."""
    result = {"status": status, **figures}
    record_end(runtime.redis, LAST_BACKSTOP_KEY, result)
    return result
