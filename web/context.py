"""The per-app wiring: settings, Redis, the Celery producer, metrics.

Guarantees: each Flask app built by :func:`web.create_app` has its own
:class:`WebContext` (in ``app.extensions``), built from the settings given to
the factory, never from the worker's module-level Celery app; Redis clients use
short timeouts so a Redis that cannot be reached turns into a quick 503, not a
hung request; ``runtime`` is the worker's wiring of the shared upstream state
(rate limiters, circuit breaker, last known values) on that same client
(:mod:`web.upstream`), ``platform`` the data connector's platform reads (one
platform client per process, built on first use, :mod:`web.platform_read`), and
``profile`` the client profile in the display zone, ``registry`` the
``prometheus_client`` registry of the app's own that ``/metrics`` renders.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis as redis_lib
from celery import Celery
from flask import Flask, current_app
from prometheus_client import CollectorRegistry

from sync_worker import integrations
from sync_worker.celery_app import create_celery
from sync_worker.config import Settings
from sync_worker.profiles import Profile
from sync_worker.runtime import Runtime
from web.exposition import ServiceCollector, registry_for
from web.metrics import RedisMetrics
from web.platform_read import PlatformReader
from web.upstream import shared_runtime

EXTENSION = "intercom_sync"


@dataclass
class WebContext:
    settings: Settings
    redis: redis_lib.Redis
    metrics_redis: redis_lib.Redis
    celery: Celery
    runtime: Runtime
    platform: PlatformReader
    profile: Profile
    metrics: RedisMetrics
    registry: CollectorRegistry  # what ``/metrics`` serves (web.exposition)


def build_context(settings: Settings) -> WebContext:
    client = redis_lib.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=1)
    metrics_redis = redis_lib.Redis.from_url(
        settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    metrics = RedisMetrics(metrics_redis)
    runtime = shared_runtime(settings, client, metrics)
    return WebContext(
        settings=settings,
        redis=client,
        metrics_redis=metrics_redis,
        celery=create_celery(settings),
        runtime=runtime,
        platform=PlatformReader(runtime),
        profile=integrations.get("clients").profile(display_timezone=settings.display_timezone),
        metrics=metrics,
        registry=registry_for(ServiceCollector(metrics, runtime, client)),
    )


def install(app: Flask, context: WebContext) -> None:
    app.extensions[EXTENSION] = context


def web_context() -> WebContext:
    """The current app's context (inside a request or app context)."""
    return current_app.extensions[EXTENSION]
