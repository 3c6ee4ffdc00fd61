"""Start a run, resume a stalled one, or say which one is running: never two at once per integration.

Guarantees:
- however many beats, workers, CLIs and web requests call :func:`start` at the same
  moment, at most one of them starts or resumes a run of one integration: each first tries to
  take that integration's lock under a fresh id (``SET NX``), and only the one that got it goes
  on; runs of different integrations have locks of their own and run side by side;
- a run that has not finished (the active pointer) is resumed, never replaced: the
  starter holding the lock hands it to that run, bumps its generation and re-publishes
  its walk from the checkpoint and a message for each chunk still pending;
- a scheduled start (``trigger="schedule"``) is skipped when a run of the same integration
  started less than ``SYNC_RESYNC_MIN_INTERVAL_SECONDS`` ago (two beats firing the same cron), a
  manual one is not;
- if anything fails after the lock was taken for a new run, the lock is released;
- a dry run of an integration whose re-sync has none (``Integration.resync_dry_run``) is refused
  (:class:`DryRunUnsupported`) before anything is taken or written.

:func:`resume_if_stalled` is the watchdog: it resumes an integration's active run only when the
run's lock has expired, i.e. nothing has made progress for the lock's ttl.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass
from typing import Literal

import redis as redis_lib
from celery import Celery

from sync_worker import integrations
from sync_worker.keys import LEGACY_INTEGRATION
from sync_worker.resync import keys
from sync_worker.resync.lock import RunLock
from sync_worker.resync.messages import publish_chunk, publish_walk
from sync_worker.resync.runs import RUNNING, RunOptions, RunStore
from sync_worker.resync.settings import ResyncSettings

Status = Literal["started", "resumed", "already_running", "skipped"]


class DryRunUnsupported(ValueError):
    """A dry run was asked of an integration whose re-sync cannot preview."""


@dataclass(frozen=True)
class StartResult:
    status: Status
    run_id: str | None
    reason: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def new_run_id(now: float | None = None) -> str:
    """Sortable and unique: ``20260122T030000-1a2b3c4d``."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stamp}-{uuid.uuid4().hex[:8]}"


def make_store(client: redis_lib.Redis, settings: ResyncSettings) -> RunStore:
    return RunStore(
        client,
        lock_ttl_seconds=settings.lock_ttl_seconds,
        keep_seconds=settings.keep_seconds,
        keep_runs=settings.keep_runs,
    )


def make_lock(
    client: redis_lib.Redis, settings: ResyncSettings, integration: str = LEGACY_INTEGRATION
) -> RunLock:
    """``integration``'s run lock (one run at a time of each integration)."""
    return RunLock(client, keys.lock(integration), ttl_seconds=settings.lock_ttl_seconds)


def _nudge(celery_app: Celery, store: RunStore, run_id: str) -> bool:
    """Resume ``run_id``: new generation, walk from the checkpoint, every pending chunk re-published."""
    resumption = store.resume(run_id)
    if resumption is None or resumption.finished:
        return False
    if not resumption.walk_done:
        publish_walk(celery_app, run_id, resumption.gen, resumption.page)
    for chunk_id, version in resumption.pending.items():
        publish_chunk(celery_app, run_id, chunk_id, version)
    return True


def start(
    client: redis_lib.Redis, celery_app: Celery, options: RunOptions, settings: ResyncSettings
) -> StartResult:
    """Start a run with ``options`` (or resume the integration's unfinished one); see the module docstring."""
    integration = options.integration
    if options.dry_run and not integrations.get(integration).resync_dry_run:
        raise DryRunUnsupported(f"a re-sync of {integration} cannot be a dry run")
    lock, store = make_lock(client, settings, integration), make_store(client, settings)
    run_id = new_run_id()
    if not lock.acquire(run_id):
        return StartResult("already_running", lock.holder(), f"a re-sync of {integration} is running")
    try:
        active = store.active_id(integration)
        record = store.load(active) if active else None
        if active and record is not None and record.status == RUNNING:
            lock.hand_over(run_id, active)
            if _nudge(celery_app, store, active):
                return StartResult("resumed", active, "an unfinished run was resumed from its checkpoint")
            return StartResult("skipped", active, "the unfinished run had nothing left to do")
        if active:
            client.delete(keys.active(integration))  # points at a run that ended
        if options.trigger == "schedule" and settings.min_interval_seconds > 0:
            latest = store.latest(integration)
            if latest is not None and time.time() - latest.started_at < settings.min_interval_seconds:
                lock.release(run_id)
                return StartResult("skipped", latest.id, "a run started less than the minimum interval ago")
        store.create(run_id, options, total_estimate=store.last_finished_seen(integration))
        publish_walk(celery_app, run_id, 0, 0)
    except BaseException:
        lock.release(run_id)
        raise
    return StartResult("started", run_id)


def resume_if_stalled(
    client: redis_lib.Redis,
    celery_app: Celery,
    settings: ResyncSettings,
    integration: str = LEGACY_INTEGRATION,
) -> StartResult | None:
    """Resume ``integration``'s active run if its lock expired (no progress for the lock's ttl); None
    when nothing to do."""
    store = make_store(client, settings)
    active = store.active_id(integration)
    if not active:
        return None
    record = store.load(active)
    if record is None or record.status != RUNNING:
        client.delete(keys.active(integration))
        return None
    if not make_lock(client, settings, integration).acquire(active):
        return None  # alive (or being resumed by someone else)
    if _nudge(celery_app, store, active):
        return StartResult("resumed", active, "the run had stalled; resumed from its checkpoint")
    return None
