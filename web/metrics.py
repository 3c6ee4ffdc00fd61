"""Request counters and latencies, shared by every web process through Redis.

Guarantees:
- counts live in Redis hashes (one per metric, ``HINCRBY`` per label set), so all
  gunicorn workers add to the same numbers and a restart keeps them;
- a request's counts are gathered while it runs (:func:`count`) and, at its end,
  added to its process's buffer (:meth:`RedisMetrics.record`: memory only, no
  round trip on the request path); a background thread writes the buffer every
  :data:`FLUSH_INTERVAL_SECONDS` in one Lua script call, and :meth:`RedisMetrics.snapshot`
  writes this process's buffer first, so Redis is at most one interval behind
  every process and ``/metrics`` never misses its own process's requests;
- a write that fails is logged (without data) and its counts are kept for the next
  one (the buffer is bounded by the label sets, which are low-cardinality): metrics
  never fail a request, and a Redis outage loses none of them while the process lives;
- :func:`render` turns a snapshot into Prometheus text format (pure): counters
  ``intercom_sync_web_<name>_total`` and the histogram
  ``intercom_sync_web_request_duration_seconds`` per route.
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
from dataclasses import dataclass, field

import redis as redis_lib
from flask import g

from sync_worker.logs import log_event
from web import keys

logger = logging.getLogger(__name__)

NAMESPACE = "intercom_sync_web"

#: Counter name -> help text. Labels are free per call (low-cardinality values only).
COUNTERS: dict[str, str] = {
    "accepted": "Requests answered with a non-error status, by route.",
    "rejected": "Requests refused or failed, by error code.",
    "queued": "Syncs queued, by source.",
    "folded": "Triggers folded into a sync already waiting, by source.",
    "skipped": "Triggers acknowledged without a sync, by source and reason.",
    "duplicate": "Webhook notifications already seen.",
    "connector_answers": "Data connector answers, by freshness (live or stale) and why stale.",
}
LATENCY = "request_duration_seconds"
#: How often each process writes its buffered counts to Redis.
FLUSH_INTERVAL_SECONDS = 0.25
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@functools.lru_cache(maxsize=1024)
def _field_of(items: tuple[tuple[str, str], ...]) -> str:
    return json.dumps(dict(items), separators=(",", ":"))


def _field(labels: Mapping[str, str]) -> str:
    """The hash field of a label set: its labels as JSON, sorted (label values are low-cardinality)."""
    return _field_of(tuple(sorted(labels.items())))


def count(name: str, **labels: str) -> None:
    """Add one to ``name`` with ``labels`` for the current request (written at its end)."""
    if name not in COUNTERS:
        raise KeyError(f"unknown metric {name!r}")
    g.setdefault("metric_counts", []).append((name, _field(labels)))


def bucket_for(seconds: float) -> str:
    """The upper bound (``le``) of the histogram bucket ``seconds`` falls in."""
    for bound in BUCKETS:
        if seconds <= bound:
            return repr(bound)
    return "+Inf"


@dataclass
class Snapshot:
    """Every metric's hash as read from Redis: name -> {labels json: value}."""

    counters: dict[str, dict[str, float]] = field(default_factory=dict)
    buckets: dict[str, float] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)
    counts: dict[str, float] = field(default_factory=dict)


# KEYS: the hashes to add to; ARGV: for each key, its field then the amount (integers, then the
# latency sums as floats after the ``ARGV[1]``-th key). ARGV[1]: how many keys take HINCRBY.
_FLUSH = """
local integers = tonumber(ARGV[1])
for i = 1, #KEYS do
  local field, amount = ARGV[2 * i], ARGV[2 * i + 1]
  if i <= integers then redis.call('HINCRBY', KEYS[i], field, amount)
  else redis.call('HINCRBYFLOAT', KEYS[i], field, amount) end
end
return #KEYS
"""


class RedisMetrics:
    """One process's metrics: buffered in memory, written to Redis by a background thread."""

    def __init__(self, client: redis_lib.Redis, *, flush_interval: float = FLUSH_INTERVAL_SECONDS):
        self._redis = client
        self._flush_script = client.register_script(_FLUSH)
        self._interval = flush_interval
        self._lock = threading.Lock()  # the buffer
        self._flush_lock = threading.Lock()  # one write at a time: a flush returns once earlier ones landed
        self._counts: Counter[tuple[str, str]] = Counter()  # (hash key, field) -> increments
        self._sums: Counter[tuple[str, str]] = Counter()  # (hash key, field) -> seconds
        self._flusher_pid: int | None = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._failing = False

    def record(self, counts: Iterable[tuple[str, str]], *, route: str, seconds: float) -> None:
        """Add a request's counts and its latency to this process's buffer (no I/O; never raises)."""
        route_field = _field({"route": route})
        with self._lock:
            for name, labels in counts:
                self._counts[(keys.metric(name), labels)] += 1
            self._counts[
                (keys.metric(f"{LATENCY}:bucket"), _field({"route": route, "le": bucket_for(seconds)}))
            ] += 1
            self._counts[(keys.metric(f"{LATENCY}:count"), route_field)] += 1
            self._sums[(keys.metric(f"{LATENCY}:sum"), route_field)] += seconds
        if self._flusher_pid != os.getpid() and not self._stop.is_set():
            self._start_flusher()  # first use in this process (gunicorn forks after import)

    def _start_flusher(self) -> None:
        with self._lock:
            if self._flusher_pid == os.getpid():
                return
            self._flusher_pid = os.getpid()
            self._stop = threading.Event()  # a forked child starts with its own, unset
            self._flusher = threading.Thread(target=self._flush_forever, name="metrics-flusher", daemon=True)
        self._flusher.start()
        atexit.register(self._flush_at_exit)  # a worker that exits cleanly writes what it still holds

    def _flush_forever(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def _flush_at_exit(self) -> None:
        self.flush(quiet=True)

    def close(self) -> None:
        """Stop this process's flusher and write what the buffer still holds (quietly: never raises).

        For an app that is done serving (tests start many); a process that simply exits needs no call."""
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
        every count recorded before it is in Redis or back in the buffer (a background write under
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
        for (_, labels), amount in entries:
            args += [labels, amount if isinstance(amount, int) else repr(float(amount))]
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

    def snapshot(self) -> Snapshot:
        """Write this process's buffer, then read every metric (raises :class:`redis.RedisError`
        when Redis cannot be read)."""
        self.flush()
        names = list(COUNTERS)
        pipe = self._redis.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.metric(name))
        for part in ("bucket", "sum", "count"):
            pipe.hgetall(keys.metric(f"{LATENCY}:{part}"))
        results = [_decode(raw) for raw in pipe.execute()]
        return Snapshot(
            counters=dict(zip(names, results[: len(names)], strict=True)),
            buckets=results[-3],
            sums=results[-2],
            counts=results[-1],
        )


def _decode(raw: Mapping[bytes | str, bytes | str]) -> dict[str, float]:
    def text(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else value

    return {text(k): float(text(v)) for k, v in raw.items()}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{name}="{_escape(str(value))}"' for name, value in labels.items())
    return "{" + inner + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def render(snapshot: Snapshot) -> str:
    """Prometheus text exposition format 0.0.4 of ``snapshot`` (pure)."""
    lines: list[str] = []
    for name, help_text in COUNTERS.items():
        metric = f"{NAMESPACE}_{name}_total"
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} counter"]
        for labels_json, value in sorted(snapshot.counters.get(name, {}).items()):
            lines.append(f"{metric}{_labels(json.loads(labels_json))} {_number(value)}")
    metric = f"{NAMESPACE}_{LATENCY}"
    lines += [f"# HELP {metric} Time to answer a request, by route.", f"# TYPE {metric} histogram"]
    per_route: dict[str, dict[str, float]] = {}
    for labels_json, value in snapshot.buckets.items():
        labels = json.loads(labels_json)
        per_route.setdefault(labels["route"], {})[labels["le"]] = value
    for route_json in sorted(set(snapshot.counts) | {_field({"route": r}) for r in per_route}):
        route = json.loads(route_json)["route"]
        observed = per_route.get(route, {})
        cumulative = 0.0
        for bound in [*(repr(b) for b in BUCKETS), "+Inf"]:
            cumulative += observed.get(bound, 0.0)
            lines.append(f"{metric}_bucket{_labels({'route': route, 'le': bound})} {_number(cumulative)}")
        lines.append(f"{metric}_sum{_labels({'route': route})} {_number(snapshot.sums.get(route_json, 0.0))}")
        lines.append(
            f"{metric}_count{_labels({'route': route})} {_number(snapshot.counts.get(route_json, 0.0))}"
        )
    return "\n".join(lines) + "\n"
