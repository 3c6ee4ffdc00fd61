"""The worker's shared upstream state, seen from the web process.

Guarantees: :func:`shared_runtime` is the worker's own
:class:`~sync_worker.runtime.Runtime` for these settings, so the platform circuit
breaker, the rate limiters (names, limits, windows) and the last known values are
built exactly as the worker builds them and share their Redis state; only its
Redis client is the web process's, whose short timeouts keep a request bounded,
and its counts of upstream calls go to the web process's own metrics buffer (one
background writer per process). Nothing here talks to Redis or to an upstream until it is used.
"""

from __future__ import annotations

import redis as redis_lib

from sync_worker.config import Settings
from sync_worker.countbuffer import CountBuffer
from sync_worker.runtime import Runtime
from sync_worker.servicemetrics import ServiceMetrics


def shared_runtime(settings: Settings, client: redis_lib.Redis, metrics: CountBuffer) -> Runtime:
    """A :class:`Runtime` for ``settings`` whose Redis client is ``client`` and whose counts go
    to ``metrics``."""
    runtime = Runtime(settings)
    runtime.redis = client  # replaces the worker's cached client (long timeouts) before first use
    runtime.metrics = ServiceMetrics(metrics)
    return runtime
