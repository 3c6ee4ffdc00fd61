"""Celery tasks of the bulk re-sync (``sync_worker.resync.tasks.*``), all on ``sync.bulk``.

Guarantees:
- ``start_resync`` (the beat's entry) starts a run of one integration or resumes its unfinished
  one, at most one at a time per integration (:mod:`sync_worker.resync.starter`);
- ``walk`` runs one step of the run's integration's walk (:mod:`sync_worker.resync.walks`: Intercom's
  contacts, or the platform's users) and re-publishes itself for the page the step stopped at
  (at once, or under backpressure or a rate-limit wait after a countdown): no task holds a
  long loop, and a killed worker loses at most the page it was reading;
- ``chunk`` runs one chunk (:mod:`sync_worker.resync.chunks`) and re-publishes what is
  left of it after the countdown it asks for (a chunk held for an unreadable platform too:
  its contacts go to :func:`sync_worker.stalerefresh.defer_to_refresh` only once it has been held
  ``SYNC_RATE_LIMIT_MAX_WAIT_SECONDS``);
- a walk step's transient Intercom errors retry that page with backoff (the decision every task
  shares, :func:`sync_worker.delivery.decision.retry_countdown`), up to
  ``SYNC_TASK_MAX_RETRIES`` times in a row (a step that read a page first starts the count
  afresh); a permanent one (or the last transient one) ends the run as ``failed`` with the
  error code; while the upstream the walk reads is halted (:mod:`sync_worker.halts`), or when the
  step's error halts it, the walk holds at its page instead, re-published after the halt's wait; a held walk refreshes
  the run's lock each time (so the watchdog never resumes a run whose walk is only held) and one
  whose generation is stale ends;
- ``watchdog`` resumes each integration's active run whose lock expired (no progress for the lock's ttl);
  it also runs when a worker starts, before the worker takes its first message, so
  restarting a crashed worker picks a stalled run up;
- log lines carry run and chunk ids and counts, never emails; a chunk's contacts are counted
  for ``/metrics`` by outcome (not a dry run's).
"""

from __future__ import annotations

import logging
from typing import Any

import redis as redis_lib
from celery.signals import worker_ready

from sync_worker import integrations
from sync_worker.celery_app import app
from sync_worker.delivery.decision import settings_backoff, task_retry_countdown
from sync_worker.halts import UpstreamHalted
from sync_worker.keys import LEGACY_INTEGRATION
from sync_worker.logs import log_event
from sync_worker.parking import park_contact
from sync_worker.resync import keys as resync_keys
from sync_worker.resync import messages
from sync_worker.resync.chunks import ChunkRunner
from sync_worker.resync.entries import BULK_TRIGGER
from sync_worker.resync.runs import FAILED, RunOptions, RunStore
from sync_worker.resync.settings import get_resync_settings
from sync_worker.resync.starter import make_store, resume_if_stalled, start
from sync_worker.resync.walk import WalkOutcome, walk_step
from sync_worker.resync.walks import walk_for, walk_kind
from sync_worker.runtime import MAX_INLINE_WAIT_SECONDS, Runtime, get_runtime
from sync_worker.stalerefresh import defer_to_refresh

logger = logging.getLogger(__name__)

#: A chunk's counts that are a contact's sync outcome (the others: ``written`` sums some of them,
#: ``failed`` ones were counted as dead letters when parked).
SYNC_OUTCOMES = ("synced", "no_account", "unchanged", "stale", "skipped", "gone", "deferred")


@app.task(name=messages.START_TASK)
def start_resync(
    dry_run: bool = False,
    only_changed: bool | None = None,
    trigger: str = "schedule",
    integration: str = LEGACY_INTEGRATION,
) -> dict[str, Any]:
    settings = get_resync_settings()
    get_runtime().pipeline(integration)  # one that does not run here refuses: UnknownIntegration
    walk_kind(integrations.get(integration))  # a walk this service does not have refuses: UnknownWalk
    options = RunOptions(
        dry_run=dry_run,
        only_changed=settings.only_changed if only_changed is None else only_changed,
        trigger=trigger,
        integration=integration,
    )
    result = start(get_runtime().redis, app, options, settings)
    log_event(
        logger,
        "resync_start",
        status=result.status,
        run_id=result.run_id,
        trigger=trigger,
        dry_run=dry_run,
        integration=integration,
    )
    return result.to_dict()


@app.task(name=messages.WATCHDOG_TASK)
def watchdog() -> dict[str, Any] | None:
    """Resume every integration's stalled run (each has its own lock); the last one resumed, or None."""
    resumed = None
    for integration in integrations.REGISTRY:
        result = resume_if_stalled(get_runtime().redis, app, get_resync_settings(), integration)
        if result is not None:
            log_event(
                logger,
                "resync_resumed",
                level=logging.WARNING,
                run_id=result.run_id,
                integration=integration,
            )
            resumed = result.to_dict()
    return resumed


@app.task(name=messages.WALK_TASK)
def walk(run_id: str, gen: int, page: int, attempt: int = 0) -> dict[str, Any]:
    runtime, settings = get_runtime(), get_resync_settings()
    store = make_store(runtime.redis, settings)
    source = walk_for(integrations.get(store.integration_of(run_id)), runtime)
    try:
        runtime.halts.check([source.upstream])
    except UpstreamHalted as halted:
        return _walk_held(store, run_id, gen, page, attempt, halted)
    outcome = walk_step(
        run_id,
        gen,
        page,
        store=store,
        walk=source,
        settings=settings,
        publish_chunk=lambda rid, cid, version: messages.publish_chunk(app, rid, cid, version),
    )
    attempt = 0 if outcome.pages_read else attempt  # errors in a row at one page
    halted = (
        runtime.halts.escalate(outcome.error, batch=source.contract_halts, run_id=run_id)
        if outcome.error
        else None
    )
    if halted is not None:
        return _walk_held(store, run_id, gen, outcome.page, attempt, halted)
    if outcome.error is not None:
        return _walk_failed(store, run_id, gen, outcome, attempt)
    if outcome.countdown is not None:
        # Carry on from the page the step stopped at: the pages before it are committed.
        messages.publish_walk(app, run_id, gen, outcome.page, countdown=outcome.countdown, attempt=attempt)
    if outcome.finished:
        log_event(logger, "resync_finished", run_id=run_id)
    return {"status": outcome.status, "page": outcome.page, "pages_read": outcome.pages_read}


def _walk_held(
    store: RunStore, run_id: str, gen: int, page: int, attempt: int, halted: UpstreamHalted
) -> dict[str, Any]:
    """Intercom is halted: read the page again after the halt's wait (the run does not fail). The
    held walk refreshes the run's lock (it is alive: the watchdog must not resume the run beside
    it), and a walk that is not the run's current one (older ``gen``) ends here instead."""
    if not store.hold_walk(run_id, gen, page):
        log_event(logger, "resync_walk_superseded", run_id=run_id, gen=gen, page=page)
        return {"status": "noop", "page": page}
    log_event(logger, "resync_walk_held", run_id=run_id, page=page, error_code=halted.halt.code)
    messages.publish_walk(app, run_id, gen, page, countdown=halted.retry_after, attempt=attempt)
    return {"status": "held", "page": page}


def _walk_failed(
    store: RunStore, run_id: str, gen: int, outcome: WalkOutcome, attempt: int
) -> dict[str, Any]:
    """Retry the page a walk step failed at with backoff, or end the run when out of attempts."""
    config = get_runtime().settings
    error, page = outcome.error, outcome.page
    assert error is not None
    countdown = task_retry_countdown(error, attempt, config)
    if countdown is not None:
        log_event(
            logger,
            "resync_walk_retry",
            level=logging.WARNING,
            run_id=run_id,
            page=page,
            error_code=error.code,
            attempt=attempt + 1,
        )
        messages.publish_walk(app, run_id, gen, page, countdown=countdown, attempt=attempt + 1)
        return {"status": "retry", "page": page}
    store.end(run_id, FAILED, f"{error.code}: walk stopped at page {page}")
    log_event(logger, "resync_failed", level=logging.ERROR, run_id=run_id, page=page, error_code=error.code)
    return {"status": "failed", "page": page}


@app.task(name=messages.CHUNK_TASK)
def chunk(run_id: str, chunk_id: str, version: int) -> dict[str, Any]:
    runtime, settings = get_runtime(), get_resync_settings()
    config = runtime.settings
    store = make_store(runtime.redis, settings)
    integration = store.integration_of(run_id)
    pipeline = runtime.pipeline(integration)
    runner = ChunkRunner(
        store=store,
        platform=runtime.platform,
        circuit=runtime.circuit,
        contact_sync=pipeline,
        park=park_contact,
        backoff=settings_backoff(config),
        max_retries=config.task_max_retries,
        time_budget_seconds=settings.chunk_time_budget_seconds,
        intercom_wait=runtime.limiters["intercom"].peek,
        max_inline_wait=MAX_INLINE_WAIT_SECONDS,
        defer=lambda request: defer_to_refresh(request, by=f"resync-chunk:{run_id}:{chunk_id}"),
        max_hold_seconds=config.rate_limit_max_wait_seconds,
        halts=runtime.halts,
        entries=walk_kind(integrations.get(integration)).entries(pipeline, integration),
    )
    outcome = runner.run(run_id, chunk_id, version)
    if outcome.status == "held":
        log_event(
            logger,
            "resync_chunk_held",
            run_id=run_id,
            integration=integration,
            chunk_id=chunk_id,
            countdown=round(outcome.countdown, 2),
        )
    if outcome.counts.get("deferred"):
        log_event(
            logger,
            "resync_chunk_deferred",
            level=logging.WARNING,
            run_id=run_id,
            integration=integration,
            chunk_id=chunk_id,
            deferred=outcome.counts["deferred"],
        )
    if outcome.rest is not None:
        messages.publish_chunk(app, run_id, chunk_id, outcome.rest.version, countdown=outcome.countdown)
    _count_syncs(runtime, run_id, outcome.counts, integration)
    if outcome.finished:
        log_event(logger, "resync_finished", run_id=run_id)
    return {"status": outcome.status, "chunk_id": chunk_id, "counts": outcome.counts}


def _count_syncs(runtime: Runtime, run_id: str, counts: dict[str, int], integration: str) -> None:
    """A chunk's contacts, by outcome, in ``/metrics``'s syncs (a dry run's are not syncs; its
    parks were counted as they happened). Best effort, after the chunk's work is recorded and
    its rest published: a Redis error here loses these counts, never the chunk."""
    outcomes = {status: n for status, n in counts.items() if status in SYNC_OUTCOMES and n}
    if not outcomes:
        return
    try:
        dry_run = runtime.redis.hget(resync_keys.run(run_id), "dry_run") in (b"1", "1")
    except redis_lib.RedisError:
        return
    if dry_run:
        return
    for status, n in outcomes.items():
        runtime.metrics.sync(status, trigger=BULK_TRIGGER, times=n, integration=integration)


@worker_ready.connect
def _watch_on_start(sender: Any = None, **_: Any) -> None:
    """A (re)started worker resumes a run whose lock expired while no worker made progress.

    In the signal's own call, before the worker's event loop hands its first message to the
    pool: run beside it (a thread), it raced the messages of the run that a dead worker left
    queued, and one of those making progress first took the expired lock again, so this
    check saw a live run and the chunks the dead worker held stayed lost until the next
    watchdog (beat's) or the visibility timeout. It costs the start a few Redis calls and
    publishes on the Redis the consumer has just connected to; a failure is logged.
    """
    try:
        watchdog()
    except Exception:
        logger.warning("resync_watchdog_failed", exc_info=True)
