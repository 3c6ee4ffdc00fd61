"""Request counters and latencies, shared by every web process through Redis.

Guarantees:
- counts live in Redis hashes (one per metric, ``HINCRBY`` per label set), so all
  gunicorn workers add to the same numbers and a restart keeps them;
- a request's counts are buffered (:func:`count`) and written at the end of the
  request in one Lua script call (:meth:`RedisMetrics.flush`: one round trip, no
  pipeline object built per request); a failed write is logged
  (without data) and dropped: metrics never fail a request;
- :func:`render` turns a snapshot into Prometheus text format (pure): counters
  ``intercom_sync_web_<name>_total`` and the histogram
  ``intercom_sync_web_request_duration_seconds`` per route.
"""

from __future__ import annotations

import functools
import json
import logging
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


# KEYS: the hashes to add to; ARGV: one field per key, then the latency sum's field and seconds.
# The last key is the latency sum (HINCRBYFLOAT); every other key gets HINCRBY 1.
_FLUSH = """
local n = #KEYS
for i = 1, n - 1 do redis.call('HINCRBY', KEYS[i], ARGV[i], 1) end
redis.call('HINCRBYFLOAT', KEYS[n], ARGV[n], ARGV[n + 1])
return n
"""


class RedisMetrics:
    def __init__(self, client: redis_lib.Redis):
        self._redis = client
        self._flush = client.register_script(_FLUSH)

    def flush(self, counts: Iterable[tuple[str, str]], *, route: str, seconds: float) -> None:
        """Write the request's counts and its latency in one script call (one round trip); never raises."""
        route_field = _field({"route": route})
        pairs = list(counts)
        names = [keys.metric(name) for name, _ in pairs]
        fields = [labels for _, labels in pairs]
        names += [
            keys.metric(f"{LATENCY}:bucket"),
            keys.metric(f"{LATENCY}:count"),
            keys.metric(f"{LATENCY}:sum"),
        ]
        fields += [_field({"route": route, "le": bucket_for(seconds)}), route_field, route_field]
        try:
            self._flush(keys=names, args=[*fields, repr(seconds)])
        except redis_lib.RedisError as exc:
            log_event(logger, "metrics_write_failed", logging.WARNING, exc_type=type(exc).__name__)

    def snapshot(self) -> Snapshot:
        """Read every metric (raises :class:`redis.RedisError` when Redis cannot be read)."""
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
