"""One walk step: read the next page(s) of the run's walk and queue them as chunks.

The walk is the integration's (:mod:`sync_worker.resync.walks`: Intercom's contacts for the
clients, the platform's users for dealer users); this step is the same for every walk.

Guarantees:
- a step works only from the run's checkpoint (``gen``, ``page``, ``cursor``): a message
  for another generation or page (a duplicate, or one superseded by a resume) does nothing;
- before each page it looks at the chunks in flight and pauses (asks to be re-run after
  ``backpressure_pause_seconds``) while they are at ``max_in_flight``, so the queue and
  Redis hold at most ``max_in_flight`` (+ one page's chunks) of the run, whatever its size;
- a pause is not progress: it leaves the run's lock alone (committed pages and recorded
  chunks refresh it), so when the chunks in flight make none (their messages held by a
  worker that died: they come back only after the visibility timeout) the lock expires
  and the watchdog resumes the run, re-publishing them; a walk that refreshed the lock
  while paused would keep such a run "alive" and stalled until the visibility timeout;
- each page is committed in one script (checkpoint, chunks, counts) *before* its chunk
  messages are published: a crash in between leaves the chunks pending in Redis, where a
  resume finds them; a crash before the commit re-reads that one page, never the walk;
- what the walk's plan leaves out (for Intercom's contacts: no email, an address the screening
  refuses) is counted as skipped and never queued;
- a step reads at most ``pages_per_step`` pages, then hands on to a fresh message;
- a page read that cannot be made or fails (a rate-limit wait, a 429, an error) ends the
  step with the page it was reading, never the page the step started from: the pages before
  it are committed, so whoever carries on must start there (a message for the step's first
  page would find the checkpoint moved on and do nothing, and the walk would stall).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sync_worker.errors import RateLimited, SyncError
from sync_worker.logs import log_event
from sync_worker.resync.runs import RUNNING, Chunk, RunStore, split_evenly
from sync_worker.resync.settings import ResyncSettings
from sync_worker.resync.walks import Walk, plan_page

__all__ = ["WalkOutcome", "plan_page", "walk_step"]

logger = logging.getLogger(__name__)

PublishChunk = Callable[[str, str, int], None]


@dataclass(frozen=True)
class WalkOutcome:
    """What a step did and where the walk goes on.

    ``status``: stale (nothing done), paused (backpressure), continue (more pages: re-run
    now), rate_limited (re-run after ``countdown``), error (``error`` at ``page``), walk_done.
    ``page`` is always the next page to read.
    """

    status: str
    page: int
    pages_read: int = 0
    countdown: float | None = None
    finished: bool = False
    error: SyncError | None = None


def walk_step(
    run_id: str,
    gen: int,
    page: int,
    *,
    store: RunStore,
    walk: Walk,
    settings: ResyncSettings,
    publish_chunk: PublishChunk,
) -> WalkOutcome:
    """Read up to ``pages_per_step`` pages of ``walk`` from the checkpoint; a read's error ends the step
    (see above)."""
    pages_read = 0
    for _ in range(settings.pages_per_step):
        record = store.load(run_id)
        if (
            record is None
            or record.status != RUNNING
            or record.gen != gen
            or record.page != page
            or record.walk_done
        ):
            return WalkOutcome("stale", page, pages_read)
        if record.in_flight >= settings.max_in_flight:
            return WalkOutcome("paused", page, pages_read, countdown=settings.backpressure_pause_seconds)
        try:
            listed = walk.read_page(record.cursor)
        except RateLimited as limited:  # our limiter's wait or the upstream's 429
            countdown = max(0.1, limited.retry_after or 1.0)
            return WalkOutcome("rate_limited", page, pages_read, countdown=countdown)
        except SyncError as error:
            return WalkOutcome("error", page, pages_read, error=error)
        if page == 0 and isinstance(listed.total, int):
            store.set_total_estimate(run_id, listed.total)
        entries, counts = walk.plan(listed.items)
        counts["pages"] = 1
        chunks = [
            (f"{page}.{n}", Chunk(tuple(group)))
            for n, group in enumerate(split_evenly(entries, settings.chunk_size))
        ]
        next_cursor = listed.next_cursor
        committed, finished = store.commit_page(
            run_id, gen=gen, page=page, next_cursor=next_cursor, counts=counts, chunks=chunks
        )
        if not committed:
            return WalkOutcome("stale", page, pages_read)
        for chunk_id, chunk in chunks:
            publish_chunk(run_id, chunk_id, chunk.version)
        page += 1
        pages_read += 1
        if next_cursor is None:
            log_event(
                logger, "resync_walk_done", run_id=run_id, walk=walk.name, pages=page, finished=finished
            )
            return WalkOutcome("walk_done", page, pages_read, finished=finished)
    return WalkOutcome("continue", page, pages_read, countdown=0.0)
