"""The benchmark's reference receiver: only what a webhook must do, in the receiver's server (bench helper).

Guarantees (what :mod:`bench.webhook_bench`'s ``reference`` runs measure the receiver against):

- served exactly as the receiver is (:mod:`web.serve`'s waitress options and serving loop, from the
  same settings: threads, client timeout, connection limit), one process;
- ``POST /webhooks/intercom`` reads the body, checks its ``X-Hub-Signature`` (HMAC-SHA1,
  :func:`hmac.compare_digest`: 401 on a mismatch), and stores it with one Redis script call
  (``EVALSHA``) that pushes ``<task id> <body>`` on :data:`QUEUE`, then answers 200
  ``{"status": "queued", "task_id": ...}``; nothing else (no JSON parsing, no screening, no
  dedupe, no metrics, no log line): the floor a webhook's cost is compared with;
- ``GET /healthz`` answers 200 (the bench waits on it).

Not part of the service: ``python bench/reference_receiver.py --bind HOST:PORT`` with
``REDIS_URL`` and ``INTERCOM_CLIENT_SECRET`` in the environment.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterable
from typing import Any

import redis as redis_lib
import waitress

from sync_worker.config import get_settings
from web.serve import QUIET_LOGGERS, Stopping, parse_bind, serve, server_options

PATH = "/webhooks/intercom"
QUEUE = "reference.realtime"
_STORE = "redis.call('LPUSH', KEYS[1], ARGV[1] .. ' ' .. ARGV[2]) return 1"
_JSON = [("Content-Type", "application/json")]


def make_app(client: redis_lib.Redis, secret: bytes) -> Callable[..., Iterable[bytes]]:
    store = client.register_script(_STORE)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO"), environ["REQUEST_METHOD"]
        if path == "/healthz":
            start_response("200 OK", _JSON)
            return [b'{"status":"ok"}']
        if path != PATH or method != "POST":
            start_response("404 Not Found", _JSON)
            return [b'{"error":"not_found"}']
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        expected = ("sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()).encode()
        if not hmac.compare_digest(environ.get("HTTP_X_HUB_SIGNATURE", "").encode(), expected):
            start_response("401 Unauthorized", _JSON)
            return [b'{"error":"invalid_signature"}']
        task_id = uuid.uuid4().hex
        try:
            store(keys=[QUEUE], args=[task_id, body])
        except redis_lib.RedisError:
            start_response("503 Service Unavailable", _JSON)
            return [b'{"error":"queue_unavailable"}']
        start_response("200 OK", _JSON)
        return [json.dumps({"status": "queued", "task_id": task_id}).encode()]

    return app


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="127.0.0.1:8000")
    args = parser.parse_args()
    settings = get_settings()
    client = redis_lib.Redis.from_url(os.environ["REDIS_URL"], socket_timeout=3, socket_connect_timeout=1)
    app = make_app(client, os.environ["INTERCOM_CLIENT_SECRET"].encode())
    host, port = parse_bind(args.bind)
    stopping = Stopping()
    signal.signal(signal.SIGTERM, stopping)
    signal.signal(signal.SIGINT, stopping)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    serve(waitress.create_server(app, **server_options(settings, host=host, port=port)), stopping)
    return 0


if __name__ == "__main__":
    sys.exit(main())
