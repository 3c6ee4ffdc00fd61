"""The platform sandbox: the routes of ``docs/contracts/platform-api.yaml`` served from memory.

Guarantees:
- ``GET /v1/clients?email=``, ``POST /v1/clients/lookup`` and ``GET /v1/health`` answer as the
  contract says; emails match trimmed and case-insensitively; accounts come back in dataset
  order (not sorted by id); lookup answers every requested email under its trimmed,
  lower-cased form, ``[]`` when it has no account; a bad body or more than 100 emails is a 400,
  a missing or wrong bearer token on the ``/v1/clients`` routes a 401, both ``{"error": ...}``;
- the dealer users' routes (``/v1/users...``) and their ``/_sandbox/users`` controls are
  :mod:`~sync_worker.devtools.sandbox.platform_users`'s, served from ``state.users`` (the sample
  of :mod:`~sync_worker.devtools.sandbox.dealer_users_dataset` unless told otherwise), behind the
  same gate; ``POST /_sandbox/reset`` resets them too, ``GET /_sandbox/stats`` counts them;
- with ``synthetic_count=N`` it also serves ``client{i}@example.com`` (``i < N``) as
  :func:`~sync_worker.devtools.sandbox.dataset.synthetic_record` ``(i)``, generated on demand, unless a
  stored record has that client's id (``SYNTHETIC_BASE_ID + i``): that record replaces it, so
  a synthetic client can be changed like any other (``POST /_sandbox/clients``);
- control routes under ``/_sandbox/`` (no auth): ``GET``/``PUT /_sandbox/config`` (``PUT``
  changes only the knobs it names: ``latency_ms``, ``outage`` = ``"503"`` | ``"timeout"`` | null,
  ``rate_limit`` = ``{"per_second": N}`` | null, ``token_revoked``: the token answers 401 as a
  revoked one does, ``lookup_refused``: ``POST /v1/clients/lookup`` and ``/v1/users/lookup``
  answer 400 to every body, as a platform whose batch contract changed would),
  ``PUT /_sandbox/clients`` (replace the dataset),
  ``POST /_sandbox/clients`` (add or replace records by id), ``GET /_sandbox/stats``,
  ``POST /_sandbox/reset`` (initial dataset, default config, zero stats); records are validated
  against the contract (400 with the problems), except with ``POST /_sandbox/clients?check=false``,
  which stores records that break it (only an integer ``id`` and a string ``email`` are needed)
  so a test can serve a poison record;
- on ``/v1/`` routes, in this order: the latency is served, an outage answers (``503`` at once;
  ``timeout`` holds the request until the outage is cleared, the sandbox is closed or
  :data:`TIMEOUT_HOLD_SECONDS` pass, then answers 504), the rate limit (every route but
  ``/v1/health``, clients and users alike: one token bucket of ``per_second`` tokens) answers
  429 with ``Retry-After`` in whole seconds, then the token is checked;
- :meth:`PlatformState.close` releases every held request at once (call it before stopping
  the server so nothing hangs); nothing is logged about requests.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from flask import Flask, Response, jsonify, request

from sync_worker.devtools.sandbox import platform_users, server
from sync_worker.devtools.sandbox.dataset import (
    SYNTHETIC_BASE_ID,
    InvalidRecord,
    load,
    load_sample,
    synthetic_index,
    synthetic_record,
    validate_dataset,
    validate_record,
)
from sync_worker.devtools.sandbox.dealer_users_dataset import load_sample_users, load_users
from sync_worker.devtools.sandbox.platform_users import Synthetic, UsersStore

DEFAULT_TOKEN = "sandbox-platform-token"
MAX_LOOKUP_EMAILS = 100
#: How long a ``timeout`` outage holds a request at most (longer than any sane client timeout).
TIMEOUT_HOLD_SECONDS = 30.0
OUTAGES = ("503", "timeout")
EXTENSION = "platform_sandbox"
_KNOBS = ("latency_ms", "outage", "rate_limit", "token_revoked", "lookup_refused")
#: The platform's error answer: ``{"error": ...}`` JSON (``_error(status, message, headers)``).
_error = server.error_response


class PlatformState(server.SandboxState):
    """The sandbox's dataset, knobs and counters (thread-safe)."""

    def __init__(
        self,
        dataset: Iterable[Mapping[str, Any]] = (),
        *,
        synthetic_count: int = 0,
        users: Iterable[Mapping[str, Any]] = (),
    ):
        super().__init__()
        self._initial = [dict(record) for record in validate_dataset(list(dataset))]
        self.users = UsersStore(users)
        self.synthetic_count = synthetic_count
        self._set_records(self._initial)
        self._default_config()
        self._zero_stats()

    # --- dataset ---------------------------------------------------------------------

    def _set_records(self, records: Iterable[Mapping[str, Any]]) -> None:
        self._records: dict[int, dict[str, Any]] = {record["id"]: dict(record) for record in records}
        self._by_email: dict[str, list[int]] = {}
        for record_id, record in self._records.items():
            self._by_email.setdefault(server.normalise_email(record["email"]), []).append(record_id)

    def replace(self, records: list[Any]) -> int:
        validate_dataset(records)
        with self._changed:
            self._set_records(records)
            return len(self._records)

    def upsert(self, records: list[Any], *, check: bool = True) -> int:
        """Add or replace ``records`` by id; ``check=False`` keeps records that break the contract."""
        for record in records:
            if check:
                validate_record(record)
            elif not isinstance(record, Mapping) or not _indexable(record):
                raise InvalidRecord(["an unchecked record still needs an integer id and a string email"])
        with self._changed:
            merged = dict(self._records)
            for record in records:
                merged[record["id"]] = dict(record)  # a replaced record keeps its dataset position
            self._set_records(merged.values())
            return len(records)

    def find(self, email: str) -> list[dict[str, Any]]:
        wanted = server.normalise_email(email)
        with self._changed:
            found = [self._records[record_id] for record_id in self._by_email.get(wanted, [])]
            index = synthetic_index(wanted)
            replaced = index is not None and SYNTHETIC_BASE_ID + index in self._records
        if index is not None and index < self.synthetic_count and not replaced:
            found.append(synthetic_record(index))
        return found

    # --- knobs -----------------------------------------------------------------------

    def _default_config(self) -> None:
        self.latency_ms = 0
        self.outage: str | None = None
        self.per_second: float | None = None
        self.token_revoked = False
        self.lookup_refused = False
        self._tokens = 0.0
        self._refilled_at = time.monotonic()

    def config(self) -> dict[str, Any]:
        with self._changed:
            limit = {"per_second": self.per_second} if self.per_second is not None else None
            return {
                "latency_ms": self.latency_ms,
                "outage": self.outage,
                "rate_limit": limit,
                "token_revoked": self.token_revoked,
                "lookup_refused": self.lookup_refused,
            }

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the knobs named in ``changes`` (ValueError naming a bad one)."""
        server.checked_knobs(changes, _KNOBS)
        latency = server.latency_knob(changes, self.latency_ms)
        outage = changes.get("outage", self.outage)
        outage = str(outage) if isinstance(outage, int) and not isinstance(outage, bool) else outage
        if outage is not None and outage not in OUTAGES:
            raise ValueError('outage must be "503", "timeout" or null')
        revoked = changes.get("token_revoked", self.token_revoked)
        refused = changes.get("lookup_refused", self.lookup_refused)
        if not isinstance(revoked, bool) or not isinstance(refused, bool):
            raise ValueError("token_revoked and lookup_refused must be true or false")
        per_second = self.per_second
        if "rate_limit" in changes:
            limit = changes["rate_limit"]
            if limit is None:
                per_second = None
            elif isinstance(limit, Mapping) and server.positive_number(limit.get("per_second")):
                per_second = float(limit["per_second"])
            else:
                raise ValueError('rate_limit must be {"per_second": N > 0} or null')
        with self._changed:
            self.latency_ms, self.outage, self.token_revoked = latency, outage, revoked
            self.lookup_refused = refused
            if per_second != self.per_second:
                self.per_second, self._tokens, self._refilled_at = (
                    per_second,
                    per_second or 0.0,
                    time.monotonic(),
                )
            self._changed.notify_all()
        return self.config()

    def take_token(self) -> float:
        """0.0 when a request may pass the rate limit, else the seconds until one may."""
        with self._changed:
            if self.per_second is None:
                return 0.0
            now = time.monotonic()
            self._tokens = min(self.per_second, self._tokens + (now - self._refilled_at) * self.per_second)
            self._refilled_at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.per_second

    def hold_while_timeout(self) -> bool:
        """Hold while the outage is ``timeout``; True when it was cleared (serve normally)."""
        with self._changed:
            deadline = time.monotonic() + TIMEOUT_HOLD_SECONDS
            while self.outage == "timeout" and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(left)
            return not self._closed

    # --- stats -------------------------------------------------------------------------

    def _zero_stats(self) -> None:
        self._calls: Counter[str] = Counter()
        self._answers: Counter[str] = Counter()
        self._lookup_emails = 0

    def count(self, route: str) -> None:
        with self._changed:
            self._calls[route] += 1

    def counted_lookup(self, emails: int) -> None:
        with self._changed:
            self._lookup_emails += emails

    def stats(self) -> dict[str, Any]:
        with self._changed:
            return {
                "calls": dict(self._calls),
                "total_calls": sum(self._calls.values()),
                "rate_limited": self._answers["429"],
                "outage_answers": self._answers["outage"],
                "unauthorized": self._answers["401"],
                "bad_requests": self._answers["400"],
                "lookup_emails": self._lookup_emails,
                "records": len(self._records),
                "synthetic_count": self.synthetic_count,
                **self.users.stats(),
            }

    def reset(self) -> None:
        self.users.reset()
        with self._changed:
            self._set_records(self._initial)
            self._default_config()
            self._zero_stats()
            self._changed.notify_all()


def _indexable(record: Mapping[str, Any]) -> bool:
    record_id, email = record.get("id"), record.get("email")
    return isinstance(record_id, int) and not isinstance(record_id, bool) and isinstance(email, str)


_ROUTES = {
    ("GET", "/v1/clients"): "GET /v1/clients",
    ("POST", "/v1/clients/lookup"): "POST /v1/clients/lookup",
    ("GET", "/v1/health"): "GET /v1/health",
}


def create_app(
    dataset: list[dict[str, Any]] | None = None,
    *,
    token: str = DEFAULT_TOKEN,
    synthetic_count: int = 0,
    users: list[dict[str, Any]] | None = None,
    state: PlatformState | None = None,
) -> Flask:
    """The sandbox app; ``dataset`` None serves the sample clients, ``users`` None the sample dealer
    users (pass ``[]`` for none).

    The state is ``app.extensions["platform_sandbox"]`` (close it before stopping the server).
    """
    if state is None:
        state = PlatformState(
            load_sample() if dataset is None else dataset,
            synthetic_count=synthetic_count,
            users=load_sample_users() if users is None else users,
        )
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = state

    @app.before_request
    def _gate() -> Response | None:
        route = _ROUTES.get((request.method, request.path)) or platform_users.route_name(
            request.method, request.path
        )
        if route is None:
            return None
        state.count(route)
        state.serve_latency()
        if state.outage == "503":
            state.answered("outage")
            return _error(503, "the platform is unavailable (sandbox outage)")
        if state.outage == "timeout" and not state.hold_while_timeout():
            state.answered("outage")
            return _error(504, "the platform did not answer in time (sandbox outage)")
        if request.path == "/v1/health":
            return None
        wait = state.take_token()
        if wait > 0:
            state.answered("429")
            return _error(429, "rate limit exceeded", server.retry_after_header(wait))
        if not server.bearer_accepted(token, revoked=state.token_revoked):
            state.answered("401")
            return _error(401, "missing or invalid bearer token")
        return None

    @app.get("/v1/health")
    def health() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/v1/clients")
    def clients_by_email() -> Response:
        email = request.args.get("email")
        if email is None or not email.strip():
            state.answered("400")
            return _error(400, "the email query parameter is required")
        return jsonify({"data": state.find(email)})

    @app.post("/v1/clients/lookup")
    def lookup() -> Response:
        body = request.get_json(silent=True)
        emails = body.get("emails") if isinstance(body, dict) else None
        problem = None
        if not isinstance(emails, list):
            problem = 'the body must be a JSON object {"emails": [...]}'
        elif len(emails) > MAX_LOOKUP_EMAILS:
            problem = f"at most {MAX_LOOKUP_EMAILS} emails a call ({len(emails)} given)"
        elif not all(isinstance(email, str) for email in emails):
            problem = "emails must be strings"
        elif state.lookup_refused:
            problem = "unknown field 'emails' (sandbox: lookup_refused)"
        if problem is not None:
            state.answered("400")
            return _error(400, problem)
        state.counted_lookup(len(emails))
        return jsonify({"data": {server.normalise_email(email): state.find(email) for email in emails}})

    platform_users.register(app, state)

    # --- control routes ------------------------------------------------------------------

    server.register_controls(app, state, _error)

    @app.route("/_sandbox/clients", methods=["PUT", "POST"])
    def put_clients() -> Response:
        return server.store_records(state.replace, state.upsert, noun="client", refused=InvalidRecord)

    return app


def main(argv: list[str] | None = None) -> None:
    """``python -m sync_worker.devtools.sandbox.platform --port 8081 --token T [--dataset FILE]
    [--users FILE] [--synthetic-users N M]``."""
    parser = argparse.ArgumentParser(description="Serve the platform sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--dataset", help="a JSON array of clients (default: the sample dataset)")
    parser.add_argument(
        "--synthetic", type=int, default=0, metavar="N", help="also serve client{i}@example.com, i < N"
    )
    parser.add_argument("--users", help="a JSON array of dealer users (default: the sample users)")
    parser.add_argument(
        "--synthetic-users",
        type=int,
        nargs=2,
        metavar=("N", "M"),
        help="serve N synthetic dealer users sharing M locations instead of the stored ones",
    )
    args = parser.parse_args(argv)
    dataset = load(args.dataset) if args.dataset else load_sample()
    users = load_users(args.users) if args.users else load_sample_users()
    app = create_app(dataset, token=args.token, synthetic_count=args.synthetic, users=users)
    if args.synthetic_users:
        count, locations = args.synthetic_users
        app.extensions[EXTENSION].users.generate(Synthetic(count, locations))
    total = app.extensions[EXTENSION].users.total()
    print(
        f"platform sandbox on http://{args.host}:{args.port} ({len(dataset)} clients, {total} users)",
        flush=True,
    )
    server.serve_until_interrupted(app, args.host, args.port, app.extensions[EXTENSION])


if __name__ == "__main__":
    main()
