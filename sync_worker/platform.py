"""Platform API client: the read side the sync uses (``docs/contracts/platform-api.yaml``).

Guarantees (the request loop is :class:`~sync_worker.transport.JsonApiClient`'s, one for every
upstream; this module gives it the platform's error table and its timeout error):
- every request carries ``Authorization: Bearer <token>``, ``Accept: application/json`` and a
  timeout: ``timeout`` seconds to connect and again for each socket read (so one attempt can
  last longer than ``timeout``); or, for :meth:`PlatformClient.clients_by_email` given
  ``total_timeout``, one total for connecting, sending and waiting for the answer together
  (urllib3's ``Timeout(total=...)``); once the request is sent, each socket read of the answer
  may wait what was left of the total then, so an answer that arrives in one piece (a small
  JSON answer) is bounded by the total, one sent in pieces with pauses between them is not
  (requests offers no bound on that);
- ``hooks.before_request("platform", operation)`` runs before every attempt (in-call retries
  included) and ``hooks.after_response("platform", status, headers)`` after every response;
- a failure is raised as one :class:`PlatformError` subclass:
  :class:`PlatformUnavailable` (timeouts, connection errors, 5xx, a 2xx that is not JSON;
  transient; a timeout is its subclass :class:`PlatformTimedOut`, with the same ``code``),
  :class:`PlatformRateLimited` (429, ``retry_after`` in seconds from ``Retry-After``; transient),
  :class:`PlatformAuthError` (401/403; permanent), :class:`PlatformRequestError` (any other
  4xx, with the contract's ``{"error": ...}`` message; permanent),
  :class:`PlatformContractError` (a JSON answer that breaks the contract; permanent);
- :class:`PlatformUnavailable` failures are retried in the call (``max_attempts`` attempts,
  jittered exponential backoff capped at ``backoff_max``: about a second in all with the
  defaults); a 429 is raised at once, so the caller can reschedule instead of blocking;
- the answer's envelope is checked (``data`` an array, or for :meth:`PlatformClient.lookup` an
  object with an array for every requested email; else :class:`PlatformContractError`); the
  records in it are returned as sent: :mod:`sync_worker.platform_records` checks each before it is
  computed, so a malformed record is its own contact's ``platform_data_invalid``, never a failed
  batch for every contact of a bulk chunk;
- :meth:`PlatformClient.lookup` accepts any number of emails: it sends them normalised
  (trimmed, lower-cased, duplicates dropped) in calls of at most :data:`LOOKUP_BATCH` emails and
  answers every requested email, keyed by its normalised form (``[]`` for no account);
- the dealer users' reads (``/v1/users...``): :meth:`PlatformClient.user` answers ``None`` for a
  404 (no such user) and :meth:`PlatformClient.users_by_email` a list; both check every record
  (:func:`check_user`, :mod:`sync_worker.platform_users`), so a record that breaks the contract
  is that one user's :class:`PlatformContractError`. The batch reads
  (:meth:`PlatformClient.users_page`, :meth:`PlatformClient.iter_users`,
  :meth:`PlatformClient.lookup_users`) check the envelope and each record's ``user_id`` (a
  non-blank string; in a lookup, the id it is answered under) and return the records as sent:
  the caller checks each with :func:`check_user`, so one malformed user is its own error, never
  a failed (halted) batch. :meth:`PlatformClient.lookup_users` takes any number of ids, sends
  them (duplicates dropped, order kept) in calls of at most :data:`LOOKUP_BATCH`, and answers
  every requested id (``None`` for an unknown one); :meth:`PlatformClient.iter_users` follows
  ``next_cursor`` until it is null and refuses a cursor answered twice (it would loop);
- log lines carry operation names, statuses, attempts and error codes, never emails, names
  or the token.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from sync_worker.errors import PermanentError, TransientError
from sync_worker.logs import log_event
from sync_worker.platform_users import user_problems
from sync_worker.transport import JsonApiClient
from sync_worker.upstream_errors import StatusTable, UpstreamError, UpstreamRateLimited

logger = logging.getLogger(__name__)

UPSTREAM = "platform"
#: The most emails one ``POST /v1/clients/lookup`` may carry, and the most ids one
#: ``POST /v1/users/lookup`` may (the contract's ``maxItems``).
LOOKUP_BATCH = 100
#: The bounds of ``GET /v1/users``'s ``limit`` (the contract's).
USERS_PAGE_LIMITS = (1, 500)
#: The wait assumed for a 429 without a usable ``Retry-After``.
DEFAULT_RETRY_AFTER = 1.0

# --- errors -----------------------------------------------------------------------------


class PlatformError(UpstreamError):
    """A failed platform call; ``status`` is the HTTP status (None without a response)."""

    code = "platform_error"


class PlatformUnavailable(PlatformError, TransientError):
    """Timeouts, connection errors, 5xx: the platform cannot be read right now."""

    code = "platform_unavailable"


class PlatformTimedOut(PlatformUnavailable):
    """No answer within the timeout: the platform may be down, or only slower than the caller could wait."""


class PlatformRateLimited(PlatformError, UpstreamRateLimited):
    """429: wait ``retry_after`` seconds before the next call."""

    code = "platform_rate_limited"


class PlatformAuthError(PlatformError, PermanentError):
    """401/403: the token is wrong or lacks access."""

    code = "platform_auth"


class PlatformRequestError(PlatformError, PermanentError):
    """Any other 4xx: the request itself is wrong."""

    code = "platform_bad_request"


class PlatformContractError(PlatformError, PermanentError):
    """The platform answered, but not in the shape the contract promises."""

    code = "platform_contract"


def normalise_email(email: str) -> str:
    """The form emails are matched and keyed in: trimmed and lower-cased."""
    return email.strip().lower()


#: The platform's one error table (its body's message is under ``error``).
ERRORS = StatusTable(
    label="platform",
    message_field="error",
    rate_limited=PlatformRateLimited,
    auth=PlatformAuthError,
    request=PlatformRequestError,
    unavailable=PlatformUnavailable,
    default_retry_after=DEFAULT_RETRY_AFTER,
)
#: The typed error for a non-2xx answer (pure: no I/O; ``now`` in Unix seconds).
error_for_response = ERRORS.error_for


def _records(value: Any, *, operation: str, where: str) -> list[Any]:
    """One email's records, as sent: checking each is the sync's (:mod:`sync_worker.platform_records`),
    so one malformed record concerns its contact alone, not every email of a batch."""
    if not isinstance(value, list):
        raise PlatformContractError(f"platform {operation}: {where} is not an array")
    return value


def check_user(record: Any, *, operation: str = "user", where: str = "user") -> dict[str, Any]:
    """``record`` when it is a contract ``User`` (:func:`~sync_worker.platform_users.user_problems`),
    else :class:`PlatformContractError` naming the problems (fields, never values)."""
    problems = user_problems(record)
    if problems:
        raise PlatformContractError(
            f"platform {operation}: {where} breaks the contract: " + "; ".join(problems)
        )
    return record


def _user_id_of(record: Any, *, operation: str, where: str) -> str:
    """A batch record's ``user_id`` (a non-blank string), else :class:`PlatformContractError`."""
    user_id = record.get("user_id") if isinstance(record, Mapping) else None
    if not isinstance(user_id, str) or not user_id.strip():
        raise PlatformContractError(f"platform {operation}: {where} has no user_id")
    return user_id


@dataclass(frozen=True)
class UsersPage:
    """One page of ``GET /v1/users``: the users as sent, and the cursor of the next page (None: the last)."""

    users: list[dict[str, Any]]
    next_cursor: str | None


# --- the client ---------------------------------------------------------------------------


class PlatformClient(JsonApiClient):
    upstream = UPSTREAM
    label = "platform"
    unavailable_error = PlatformUnavailable
    timeout_error = PlatformTimedOut
    retried = (PlatformUnavailable,)
    error_table = staticmethod(error_for_response)
    default_timeout = 5.0

    # --- operations ------------------------------------------------------------------

    def clients_by_email(self, email: str, *, total_timeout: float | None = None) -> list[dict[str, Any]]:
        """Every account whose email matches ``email`` (trimmed, case-insensitive), as the platform orders them.

        ``total_timeout``: seconds for each attempt's connect, send and wait for the answer
        together, instead of the client's ``timeout`` for each of them (the module's guarantees
        say what it cannot bound).
        """
        wanted = normalise_email(email)
        if not wanted:
            raise ValueError("clients_by_email needs a non-blank email")
        operation = "clients_by_email"
        payload = self._request(
            operation, "GET", "/v1/clients", total_timeout=total_timeout, params={"email": wanted}
        )
        return _records(payload.get("data"), operation=operation, where="data")

    def lookup(self, emails: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
        """Accounts for each email, keyed by the normalised email; ``[]`` for an email with no account.

        More than :data:`LOOKUP_BATCH` distinct emails are split into several calls, in order; a
        failing call raises (nothing partial is returned). Blank emails raise ``ValueError``.
        """
        wanted = list(dict.fromkeys(normalise_email(email) for email in emails))
        if any(not email for email in wanted):
            raise ValueError("lookup needs non-blank emails")
        operation = "lookup"
        found: dict[str, list[dict[str, Any]]] = {}
        for start, batch, data in self._batched(operation, "/v1/clients/lookup", "emails", wanted):
            answered = {normalise_email(str(key)): value for key, value in data.items()}
            for position, email in enumerate(batch, start=start):
                if email not in answered:
                    raise PlatformContractError(
                        f"platform {operation}: no answer for requested email #{position}"
                    )
                found[email] = _records(answered[email], operation=operation, where=f"data[#{position}]")
        return found

    def user(self, user_id: str, *, total_timeout: float | None = None) -> dict[str, Any] | None:
        """The user ``user_id`` (``GET /v1/users/{id}``), checked; None when the platform answers 404.

        ``total_timeout`` as for :meth:`clients_by_email`.
        """
        if not isinstance(user_id, str) or not user_id.strip():
            raise ValueError("user needs a non-blank user_id")
        operation = "user"
        try:
            payload = self._request(
                operation, "GET", f"/v1/users/{quote(user_id, safe='')}", total_timeout=total_timeout
            )
        except PlatformRequestError as exc:
            if exc.status == 404:
                return None
            raise
        return check_user(dict(payload), operation=operation)

    def users_by_email(self, email: str) -> list[dict[str, Any]]:
        """Every user whose email matches ``email`` (trimmed, case-insensitive), each checked."""
        wanted = normalise_email(email)
        if not wanted:
            raise ValueError("users_by_email needs a non-blank email")
        operation = "users_by_email"
        payload = self._request(operation, "GET", "/v1/users", params={"email": wanted})
        records = _records(payload.get("data"), operation=operation, where="data")
        return [
            check_user(record, operation=operation, where=f"data[{index}]")
            for index, record in enumerate(records)
        ]

    def users_page(self, cursor: str | None = None, limit: int = 100) -> UsersPage:
        """One page of every user in the platform's stable order (records as sent; see the module)."""
        low, high = USERS_PAGE_LIMITS
        if isinstance(limit, bool) or not isinstance(limit, int) or not low <= limit <= high:
            raise ValueError(f"users_page needs {low} <= limit <= {high}")
        operation = "users_page"
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        payload = self._request(operation, "GET", "/v1/users", params=params)
        records = _records(payload.get("data"), operation=operation, where="data")
        for index, record in enumerate(records):
            _user_id_of(record, operation=operation, where=f"data[{index}]")
        if "next_cursor" not in payload:
            raise PlatformContractError(f"platform {operation}: no next_cursor")
        next_cursor = payload["next_cursor"]
        if next_cursor is not None and (not isinstance(next_cursor, str) or not next_cursor):
            raise PlatformContractError(f"platform {operation}: next_cursor is not a string or null")
        return UsersPage(users=records, next_cursor=next_cursor)

    def iter_users(self, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every user, page after page (``limit`` a page) until ``next_cursor`` is null."""
        cursor: str | None = None
        seen: set[str] = set()
        while True:
            page = self.users_page(cursor, limit)
            yield from page.users
            if page.next_cursor is None:
                return
            if page.next_cursor in seen:
                raise PlatformContractError("platform users_page: a cursor was answered twice")
            seen.add(page.next_cursor)
            cursor = page.next_cursor

    def lookup_users(self, user_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """The user for each id (as sent; see the module), None for an id the platform does not know.

        More than :data:`LOOKUP_BATCH` distinct ids are split into several calls, in order; a
        failing call raises (nothing partial is returned). Blank ids raise ``ValueError``.
        """
        wanted = list(dict.fromkeys(user_ids))
        if any(not isinstance(user_id, str) or not user_id.strip() for user_id in wanted):
            raise ValueError("lookup_users needs non-blank string ids")
        operation = "lookup_users"
        found: dict[str, dict[str, Any] | None] = {}
        for start, batch, data in self._batched(operation, "/v1/users/lookup", "user_ids", wanted):
            for position, user_id in enumerate(batch, start=start):
                if user_id not in data:
                    raise PlatformContractError(
                        f"platform {operation}: no answer for requested id #{position}"
                    )
                record = data[user_id]
                where = f"data[#{position}]"
                if record is not None and _user_id_of(record, operation=operation, where=where) != user_id:
                    raise PlatformContractError(f"platform {operation}: {where} is another user")
                found[user_id] = record
        return found

    def health(self) -> bool:
        """True when ``GET /v1/health`` answers 2xx (one attempt; failures answer False)."""
        self.hooks.before_request(UPSTREAM, "health")
        try:
            response = self.session.get(
                self.base_url + "/v1/health", headers=self._headers(), timeout=self.timeout
            )
        except requests.RequestException as exc:
            log_event(logger, "platform_health_failed", level=logging.WARNING, error=type(exc).__name__)
            return False
        self.hooks.after_response(UPSTREAM, response.status_code, dict(response.headers))
        return 200 <= response.status_code < 300

    # --- transport -------------------------------------------------------------------

    def _batched(
        self, operation: str, path: str, field: str, wanted: list[str]
    ) -> Iterator[tuple[int, list[str], Mapping[str, Any]]]:
        """POST ``wanted`` to ``path`` as ``{field: [...]}`` in calls of :data:`LOOKUP_BATCH`, in
        order; yields each call's first position, its items and its ``data`` object."""
        for start in range(0, len(wanted), LOOKUP_BATCH):
            batch = wanted[start : start + LOOKUP_BATCH]
            payload = self._request(operation, "POST", path, json={field: batch})
            data = payload.get("data")
            if not isinstance(data, Mapping):
                raise PlatformContractError(f"platform {operation}: data is not an object")
            yield start, batch, data
