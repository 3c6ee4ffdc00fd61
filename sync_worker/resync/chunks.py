"""One chunk: up to 100 entries of a walk (read from the platform in one batch where the walk
needs it), then each one written if changed.

What an entry is and how it is applied is the walk's (:mod:`sync_worker.resync.entries`): for the
clients, an Intercom contact read in one ``POST /v1/clients/lookup`` for the chunk and written by
:meth:`ContactSync.apply_records`; for dealer users, a whole platform user record applied by the
dealer users pipeline (no read). Everything below holds for every walk.

Guarantees:
- a chunk runs only while its run is running and only in its current version (a
  duplicate message, or one for an older version, does nothing and counts nothing);
- a chunk that would write finds the Intercom budget first: when the next token is further
  away than a task may wait inline, the whole chunk is rescheduled for then before any
  platform call, so an exhausted window costs no platform lookups (they would be done again);
- where the walk's entries need it, one batched read for the whole chunk (the integration's
  ``read_batch``: for clients one ``POST /v1/clients/lookup``); each entry then goes through
  its :meth:`ChunkEntries.apply` (or, in a dry run, :meth:`ChunkEntries.preview`, which computes
  and compares but never writes) with ``trigger="schedule"`` and
  ``force_write = not only_changed``;
- the task never blocks on the rate limit or on a slow chunk: a :class:`RateLimitWait`,
  a 429, a transient error, or the chunk's time budget running out stores the contacts not
  done yet as the chunk's next version and asks to be re-run after a countdown (the
  budget: at once, so realtime work can take the slot); transient errors count one
  attempt of the chunk, up to ``SYNC_TASK_MAX_RETRIES``; rate-limit waits count none;
- a platform that cannot be read (the circuit refuses the lookup, or the lookup fails) holds
  the chunk: it is rescheduled, whole, without spending an attempt, for when the circuit lets a
  read through (:meth:`CircuitBreaker.opens_in`, at least a first backoff), so the walk's
  backpressure pauses the run until the platform answers and the run then writes live values;
  no stale value is written and no PUT spent on one. The hold's clock (``held_since``) travels
  with the chunk; a chunk still held after ``max_hold_seconds`` (``SYNC_RATE_LIMIT_MAX_WAIT_SECONDS``)
  hands each of its contacts to ``defer`` (a scheduled stale refresh, :func:`sync_worker.stalerefresh.defer_to_refresh`:
  it reads the platform again later, at most one waiting per contact) and counts them
  ``deferred``, writing nothing: no contact ends a run stale without a refresh to come;
- a permanent error of the batched read (refused as sent, or an answer we cannot read) is the
  platform's contract, not one contact's: it halts the platform (:func:`sync_worker.halts.halt_reason`,
  reason ``contract``, one alert) and the chunk holds, parking no contact;
- a permanent error parks the contact (dead-letter store) and counts it ``failed``; a
  malformed platform record is one (``platform_data_invalid``, :mod:`sync_worker.compute`),
  so it concerns its own contact only: the chunk goes on and spends no attempt; a transient
  one that ran out of attempts does the same;
- while an upstream is halted (:mod:`sync_worker.halts`) the chunk holds: it is re-run after
  the halt's wait, whole or from the contact that met the workspace-wide error (which it halts),
  spending no attempt and parking no contact for it; the outage's hold clock (``held_since``)
  starts afresh after the halt, so the time halted never counts toward deferring;
- a write refused for a named attribute (archived since the names were cached) forgets the
  cached names and re-runs the chunk from that contact (one attempt): the listing then finds
  it, and an archived name halts;
- the counts and the rest of the chunk are recorded in one script, so the run's totals
  are exact however often a chunk is delivered.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sync_worker.circuit import CircuitBreaker
from sync_worker.delivery.decision import retry_countdown
from sync_worker.dispatch import SyncRequest
from sync_worker.errors import SyncError, TransientError
from sync_worker.halts import HaltStore, UpstreamHalted
from sync_worker.intercom import IntercomRateLimited
from sync_worker.platform import PlatformClient, PlatformRateLimited
from sync_worker.platform_circuit import guarded
from sync_worker.ratelimit import RateLimitWait
from sync_worker.resync.entries import Batch, ChunkEntries, ContactEntries
from sync_worker.resync.runs import RUNNING, Chunk, RunStore
from sync_worker.schema import names_may_be_stale

Park = Callable[[SyncRequest, Exception, int], object]
Defer = Callable[[SyncRequest], object]
Backoff = Callable[[int], float]


@dataclass(frozen=True)
class ChunkOutcome:
    """``status``: noop (not this chunk's turn), done, rescheduled (``rest`` after ``countdown``),
    held (rescheduled whole: the platform cannot be read)."""

    status: str
    counts: dict[str, int] = field(default_factory=dict)
    rest: Chunk | None = None
    countdown: float = 0.0
    finished: bool = False


class _Reschedule(Exception):
    def __init__(
        self, countdown: float, *, attempt_used: bool, held_since: float | None = None, hold: bool = False
    ):
        super().__init__(countdown)
        self.countdown = countdown
        self.attempt_used = attempt_used
        self.held_since = held_since  # the chunk's hold clock, kept across rate-limit waits
        self.hold = hold  # the platform cannot be read


@dataclass
class ChunkRunner:
    """Everything a chunk needs, passed in (the task builds it from the process's runtime)."""

    store: RunStore
    platform: PlatformClient
    circuit: CircuitBreaker
    #: the integration's pipeline (the clients': a :class:`~sync_worker.sync.ContactSync`)
    contact_sync: Any
    park: Park
    backoff: Backoff
    max_retries: int
    time_budget_seconds: float
    #: Seconds until the Intercom limiter would grant a token (0.0: now); takes nothing.
    intercom_wait: Callable[[], float] = lambda: 0.0
    #: Longer waits than this are served by rescheduling, not by blocking the task.
    max_inline_wait: float = 2.0
    clock: Callable[[], float] = time.monotonic
    #: Hands a contact a scheduled stale refresh (a chunk held past ``max_hold_seconds``).
    defer: Defer = lambda request: None
    #: How long a chunk is held for an unreadable platform before its contacts are deferred.
    max_hold_seconds: float = 6 * 3600.0
    #: Epoch seconds: a hold's clock, read by whichever worker runs the chunk next.
    wall_clock: Callable[[], float] = time.time
    #: The workspace's halts; None: this runner never holds for one (tests of the chunk alone).
    halts: HaltStore | None = None
    #: What the chunk's entries are (the walk's); None: Intercom contacts (:class:`ContactEntries`).
    entries: ChunkEntries | None = None

    def __post_init__(self) -> None:
        if self.entries is None:
            self.entries = ContactEntries(self.contact_sync)

    @property
    def _entries(self) -> ChunkEntries:
        assert self.entries is not None
        return self.entries

    def run(self, run_id: str, chunk_id: str, version: int) -> ChunkOutcome:
        record = self.store.load(run_id)
        chunk = self.store.chunk(run_id, chunk_id)
        if record is None or record.status != RUNNING or chunk is None or chunk.version != version:
            return ChunkOutcome("noop")
        counts: Counter[str] = Counter()
        held = self._held(run_id, chunk)
        if held is not None:
            return self._record(run_id, chunk_id, chunk, counts, 0, held)
        if not record.dry_run:
            wait = self.intercom_wait()
            if wait > self.max_inline_wait:
                budget = _Reschedule(wait, attempt_used=False, held_since=chunk.held_since)
                return self._record(run_id, chunk_id, chunk, counts, 0, budget)
        entries = self._entries
        try:
            records = self._lookup(chunk) if entries.batched else {}
        except _Reschedule as wait:
            return self._record(run_id, chunk_id, chunk, counts, 0, wait)
        except SyncError as error:  # permanent: the batch cannot be read as sent
            held = self._held(run_id, chunk, error, batch=True)  # the platform's contract: a halt
            if held is not None:
                return self._record(run_id, chunk_id, chunk, counts, 0, held)
            for entry in chunk.contacts:
                self._fail(
                    counts, entries.request(entry, only_changed=record.only_changed), error, chunk.attempt
                )
            return self._record(run_id, chunk_id, chunk, counts, len(chunk.contacts), None)
        if records is None:  # held past the bound: a refresh per contact, no stale write
            for entry in chunk.contacts:
                if not record.dry_run:
                    self.defer(entries.request(entry, only_changed=record.only_changed))
                counts["deferred"] += 1
            return self._record(run_id, chunk_id, chunk, counts, len(chunk.contacts), None)
        deadline = self.clock() + self.time_budget_seconds
        for index, entry in enumerate(chunk.contacts):
            if index and self.clock() > deadline:
                return self._record(
                    run_id, chunk_id, chunk, counts, index, _Reschedule(0.0, attempt_used=False)
                )
            request = entries.request(entry, only_changed=record.only_changed)
            try:
                if record.dry_run:
                    status, written = entries.preview(entry, records, request)
                else:
                    status, written = entries.apply(entry, records, request)
            except RateLimitWait as wait:
                return self._record(
                    run_id, chunk_id, chunk, counts, index, _Reschedule(wait.retry_in, attempt_used=False)
                )
            except IntercomRateLimited as limited:
                return self._record(
                    run_id,
                    chunk_id,
                    chunk,
                    counts,
                    index,
                    _Reschedule(limited.retry_after, attempt_used=False),
                )
            except Exception as error:  # a bug in one contact must not stall the run
                held = self._held(run_id, chunk, error)
                if held is not None:
                    return self._record(run_id, chunk_id, chunk, counts, index, held)
                if names_may_be_stale(error) and chunk.attempt < self.max_retries:
                    entries.forget_names()  # archived since it was cached: list it again
                    return self._record(
                        run_id, chunk_id, chunk, counts, index, _Reschedule(0.0, attempt_used=True)
                    )
                countdown = retry_countdown(
                    error, chunk.attempt, max_retries=self.max_retries, backoff=self.backoff
                )
                if countdown is not None:  # the decision every task shares (a bug in one contact: retried)
                    return self._record(
                        run_id, chunk_id, chunk, counts, index, _Reschedule(countdown, attempt_used=True)
                    )
                self._fail(counts, request, error, chunk.attempt)
                continue
            counts[status] += 1
            if written:  # (a dry run: would be)
                counts["written"] += 1
        return self._record(run_id, chunk_id, chunk, counts, len(chunk.contacts), None)

    # --- steps ------------------------------------------------------------------------------

    def _held(
        self, run_id: str, chunk: Chunk, error: BaseException | None = None, *, batch: bool = False
    ) -> _Reschedule | None:
        """The wait when an upstream is halted (or ``error`` halts one now; ``batch``: it answered
        the chunk's batched read), else None. A halt restarts the chunk's outage hold clock: the
        time halted never counts toward deferring its contacts."""
        if self.halts is None:
            return None
        try:
            if error is None:
                self.halts.check()
                return None
            halted = self.halts.escalate(error, batch=batch, run_id=run_id)
        except UpstreamHalted as found:
            halted = found
        if halted is None:
            return None
        return _Reschedule(halted.retry_after or 1.0, attempt_used=False, held_since=None, hold=True)

    def _lookup(self, chunk: Chunk) -> Batch | None:
        """The chunk's records by normalised identity; a hold (:class:`_Reschedule`) while the
        platform cannot be read; None once it has been held ``max_hold_seconds``."""
        unreadable: SyncError | None = None
        admission = self.circuit.admit()
        if admission is not None:
            try:
                with guarded(self.circuit, admission):  # every end settles the circuit, a probe's too
                    return self._entries.read_batch(self.platform, chunk.contacts)
            except RateLimitWait as wait:
                raise _Reschedule(wait.retry_in, attempt_used=False, held_since=chunk.held_since) from None
            except PlatformRateLimited as limited:
                raise _Reschedule(
                    limited.retry_after, attempt_used=False, held_since=chunk.held_since
                ) from None
            except self._entries.unreadable as error:
                unreadable = error if isinstance(error, SyncError) else TransientError(str(error))
        now = self.wall_clock()
        held_since = now if chunk.held_since is None else chunk.held_since
        if now - held_since >= self.max_hold_seconds:
            return None
        # Not before the open circuit lets a read through; a failed read waits a first backoff.
        countdown = max(self.circuit.opens_in(), self.backoff(0))
        if isinstance(unreadable, TransientError) and unreadable.retry_after:
            countdown = max(countdown, unreadable.retry_after)
        raise _Reschedule(countdown, attempt_used=False, held_since=held_since, hold=True)

    def _fail(self, counts: Counter[str], request: SyncRequest, error: Exception, attempt: int) -> None:
        self.park(request, error, attempt + 1)
        counts["failed"] += 1

    def _record(
        self,
        run_id: str,
        chunk_id: str,
        chunk: Chunk,
        counts: Counter[str],
        done: int,
        wait: _Reschedule | None,
    ) -> ChunkOutcome:
        rest = None
        if wait is not None and done < len(chunk.contacts):
            attempt = chunk.attempt + 1 if wait.attempt_used else chunk.attempt
            rest = chunk.rest(done, attempt=attempt, held_since=wait.held_since)
        recorded, finished = self.store.record_chunk(run_id, chunk_id, chunk.version, counts, rest)
        if not recorded:
            return ChunkOutcome("noop", dict(counts))
        if rest is None:
            return ChunkOutcome("done", dict(counts), finished=finished)
        status = "held" if wait is not None and wait.hold else "rescheduled"
        return ChunkOutcome(status, dict(counts), rest, wait.countdown if wait else 0.0)
