"""Serve a WSGI app on 127.0.0.1 in a background thread, and what the platform and referral
program sandboxes share.

Guarantees: :class:`ServedApp` binds a free port (or the one given) before
:meth:`ServedApp.start` returns, so ``url`` is reachable at once; it serves
requests concurrently (one thread each); :meth:`ServedApp.stop` closes the socket;
:func:`serve_until_interrupted` serves in the calling thread until Ctrl-C, then closes the
sandbox's state.

For the sandboxes (each keeps its own error body, routes, gate order and quirks, as its
contract in ``docs/contracts/`` says):

- :func:`json_error` is a JSON ``{key: message}`` answer with the status and headers given
  (:func:`error_response`: the platform's ``{"error": message}``; the referral program's is
  ``{"message": message}``); :func:`retry_after_header` is a 429's ``Retry-After`` for a
  wait: whole seconds, rounded up, at least 1;
- :func:`bearer_accepted` is the auth gate: ``Authorization: Bearer <token>`` exactly, and the
  token not revoked;
- :class:`SandboxState` is one condition guarding a state (``_changed``): ``serve_latency``
  waits ``latency_ms``, cut short by ``close``, which wakes every waiter for good;
  ``answered(kind)`` counts an answer; :func:`checked_knobs` and :func:`latency_knob` refuse
  (ValueError) an unknown config key and a ``latency_ms`` that is not a number >= 0;
  :func:`positive_number` is a finite number > 0 (no bool); :func:`normalise_email` trims and
  lower-cases an email, as every sandbox matches them;
- :func:`register_controls` adds ``GET``/``PUT /_sandbox/config`` (``PUT`` takes a JSON object,
  else 400; a ValueError from ``configure`` is a 400 with its message), ``GET /_sandbox/stats``
  and ``POST /_sandbox/reset`` (``{"status": "reset"}``), no auth;
- :func:`store_records` is their ``PUT`` (replace all) / ``POST`` (add or replace;
  ``?check=false`` unchecked) control route of records.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from flask import Flask, Response, jsonify, request
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

ErrorResponse = Callable[..., Response]


def json_error(
    status: int, message: str, headers: Mapping[str, str] | None = None, *, key: str = "error"
) -> Response:
    """A JSON ``{key: message}`` answer with ``status`` and ``headers`` (in a request context)."""
    response = jsonify({key: message})
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON ``{"error": message}`` answer (the platform sandbox's) with ``status`` and ``headers``."""
    return json_error(status, message, headers)


def retry_after_header(wait: float) -> dict[str, str]:
    """The ``Retry-After`` header for a wait of ``wait`` seconds: whole seconds, rounded up, >= 1."""
    return {"Retry-After": str(max(1, math.ceil(wait)))}


def bearer_accepted(token: str, *, revoked: bool = False) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` and the token is not ``revoked``."""
    return request.headers.get("Authorization", "") == f"Bearer {token}" and not revoked


def positive_number(value: Any) -> bool:
    """A finite int or float > 0 (not a bool)."""
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def normalise_email(email: str) -> str:
    """An email as the sandboxes match it: trimmed, lower-cased."""
    return email.strip().lower()


def checked_knobs(changes: Mapping[str, Any], known: Iterable[str]) -> None:
    """ValueError naming every key of ``changes`` that is not a ``known`` knob."""
    unknown = set(changes) - set(known)
    if unknown:
        raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")


def latency_knob(changes: Mapping[str, Any], current: float) -> float:
    """``changes["latency_ms"]`` (``current`` when not named); ValueError unless a number >= 0."""
    latency = changes.get("latency_ms", current)
    if isinstance(latency, bool) or not isinstance(latency, int | float) or latency < 0:
        raise ValueError("latency_ms must be a number >= 0")
    return latency


class SandboxState:
    """A sandbox state's lock and wake-ups (``_changed``, one condition for all of it), its
    latency wait and its answer counts (``_answers``, which the state sets in its stats)."""

    latency_ms: float = 0
    _answers: Counter[str]

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._closed = False

    def serve_latency(self) -> None:
        """Wait ``latency_ms`` (cut short when the sandbox closes)."""
        with self._changed:
            deadline = time.monotonic() + self.latency_ms / 1000
            while not self._closed and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)

    def close(self) -> None:
        """Wake every waiter (latency, held requests) and stop waiting from now on."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def answered(self, kind: str) -> None:
        with self._changed:
            self._answers[kind] += 1


class ControlledState(Protocol):
    def config(self) -> dict[str, Any]: ...

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]: ...

    def stats(self) -> dict[str, Any]: ...

    def reset(self) -> None: ...


def register_controls(app: Flask, state: ControlledState, error: ErrorResponse = error_response) -> None:
    """Add ``GET``/``PUT /_sandbox/config``, ``GET /_sandbox/stats`` and ``POST /_sandbox/reset``
    of ``state`` to ``app``, answering errors with ``error``."""

    app.add_url_rule("/_sandbox/config", "get_config", lambda: jsonify(state.config()))
    app.add_url_rule("/_sandbox/stats", "get_stats", lambda: jsonify(state.stats()))

    @app.put("/_sandbox/config")
    def put_config() -> Response:
        changes = request.get_json(silent=True)
        try:
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            return jsonify(state.configure(changes))
        except ValueError as exc:
            return error(400, str(exc))

    @app.post("/_sandbox/reset")
    def reset() -> Response:
        state.reset()
        return jsonify({"status": "reset"})


def store_records(
    replace: Callable[[list[Any]], int] | None,
    upsert: Callable[..., int],
    *,
    noun: str,
    refused: type[Exception],
    error: ErrorResponse = error_response,
) -> Response:
    """Answer a control route's ``PUT`` (``replace``; None for a route that only takes ``POST``)
    or ``POST`` (``upsert(records, check=...)``) of one record or an array of them:
    ``{"count": n}``, or 400 with ``refused``'s message, answered with ``error``."""
    body = request.get_json(silent=True)
    records = [body] if isinstance(body, dict) else body
    if not isinstance(records, list):
        return error(400, f"the body must be a {noun} or a JSON array of {noun}s")
    try:
        if request.method == "PUT" and replace is not None:
            count = replace(records)
        else:
            count = upsert(records, check=request.args.get("check") != "false")
    except refused as exc:
        return error(400, str(exc))
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


def serve_until_interrupted(app: Any, host: str, port: int, state: Any) -> None:
    """Serve ``app`` in the calling thread until Ctrl-C; then, however it ends, ``state.close()``."""
    try:
        ServedApp(app, host=host, port=port).serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        state.close()
