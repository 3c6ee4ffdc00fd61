"""Referral program client: the read and qualify side ``docs/contracts/referral-api.yaml`` describes.

Guarantees (the request loop is :class:`~sync_worker.transport.JsonApiClient`'s, one for every
upstream; this module gives it the program's error table):
- every request carries ``Authorization: Bearer <token>``, ``Accept: application/json`` and a
  timeout (``timeout`` seconds to connect and again for each socket read); the token is never
  logged nor in the ``repr``;
- ``hooks.before_request("referral", operation)`` runs before every attempt (in-call retries
  included), so the shared limiter sees every call, and ``hooks.after_response("referral",
  status, headers)`` after every response (a 429 pauses the limiter for every worker);
- a failure is raised as one :class:`ReferralError` subclass (:func:`error_for_response`, the
  one table): :class:`ReferralUnavailable` (timeouts, connection errors, 5xx, a 2xx that is not
  JSON; transient), :class:`ReferralRateLimited` (429, ``retry_after`` seconds from
  ``Retry-After``; transient), :class:`ReferralAuthError` (401/403: a revoked token; permanent,
  and it halts the referral upstream, :mod:`sync_worker.halts`), :class:`ReferralRequestError`
  (any other 4xx, with the contract's ``{"message": ...}``; permanent),
  :class:`ReferralContractError` (an answer or a record that breaks the contract; permanent);
- :class:`ReferralUnavailable` failures are retried in the call (``max_attempts`` attempts,
  jittered exponential backoff capped at ``backoff_max``); a 429 is raised at once, so the
  caller can reschedule instead of blocking (every worker waits out the pause anyway);
- :meth:`ReferralClient.user` answers None for a 404 and the checked record otherwise
  (:mod:`sync_worker.referral_records`); a page's records are checked one by one: a bad one is
  left out of :attr:`ReferralPage.users` and listed in :attr:`ReferralPage.rejected` (its id and
  problems, logged), so one malformed user never stops a walk;
- paging follows ``links.next`` as the program gives it, and only to the host of
  ``base_url`` (another host, or a link back to the same page, is a :class:`ReferralContractError`);
- campaigns are kept in-process for :data:`CAMPAIGN_TTL_SECONDS` (a missing one too): their
  names rarely change and every call costs budget;
- log lines carry operation names, statuses, attempts, error codes and user ids, never emails,
  names or the token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

from sync_worker.errors import PermanentError, TransientError
from sync_worker.logs import log_event
from sync_worker.referral_records import campaign_problems, user_problems
from sync_worker.transport import JsonApiClient
from sync_worker.upstream_errors import StatusTable, UpstreamError, UpstreamRateLimited

logger = logging.getLogger(__name__)

UPSTREAM = "referral"
#: The program's largest page (the contract's ``per_page`` maximum).
MAX_PER_PAGE = 250
#: How long a campaign (its name) is kept in-process.
CAMPAIGN_TTL_SECONDS = 300.0
#: The wait assumed for a 429 without a usable ``Retry-After``.
DEFAULT_RETRY_AFTER = 1.0
# --- errors -----------------------------------------------------------------------------


class ReferralError(UpstreamError):
    """A failed referral program call; ``status`` is the HTTP status (None without a response)."""

    code = "referral_error"


class ReferralUnavailable(ReferralError, TransientError):
    """Timeouts, connection errors, 5xx: the program cannot be reached right now."""

    code = "referral_unavailable"


class ReferralRateLimited(ReferralError, UpstreamRateLimited):
    """429: wait ``retry_after`` seconds before the next call (every worker's limiter is paused)."""

    code = "referral_rate_limited"


class ReferralAuthError(ReferralError, PermanentError):
    """401/403: the token is wrong or was revoked (a new one generated): halts the upstream."""

    code = "referral_auth"


class ReferralRequestError(ReferralError, PermanentError):
    """Any other 4xx: the request itself is wrong (an unknown user to qualify, a bad parameter)."""

    code = "referral_bad_request"


class ReferralContractError(ReferralError, PermanentError):
    """The program answered, but not in the shape the contract promises."""

    code = "referral_contract"


#: The program's one error table (its body's message is under ``message``).
ERRORS = StatusTable(
    label="referral",
    message_field="message",
    rate_limited=ReferralRateLimited,
    auth=ReferralAuthError,
    request=ReferralRequestError,
    unavailable=ReferralUnavailable,
    default_retry_after=DEFAULT_RETRY_AFTER,
)
#: The typed error for a non-2xx answer (pure: no I/O; ``now`` in Unix seconds).
error_for_response = ERRORS.error_for


@dataclass(frozen=True)
class Rejected:
    """A record of a page left out: its id when it has an integer one, and what is wrong (no values)."""

    id: int | None
    problems: tuple[str, ...]


@dataclass(frozen=True)
class ReferralPage:
    """One page of users, newest first; ``next_url`` the program's link to the next (None: last)."""

    users: list[dict[str, Any]]
    next_url: str | None
    rejected: list[Rejected] = field(default_factory=list)


def checked_user(record: Any, *, operation: str) -> dict[str, Any]:
    """``record`` when it is a contract ``User``, else :class:`ReferralContractError` naming the problems."""
    problems = user_problems(record)
    if problems:
        raise ReferralContractError(
            f"referral {operation}: the user breaks the contract: {'; '.join(problems)}"
        )
    return dict(record)


def same_origin(url: str, base_url: str) -> bool:
    """Does ``url`` point at the scheme and host (with port) of ``base_url``? (pure)"""
    link, base = urlsplit(url), urlsplit(base_url)
    return (link.scheme.lower(), link.netloc.lower()) == (base.scheme.lower(), base.netloc.lower())


# --- the client ---------------------------------------------------------------------------


class ReferralClient(JsonApiClient):
    upstream = UPSTREAM
    label = "referral"
    unavailable_error = ReferralUnavailable
    timeout_error = ReferralUnavailable
    retried = (ReferralUnavailable,)
    follow_redirects = False
    error_table = staticmethod(error_for_response)

    def __init__(
        self, base_url: str, token: str, *, campaign_ttl: float = CAMPAIGN_TTL_SECONDS, **options: Any
    ):
        """``options``: :class:`~sync_worker.transport.JsonApiClient`'s (timeout, hooks, session, retries)."""
        super().__init__(base_url, token, **options)
        self.campaign_ttl = campaign_ttl
        self._campaigns: dict[int, tuple[float, dict[str, Any] | None]] = {}
        self._campaigns_lock = threading.Lock()

    # --- operations ------------------------------------------------------------------

    def user(self, identifier: str | int, *, campaign_id: int | None = None) -> dict[str, Any] | None:
        """The user with this id, code or email (``campaign_id``: of that campaign); None when there is none."""
        text = str(identifier).strip()
        if not text:
            raise ValueError("user needs a non-blank identifier")
        params = {"campaign_id": campaign_id} if campaign_id is not None else None
        operation = "user"
        try:
            payload = self._request(operation, "GET", f"/users/{quote(text, safe='@')}", params=params)
        except ReferralRequestError as error:
            if error.status == 404:
                return None
            raise
        return checked_user(payload.get("data"), operation=operation)

    def users_page(
        self, *, page: int = 1, per_page: int = 100, campaign_id: int | None = None
    ) -> ReferralPage:
        """One page of users, newest first (of ``campaign_id`` only, when given)."""
        if page < 1 or not 1 <= per_page <= MAX_PER_PAGE:
            raise ValueError(f"page must be >= 1 and per_page within 1..{MAX_PER_PAGE}")
        params: dict[str, int] = {"page": page, "per_page": per_page}
        if campaign_id is not None:
            params["campaign_id"] = campaign_id
        return self._page(self.base_url + "/users", params)

    def next_page(self, next_url: str) -> ReferralPage:
        """The page ``links.next`` named, followed as given (only to the program's own host)."""
        if not same_origin(next_url, self.base_url):
            raise ReferralContractError("referral users: links.next points at another host; not followed")
        return self._page(next_url, None)

    def iter_users_newest_first(
        self, *, per_page: int = 100, campaign_id: int | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every user, newest first, a page at a time (stop iterating to stop reading pages)."""
        page = self.users_page(per_page=per_page, campaign_id=campaign_id)
        while True:
            yield from page.users
            if page.next_url is None:
                return
            page = self.next_page(page.next_url)

    def campaign(self, campaign_id: int) -> dict[str, Any] | None:
        """The campaign ``{id, name}``, None when there is none; kept :attr:`campaign_ttl` seconds."""
        now = time.monotonic()
        with self._campaigns_lock:
            kept = self._campaigns.get(campaign_id)
        if kept is not None and kept[0] > now:
            return kept[1]
        operation = "campaign"
        try:
            payload = self._request(operation, "GET", f"/campaigns/{int(campaign_id)}")
        except ReferralRequestError as error:
            if error.status != 404:
                raise
            found = None
        else:
            data = payload.get("data")
            problems = campaign_problems(data)
            if problems:
                raise ReferralContractError(f"referral {operation}: {'; '.join(problems)}")
            found = {"id": data["id"], "name": data["name"]}
        with self._campaigns_lock:
            self._campaigns[campaign_id] = (now + self.campaign_ttl, found)
        return found

    def qualify(self, user_id: int) -> dict[str, Any]:
        """Tell the program the referred user ``user_id`` qualified; the user as it now is."""
        if isinstance(user_id, bool) or not isinstance(user_id, int):
            raise ValueError("qualify needs an integer user id")
        operation = "qualify"
        payload = self._request(
            operation, "PUT", "/users/qualification", json={"id": user_id, "qualified": True}
        )
        return checked_user(payload.get("data"), operation=operation)

    # --- paging ----------------------------------------------------------------------

    def _page(self, url: str, params: Mapping[str, int] | None) -> ReferralPage:
        operation = "users"
        payload = self._request_url(operation, "GET", url, params=params)
        data, links = payload.get("data"), payload.get("links")
        if not isinstance(data, list):
            raise ReferralContractError(f"referral {operation}: data is not an array")
        if not isinstance(links, Mapping) or "next" not in links:
            raise ReferralContractError(f"referral {operation}: links.next is missing")
        next_url = links["next"]
        if next_url is not None:
            if not isinstance(next_url, str) or not next_url.strip():
                raise ReferralContractError(f"referral {operation}: links.next is not a URL or null")
            next_url = urljoin(url, next_url.strip())
            if not same_origin(next_url, self.base_url):
                raise ReferralContractError(f"referral {operation}: links.next points at another host")
            if params is None and next_url == url:
                raise ReferralContractError(f"referral {operation}: links.next names the same page")
        users, rejected = [], []
        for record in data:
            problems = user_problems(record)
            if not problems:
                users.append(dict(record))
                continue
            record_id = record.get("id") if isinstance(record, Mapping) else None
            record_id = record_id if isinstance(record_id, int) and not isinstance(record_id, bool) else None
            rejected.append(Rejected(record_id, tuple(problems)))
            log_event(
                logger,
                "referral_record_invalid",
                level=logging.WARNING,
                user_id=record_id,
                problems=list(problems),
            )
        return ReferralPage(users=users, next_url=next_url, rejected=rejected)
