"""The referral program sandbox: the routes of ``docs/contracts/referral-api.yaml`` served from memory.

Guarantees:
- ``GET /users`` (newest first: ``signed_up_at``, then id, descending; ``campaign_id``,
  ``page``, ``per_page`` of 1..250 checked, else 422), ``GET /users/{identifier}`` (an id, a
  code, or an email matched trimmed and case-insensitively, the newest unless ``campaign_id``
  names one), ``PUT /users/qualification`` and ``GET /campaigns/{id}`` answer as the contract
  says; ``links.next`` is the next page's absolute URL on the host the request came to, null on
  the last (``links_base_url`` set: on that host instead, as a program whose docs name two
  hosts might answer); errors are ``{"message": ...}`` JSON, 404 and 405 included;
- every call to those routes is counted, by operation, when it arrives, whatever it is answered;
  ``GET /_sandbox/stats`` also answers ``max_in_window``: the most calls that arrived within any
  span of the rate window's length (a sliding span, stricter than any fixed window the real
  program may count in), so a test can assert that no window ever saw more than N;
- on those routes, in this order: a blocked caller is answered 403 (the program blocks the IP
  of a caller that went over its limit more than three times: ``block_after`` over-limit
  answers, null for never; ``POST /_sandbox/reset`` lifts it); the latency (``latency_ms``,
  "slow") is served; ``down``
  answers 503; ``throttle`` (``{"calls": N, "retry_after": S}``) answers the next N calls 429
  with ``Retry-After: S``; the rate window (``rate_limit``, default 600 calls in 60 s, sliding:
  every arrival counts, a refused one too) answers 429 with ``Retry-After`` the whole seconds
  until a call leaves the span (counted in ``over_limit``); then the bearer token (401, also
  while ``token_revoked``, as after a new token was generated);
- every ``PUT /users/qualification`` is recorded (``qualifications``: the user id named, the
  value, the status answered), qualifying sets ``qualified_at`` once (a second call keeps it);
- ``POST /_sandbox/join`` creates a user (fields from the body; defaults: a referred user of
  the first campaign, referred by its first direct user, a fresh ``joiner<id>@example.com``
  email, signed up now) and, unless ``"send_webhook": false`` (a lost webhook), POSTs the
  program's webhook ``{event: "user.join", id, code, email, campaign_id}`` with the configured
  ``webhook_headers`` to ``webhook_url``; it answers ``{"user", "webhook"}`` (the webhook's
  status, or why it was not sent);
- control routes under ``/_sandbox/`` (no auth): ``GET``/``PUT /_sandbox/config`` (``PUT``
  changes only the knobs it names), ``POST /_sandbox/users`` (add or replace users by id,
  checked against the contract unless ``?check=false``), ``GET /_sandbox/stats``,
  ``POST /_sandbox/reset`` (initial users, default config, zero stats);
- :meth:`ReferralState.close` cuts every latency wait short (call it before stopping the server).
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import urlencode

import requests
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from sync_worker.devtools.sandbox import server
from sync_worker.devtools.sandbox.referral_dataset import (
    InvalidUser,
    sample_campaigns,
    sample_users,
    validate_users,
)
from sync_worker.referral_records import DIRECT, REFERRED

DEFAULT_TOKEN = "sandbox-referral-token"
#: The real program's limit: 600 calls a minute per token.
DEFAULT_RATE_LIMIT = {"calls": 600, "window_seconds": 60.0}
MAX_PER_PAGE = 250
DEFAULT_PER_PAGE = 50
EXTENSION = "referral_sandbox"
WEBHOOK_TIMEOUT_SECONDS = 10.0
_KNOBS = (
    "latency_ms",
    "down",
    "throttle",
    "rate_limit",
    "token_revoked",
    "webhook_url",
    "webhook_headers",
    "links_base_url",
    "block_after",
)
#: Over-limit answers after which the sandbox blocks the caller, as the program blocks an IP.
DEFAULT_BLOCK_AFTER = 3


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def newest_first(users: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``users`` as the program lists them: newest ``signed_up_at`` first, then the higher id (pure)."""
    return sorted((dict(user) for user in users), key=lambda u: (u["signed_up_at"], u["id"]), reverse=True)


class ReferralState(server.SandboxState):
    """The sandbox's users, campaigns, knobs and counters (thread-safe)."""

    def __init__(
        self,
        users: Iterable[Mapping[str, Any]] | None = None,
        campaigns: Iterable[Mapping[str, Any]] | None = None,
        *,
        rate_limit: Mapping[str, float] | None = None,
        webhook_url: str | None = None,
        webhook_headers: Mapping[str, str] | None = None,
    ):
        super().__init__()
        self._campaigns = {c["id"]: dict(c) for c in (sample_campaigns() if campaigns is None else campaigns)}
        initial = sample_users() if users is None else validate_users(users, self._campaigns.values())
        self._initial = [dict(user) for user in initial]
        self._initial_rate = dict(rate_limit or DEFAULT_RATE_LIMIT)
        self._initial_webhook = (webhook_url, dict(webhook_headers or {}))
        self._users = {user["id"]: dict(user) for user in self._initial}
        self._default_config()
        self._zero_stats()

    # --- users -----------------------------------------------------------------------

    def listed(self, campaign_id: int | None) -> list[dict[str, Any]]:
        with self._changed:
            users = [
                u for u in self._users.values() if campaign_id is None or u["campaign_id"] == campaign_id
            ]
        return newest_first(users)

    def find(self, identifier: str, campaign_id: int | None = None) -> dict[str, Any] | None:
        text = identifier.strip()
        with self._changed:
            if text.isdigit():
                found = self._users.get(int(text))
                return dict(found) if found is not None else None
            if "@" in text:
                wanted = server.normalise_email(text)
                matches = [
                    u
                    for u in self._users.values()
                    if isinstance(u.get("email"), str)
                    and server.normalise_email(u["email"]) == wanted
                    and (campaign_id is None or u["campaign_id"] == campaign_id)
                ]
            else:
                matches = [u for u in self._users.values() if u["code"] == text]
        return newest_first(matches)[0] if matches else None

    def campaign(self, campaign_id: int) -> dict[str, Any] | None:
        with self._changed:
            found = self._campaigns.get(campaign_id)
            return dict(found) if found is not None else None

    def upsert(self, users: list[Any], *, check: bool = True) -> int:
        if check:
            validate_users(users, self._campaigns.values())
        elif not all(isinstance(u, Mapping) and _is_int(u.get("id")) for u in users):
            raise InvalidUser(["an unchecked user still needs an integer id"])
        with self._changed:
            for user in users:
                self._users[user["id"]] = dict(user)
        return len(users)

    def join(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """A new user from ``body``'s fields (the module says the defaults); InvalidUser if it breaks the contract."""
        unknown = set(body) - {
            "first_name", "email", "campaign_id", "referrer_id", "type", "source", "meta", "send_webhook",
        }  # fmt: skip
        if unknown:
            raise InvalidUser([f"unknown fields: {', '.join(sorted(unknown))}"])
        with self._changed:
            user_id = max(self._users, default=5000) + 1
            campaign_id = body.get("campaign_id", min(self._campaigns, default=1))
            kind = body.get("type", REFERRED)
            referrer = body.get("referrer_id")
            if "referrer_id" not in body and kind == REFERRED:
                direct = [
                    u["id"]
                    for u in self._users.values()
                    if u["campaign_id"] == campaign_id and u["type"] == DIRECT
                ]
                referrer = min(direct) if direct else None
            code = f"RF{user_id:05d}"
            user = {
                "id": user_id,
                "campaign_id": campaign_id,
                "referrer_id": referrer,
                "code": code,
                "url": f"https://sandbox.referral.invalid/r/{code}",
                "first_name": body.get("first_name", f"Joiner {user_id}"),
                "email": body.get("email", f"joiner{user_id}@example.com"),
                "source": body.get("source", "Referred" if kind == REFERRED else "Direct"),
                "type": kind,
                "signed_up_at": _now_iso(),
                "qualified_at": None,
                "unsubscribed_at": None,
                "meta": body.get("meta", []),
            }
            validate_users([user])
            if campaign_id not in self._campaigns:
                raise InvalidUser(["campaign_id is not a campaign"])
            self._users[user_id] = user
            return dict(user)

    def qualify(self, body: Any) -> tuple[int, dict[str, Any]]:
        """``(status, answer)`` of ``PUT /users/qualification``; every call recorded."""
        status, answer, named = self._qualify(body)
        with self._changed:
            self._qualifications.append(
                {
                    "id": named,
                    "qualified": body.get("qualified") if isinstance(body, Mapping) else None,
                    "status": status,
                    "at": time.time(),
                }
            )
        return status, answer

    def _qualify(self, body: Any) -> tuple[int, dict[str, Any], int | None]:
        if not isinstance(body, Mapping) or not isinstance(body.get("qualified"), bool):
            return 422, {"message": "The qualified field is required and must be true or false."}, None
        with self._changed:
            user = None
            if _is_int(body.get("id")):
                user = self._users.get(body["id"])
            elif isinstance(body.get("code"), str):
                user = next((u for u in self._users.values() if u["code"] == body["code"]), None)
            elif isinstance(body.get("email"), str) and _is_int(body.get("campaign_id")):
                wanted = server.normalise_email(body["email"])
                user = next(
                    (
                        u
                        for u in self._users.values()
                        if isinstance(u.get("email"), str)
                        and server.normalise_email(u["email"]) == wanted
                        and u["campaign_id"] == body["campaign_id"]
                    ),
                    None,
                )
            else:
                return 422, {"message": "Name the user by id, by code, or by email with campaign_id."}, None
            if user is None:
                return (
                    404,
                    {"message": "User not found."},
                    body.get("id") if _is_int(body.get("id")) else None,
                )
            if body["qualified"]:
                user["qualified_at"] = user.get("qualified_at") or _now_iso()
            else:
                user["qualified_at"] = None
            return 200, {"data": dict(user)}, user["id"]

    # --- knobs -----------------------------------------------------------------------

    def _default_config(self) -> None:
        self.latency_ms: float = 0
        self.down = False
        self.token_revoked = False
        self._throttle_left = 0
        self._throttle_retry_after = 1
        self._rate = dict(self._initial_rate)
        self.webhook_url, headers = self._initial_webhook
        self.webhook_headers = dict(headers)
        self.links_base_url: str | None = None
        self.block_after: int | None = DEFAULT_BLOCK_AFTER
        self.blocked = False
        self._arrivals: deque[float] = deque()
        self._max_in_window = 0

    def config(self) -> dict[str, Any]:
        with self._changed:
            throttle = (
                {"calls": self._throttle_left, "retry_after": self._throttle_retry_after}
                if self._throttle_left
                else None
            )
            return {
                "latency_ms": self.latency_ms,
                "down": self.down,
                "throttle": throttle,
                "rate_limit": dict(self._rate),
                "token_revoked": self.token_revoked,
                "webhook_url": self.webhook_url,
                "webhook_headers": dict(self.webhook_headers),
                "links_base_url": self.links_base_url,
                "block_after": self.block_after,
            }

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Apply the knobs named in ``changes`` (ValueError naming a bad one; nothing applied then)."""
        server.checked_knobs(changes, _KNOBS)
        latency = server.latency_knob(changes, self.latency_ms)
        for name in ("down", "token_revoked"):
            if name in changes and not isinstance(changes[name], bool):
                raise ValueError(f"{name} must be true or false")
        throttle = changes.get("throttle", "unchanged")
        if throttle not in ("unchanged", None) and not (
            isinstance(throttle, Mapping) and _is_int(throttle.get("calls")) and throttle["calls"] >= 0
            and _is_int(throttle.get("retry_after", 1)) and throttle.get("retry_after", 1) >= 0
        ):  # fmt: skip
            raise ValueError('throttle must be {"calls": N, "retry_after": S} (integers) or null')
        rate = changes.get("rate_limit", self._rate)
        if rate is None:
            rate = dict(self._initial_rate)
        if not (isinstance(rate, Mapping) and _is_int(rate.get("calls")) and rate["calls"] > 0):
            raise ValueError('rate_limit must be {"calls": N > 0, "window_seconds": S > 0} or null')
        if not server.positive_number(rate.get("window_seconds", self._rate["window_seconds"])):
            raise ValueError("rate_limit.window_seconds must be > 0")
        url = changes.get("webhook_url", self.webhook_url)
        if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ValueError("webhook_url must be an http(s) URL or null")
        block_after = changes.get("block_after", self.block_after)
        if block_after is not None and not (_is_int(block_after) and block_after >= 0):
            raise ValueError("block_after must be an integer >= 0 or null")
        links = changes.get("links_base_url", self.links_base_url)
        if links is not None and not (isinstance(links, str) and links.startswith(("http://", "https://"))):
            raise ValueError("links_base_url must be an http(s) URL or null")
        headers = changes.get("webhook_headers", self.webhook_headers)
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("webhook_headers must be an object of strings")
        with self._changed:
            self.latency_ms = latency
            self.down = changes.get("down", self.down)
            self.token_revoked = changes.get("token_revoked", self.token_revoked)
            if throttle is None:
                self._throttle_left = 0
            elif throttle != "unchanged":
                self._throttle_left = throttle["calls"]
                self._throttle_retry_after = throttle.get("retry_after", 1)
            new_rate = {
                "calls": rate["calls"],
                "window_seconds": float(rate.get("window_seconds", self._rate["window_seconds"])),
            }
            if new_rate != self._rate:  # a new window: the span's count starts again
                self._rate, self._arrivals, self._max_in_window = new_rate, deque(), 0
            self.webhook_url, self.webhook_headers = url, dict(headers)
            self.links_base_url = links
            self.block_after = block_after
            self._changed.notify_all()
        return self.config()

    def arrive(self, operation: str) -> float:
        """Count a call arriving now; 0.0 when the rate window lets it through, else seconds to wait."""
        now = time.monotonic()
        with self._changed:
            self._calls[operation] += 1
            window = self._rate["window_seconds"]
            while self._arrivals and self._arrivals[0] <= now - window:
                self._arrivals.popleft()
            self._arrivals.append(now)
            self._max_in_window = max(self._max_in_window, len(self._arrivals))
            if len(self._arrivals) <= self._rate["calls"]:
                return 0.0
            # Over the limit: it may pass once the oldest calls of the span have left it.
            return max(0.001, self._arrivals[-self._rate["calls"]] + window - now)

    def went_over(self) -> None:
        """Count an over-limit answer; past ``block_after`` of them the caller is blocked."""
        with self._changed:
            self._answers["over_limit"] += 1
            if self.block_after is not None and self._answers["over_limit"] > self.block_after:
                self.blocked = True

    def throttled(self) -> int | None:
        """The ``Retry-After`` for this call when ``throttle`` still has calls to refuse, else None."""
        with self._changed:
            if self._throttle_left <= 0:
                return None
            self._throttle_left -= 1
            return self._throttle_retry_after

    # --- stats -------------------------------------------------------------------------

    def _zero_stats(self) -> None:
        self._calls: Counter[str] = Counter()
        self._answers: Counter[str] = Counter()
        self._qualifications: list[dict[str, Any]] = []
        self._webhooks: list[dict[str, Any]] = []

    def sent_webhook(self, result: dict[str, Any]) -> None:
        with self._changed:
            self._webhooks.append(result)

    def stats(self) -> dict[str, Any]:
        with self._changed:
            return {
                "calls": dict(self._calls),
                "total_calls": sum(self._calls.values()),
                "max_in_window": self._max_in_window,
                "rate_limit": dict(self._rate),
                "over_limit": self._answers["over_limit"],
                "blocked": self.blocked,
                "blocked_answers": self._answers["blocked"],
                "throttled": self._answers["throttled"],
                "outage_answers": self._answers["down"],
                "unauthorized": self._answers["401"],
                "qualifications": [dict(q) for q in self._qualifications],
                "webhooks": [dict(w) for w in self._webhooks],
                "users": len(self._users),
            }

    def reset(self) -> None:
        with self._changed:
            self._users = {user["id"]: dict(user) for user in self._initial}
            self._default_config()
            self._zero_stats()
            self._changed.notify_all()


#: The program's error answer: ``{"message": ...}`` JSON (``_error(status, message, headers)``).
_error = partial(server.json_error, key="message")


def _operation(method: str, path: str) -> str | None:
    """The contract operation a request is for (counted and gated), or None (control routes)."""
    if path == "/users" and method == "GET":
        return "GET /users"
    if path == "/users/qualification" and method == "PUT":
        return "PUT /users/qualification"
    if path.startswith("/users/") and method == "GET":
        return "GET /users/{identifier}"
    if path.startswith("/campaigns/") and method == "GET":
        return "GET /campaigns/{id}"
    if path.startswith(("/users", "/campaigns")):
        return f"{method} {path.split('/')[1]}"
    return None


def _int_arg(name: str, default: int | None, low: int, high: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.strip().isdigit():
        raise ValueError(f"The {name} must be an integer.")
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise ValueError(
            f"The {name} must be between {low} and {high}." if high else f"The {name} must be at least {low}."
        )
    return value


def send_webhook(state: ReferralState, user: Mapping[str, Any]) -> dict[str, Any]:
    """POST the program's ``user.join`` webhook for ``user`` to the configured receiver."""
    config = state.config()
    url = config["webhook_url"]
    if url is None:
        return {"sent": False, "reason": "no webhook_url configured"}
    body = {
        "event": "user.join",
        "id": user["id"],
        "code": user["code"],
        "email": user["email"],
        "campaign_id": user["campaign_id"],
    }
    try:
        answer = requests.post(
            url, json=body, headers=config["webhook_headers"], timeout=WEBHOOK_TIMEOUT_SECONDS
        )
    except requests.RequestException as exc:
        result: dict[str, Any] = {"sent": True, "id": user["id"], "status": None, "error": type(exc).__name__}
    else:
        result = {"sent": True, "id": user["id"], "status": answer.status_code}
    state.sent_webhook(result)
    return result


def create_app(
    users: list[dict[str, Any]] | None = None,
    campaigns: list[dict[str, Any]] | None = None,
    *,
    token: str = DEFAULT_TOKEN,
    state: ReferralState | None = None,
    **options: Any,
) -> Flask:
    """The sandbox app; ``users`` None serves the sample (``[]``: none). ``options`` go to
    :class:`ReferralState` (``rate_limit``, ``webhook_url``, ``webhook_headers``).

    The state is ``app.extensions["referral_sandbox"]`` (close it before stopping the server).
    """
    if state is None:
        state = ReferralState(users, campaigns, **options)
    app = Flask(__name__)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = state

    @app.before_request
    def _gate() -> Response | None:
        operation = _operation(request.method, request.path)
        if operation is None:
            return None
        wait = state.arrive(operation)
        if state.blocked:
            state.answered("blocked")
            return _error(403, "Your IP address is blocked for going over the rate limit (sandbox).")
        state.serve_latency()
        if state.down:
            state.answered("down")
            return _error(503, "Service Unavailable (sandbox: down)")
        retry_after = state.throttled()
        if retry_after is not None:
            state.answered("throttled")
            return _error(429, "Too Many Attempts.", {"Retry-After": str(retry_after)})
        if wait > 0:
            state.went_over()
            return _error(429, "Too Many Attempts.", server.retry_after_header(wait))
        if not server.bearer_accepted(token, revoked=state.token_revoked):
            state.answered("401")
            return _error(401, "Unauthenticated.")
        return None

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        return _error(error.code or 500, error.description or error.name)

    @app.get("/users")
    def users_page() -> Response:
        try:
            page = _int_arg("page", 1, 1) or 1
            per_page = _int_arg("per_page", DEFAULT_PER_PAGE, 1, MAX_PER_PAGE) or DEFAULT_PER_PAGE
            campaign_id = _int_arg("campaign_id", None, 0)
        except ValueError as exc:
            return _error(422, str(exc))
        listed = state.listed(campaign_id)
        start = (page - 1) * per_page
        next_url = None
        if start + per_page < len(listed):
            query = {"page": page + 1, "per_page": per_page}
            if campaign_id is not None:
                query["campaign_id"] = campaign_id
            base = (state.links_base_url or request.host_url).rstrip("/")
            next_url = f"{base}{request.path}?{urlencode(query)}"
        return jsonify(
            {
                "data": listed[start : start + per_page],
                "links": {"next": next_url},
                "meta": {"current_page": page, "per_page": per_page, "total": len(listed)},
            }
        )

    @app.get("/users/<path:identifier>")
    def user(identifier: str) -> Response:
        try:
            campaign_id = _int_arg("campaign_id", None, 0)
        except ValueError as exc:
            return _error(422, str(exc))
        found = state.find(identifier, campaign_id)
        if found is None:
            return _error(404, "User not found.")
        return jsonify({"data": found})

    @app.put("/users/qualification")
    def qualification() -> Response:
        status, answer = state.qualify(request.get_json(silent=True))
        response = jsonify(answer)
        response.status_code = status
        return response

    @app.get("/campaigns/<int:campaign_id>")
    def campaign(campaign_id: int) -> Response:
        found = state.campaign(campaign_id)
        if found is None:
            return _error(404, "Campaign not found.")
        return jsonify({"data": found})

    # --- control routes ------------------------------------------------------------------

    server.register_controls(app, state, _error)

    @app.post("/_sandbox/users")
    def add_users() -> Response:
        return server.store_records(None, state.upsert, noun="user", refused=InvalidUser, error=_error)

    @app.post("/_sandbox/join")
    def join() -> Response:
        body = request.get_json(silent=True)
        body = {} if body is None else body
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        try:
            joined = state.join(body)
        except InvalidUser as exc:
            return _error(400, str(exc))
        if body.get("send_webhook", True):
            webhook = send_webhook(state, joined)
        else:
            webhook = {"sent": False, "reason": "send_webhook is false (a lost webhook)"}
        return jsonify({"user": joined, "webhook": webhook})

    return app


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("a header is NAME=VALUE")
    return name.strip(), value


def main(argv: list[str] | None = None) -> None:
    """``python -m sync_worker.devtools.sandbox.referral --port 8083 --token T [--webhook-url URL
    --webhook-header X-Referral-Token=...]``."""
    parser = argparse.ArgumentParser(description="Serve the referral program sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--webhook-url", help="where POST /_sandbox/join sends the user.join webhook")
    parser.add_argument("--webhook-header", type=_header, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--calls", type=int, default=DEFAULT_RATE_LIMIT["calls"], help="rate limit: calls")
    parser.add_argument(
        "--window-seconds", type=float, default=DEFAULT_RATE_LIMIT["window_seconds"], help="rate limit window"
    )
    args = parser.parse_args(argv)
    app = create_app(
        token=args.token,
        rate_limit={"calls": args.calls, "window_seconds": args.window_seconds},
        webhook_url=args.webhook_url,
        webhook_headers=dict(args.webhook_header),
    )
    state = app.extensions[EXTENSION]
    print(f"referral sandbox on http://{args.host}:{args.port} ({state.stats()['users']} users)", flush=True)
    server.serve_until_interrupted(app, args.host, args.port, state)


if __name__ == "__main__":
    main()
