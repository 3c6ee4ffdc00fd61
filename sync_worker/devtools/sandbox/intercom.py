"""A local stand-in for Intercom's REST API (the contact and data-attribute calls the sync makes).

Guarantees:
- API requests are checked the way Intercom does, in this order: Bearer token (401
  ``unauthorized``), rate limit (429 ``rate_limit_exceeded``), then the request against
  Intercom's OpenAPI 2.14 description (400 ``parameter_invalid`` listing the problems);
- rate limiting uses fixed windows (10 s unless configured) aligned on the Unix clock; every
  API response carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
  ``X-RateLimit-Reset`` (Unix seconds of the window's end), and the state records, per
  window, how many API requests arrived, how many were admitted and how many were refused
  with 429 (``received - admitted - refused`` were unauthorized), so no window can be shown
  to have admitted more than its limit, or to have been asked for more, without
  :meth:`IntercomState.stats` saying so;
- contacts, merges and data attributes live in memory behind one lock (the server is
  threaded); contacts have Intercom's shape; a PUT writes only custom attributes that exist
  as data attributes, with values of their ``data_type`` (strings at most 255 characters),
  validating the whole update before applying any of it; a merged contact answers as the
  requested ``Intercom-Version`` documents: 410 ``contact_merged`` with a ``Link`` to the
  survivor under ``Preview`` (whose requests are validated against the Preview description),
  404 ``not_found`` under 2.14 and every other version, as a deleted contact does;
- ``POST /contacts`` creates a user or a lead; a user's email (case-insensitive, among users) and
  any contact's ``external_id`` are unique, archived contacts included: a duplicate answers 409
  ``conflict`` "A contact matching those details already exists with id=<id>", as Intercom does
  (a PUT giving a contact another's email or external id too);
  an archived contact (``POST /contacts/{id}/archive``, undone by ``/unarchive``) answers 404 and
  is left out of lists and search until unarchived;
- companies and memberships (``POST/GET /companies``, ``/contacts/{id}/companies``) live in
  :mod:`sync_worker.devtools.sandbox.intercom_companies`, under the same lock, windows and
  validation; ``stats()["succeeded_by_operation"]`` counts the 2xx answers per operation id
  (``CreateContact``, ``createOrUpdateCompany``, ``attachContactToACompany``, ...);
- leads (``role: lead``) have no ``external_id`` (one sent is ignored, as Intercom ignores it); a
  PUT ``role: user`` converts a lead (``signed_up_at`` set), a user never becomes a lead;
  ``POST /contacts/merge``, the agent control routes and the webhooks they send live in
  :mod:`~sync_worker.devtools.sandbox.intercom_agent`, registered by :func:`create_app`;
- every PUT applied to a contact is kept, in order, in that contact's write log (the last
  :data:`WRITES_KEPT`), so a test can show what a contact showed at every step, not only at the end;
- data attributes are listed without archived ones unless ``include_archived=true``; an archived
  name can be neither written nor created again; at most :data:`MAX_CUSTOM_ATTRIBUTES` live
  custom attributes per model (the sandbox's own wording for the refusal);
- ``/_sandbox/*`` control routes (no auth, not validated, not rate limited) seed, inspect,
  merge, delete, read write logs, seed companies and attachments, race a company create, archive attributes (``PUT /_sandbox/data_attributes/<name>``),
  configure failures, delays and a revoked token (``token_revoked``), read the stats and reset.

Run standalone: ``python -m sync_worker.devtools.sandbox.intercom --port 8090 --token T [--contacts FILE]``.
"""

from __future__ import annotations

import argparse
import base64
import itertools
import json
import math
import re
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from flask import Flask, Response, g, jsonify, request

from sync_worker.devtools.sandbox.intercom_companies import CompanyBook, add_company_routes
from sync_worker.devtools.sandbox.openapi import RequestValidator, get_validator, shipped_spec
from sync_worker.devtools.sandbox.server import ServedApp

DEFAULT_RATE_LIMIT = 1666  # Intercom's 10,000 calls a minute per app, per 10-second window
DEFAULT_WINDOW_SECONDS = 10.0
MAX_PER_PAGE = 150
MAX_STRING_VALUE = 255
MAX_CUSTOM_ATTRIBUTES = 250  # per model, archived ones not counted
MAX_WINDOWS_KEPT = 5000
RECENT_REQUESTS_KEPT = 200
WRITES_KEPT = 100
PREVIEW_VERSION = "Preview"

DATA_TYPES = ("string", "integer", "float", "boolean", "date", "datetime", "options")
# Standard contact attributes: a custom attribute may not take one of these names (compared
# case-insensitively, with "_" and "-" read as spaces).
STANDARD_CONTACT_ATTRIBUTES = (
    "id", "type", "external_id", "user_id", "workspace_id", "role", "email", "phone", "name",
    "avatar", "owner", "owner_id", "created_at", "updated_at", "signed_up", "signed_up_at",
    "last_seen", "last_seen_at", "last_replied_at", "last_contacted_at", "last_email_opened_at",
    "last_email_clicked_at", "unsubscribed_from_emails", "has_hard_bounced", "marked_email_as_spam",
    "language_override", "browser", "os", "location", "city", "region", "country", "companies",
    "notes", "social_profiles", "custom_attributes",
)  # fmt: skip
_FORBIDDEN_NAME_CHARACTERS = set('.$[]"')
_FAILURE_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    408: "request_timeout",
    409: "conflict",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


class ApiError(Exception):
    """An answer in Intercom's ``error.list`` shape."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def _comparable(name: str) -> str:
    return " ".join(re.split(r"[\s_\-]+", name.strip().lower())).strip()


_STANDARD = frozenset(_comparable(n) for n in STANDARD_CONTACT_ATTRIBUTES)


# --- configuration and bookkeeping ---------------------------------------------------------


@dataclass
class SandboxConfig:
    rate_limit: int = DEFAULT_RATE_LIMIT
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    fail_next: dict[str, Any] | None = None  # {"count", "status", "code"?, "message"?, "operation"?}
    delay_ms: int = 0
    search_lag_seconds: float = 0.0  # new contacts show up in search only after this long
    token_revoked: bool = False  # the token is refused (401) as a revoked one is, until restored
    webhook_url: str | None = None  # where notifications go (our receiver): see intercom_agent
    webhook_secret: str | None = None  # the app's client secret: signs them (X-Hub-Signature)
    echo_writes: bool = False  # every API PUT /contacts/{id} is notified back (contact.<role>.updated)

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply ``changes`` (ValueError, nothing applied, on an unknown key or a bad value)."""
        unknown = set(changes) - {f for f in self.__dataclass_fields__}
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(sorted(unknown))}")
        updated = {**asdict(self), **changes}
        if int(updated["rate_limit"]) < 0:
            raise ValueError("rate_limit must be >= 0")
        if float(updated["window_seconds"]) <= 0:
            raise ValueError("window_seconds must be > 0")
        if int(updated["delay_ms"]) < 0 or float(updated["search_lag_seconds"]) < 0:
            raise ValueError("delay_ms and search_lag_seconds must be >= 0")
        failure = updated["fail_next"]
        url = updated["webhook_url"]
        if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
            raise ValueError("webhook_url must be an http(s) URL or null")
        if failure is not None:
            if not isinstance(failure, Mapping) or not isinstance(failure.get("status"), int):
                raise ValueError('fail_next must look like {"count": 3, "status": 503}')
            failure = {"count": int(failure.get("count", 1)), **failure}
        self.rate_limit = int(updated["rate_limit"])
        self.window_seconds = float(updated["window_seconds"])
        self.fail_next = dict(failure) if failure else None
        self.delay_ms = int(updated["delay_ms"])
        self.search_lag_seconds = float(updated["search_lag_seconds"])
        self.token_revoked = bool(updated["token_revoked"])
        self.webhook_url = url
        self.webhook_secret = None if updated["webhook_secret"] is None else str(updated["webhook_secret"])
        self.echo_writes = bool(updated["echo_writes"])


@dataclass
class Window:
    start: float
    end: float
    limit: int
    received: int = 0
    admitted: int = 0
    refused: int = 0  # authorized requests answered 429 (over the window's limit)


@dataclass(frozen=True)
class Admission:
    admitted: bool
    limit: int
    remaining: int
    reset_at: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


@dataclass
class _Stats:
    windows: dict[float, Window] = field(default_factory=dict)
    by_operation: Counter[str] = field(default_factory=Counter)
    succeeded_by_operation: Counter[str] = field(default_factory=Counter)  # 2xx answers only
    by_status: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    validation_failures: int = 0
    unauthorized: int = 0
    injected_failures: int = 0
    validation_problems: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=RECENT_REQUESTS_KEPT))


# --- the state -----------------------------------------------------------------------------


class IntercomState:
    """Contacts, data attributes, rate-limit windows and stats of one sandbox (thread-safe)."""

    def __init__(
        self,
        *,
        rate_limit: int = DEFAULT_RATE_LIMIT,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
        workspace_id: str = "sandbox",
    ):
        self.clock = clock
        self.workspace_id = workspace_id
        self._initial = SandboxConfig(rate_limit=rate_limit, window_seconds=window_seconds)
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget contacts, attributes and stats; config back to what the state was built with."""
        with self._lock:
            self.config = SandboxConfig(**asdict(self._initial))
            self._contacts: dict[str, dict[str, Any]] = {}
            self._order: list[str] = []  # contact ids in creation order (the listing's order)
            self._position: dict[str, int] = {}  # contact id -> its index in _order
            self._merged: dict[str, str] = {}
            self._attributes: dict[tuple[str, str], dict[str, Any]] = {}
            self._writes: dict[str, deque[dict[str, Any]]] = {}
            self._stats = _Stats()
            self.companies = CompanyBook(
                lock=self._lock,
                clock=self.clock,
                new_id=self._new_id,
                live_contact=lambda contact_id: self._live(contact_id, preview=False),
                check_value=lambda name, value: self._check_custom_value(name, value, model="company"),
                app_id=self.workspace_id,
                api_error=ApiError,
            )

    # --- rate limiting and stats ---------------------------------------------------------

    def _window(self, now: float) -> Window:
        size = self.config.window_seconds
        start = math.floor(now / size) * size
        window = self._stats.windows.get(start)
        if window is None:
            window = Window(start, start + size, self.config.rate_limit)
            self._stats.windows[start] = window
            while len(self._stats.windows) > MAX_WINDOWS_KEPT:
                self._stats.windows.pop(next(iter(self._stats.windows)))
        return window

    def receive(self, *, authorized: bool) -> Admission:
        """Count one API request; admit it if authorized and its window has room."""
        with self._lock:
            window = self._window(self.clock())
            window.received += 1
            admitted = authorized and window.admitted < window.limit
            if admitted:
                window.admitted += 1
            elif authorized:
                window.refused += 1
                self._stats.rate_limited += 1
            else:
                self._stats.unauthorized += 1
            return Admission(
                admitted, window.limit, max(0, window.limit - window.admitted), math.ceil(window.end)
            )

    def record(self, method: str, path: str, operation: str, status: int) -> None:
        with self._lock:
            self._stats.by_operation[operation] += 1
            if 200 <= status < 300:
                self._stats.succeeded_by_operation[operation] += 1
            self._stats.by_status[str(status)] += 1
            self._stats.recent.append(
                {
                    "at": round(self.clock(), 3),
                    "method": method,
                    "path": path,
                    "operation": operation,
                    "status": status,
                }
            )

    def record_validation_failure(self, problems: Iterable[str]) -> None:
        with self._lock:
            self._stats.validation_failures += 1
            self._stats.validation_problems.extend(problems)

    def take_failure(self, operation: str) -> tuple[int, str, str] | None:
        """The injected failure this request must answer with, if one is pending."""
        with self._lock:
            failure = self.config.fail_next
            if not failure or failure.get("count", 0) <= 0:
                return None
            if failure.get("operation") and failure["operation"] != operation:
                return None
            failure["count"] -= 1
            if failure["count"] <= 0:
                self.config.fail_next = None
            self._stats.injected_failures += 1
            status = int(failure["status"])
            code = failure.get("code") or _FAILURE_CODES.get(status, "server_error")
            return status, code, failure.get("message") or f"Injected failure ({status})"

    def token_revoked(self) -> bool:
        with self._lock:
            return self.config.token_revoked

    def delay_seconds(self) -> float:
        with self._lock:
            return self.config.delay_ms / 1000.0

    def update_config(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change the config; a new ``rate_limit`` applies to the current window at once."""
        with self._lock:
            self.config.update(changes)
            if "rate_limit" in changes:
                self._window(self.clock()).limit = self.config.rate_limit
            return asdict(self.config)

    def config_dict(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.config)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            windows = list(self._stats.windows.values())
            return {
                "limit": self.config.rate_limit,
                "window_seconds": self.config.window_seconds,
                "windows": [asdict(w) for w in windows],
                "received_total": sum(w.received for w in windows),
                "admitted_total": sum(w.admitted for w in windows),
                "max_received_in_window": max((w.received for w in windows), default=0),
                "max_admitted_in_window": max((w.admitted for w in windows), default=0),
                "windows_over_limit": sum(1 for w in windows if w.admitted > w.limit),
                "calls_by_operation": dict(self._stats.by_operation),
                "succeeded_by_operation": dict(self._stats.succeeded_by_operation),
                **self.companies.counts(),
                "responses_by_status": dict(self._stats.by_status),
                "rate_limited": self._stats.rate_limited,
                "validation_failures": self._stats.validation_failures,
                "validation_problems": list(self._stats.validation_problems),
                "unauthorized": self._stats.unauthorized,
                "injected_failures": self._stats.injected_failures,
                "recent_requests": list(self._stats.recent),
            }

    # --- contacts ------------------------------------------------------------------------

    def _new_id(self) -> str:
        return f"{int(self.clock()):08x}{next(self._ids):016x}"

    def add_contact(self, seed: Mapping[str, Any]) -> dict[str, Any]:
        """Create a contact from ``{email, name?, id?, role?, external_id?, custom_attributes?}``."""
        with self._lock:
            contact_id = str(seed.get("id") or self._new_id())
            if contact_id in self._contacts:
                raise ValueError(f"contact {contact_id} already exists")
            role = seed.get("role", "user")
            if role not in ("user", "lead"):
                raise ValueError("role must be user or lead")
            now = self.clock()
            created = int(seed.get("created_at") or now)
            self._contacts[contact_id] = {
                "id": contact_id,
                "role": role,
                "email": seed.get("email"),
                "name": seed.get("name"),
                "phone": seed.get("phone"),
                "external_id": seed.get("external_id") if role == "user" else None,  # a lead's is ignored
                "custom_attributes": dict(seed.get("custom_attributes") or {}),
                "created_at": created,
                "updated_at": created,
                "signed_up_at": created if role == "user" else None,
                "archived": bool(seed.get("archived", False)),
                "_created": now,
            }
            self._position[contact_id] = len(self._order)
            self._order.append(contact_id)
            return self._render(self._contacts[contact_id])

    def stored_contact(self, contact_id: str) -> dict[str, Any] | None:
        """The contact as stored, merged or not (``merged_into`` set when merged)."""
        with self._lock:
            stored = self._contacts.get(contact_id)
            if stored is None:
                return None
            return {
                **self._render(stored),
                "merged_into": self._merged.get(contact_id),
                "archived": stored["archived"],
            }

    def all_contacts(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._render(c) for i, c in self._contacts.items() if i not in self._merged]

    def merge(self, from_id: str, into_id: str) -> None:
        with self._lock:
            if from_id not in self._contacts or into_id not in self._contacts:
                raise KeyError("both contacts must exist")
            if from_id == into_id or into_id in self._merged:
                raise ValueError("cannot merge into itself or into a merged contact")
            self._merged[from_id] = into_id
            for source, target in list(self._merged.items()):  # earlier merges follow to the survivor
                if target == from_id:
                    self._merged[source] = into_id

    def merge_lead(self, from_id: str, into_id: str) -> dict[str, Any]:
        """``POST /contacts/merge``: a live lead into a live user (404 / 400 otherwise). The user keeps
        its values and takes the lead's where it has none; the lead then answers as merged."""
        with self._lock:
            lead, user = self._live(from_id, preview=False), self._live(into_id, preview=False)
            if lead["role"] != "lead" or user["role"] != "user":
                raise ApiError(400, "parameter_invalid", "Only a lead can be merged, and only into a user")
            for key in ("name", "email", "phone"):
                user[key] = user[key] if user[key] is not None else lead[key]
            user["custom_attributes"] = {**lead["custom_attributes"], **user["custom_attributes"]}
            user["updated_at"] = int(self.clock())
            self.merge(from_id, into_id)
            return self._render(user)

    def delete(self, contact_id: str) -> None:
        """Delete a live contact: every version answers 404 for it, and it leaves lists and search."""
        with self._lock:
            if contact_id not in self._contacts or contact_id in self._merged:
                raise KeyError("no such live contact")
            del self._contacts[contact_id]
            self._writes.pop(contact_id, None)
            self.companies.forget_contact(contact_id)
            self._order.remove(contact_id)
            self._position = {cid: n for n, cid in enumerate(self._order)}

    def _live(self, contact_id: str, *, preview: bool) -> dict[str, Any]:
        if contact_id in self._merged and preview:
            survivor = self._merged[contact_id]
            raise ApiError(
                410,
                "contact_merged",
                "The contact has been merged into another contact",
                {"Link": f'</contacts/{survivor}>; rel="canonical"'},
            )
        contact = self._contacts.get(contact_id)
        if contact is None or contact_id in self._merged or contact["archived"]:
            raise ApiError(404, "not_found", "User Not Found")
        return contact

    def get_contact(self, contact_id: str, *, preview: bool = False) -> dict[str, Any]:
        with self._lock:
            return self._render(self._live(contact_id, preview=preview))

    def list_contacts(self, per_page: int, starting_after: str | None) -> dict[str, Any]:
        """One page of the live contacts; costs the page (and the merged ones), not the workspace."""
        with self._lock:
            _check_per_page(per_page)
            hidden = self._hidden()
            start = 0
            if starting_after:
                start = self._position[self._cursor_id(starting_after)] + 1
            chunk, end = [], start
            while end < len(self._order) and len(chunk) < per_page:
                if self._order[end] not in hidden:
                    chunk.append(self._contacts[self._order[end]])
                end += 1
            more = any(self._order[n] not in hidden for n in range(end, len(self._order)))
            live_before = start - sum(1 for m in hidden if self._position[m] < start)
            total = len(self._contacts) - len(hidden)
            return self._listing(chunk, per_page, total=total, start=live_before, more=more)

    def search_contacts(
        self, query: Mapping[str, Any], pagination: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        pagination = pagination or {}
        per_page = int(pagination.get("per_page") or 50)
        with self._lock:
            visible_before = self.clock() - self.config.search_lag_seconds
            contacts = [
                c
                for i, c in self._search_candidates(query)
                if i not in self._merged
                and not c["archived"]
                and c["_created"] <= visible_before
                and _matches(c, query)
            ]
            return self._page(contacts, per_page, pagination.get("starting_after"))

    def _search_candidates(self, query: Mapping[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
        """``(id, contact)`` of every contact a search for ``query`` must test, in creation order:
        all of them (a benchmark's state may index them: any superset of the matches will do)."""
        return self._contacts.items()

    def _identity_candidates(self, email: Any, external_id: Any) -> Iterable[tuple[str, dict[str, Any]]]:
        """``(id, contact)`` of every contact that may hold ``email`` or ``external_id``, in creation
        order: all of them (as :meth:`_search_candidates`)."""
        return self._contacts.items()

    def _cursor_id(self, cursor: str) -> str:
        after = _decode_cursor(cursor)
        if after is None or after not in self._contacts:
            raise ApiError(400, "parameter_invalid", "starting_after is not a valid cursor")
        return after

    def _page(
        self, contacts: list[dict[str, Any]], per_page: int, starting_after: str | None
    ) -> dict[str, Any]:
        """A page of ``contacts`` (in creation order): those created after the cursor's contact."""
        _check_per_page(per_page)
        start = 0
        if starting_after:
            after = self._position[self._cursor_id(starting_after)]
            start = next(
                (n for n, c in enumerate(contacts) if self._position[c["id"]] > after), len(contacts)
            )
        chunk = contacts[start : start + per_page]
        more = start + per_page < len(contacts)
        return self._listing(chunk, per_page, total=len(contacts), start=start, more=more)

    def _listing(
        self, chunk: list[dict[str, Any]], per_page: int, *, total: int, start: int, more: bool
    ) -> dict[str, Any]:
        """Intercom's list shape for ``chunk``, the page starting at the ``start``-th of ``total``."""
        pages: dict[str, Any] = {
            "type": "pages",
            "page": start // per_page + 1,
            "per_page": per_page,
            "total_pages": max(1, math.ceil(total / per_page)),
        }
        if more and chunk:
            pages["next"] = {"page": pages["page"] + 1, "starting_after": _encode_cursor(chunk[-1]["id"])}
        return {
            "type": "list",
            "data": [self._render(c) for c in chunk],
            "total_count": total,
            "pages": pages,
        }

    def update_contact(
        self, contact_id: str, body: Mapping[str, Any], *, preview: bool = False, logged: bool = True
    ) -> dict[str, Any]:
        """Apply a PUT body; the whole update is checked before anything is written. ``role: user``
        converts a lead (``signed_up_at`` set); a user never becomes a lead; a lead's ``external_id``
        is ignored. ``logged=False`` (an agent's change, not a PUT) keeps it out of the write log."""
        with self._lock:
            contact = self._live(contact_id, preview=preview)
            custom = body.get("custom_attributes") or {}
            for name, value in custom.items():
                self._check_custom_value(name, value)
            if "role" in body and body["role"] not in ("user", "lead"):
                raise ApiError(400, "parameter_invalid", "role must be user or lead")
            if body.get("role") == "lead" and contact["role"] == "user":
                raise ApiError(400, "parameter_invalid", "A user cannot be converted to a lead")
            converting = body.get("role") == "user" and contact["role"] == "lead"
            if "email" in body or "external_id" in body:
                role = body.get("role", contact["role"])
                self._check_unique(
                    role,
                    body.get("email"),
                    body.get("external_id") if role == "user" else None,  # a lead's is ignored
                    exclude=contact_id,
                )
            for key in ("name", "email", "phone", "external_id", "role"):
                if key in body:
                    contact[key] = body[key]
            if contact["role"] == "lead":
                contact["external_id"] = None
            if converting and contact["signed_up_at"] is None:
                contact["signed_up_at"] = int(self.clock())
            for name, value in custom.items():
                if value is None:
                    contact["custom_attributes"].pop(name, None)
                else:
                    contact["custom_attributes"][name] = value
            contact["updated_at"] = int(self.clock())
            if logged:
                log = self._writes.setdefault(contact_id, deque(maxlen=WRITES_KEPT))
                log.append({"at": round(self.clock(), 3), "body": json.loads(json.dumps(dict(body)))})
            return self._render(contact)

    def writes(self, contact_id: str) -> list[dict[str, Any]] | None:
        """The PUT bodies applied to the contact, oldest first (``{"at", "body"}``); None: no such contact."""
        with self._lock:
            if contact_id not in self._contacts:
                return None
            return [dict(write) for write in self._writes.get(contact_id, ())]

    def _check_custom_value(self, name: str, value: Any, *, model: str = "contact") -> None:
        attribute = self._attributes.get((model, name))
        if attribute is None or attribute.get("archived"):
            raise ApiError(400, "parameter_invalid", f"Custom attribute '{name}' does not exist")
        if value is None:
            return
        data_type = attribute["data_type"]
        ok = {
            "string": isinstance(value, str),
            "options": isinstance(value, str)
            and value in [o.get("value") for o in attribute.get("options") or []],
            "integer": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, int | float) and not isinstance(value, bool),
            "boolean": isinstance(value, bool),
            "date": isinstance(value, int) and not isinstance(value, bool),
            "datetime": isinstance(value, int) and not isinstance(value, bool),
        }.get(data_type, False)
        if not ok:
            raise ApiError(
                400,
                "parameter_invalid",
                f"Custom attribute '{name}' expects a {data_type} value, not {type(value).__name__}",
            )
        if isinstance(value, str) and len(value) > MAX_STRING_VALUE:
            raise ApiError(
                400,
                "parameter_invalid",
                f"Custom attribute '{name}' value is longer than {MAX_STRING_VALUE} characters",
            )

    def _render(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        contact_id = stored["id"]

        def listing(kind: str) -> dict[str, Any]:
            return {
                "type": "list",
                "data": [],
                "url": f"/contacts/{contact_id}/{kind}",
                "total_count": 0,
                "has_more": False,
            }

        return {
            "type": "contact",
            "id": contact_id,
            "workspace_id": self.workspace_id,
            "external_id": stored["external_id"],
            "role": stored["role"],
            "email": stored["email"],
            "email_domain": (stored["email"] or "").rpartition("@")[2] or None,
            "phone": stored["phone"],
            "name": stored["name"],
            "avatar": None,
            "owner_id": None,
            "social_profiles": {"type": "list", "data": []},
            "has_hard_bounced": False,
            "marked_email_as_spam": False,
            "unsubscribed_from_emails": False,
            "created_at": stored["created_at"],
            "updated_at": stored["updated_at"],
            "signed_up_at": stored["signed_up_at"],
            "last_seen_at": None,
            "last_replied_at": None,
            "last_contacted_at": None,
            "last_email_opened_at": None,
            "last_email_clicked_at": None,
            "language_override": None,
            "browser": None,
            "browser_version": None,
            "browser_language": None,
            "os": None,
            "location": {"type": "location", "country": None, "region": None, "city": None},
            "custom_attributes": dict(stored["custom_attributes"]),
            "tags": listing("tags"),
            "notes": listing("notes"),
            "companies": self.companies.contact_listing(contact_id),
        }

    # --- creating and archiving contacts ----------------------------------------------------

    def _hidden(self) -> set[str]:
        """Contacts lists and search leave out: merged and archived ones."""
        return set(self._merged) | {i for i, c in self._contacts.items() if c["archived"]}

    def create_contact(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /contacts``: a user's email and any contact's external id are unique in the
        workspace, archived contacts included (409 naming the contact that has them)."""
        role = body.get("role") or "user"
        if role not in ("user", "lead"):
            raise ApiError(400, "parameter_invalid", "role must be user or lead")
        email, external_id = body.get("email"), body.get("external_id")
        if role == "user" and not email and not external_id:
            raise ApiError(400, "parameter_invalid", "A user needs an email or an external_id")
        with self._lock:
            for name, value in (body.get("custom_attributes") or {}).items():
                self._check_custom_value(name, value)
            self._check_unique(role, email, external_id)
            seed = {k: body.get(k) for k in ("email", "name", "phone", "external_id")}
            custom = {k: v for k, v in (body.get("custom_attributes") or {}).items() if v is not None}
            return self.add_contact({**seed, "role": role, "custom_attributes": custom})

    def _check_unique(self, role: str, email: Any, external_id: Any, *, exclude: str | None = None) -> None:
        """409 naming the contact (archived ones included) that already has a user's ``email`` or
        the ``external_id``; ``exclude`` is the contact being updated."""
        for contact_id, contact in self._identity_candidates(email, external_id):
            if contact_id in self._merged or contact_id == exclude:
                continue
            same_email = (
                role == "user"
                and contact["role"] == "user"
                and bool(email)
                and _norm(contact["email"]) == _norm(email)
            )
            if same_email or (external_id and contact["external_id"] == external_id):
                raise ApiError(
                    409, "conflict", f"A contact matching those details already exists with id={contact_id}"
                )

    def set_contact_archived(self, contact_id: str, archived: bool) -> dict[str, Any]:
        """``POST /contacts/{id}/archive`` and ``/unarchive`` (404 for unknown or merged ones)."""
        with self._lock:
            contact = self._contacts.get(contact_id)
            if contact is None or contact_id in self._merged:
                raise ApiError(404, "not_found", "User Not Found")
            contact["archived"] = archived
            contact["updated_at"] = int(self.clock())
            return {
                "type": "contact",
                "id": contact_id,
                "external_id": contact["external_id"],
                "archived": archived,
            }

    # --- data attributes -------------------------------------------------------------------

    def list_data_attributes(self, model: str | None, include_archived: bool = False) -> dict[str, Any]:
        """Standard and custom attributes of ``model`` (every model when None); archived ones only
        with ``include_archived``, as Intercom lists them."""
        with self._lock:
            standard = [
                _attribute(f"standard-{n}", "contact", n, "string", custom=False, created_at=0)
                for n in ("name", "email", "phone", "external_id")
            ]
            custom = list(self._attributes.values())
            data = [
                a
                for a in standard + custom
                if model in (None, a["model"]) and (include_archived or not a["archived"])
            ]
            return {"type": "list", "data": [dict(a) for a in data]}

    def create_data_attribute(self, body: Mapping[str, Any]) -> dict[str, Any]:
        name = str(body.get("name") or "")
        model = str(body.get("model") or "")
        data_type = str(body.get("data_type") or "")
        with self._lock:
            if not name.strip():
                raise ApiError(400, "parameter_invalid", "Name is a required parameter.")
            if model not in ("contact", "company"):
                raise ApiError(
                    400,
                    "parameter_invalid",
                    "The Data Attribute model field must be either contact or company",
                )
            if data_type not in DATA_TYPES:
                raise ApiError(400, "parameter_invalid", "Data Type isn't an option")
            if name != name.strip() or _FORBIDDEN_NAME_CHARACTERS & set(name):
                raise ApiError(
                    400,
                    "parameter_invalid",
                    "Your name for this attribute must only contain alphanumeric characters, currency symbols, and hyphens",
                )
            people = "people" if model == "contact" else "company"
            taken = model == "contact" and _comparable(name) in _STANDARD
            taken = taken or any(
                m == model and _comparable(n) == _comparable(name) for m, n in self._attributes
            )
            if taken:
                raise ApiError(
                    400,
                    "parameter_invalid",
                    f"You already have '{name}' in your {people} data. To save this as new {people} data, use a different name.",
                )
            live = sum(1 for a in self._attributes.values() if a["model"] == model and not a["archived"])
            if live >= MAX_CUSTOM_ATTRIBUTES:
                raise ApiError(
                    400,
                    "parameter_invalid",
                    f"You have reached the limit of {MAX_CUSTOM_ATTRIBUTES} custom {people} attributes",
                )
            options = body.get("options") if data_type == "options" else None
            attribute = _attribute(
                str(next(self._ids)), model, name, data_type, custom=True, created_at=int(self.clock()),
                description=body.get("description"), options=options,
                messenger_writable=bool(body.get("messenger_writable", False)),
            )  # fmt: skip
            self._attributes[(model, name)] = attribute
            return dict(attribute)

    def set_archived(self, model: str, name: str, archived: bool) -> dict[str, Any]:
        """Archive (or unarchive) a custom attribute, as the Intercom UI does (KeyError: no such one)."""
        with self._lock:
            attribute = self._attributes[(model, name)]
            attribute["archived"] = archived
            attribute["updated_at"] = int(self.clock())
            return dict(attribute)


def _attribute(
    attribute_id: str,
    model: str,
    name: str,
    data_type: str,
    *,
    custom: bool,
    created_at: int,
    description: str | None = None,
    options: list[Any] | None = None,
    messenger_writable: bool = False,
) -> dict[str, Any]:
    attribute = {
        "type": "data_attribute",
        "id": attribute_id,
        "model": model,
        "name": name,
        "full_name": f"custom_attributes.{name}" if custom else name,
        "label": name,
        "description": description or "",
        "data_type": data_type,
        "api_writable": True,
        "ui_writable": True,
        "messenger_writable": messenger_writable,
        "custom": custom,
        "archived": False,
        "created_at": created_at,
        "updated_at": created_at,
    }
    if options is not None:
        attribute["options"] = options
    return attribute


# --- search --------------------------------------------------------------------------------


def _field_value(contact: Mapping[str, Any], name: str) -> Any:
    if name.startswith("custom_attributes."):
        return contact["custom_attributes"].get(name.split(".", 1)[1])
    return contact.get(name)


def _norm(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _matches(contact: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    """Intercom's search filters: ``{field, operator, value}`` or ``{operator: AND|OR, value: [...]}``."""
    operator = query.get("operator")
    if operator in ("AND", "OR"):
        parts = [_matches(contact, q) for q in query.get("value") or []]
        return all(parts) if operator == "AND" else any(parts)
    actual, wanted = _norm(_field_value(contact, str(query.get("field", "")))), query.get("value")
    if operator in ("IN", "NIN"):
        found = actual in [_norm(v) for v in (wanted or [])]
        return found if operator == "IN" else not found
    wanted = _norm(wanted)
    text, pattern = str(actual or ""), str(wanted or "")
    comparisons: dict[str, Callable[[], bool]] = {
        "=": lambda: actual == wanted,
        "!=": lambda: actual != wanted,
        "~": lambda: pattern in text,
        "!~": lambda: pattern not in text,
        "^": lambda: text.startswith(pattern),
        "$": lambda: text.endswith(pattern),
        "<": lambda: actual is not None and wanted is not None and actual < wanted,
        "<=": lambda: actual is not None and wanted is not None and actual <= wanted,
        ">": lambda: actual is not None and wanted is not None and actual > wanted,
        ">=": lambda: actual is not None and wanted is not None and actual >= wanted,
    }
    try:
        return comparisons.get(str(operator), lambda: False)()
    except TypeError:
        return False


def _check_per_page(per_page: int) -> None:
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ApiError(400, "parameter_invalid", f"per_page must be between 1 and {MAX_PER_PAGE}")


def _encode_cursor(contact_id: str) -> str:
    return base64.urlsafe_b64encode(f"after:{contact_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str | None:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return text[len("after:") :] if text.startswith("after:") else None


# --- the Flask app ---------------------------------------------------------------------------


def _error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    request_id = str(uuid.uuid4())
    body = {"type": "error.list", "request_id": request_id, "errors": [{"code": code, "message": message}]}
    response = jsonify(body)
    response.status_code = status
    response.headers["X-Request-Id"] = request_id
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _preview() -> bool:
    """Whether the request asks for Intercom's ``Preview`` version (410 for a merged contact)."""
    return request.headers.get("Intercom-Version", "").strip().lower() == PREVIEW_VERSION.lower()


def _validator_for(preview: bool) -> RequestValidator:
    """The validator of the description the request's version is checked against."""
    return get_validator(shipped_spec(PREVIEW_VERSION)) if preview else get_validator()


def create_app(
    state: IntercomState | None = None,
    *,
    token: str = "sandbox-token",
    validator: RequestValidator | None = None,
) -> Flask:
    """The sandbox as a WSGI app over ``state`` (a fresh one when None)."""
    state = state if state is not None else IntercomState()
    app = Flask(__name__)
    app.config["INTERCOM_STATE"] = state
    expected_auth = f"Bearer {token}"

    @app.before_request
    def _gate() -> Response | None:
        if request.path.startswith("/_sandbox/"):
            return None
        checker = validator if validator is not None else _validator_for(_preview())
        match = checker.match(request.method, request.path)
        g.operation = match.operation_id if match else "unknown"
        authorized = request.headers.get("Authorization") == expected_auth and not state.token_revoked()
        admission = state.receive(authorized=authorized)
        g.rate_headers = admission.headers()
        if not admission.admitted:
            if not authorized:
                return _error_response(401, "unauthorized", "Access Token Invalid")
            return _error_response(429, "rate_limit_exceeded", "Rate Limit Exceeded")
        problems = checker.validate(
            request.method,
            request.path,
            request.args.to_dict(flat=True),
            dict(request.headers),
            request.get_data(),
        )
        if problems:
            state.record_validation_failure(problems)
            if match is None:
                return _error_response(404, "not_found", "Resource Not Found: " + "; ".join(problems))
            return _error_response(400, "parameter_invalid", "; ".join(problems))
        delay = state.delay_seconds()
        if delay:
            time.sleep(delay)  # simulated latency
        failure = state.take_failure(g.operation)
        if failure is not None:
            return _error_response(*failure)
        return None

    @app.after_request
    def _finish(response: Response) -> Response:
        if not request.path.startswith("/_sandbox/"):
            for key, value in getattr(g, "rate_headers", {}).items():
                response.headers[key] = value
            state.record(
                request.method, request.path, getattr(g, "operation", "unknown"), response.status_code
            )
        return response

    @app.errorhandler(ApiError)
    def _api_error(error: ApiError) -> Response:
        headers = dict(error.headers)
        if headers.get("Link", "").startswith("</"):  # absolute, as Intercom sends it
            headers["Link"] = "<" + request.host_url.rstrip("/") + headers["Link"][1:]
        return _error_response(error.status, error.code, error.message, headers)

    @app.errorhandler(404)
    @app.errorhandler(405)
    def _no_route(error: Exception) -> Any:
        if request.path.startswith("/_sandbox/"):
            return jsonify({"error": "no such control route"}), 404
        operation = getattr(g, "operation", "unknown")
        if operation != "unknown":  # in Intercom's API, not in this sandbox
            return _error_response(501, "not_implemented", f"The sandbox does not implement {operation}")
        return _error_response(404, "not_found", "Resource Not Found")

    def body() -> dict[str, Any]:
        payload = request.get_json(silent=True)
        return payload if isinstance(payload, dict) else {}

    # --- Intercom's API ----------------------------------------------------------------

    @app.get("/contacts/<contact_id>")
    def show_contact(contact_id: str) -> Any:
        return jsonify(state.get_contact(contact_id, preview=_preview()))

    @app.put("/contacts/<contact_id>")
    def update_contact(contact_id: str) -> Any:
        return jsonify(state.update_contact(contact_id, body(), preview=_preview()))

    @app.get("/contacts")
    def list_contacts() -> Any:
        try:
            per_page = int(request.args.get("per_page", 50))
        except ValueError:
            raise ApiError(400, "parameter_invalid", "per_page must be an integer") from None
        return jsonify(state.list_contacts(per_page, request.args.get("starting_after")))

    @app.post("/contacts/search")
    def search_contacts() -> Any:
        payload = body()
        return jsonify(state.search_contacts(payload.get("query") or {}, payload.get("pagination")))

    @app.post("/contacts")
    def create_contact() -> Any:
        return jsonify(state.create_contact(body()))

    @app.post("/contacts/<contact_id>/archive")
    def archive_contact(contact_id: str) -> Any:
        return jsonify(state.set_contact_archived(contact_id, True))

    @app.post("/contacts/<contact_id>/unarchive")
    def unarchive_contact(contact_id: str) -> Any:
        return jsonify(state.set_contact_archived(contact_id, False))

    add_company_routes(app, lambda: state.companies)

    @app.get("/data_attributes")
    def list_data_attributes() -> Any:
        archived = request.args.get("include_archived", "false").lower() == "true"
        return jsonify(state.list_data_attributes(request.args.get("model"), archived))

    @app.post("/data_attributes")
    def create_data_attribute() -> Any:
        return jsonify(state.create_data_attribute(body()))

    # --- control routes ------------------------------------------------------------------

    @app.get("/_sandbox/contacts")
    def sandbox_contacts() -> Any:
        return jsonify(state.all_contacts())

    @app.post("/_sandbox/contacts")
    def sandbox_seed() -> Any:
        payload = request.get_json(silent=True)
        seeds = payload.get("contacts", payload) if isinstance(payload, dict) else payload
        many = isinstance(seeds, list)
        try:
            created = [state.add_contact(s) for s in (seeds if many else [seeds])]
        except (ValueError, TypeError, AttributeError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify(created if many else created[0]), 201

    @app.get("/_sandbox/contacts/<contact_id>")
    def sandbox_contact(contact_id: str) -> Any:
        stored = state.stored_contact(contact_id)
        if stored is None:
            return jsonify({"error": f"no contact {contact_id}"}), 404
        return jsonify(stored)

    @app.get("/_sandbox/contacts/<contact_id>/writes")
    def sandbox_writes(contact_id: str) -> Any:
        writes = state.writes(contact_id)
        if writes is None:
            return jsonify({"error": f"no contact {contact_id}"}), 404
        return jsonify(writes)

    @app.delete("/_sandbox/contacts/<contact_id>")
    def sandbox_delete(contact_id: str) -> Any:
        try:
            state.delete(contact_id)
        except KeyError as exc:
            return jsonify({"error": str(exc)}), 404
        return jsonify({"deleted": contact_id})

    @app.post("/_sandbox/contacts/<contact_id>/merge")
    def sandbox_merge(contact_id: str) -> Any:
        into = str(body().get("into") or "")
        try:
            state.merge(contact_id, into)
        except KeyError as exc:
            return jsonify({"error": str(exc)}), 404
        except ValueError as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify({"merged": contact_id, "into": into})

    @app.post("/_sandbox/data_attributes")
    def sandbox_attributes() -> Any:
        payload = request.get_json(silent=True)
        items = payload if isinstance(payload, list) else [payload or {}]
        try:
            created = [
                state.create_data_attribute({"model": "contact", "data_type": "string", **i}) for i in items
            ]
        except ApiError as exc:
            return jsonify({"error": exc.message}), 400
        return jsonify(created if isinstance(payload, list) else created[0]), 201

    @app.put("/_sandbox/data_attributes/<name>")
    def sandbox_attribute(name: str) -> Any:
        payload = body()
        try:
            changed = state.set_archived(
                str(payload.get("model") or "contact"), name, bool(payload.get("archived"))
            )
        except KeyError:
            return jsonify({"error": f"no attribute {name}"}), 404
        return jsonify(changed)

    @app.route("/_sandbox/config", methods=["GET", "PUT"])
    def sandbox_config() -> Any:
        if request.method == "GET":
            return jsonify(state.config_dict())
        try:
            return jsonify(state.update_config(body()))
        except (ValueError, TypeError) as exc:
            return jsonify({"error": str(exc)}), 400

    @app.get("/_sandbox/stats")
    def sandbox_stats() -> Any:
        return jsonify(state.stats())

    @app.post("/_sandbox/reset")
    def sandbox_reset() -> Any:
        state.reset()
        return jsonify({"reset": True})

    from sync_worker.devtools.sandbox.intercom_agent import register_agent_routes  # it imports this module

    register_agent_routes(app, state)  # POST /contacts/merge, /_sandbox/agent/*, echo_writes

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the Intercom sandbox.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--token", default="sandbox-token")
    parser.add_argument("--contacts", help="JSON file: a list of {email, name, id?} to seed")
    parser.add_argument("--rate-limit", type=int, default=DEFAULT_RATE_LIMIT)
    parser.add_argument("--window-seconds", type=float, default=DEFAULT_WINDOW_SECONDS)
    parser.add_argument(
        "--spec", help="Intercom OpenAPI description (default: $INTERCOM_OPENAPI_SPEC, else the shipped one)"
    )
    args = parser.parse_args(argv)
    try:
        validator = get_validator(args.spec)
    except FileNotFoundError as missing:
        parser.exit(2, f"intercom sandbox: {missing}\n")
    state = IntercomState(rate_limit=args.rate_limit, window_seconds=args.window_seconds)
    if args.contacts:
        with open(args.contacts, encoding="utf-8") as handle:
            for seed in json.load(handle):
                state.add_contact(seed)
    app = create_app(state, token=args.token, validator=validator)
    ServedApp(app, host=args.host, port=args.port).serve_forever()


if __name__ == "__main__":
    main()
