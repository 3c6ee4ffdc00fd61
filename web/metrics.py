"""Request counters and latencies of the receiver, shared by every web process through Redis.

Guarantees:
- a request's counts are gathered while it runs (:func:`count`) and, at its end,
  added to its process's buffer (:meth:`RedisMetrics.record`: memory only, no
  round trip on the request path); :class:`sync_worker.countbuffer.CountBuffer`
  writes them to one Redis hash per metric in the background, so every receiver
  process adds to the same numbers, a Redis outage loses none while the process
  lives, and metrics never fail a request;
- :meth:`RedisMetrics.snapshot` writes this process's buffer first, so ``/metrics``
  never misses its own process's requests and Redis is at most one flush interval
  behind every other process;
- what ``/metrics`` makes of a snapshot (counters ``intercom_sync_web_<name>_total``,
  the histogram ``intercom_sync_web_request_duration_seconds`` per route) is
  :mod:`web.exposition`'s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import redis as redis_lib
from flask import g

from sync_worker.countbuffer import FLUSH_INTERVAL_SECONDS, CountBuffer, decode_hash, label_field
from web import keys

__all__ = ["BUCKETS", "COUNTERS", "FLUSH_INTERVAL_SECONDS", "LATENCY", "RedisMetrics", "Snapshot", "count"]

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
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def count(name: str, **labels: str) -> None:
    """Add one to ``name`` with ``labels`` for the current request (written at its end)."""
    if name not in COUNTERS:
        raise KeyError(f"unknown metric {name!r}")
    g.setdefault("metric_counts", []).append((name, label_field(labels)))


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


class RedisMetrics(CountBuffer):
    """One web process's metrics: buffered in memory, written to Redis by a background thread."""

    def __init__(self, client: redis_lib.Redis, *, flush_interval: float = FLUSH_INTERVAL_SECONDS):
        super().__init__(client, flush_interval=flush_interval)
        self._client = client

    def record(self, counts: Iterable[tuple[str, str]], *, route: str, seconds: float) -> None:
        """Add a request's counts and its latency to this process's buffer (no I/O; never raises)."""
        route_field = label_field({"route": route})
        self.add(
            counts=[
                *((keys.metric(name), labels) for name, labels in counts),
                (keys.metric(f"{LATENCY}:bucket"), label_field({"route": route, "le": bucket_for(seconds)})),
                (keys.metric(f"{LATENCY}:count"), route_field),
            ],
            sums=[(keys.metric(f"{LATENCY}:sum"), route_field, seconds)],
        )

    def snapshot(self) -> Snapshot:
        """Write this process's buffer, then read every metric (raises :class:`redis.RedisError`
        when Redis cannot be read)."""
        self.flush()
        names = list(COUNTERS)
        pipe = self._client.pipeline(transaction=False)
        for name in names:
            pipe.hgetall(keys.metric(name))
        for part in ("bucket", "sum", "count"):
            pipe.hgetall(keys.metric(f"{LATENCY}:{part}"))
        results = [decode_hash(raw) for raw in pipe.execute()]
        return Snapshot(
            counters=dict(zip(names, results[: len(names)], strict=True)),
            buckets=results[-3],
            sums=results[-2],
            counts=results[-1],
        )
