"""The per-app wiring: settings, Redis, the Celery producer, metrics.

Guarantees: each Flask app built by :func:`web.create_app` has its own
:class:`WebContext` (in ``app.extensions``), built from the settings given to
the factory, never from the worker's module-level Celery app; Redis clients use
short timeouts so a Redis that cannot be reached turns into a quick 503, not a
hung request.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis as redis_lib
from celery import Celery
from flask import Flask, current_app

from sync_worker.celery_app import create_celery
from sync_worker.config import Settings

EXTENSION = "intercom_sync"


@dataclass
class WebContext:
    settings: Settings
    redis: redis_lib.Redis
    metrics_redis: redis_lib.Redis
    celery: Celery


def build_context(settings: Settings) -> WebContext:
    return WebContext(
        settings=settings,
        redis=redis_lib.Redis.from_url(settings.redis_url, socket_timeout=3, socket_connect_timeout=1),
        metrics_redis=redis_lib.Redis.from_url(
            settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        ),
        celery=create_celery(settings),
    )


def install(app: Flask, context: WebContext) -> None:
    app.extensions[EXTENSION] = context


def web_context() -> WebContext:
    """The current app's context (inside a request or app context)."""
    return current_app.extensions[EXTENSION]
