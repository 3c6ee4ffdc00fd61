"""The receiver's HTTP server as deployed: waitress serving ``web:create_app()``.

``python -m web.serve --bind HOST:PORT`` (``docker-compose.yml``, the README's recipe,
``sync_worker.devtools.processes.web_argv``). Guarantees:

- a request reaches one of the app's threads only once it has been read whole (waitress
  reads headers and body in its I/O loop and buffers them), so a slow, trickling or
  half-open client holds a socket, never a thread;
- a connection that sends nothing for ``SYNC_WEB_CLIENT_TIMEOUT_SECONDS`` is closed
  (waitress's ``channel_timeout``, checked every second or so), and up to
  ``SYNC_WEB_MAX_CONNECTIONS`` connections are served at once (waitress's own default,
  100, would let 100 slow clients stop it accepting), polled with ``poll()`` so a
  thousand descriptors are no problem (``select()`` fails past 1024);
- ``SYNC_WEB_THREADS`` threads run the app, more than ``SYNC_CONNECTOR_MAX_READS`` (the
  data connector's platform reads at once, :mod:`web.platform_read`), checked at start,
  so a webhook always finds a thread that no platform wait holds;
- a body declared larger than :func:`max_body_bytes` is refused by waitress before it is
  read (413); smaller ones that are still too large get the app's JSON 413;
- it refuses to start (exit 2) on a Redis that may evict keys (:mod:`sync_worker.redis_policy`);
- SIGTERM stops it gracefully: it stops accepting at once (within a second), every request
  already received is still run and its answer sent, for up to :data:`SHUTDOWN_SECONDS`,
  then the process exits 0 (``docker-compose.yml``'s ``stop_grace_period`` for web is
  longer).

Why waitress and not gunicorn's sync workers: a sync worker reads the request itself, so
two clients that declare a body and send one byte stop two workers (only a buffering
proxy in front fixes that). waitress is pure Python, buffers whole requests before a
thread runs the app, and times out idle clients; no proxy is needed in front of it.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from typing import Any

import waitress
from waitress import wasyncore

from sync_worker import integrations
from sync_worker.config import Settings, get_settings
from sync_worker.logs import log_event
from sync_worker.redis_policy import refuse_at_start
from web import create_app

#: How long running requests may take to finish after SIGTERM (waitress's dispatcher shutdown).
SHUTDOWN_SECONDS = 5
#: How often idle connections are looked for at most (seconds).
CLEANUP_INTERVAL_SECONDS = 1
#: waitress warns "Task queue depth is N" for every request that waits for a thread: a line per
#: request in a burst. Waits show in the access line's ``duration_ms`` and the benchmark instead.
QUIET_LOGGERS = ("waitress.queue",)

logger = logging.getLogger(__name__)


class ServerMisconfigured(RuntimeError):
    """The thread settings would let connector reads take every thread."""


def check_threads(settings: Settings) -> None:
    """Refuse fewer threads than connector reads plus one (a webhook must always find a thread)."""
    if settings.web_threads <= settings.connector_max_reads:
        raise ServerMisconfigured(
            f"SYNC_WEB_THREADS={settings.web_threads} must exceed SYNC_CONNECTOR_MAX_READS="
            f"{settings.connector_max_reads}, or data connector reads could hold every thread"
        )


def max_body_bytes(settings: Settings) -> int:
    """The largest body waitress reads: four times the app's limit, so the app answers the rest."""
    return 4 * settings.webhook_max_body_bytes


def server_options(settings: Settings, *, host: str, port: int) -> dict[str, Any]:
    """waitress's options for the receiver (pure)."""
    return {
        "host": host,
        "port": port,
        "threads": settings.web_threads,
        "channel_timeout": settings.web_client_timeout_seconds,
        "cleanup_interval": CLEANUP_INTERVAL_SECONDS,
        "connection_limit": settings.web_max_connections,
        "asyncore_use_poll": True,
        "max_request_body_size": max_body_bytes(settings),
        "ident": "intercom-sync",
    }


def parse_bind(bind: str) -> tuple[str, int]:
    host, _, port = bind.rpartition(":")
    return host or "0.0.0.0", int(port)


class Stopping:
    """Set by SIGTERM (and SIGINT); read by the serving loop between two polls."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, _signum: int, _frame: Any) -> None:
        self.requested = True


def busy(server: Any) -> bool:
    """Some connection has a request received and not yet answered, or an answer not yet sent."""
    return any(channel.requests or channel.total_outbufs_len for channel in server.active_channels.values())


def serve(server: Any, stopping: Stopping) -> None:
    """waitress's loop until ``stopping``, then drain what was received (see the guarantees)."""
    adj = server.adj
    while not stopping.requested:
        wasyncore.loop(
            timeout=adj.asyncore_loop_timeout, use_poll=adj.asyncore_use_poll, map=server._map, count=1
        )
    wasyncore.dispatcher.close(server)  # the listening socket only (its trigger stays for the threads)
    deadline = time.monotonic() + SHUTDOWN_SECONDS
    while busy(server) and time.monotonic() < deadline:
        wasyncore.loop(timeout=0.05, use_poll=adj.asyncore_use_poll, map=server._map, count=1)
    server.task_dispatcher.shutdown(timeout=max(0.0, deadline - time.monotonic()))
    wasyncore.close_all(server._map)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the intercom-sync receiver (waitress).")
    parser.add_argument("--bind", default="0.0.0.0:8000", help="HOST:PORT to listen on")
    args = parser.parse_args(argv)
    settings = get_settings()
    try:
        check_threads(settings)
        integrations.enabled(settings.integrations)
    except (ServerMisconfigured, integrations.UnknownIntegration) as problem:
        print(f"intercom-sync web: {problem}", file=sys.stderr, flush=True)
        return 2
    refuse_at_start("web", settings)  # a Redis that may evict keys: exit 2, naming the setting
    host, port = parse_bind(args.bind)
    app = create_app(settings)
    stopping = Stopping()
    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    options = server_options(settings, host=host, port=port)
    server = waitress.create_server(app, **options)
    log_event(logger, "web_serving", host=host, port=port, threads=options["threads"])
    serve(server, stopping)
    log_event(logger, "web_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
