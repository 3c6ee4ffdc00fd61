"""``/metrics``: the receiver's and the workers' figures, exposed by ``prometheus_client``.

Guarantees:
- :class:`ServiceCollector` is a ``prometheus_client`` custom collector: each scrape
  reads the figures from Redis (every web process's and every worker's counts, the
  gauges of :mod:`web.service_state`) and yields ``prometheus_client``'s metric
  families; :func:`exposition` renders them with ``generate_latest`` from a registry of
  the app's own (never the process-global default registry), in the text format 0.0.4;
- the receiver's names are those ``/metrics`` served before it used ``prometheus_client``
  (``intercom_sync_web_<name>_total``, ``intercom_sync_web_request_duration_seconds``);
- turning what was read into families is pure (:func:`web_families`, :func:`counter_families`,
  :func:`state_families`, :func:`referral_families`); a figure not recorded is an absent sample
  (an empty family), never a zero; a Redis that cannot be read raises :class:`redis.RedisError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import redis as redis_lib
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from sync_worker import servicemetrics
from sync_worker.circuit import CLOSED, HALF_OPEN, OPEN
from sync_worker.countbuffer import label_field
from sync_worker.referral_intake.status import IntakeStatus
from sync_worker.runtime import Runtime
from web.metrics import BUCKETS, COUNTERS, LATENCY, NAMESPACE, RedisMetrics, Snapshot
from web.service_state import ServiceState, read_service_state

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
#: The prefix of every figure that is not the receiver's own.
SERVICE = "intercom_sync"
CIRCUIT = "platform"


def _counter(
    name: str, documentation: str, values: Mapping[str, float], order: tuple[str, ...] = ()
) -> Metric:
    """A counter family from a count hash ({labels json: value}); labels in ``order`` first."""
    family = Metric(name, documentation, "counter")
    for labels_json, value in sorted(values.items()):
        labels = json.loads(labels_json)
        ordered = {**{k: labels[k] for k in order if k in labels}, **labels}
        family.add_sample(f"{name}_total", ordered, value)
    return family


def web_families(snapshot: Snapshot) -> Iterator[Metric]:
    """The receiver's counters and its latency histogram per route."""
    for name, documentation in COUNTERS.items():
        yield _counter(f"{NAMESPACE}_{name}", documentation, snapshot.counters.get(name, {}))
    histogram = HistogramMetricFamily(
        f"{NAMESPACE}_{LATENCY}", "Time to answer a request, by route.", labels=["route"]
    )
    per_route: dict[str, dict[str, float]] = {}
    for labels_json, value in snapshot.buckets.items():
        labels = json.loads(labels_json)
        per_route.setdefault(labels["route"], {})[labels["le"]] = value
    routes = {json.loads(route_json)["route"] for route_json in snapshot.counts} | set(per_route)
    for route in sorted(routes):
        observed = per_route.get(route, {})
        cumulative, buckets = 0.0, []
        for bound in [*(repr(b) for b in BUCKETS), "+Inf"]:
            cumulative += observed.get(bound, 0.0)
            buckets.append((bound, cumulative))
        histogram.add_metric([route], buckets, snapshot.sums.get(label_field({"route": route}), 0.0))
    yield histogram


def counter_families(counters: Mapping[str, Mapping[str, float]]) -> Iterator[Metric]:
    """The workers' counters (:data:`sync_worker.servicemetrics.COUNTERS`)."""
    for name, (documentation, labels) in servicemetrics.COUNTERS.items():
        yield _counter(f"{SERVICE}_{name}", documentation, counters.get(name, {}), labels)


def _gauge(name: str, documentation: str, value: float | None = None, **labels: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{SERVICE}_{name}", documentation, labels=list(labels))
    if value is not None:
        family.add_metric(list(labels.values()), value)
    return family


def _labelled(name: str, documentation: str, label: str, values: Mapping[str, float]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{SERVICE}_{name}", documentation, labels=[label])
    for key, value in values.items():
        family.add_metric([key], value)
    return family


def state_families(state: ServiceState) -> Iterator[Metric]:
    """The gauges: queues, dead letters, circuit, rate limits, halts, each integration's latest re-sync run,
    the referral intake's walk and backstop."""
    yield _labelled("queue_depth", "Messages waiting on each queue.", "queue", state.queue_depths)
    yield _gauge(
        "queue_unacked_messages",
        "Messages a worker has taken and not acknowledged yet (running, or held for a countdown).",
        state.unacked,
    )
    yield _gauge("dead_letters", "Contacts parked in the dead-letter store.", state.dead_letters)
    circuit = GaugeMetricFamily(
        f"{SERVICE}_circuit_state",
        "The circuit breaker's state: 1 for the state it is in, 0 for the others.",
        labels=["circuit", "state"],
    )
    for name in (CLOSED, OPEN, HALF_OPEN):
        circuit.add_metric([CIRCUIT, name], 1.0 if state.circuit.state == name else 0.0)
    yield circuit
    yield _gauge(
        "circuit_failures",
        "Failed reads the circuit breaker counts within its window.",
        state.circuit.failures,
        circuit=CIRCUIT,
    )
    yield _labelled(
        "rate_limit_wait_seconds",
        "Seconds until the shared rate limiter grants the next token (0: one is free now).",
        "upstream",
        {name: budget.wait for name, budget in state.budgets.items()},
    )
    yield _labelled(
        "rate_limit_used",
        "Tokens taken in the rate limiter's current window, by upstream.",
        "upstream",
        {name: float(budget.used) for name, budget in state.budgets.items()},
    )
    yield _labelled(
        "rate_limit_limit",
        "Tokens the rate limiter allows per window (the upstream's own limit when it reported one).",
        "upstream",
        {name: float(budget.limit) for name, budget in state.budgets.items()},
    )
    yield _labelled(
        "upstream_halted",
        "1 while consumption from an upstream is halted by a workspace-wide failure.",
        "upstream",
        {name: 1.0 if halted else 0.0 for name, halted in state.halted.items()},
    )
    yield from resync_families(state.resync)
    yield from referral_families(state.referral)


def resync_families(runs: Mapping[str, Mapping[str, object]]) -> Iterator[Metric]:
    """Each integration's latest re-sync run (the admin API's summary), labelled ``integration``;
    empty families before the first run of any."""
    info = GaugeMetricFamily(
        f"{SERVICE}_resync_run_info",
        "The latest bulk re-sync run of each integration (value 1).",
        labels=["integration", "run_id", "status", "trigger"],
    )
    for integration, run in sorted(runs.items()):
        info.add_metric([integration, str(run["id"]), str(run["status"]), str(run["trigger"])], 1.0)
    yield info
    running = GaugeMetricFamily(
        f"{SERVICE}_resync_running",
        "1 while the integration's bulk re-sync run is running.",
        labels=["integration"],
    )
    for integration, run in sorted(runs.items()):
        running.add_metric([integration], 1.0 if run["status"] == "running" else 0.0)
    yield running
    contacts = GaugeMetricFamily(
        f"{SERVICE}_resync_contacts",
        "The latest run's contacts by count (seen, written, unchanged, failed, ...).",
        labels=["integration", "count"],
    )
    for integration, run in sorted(runs.items()):
        counts = run.get("counts") or {}
        assert isinstance(counts, Mapping)
        for count, value in counts.items():
            contacts.add_metric([integration, count], float(value))
    yield contacts
    figures = {
        "resync_done_contacts": ("done", "Contacts the latest run has finished with."),
        "resync_total_contacts": ("total_estimate", "Contacts the latest run expects (absent when unknown)."),
        "resync_progress_ratio": (
            "fraction",
            "The latest run's fraction done, 0 to 1 (absent when unknown).",
        ),
        "resync_in_flight_chunks": ("in_flight_chunks", "The latest run's chunks queued and not finished."),
        "resync_eta_seconds": (
            "eta_seconds",
            "Seconds the latest run still needs at its rate (absent when unknown).",
        ),
        "resync_started_timestamp_seconds": ("started_at", "When the latest run started (Unix time)."),
    }
    for name, (field, documentation) in figures.items():
        family = GaugeMetricFamily(f"{SERVICE}_{name}", documentation, labels=["integration"])
        for integration, run in sorted(runs.items()):
            value = run.get(field)
            if value is not None:
                family.add_metric([integration], float(value))  # type: ignore[arg-type]
        yield family


def _last_end(name: str, what: str, record: Mapping[str, object] | None) -> GaugeMetricFamily:
    """When the latest run of ``what`` ended (Unix time), labelled with its status and error code."""
    family = GaugeMetricFamily(
        f"{SERVICE}_{name}",
        f"When the latest {what} ended (Unix time), by its status (finished, failed) and error code.",
        labels=["status", "error_code"],
    )
    if record is not None and record.get("ended_at") is not None:
        labels = [str(record.get("status")), str(record.get("error_code") or "none")]
        family.add_metric(labels, float(record["ended_at"]))  # type: ignore[arg-type]
    return family


def _record_counts(
    name: str, documentation: str, record: Mapping[str, object] | None, fields: tuple[str, ...]
) -> GaugeMetricFamily:
    """The ``fields`` of a run's record that it has, labelled ``count``."""
    family = GaugeMetricFamily(f"{SERVICE}_{name}", documentation, labels=["count"])
    for field in fields:
        value = (record or {}).get(field)
        if value is not None:
            family.add_metric([field], float(value))  # type: ignore[arg-type]
    return family


def referral_families(intake: IntakeStatus | None) -> Iterator[Metric]:
    """The referral intake's reconciliation walk and qualification backstop (what
    :func:`sync_worker.referral_intake.status.read_intake` read); empty families in a deployment
    that does not run ``referral_leads`` (``None``), and for what no run has recorded yet."""
    walk = intake.last_walk if intake else None
    backstop = intake.last_backstop if intake else None
    yield _last_end("referral_walk_last_ended_timestamp_seconds", "reconciliation walk", walk)
    pages = (walk or {}).get("pages")
    yield _gauge(
        "referral_walk_last_pages",
        "Pages of the program's users the latest walk to end read.",
        None if pages is None else float(pages),  # type: ignore[arg-type]
    )
    yield _record_counts(
        "referral_walk_last_users",
        "The latest walk's users above the high-water mark: stored (as syncs), already (handled before).",
        walk,
        ("stored", "already"),
    )
    yield _gauge(
        "referral_walk_running",
        "1 while a reconciliation walk holds its lock (a crashed walk's until the lock expires).",
        None if intake is None else float(intake.walk_running),
    )
    mark = intake.high_water if intake else None
    yield _gauge(
        "referral_high_water_timestamp_seconds",
        "The walk's high-water mark: the signed_up_at (Unix time) of the newest user it stops at.",
        None if mark is None else mark.signed_up_at,
    )
    yield _last_end("referral_backstop_last_ended_timestamp_seconds", "qualification backstop", backstop)
    yield _record_counts(
        "referral_backstop_last_contacts",
        "The latest backstop's contacts: found (qualifying now, by Intercom's search), stored (as syncs).",
        backstop,
        ("found", "stored"),
    )


class ServiceCollector(Collector):
    """Reads every figure from Redis at each scrape (see the module's guarantees)."""

    def __init__(self, metrics: RedisMetrics, runtime: Runtime, client: redis_lib.Redis):
        self._metrics = metrics
        self._runtime = runtime
        self._client = client

    def collect(self) -> Iterator[Metric]:
        snapshot = self._metrics.snapshot()  # writes this process's buffer first
        state = read_service_state(self._runtime, self._client)
        yield from web_families(snapshot)
        yield from counter_families(state.counters)
        yield from state_families(state)


def registry_for(collector: Collector) -> CollectorRegistry:
    """A registry of the app's own holding ``collector`` (nothing is read until a scrape)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """``/metrics``'s body (raises :class:`redis.RedisError` when Redis cannot be read)."""
    return generate_latest(registry)
