"""Counts added in memory and written to Redis hashes in the background, shared by every process.

Why our own: ``prometheus_client`` keeps its counters in the memory of one process (its
multiprocess mode writes files on one host); the receivers and the Celery pool
children run in many processes, possibly on other hosts than the web, so they add their counts
to Redis, and ``/metrics`` reads them there (:mod:`web.exposition`).

Guarantees:
- a count lives in a Redis hash (one per metric, ``HINCRBY`` / ``HINCRBYFLOAT`` per field,
  the field being a label set), so every process adds to the same numbers and a restart
  keeps them;
- :meth:`CountBuffer.add` only adds to this process's buffer (memory, no round trip, never
  raises): nothing on a request's or a sync's path waits on Redis for a metric; a background
  thread writes the buffer every ``flush_interval`` seconds in one Lua script call;
- a write that fails is logged once (without data) and its counts are kept for the next one
  (the buffer is bounded by the label sets, which are low-cardinality): metrics never fail the
  work they count, and a Redis outage loses none of them while the process lives;
- a forked child (a Celery pool child, a pre-forking server's worker) starts with an empty buffer and a
  flusher of its own: what the parent had buffered is written by the parent only, never twice;
- a process that exits through ``atexit`` writes what it still holds; one that ends with
  ``os._exit`` (a Celery pool child) calls :meth:`CountBuffer.flush` from its shutdown hook.
"""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping

import redis as redis_lib

from sync_worker.logs import log_event

logger = logging.getLogger(__name__)

#: How often each process writes its buffered counts to Redis.
FLUSH_INTERVAL_SECONDS = 0.25


@functools.lru_cache(maxsize=1024)
def _field_of(items: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(dict(items), separators=(",", ":"))


def label_field(labels: Mapping[str, str]) -> str:
    """The hash field of a label set: its labels as JSON, sorted (label values are low-cardinality)."""
    return _field_of(tuple(sorted(labels.items())))


def decode_hash(raw: Mapping[bytes | str, bytes | str]) -> dict[str, float]:
    """An ``HGETALL`` reply of a count hash -> {field: number} (pure)."""

    def text(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else value

    return {text(k): float(text(v)) for k, v in raw.items()}


# KEYS: the hashes to add to; ARGV: for each key, its field then the amount (integers, then the
# float amounts after the ``ARGV[1]``-th key). ARGV[1]: how many keys take HINCRBY.
_FLUSH = """
local integers = tonumber(ARGV[1])
for i = 1, #KEYS do
  local field, amount = ARGV[2 * i], ARGV[2 * i + 1]
  if i <= integers then redis.call('HINCRBY', KEYS[i], field, amount)
  else redis.call('HINCRBYFLOAT', KEYS[i], field, amount) end
end
return #KEYS
"""


class CountBuffer:
    """One process's counts: buffered in memory, written to Redis by a background thread."""

    def __init__(self, client: redis_lib.Redis, *, flush_interval: float = FLUSH_INTERVAL_SECONDS):
        self._redis = client
        self._flush_script = client.register_script(_FLUSH)
        self._interval = flush_interval
        self._lock = threading.Lock()  # the buffer
        self._flush_lock = threading.Lock()  # one write at a time: a flush returns once earlier ones landed
        self._counts: Counter[tuple[str, str]] = Counter()  # (hash key, field) -> increments
        self._sums: Counter[tuple[str, str]] = Counter()  # (hash key, field) -> float amounts
        self._flusher_pid: int | None = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing = False

    def add(
        self,
        counts: Iterable[tuple[str, str]] = (),
        sums: Iterable[tuple[str, str, float]] = (),
    ) -> None:
        """Add one to each ``(hash key, field)`` of ``counts`` and each ``(key, field, amount)`` of
        ``sums`` to this process's buffer (no I/O; never raises)."""
        if self._flusher_pid != os.getpid() and not self._stop.is_set():
            self._start_flusher()  # first use in this process (gunicorn and Celery fork after import)
        with self._lock:
            for key_field in counts:
                self._counts[key_field] += 1
            for key, field, amount in sums:
                self._sums[(key, field)] += amount

    def _start_flusher(self) -> None:
        pid = os.getpid()
        if self._flusher_pid is not None and self._flusher_pid != pid:
            # A forked child: the parent's buffer is the parent's to write, and its locks may have
            # been held by a thread that does not exist here.
            self._lock, self._flush_lock = threading.Lock(), threading.Lock()
            self._counts, self._sums = Counter(), Counter()
        with self._lock:
            if self._flusher_pid == pid:
                return
            self._flusher_pid = pid
            self._stop = threading.Event()  # a forked child starts with its own, unset
            self._flusher = threading.Thread(target=self._flush_forever, name="metrics-flusher", daemon=True)
        self._flusher.start()
        atexit.register(self._flush_at_exit)  # a process that exits cleanly writes what it still holds

    def _flush_forever(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def _flush_at_exit(self) -> None:
        self.flush(quiet=True)

    def close(self) -> None:
        """Stop this process's flusher and write what the buffer still holds (quietly: never raises).

        For a user that is done (tests start many); a process that simply exits needs no call."""
        self._stop.set()
        flusher = self._flusher
        if flusher is not None and self._flusher_pid == os.getpid():
            flusher.join()
            atexit.unregister(self._flush_at_exit)
        self.flush(quiet=True)

    def flush(self, *, quiet: bool = False) -> bool:
        """Write the buffer to Redis in one script call; on failure keep it for the next (never raises).

        A failure is logged once, when writes start failing (not every interval while Redis is away);
        ``quiet`` logs nothing (at exit, when the log streams may be closed). It returns only once
        every count added before it is in Redis or back in the buffer (a background write under
        way is waited for), so a reader right after it sees them all."""
        with self._flush_lock:
            return self._flush(quiet)

    def _flush(self, quiet: bool) -> bool:
        with self._lock:
            counts, sums = self._counts, self._sums
            self._counts, self._sums = Counter(), Counter()
        if not counts and not sums:
            return True
        entries = [*counts.items(), *sums.items()]
        args: list[str | int] = [len(counts)]
        for (_, field), amount in entries:
            args += [field, amount if isinstance(amount, int) else repr(float(amount))]
        try:
            self._flush_script(keys=[key for (key, _), _ in entries], args=args)
        except redis_lib.RedisError as exc:
            with self._lock:
                self._counts.update(counts)
                self._sums.update(sums)
            if not quiet and not self._failing:
                log_event(logger, "metrics_write_failed", logging.WARNING, exc_type=type(exc).__name__)
            self._failing = True
            return False
        if self._failing and not quiet:
            log_event(logger, "metrics_write_recovered")
        self._failing = False
        return True
