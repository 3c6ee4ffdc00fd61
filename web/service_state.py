"""What ``/metrics`` reads from Redis about the service as a whole, in a few round trips.

Guarantees:
- :func:`read_service_state` only reads (no script it calls writes, no key is created): the
  queue depths (``LLEN`` of each queue, with kombu's priority lists), the messages taken and
  not acknowledged (kombu's ``unacked`` hash), the dead-letter count, the platform circuit's
  state, each upstream's rate-limit budget, the latest re-sync run's progress
  (:func:`sync_worker.resync.progress.summarize`, what the admin API shows), which upstreams
  are halted (:func:`halted_upstreams`), every counter the workers keep
  (:data:`sync_worker.servicemetrics.COUNTERS`), and, in a deployment that runs
  ``referral_leads``, its intake's runs (:func:`sync_worker.referral_intake.status.read_intake`:
  the latest walk's and backstop's ends, the walk's lock, the high-water mark);
- a Redis that cannot be read raises :class:`redis.RedisError` (``/metrics`` answers 503).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis as redis_lib
from kombu.transport.redis import Channel
from redis.client import Pipeline

from sync_worker import keys
from sync_worker.celery_app import BULK_QUEUE, REALTIME_QUEUE
from sync_worker.circuit import CircuitState
from sync_worker.countbuffer import decode_hash
from sync_worker.halts import UPSTREAMS as HALTABLE
from sync_worker.ratelimit.limiter import Budget
from sync_worker.referral_intake.schedule import INTEGRATION as REFERRAL_LEADS
from sync_worker.referral_intake.status import IntakeStatus, read_intake
from sync_worker.resync.progress import summarize
from sync_worker.resync.settings import get_resync_settings
from sync_worker.resync.starter import make_store
from sync_worker.runtime import Runtime
from sync_worker.servicemetrics import COUNTERS

QUEUES = (REALTIME_QUEUE, BULK_QUEUE)
#: The upstreams a halt can stop (the names the rate limiters and the clients use).
UPSTREAMS = HALTABLE


def queue_lists(queue: str) -> list[str]:
    """The Redis lists kombu's Redis transport keeps one queue in: one per priority step (pure)."""
    return [queue if not step else f"{queue}{Channel.sep}{step}" for step in Channel.priority_steps]


def halt_key(upstream: str) -> str:
    """The key whose existence means ``upstream``'s consumption is halted (:mod:`sync_worker.halts`)."""
    return keys.halt(upstream)


def halted_upstreams(pipe: Pipeline) -> None:
    """Adds to ``pipe`` one read per upstream of :data:`UPSTREAMS` (its reply: truthy when halted):
    the one place the ``intercom_sync_upstream_halted`` gauge reads the halts from."""
    for upstream in UPSTREAMS:
        pipe.exists(halt_key(upstream))


@dataclass(frozen=True)
class ServiceState:
    queue_depths: dict[str, int]
    unacked: int
    dead_letters: int
    circuit: CircuitState
    budgets: dict[str, Budget]
    halted: dict[str, bool]
    #: integration -> summarize() of its latest run (absent before its first)
    resync: dict[str, dict[str, Any]]
    counters: dict[str, dict[str, float]]  # worker counter name -> {labels json: value}
    referral: IntakeStatus | None = None  # None: the deployment does not run referral_leads


def _plain_reads(pipe: Pipeline) -> None:
    for queue in QUEUES:
        for name in queue_lists(queue):
            pipe.llen(name)
    pipe.hlen(Channel.unacked_key)
    halted_upstreams(pipe)
    for name in COUNTERS:
        pipe.hgetall(keys.metric(name))


def _split(
    replies: Sequence[Any],
) -> tuple[dict[str, int], int, dict[str, bool], dict[str, dict[str, float]]]:
    replies = list(replies)
    depths = {}
    for queue in QUEUES:
        lists = len(queue_lists(queue))
        depths[queue], replies = sum(int(n) for n in replies[:lists]), replies[lists:]
    unacked, replies = int(replies[0]), replies[1:]
    halted = {upstream: bool(reply) for upstream, reply in zip(UPSTREAMS, replies, strict=False)}
    replies = replies[len(UPSTREAMS) :]
    counters = {name: decode_hash(raw) for name, raw in zip(COUNTERS, replies, strict=True)}
    return depths, unacked, halted, counters


def read_service_state(runtime: Runtime, client: redis_lib.Redis) -> ServiceState:
    """Everything above, read through ``runtime``'s shared parts on ``client`` (its Redis)."""
    limiters = runtime.limiters
    intercom, replies = limiters["intercom"].inspect_with(_plain_reads)  # one round trip for most
    depths, unacked, halted, counters = _split(replies)
    budgets = {
        "intercom": intercom,
        **{name: lim.inspect() for name, lim in limiters.items() if name != "intercom"},
    }
    store = make_store(client, get_resync_settings())
    now = time.time()
    resync = {
        name: summarize(latest, now)
        for name in runtime.integrations
        if (latest := store.latest(name)) is not None
    }
    return ServiceState(
        queue_depths=depths,
        unacked=unacked,
        dead_letters=runtime.dead_letters.count(),
        circuit=runtime.circuit.state(),
        budgets=budgets,
        halted=halted,
        resync=resync,
        counters=counters,
        referral=read_intake(client) if REFERRAL_LEADS in runtime.integrations else None,
    )
