"""Serve a WSGI app on 127.0.0.1 in a background thread.

Guarantees: :class:`ServedApp` binds a free port (or the one given) before
:meth:`ServedApp.start` returns, so ``url`` is reachable at once; it serves
requests concurrently (one thread each); :meth:`ServedApp.stop` closes the socket.
:func:`error_response` is the sandboxes' ``{"error": message}`` answer, :func:`store_records`
their ``PUT`` (replace all) / ``POST`` (add or replace; ``?check=false`` unchecked) control route.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON ``{"error": message}`` answer with ``status`` and ``headers`` (in a request context)."""
    response = jsonify({"error": message})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def store_records(
    replace: Callable[[list[Any]], int],
    upsert: Callable[..., int],
    *,
    noun: str,
    refused: type[Exception],
) -> Response:
    """Answer a control route's ``PUT`` (``replace``) or ``POST`` (``upsert(records, check=...)``)
    of one record or an array of them: ``{"count": n}``, or 400 with ``refused``'s message."""
    body = request.get_json(silent=True)
    records = [body] if isinstance(body, dict) else body
    if not isinstance(records, list):
        return error_response(400, f"the body must be a {noun} or a JSON array of {noun}s")
    try:
        if request.method == "PUT":
            count = replace(records)
        else:
            count = upsert(records, check=request.args.get("check") != "false")
    except refused as exc:
        return error_response(400, str(exc))
    return jsonify({"count": count})


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: object, **kwargs: object) -> None:  # no per-request lines
        pass


class ServedApp:
    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ServedApp:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name=f"served-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        """Serve in the calling thread (for a sandbox run as its own process)."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self.port = self._server.server_port
        self._server.serve_forever()

    def __enter__(self) -> ServedApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
