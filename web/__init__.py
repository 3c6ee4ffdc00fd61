"""The receiver: a Flask app that verifies, validates and enqueues.

Guarantees: :func:`create_app` builds a complete app from the settings given
(or the process's environment), with its own Redis clients and Celery producer;
it never calls Intercom, and the platform only from the data connector's
deadline-bound route. The WSGI entry point is ``web:create_app()``,
served as deployed by :mod:`web.serve`; a webhook's common case is answered before
Flask by :mod:`web.fastpath`.
Routes (one blueprint each): ``/webhooks/intercom``, ``/v1/sync``,
``/v1/connector/client-attributes``, ``/v1/admin/dead-letters``, ``/v1/admin/resync``,
``/v1/admin/halts``,
``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``; every answer is JSON
(errors included) with an ``X-Request-Id``.
"""

from __future__ import annotations

from flask import Flask
from kombu.utils.imports import symbol_by_name

from sync_worker import integrations
from sync_worker.config import Settings, get_settings
from sync_worker.logs import configure_logging
from web import admin, connector, fastpath, halts, health, openapi, resync, triggers, webhooks
from web.access import install_access_hooks
from web.context import build_context, install
from web.errors import register_error_handlers


def create_app(settings: Settings | None = None) -> Flask:
    """A new receiver app wired to ``settings`` (default: read from the environment)."""
    settings = settings or get_settings()
    configure_logging()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    context = build_context(settings)
    install(app, context)
    register_error_handlers(app)
    install_access_hooks(app)
    connector.log_if_disabled(settings)
    blueprints = [webhooks.bp, triggers.bp, admin.bp, resync.bp, halts.bp, health.bp, openapi.bp]
    for integration in integrations.enabled(settings.integrations):  # the routes each one adds
        blueprints.extend(symbol_by_name(route) for route in integration.routes)
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    app.wsgi_app = fastpath.wrap(app.wsgi_app, context)  # type: ignore[method-assign]
    return app
