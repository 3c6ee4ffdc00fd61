"""The re-sync's Celery task names and how its messages are published.

Guarantees: every re-sync message goes to the ``sync.bulk`` queue (a worker takes
realtime work first); countdowns are capped at :data:`MAX_RESCHEDULE_SECONDS`, which the
visibility-timeout and re-sync lock checks of :mod:`sync_worker.celery_app` already allow for; publishing
goes through the Celery app passed in (the worker's, the web app's or the CLI's), by task
name, so a producer never imports the tasks module.
"""

from __future__ import annotations

from celery import Celery

from sync_worker.celery_app import BULK_QUEUE, MAX_RESCHEDULE_SECONDS

START_TASK = "sync_worker.resync.tasks.start_resync"
WALK_TASK = "sync_worker.resync.tasks.walk"
CHUNK_TASK = "sync_worker.resync.tasks.chunk"
WATCHDOG_TASK = "sync_worker.resync.tasks.watchdog"


def _countdown(seconds: float | None) -> float | None:
    if not seconds or seconds <= 0:
        return None
    return min(float(seconds), float(MAX_RESCHEDULE_SECONDS))


def publish_walk(
    celery_app: Celery, run_id: str, gen: int, page: int, *, countdown: float | None = None, attempt: int = 0
) -> None:
    celery_app.send_task(
        WALK_TASK,
        kwargs={"run_id": run_id, "gen": gen, "page": page, "attempt": attempt},
        queue=BULK_QUEUE,
        countdown=_countdown(countdown),
    )


def publish_chunk(
    celery_app: Celery, run_id: str, chunk_id: str, version: int, *, countdown: float | None = None
) -> None:
    celery_app.send_task(
        CHUNK_TASK,
        kwargs={"run_id": run_id, "chunk_id": chunk_id, "version": version},
        queue=BULK_QUEUE,
        countdown=_countdown(countdown),
    )
