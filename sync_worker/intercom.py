"""Intercom REST client: the few contact and data-attribute calls the sync makes.

Guarantees:
- every request carries ``Authorization: Bearer``, ``Accept: application/json``, the pinned
  ``Intercom-Version`` header and a timeout;
- ``hooks.before_request("intercom", operation)`` runs before every attempt (retries included)
  and ``hooks.after_response("intercom", status, headers)`` after every response received;
- every response's ``X-RateLimit-*`` headers are kept in :attr:`IntercomClient.last_rate_limit`;
- a failure is raised as one :class:`IntercomError` subclass, which is also a
  :class:`~sync_worker.errors.TransientError` (timeouts, connection errors, 5xx, 408/409, 429)
  or a :class:`~sync_worker.errors.PermanentError` (everything else); each carries the HTTP
  status, Intercom's error code and message, and the request id;
- transient failures other than 429 are retried in the call, a few times with jittered
  exponential backoff (well under the caller's time budget); a 429 is raised at once with
  the window's reset time, so the caller can reschedule instead of blocking;
- log lines carry operation names, statuses, codes and ids, never emails or attribute values.

Contacts, companies and memberships (what the dealer-users profile writes):
- :meth:`IntercomClient.create_contact` never creates a duplicate silently: Intercom's 409 "A
  contact matching those details already exists with id=<id>" is :class:`ContactExists` with
  ``existing_id`` (permanent for this request, not retried: the caller continues with that id,
  unarchiving it first when :meth:`~IntercomClient.get_contact` answers 404 for it); an
  :meth:`~IntercomClient.update_contact` giving a contact another one's email or external id
  (``standard=``) is refused the same way;
- :meth:`~IntercomClient.search_contacts` is one page of any Intercom search query,
  :meth:`~IntercomClient.iter_search` every page (``pages.next.starting_after``); search lags
  behind writes in Intercom, so a contact just created may not be found yet;
- :meth:`~IntercomClient.upsert_company` creates or updates by ``company_id``; the create Intercom
  loses to a concurrent one ("Company already exists.", 400 ``unique_company_constraint``) is
  :class:`CompanyExists` (transient: the company exists by then), so the caller reads it back
  with :meth:`~IntercomClient.find_company` (None when there is none);
- :meth:`~IntercomClient.list_contact_companies` returns every company of a contact, whether
  Intercom answers under ``data`` (its examples) or ``companies`` (its schema), page by page;
- :meth:`~IntercomClient.attach_company` beyond Intercom's :data:`MAX_COMPANIES_PER_CONTACT`
  associations is :class:`CompanyLimitReached` (permanent, naming the limit); attaching an
  attached company changes nothing; Intercom does not document its answer to detaching a company
  that is not attached (the sandbox answers 200), so a caller should read a
  :class:`IntercomNotFound` from :meth:`~IntercomClient.detach_company` as "already detached";
- data attributes take ``model="company"`` as they take ``"contact"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.utils import parse_header_links

from sync_worker.errors import PermanentError, RateLimited, SyncError, TransientError
from sync_worker.transport import JsonApiClient

UPSTREAM = "intercom"
DEFAULT_RATE_LIMIT_WAIT = 10.0  # one Intercom window, when a 429 says nothing about its reset
MAX_COMPANIES_PER_CONTACT = 1000  # Intercom's cap on one contact's company associations
SEARCH_PER_PAGE = 150  # the largest page Intercom's search answers


# --- errors -----------------------------------------------------------------------------


class IntercomError(SyncError):
    """A failed Intercom call: ``status`` (None without a response), Intercom's ``intercom_code``."""

    code = "intercom_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        intercom_code: str | None = None,
        request_id: str | None = None,
        code: str | None = None,
    ):
        super().__init__(message, code=code)
        self.status = status
        self.intercom_code = intercom_code
        self.request_id = request_id


class IntercomNotFound(IntercomError, PermanentError):
    code = "intercom_not_found"


class ContactMerged(IntercomError, PermanentError):
    """The contact was merged into another one: ``survivor_id`` is the contact that remains."""

    code = "contact_merged"

    def __init__(self, message: str, *, survivor_id: str, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.survivor_id = survivor_id


class IntercomRateLimited(IntercomError, RateLimited):
    """429: no call may succeed before ``reset_at`` (Unix seconds); ``retry_after`` is the wait."""

    code = "intercom_rate_limited"

    def __init__(self, message: str, *, reset_at: float, retry_after: float, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.reset_at = reset_at
        self.retry_after = retry_after


class InvalidAttribute(IntercomError, PermanentError):
    """Intercom refused a custom attribute (unknown, wrong type, bad name); ``attribute`` if named."""

    code = "invalid_attribute"

    def __init__(self, message: str, *, attribute: str | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.attribute = attribute


class IntercomAuthError(IntercomError, PermanentError):
    code = "intercom_auth"


class IntercomBadRequest(IntercomError, PermanentError):
    code = "intercom_bad_request"


class IntercomConflict(IntercomError, TransientError):
    """408 or 409: the same request can succeed a moment later."""

    code = "intercom_conflict"


class ContactExists(IntercomError, PermanentError):
    """409 to a create: a contact with that email (users) or external id exists, ``existing_id``."""

    code = "contact_exists"

    def __init__(self, message: str, *, existing_id: str, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.existing_id = existing_id


class CompanyExists(IntercomError, TransientError):
    """A create of a ``company_id`` lost to a concurrent one: the company exists, read it back."""

    code = "company_exists"


class CompanyLimitReached(IntercomError, PermanentError):
    """The contact holds Intercom's maximum of company associations (``limit``)."""

    code = "company_limit_reached"

    def __init__(self, message: str, *, limit: int = MAX_COMPANIES_PER_CONTACT, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.limit = limit


class IntercomUnavailable(IntercomError, TransientError):
    """Timeouts, connection errors, 5xx, unreadable answers."""

    code = "intercom_unavailable"


# --- pure helpers -------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimitState:
    """What the last response said about the current rate-limit window."""

    limit: int | None
    remaining: int | None
    reset_at: float | None  # Unix seconds

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> RateLimitState | None:
        """The state in ``X-RateLimit-*`` headers (case-insensitive), or None when there are none."""
        lowered = {k.lower(): v for k, v in headers.items()}

        def number(name: str) -> float | None:
            try:
                return float(lowered[name])
            except (KeyError, TypeError, ValueError):
                return None

        limit, remaining, reset = (
            number("x-ratelimit-limit"),
            number("x-ratelimit-remaining"),
            number("x-ratelimit-reset"),
        )
        if limit is None and remaining is None and reset is None:
            return None
        return cls(
            int(limit) if limit is not None else None,
            int(remaining) if remaining is not None else None,
            reset,
        )


@dataclass(frozen=True)
class ContactPage:
    contacts: list[dict[str, Any]]
    next_cursor: str | None
    total_count: int | None = None


def parse_error_body(payload: Any) -> tuple[str | None, str | None, str | None]:
    """``(code, message, request_id)`` of Intercom's ``error.list`` body (Nones when absent)."""
    if not isinstance(payload, Mapping):
        return None, None, None
    request_id = payload.get("request_id")
    errors = payload.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], Mapping):
        first = errors[0]
        return first.get("code"), first.get("message"), request_id
    return None, payload.get("message"), request_id


def survivor_from_link(link_header: str | None) -> str | None:
    """The contact id a ``Link`` header points to (``<.../contacts/<id>>; rel=...``)."""
    if not link_header:
        return None
    for link in parse_header_links(link_header):
        path = urlsplit(link.get("url", "").strip("<> ")).path.rstrip("/")
        match = re.search(r"/contacts/([^/]+)$", path)
        if match:
            return match.group(1)
    return None


_EXISTING_CONTACT = re.compile(r"already exists with id\s*=\s*['\"]?([0-9A-Za-z_-]+)")


def existing_contact_id(message: str | None) -> str | None:
    """The id in Intercom's "A contact matching those details already exists with id=<id>"."""
    match = _EXISTING_CONTACT.search(message or "")
    return match.group(1) if match else None


def is_company_exists(code: str | None, message: str | None) -> bool:
    """Whether an error body is Intercom's answer to a concurrent create of one company."""
    return code == "unique_company_constraint" or "company already exists" in (message or "").lower()


def is_company_limit(code: str | None, message: str | None) -> bool:
    """Whether an error body is Intercom's refusal of one more company association."""
    text = (message or "").lower()
    return code == "contact_company_limit_exceeded" or ("maximum" in text and "company associations" in text)


def companies_of(payload: Any) -> list[dict[str, Any]]:
    """The companies of a contact-companies answer: under ``data`` (Intercom's examples) or
    ``companies`` (its 2.14 schema), whichever holds companies; an empty list when neither does."""
    if not isinstance(payload, Mapping):
        return []
    for key in ("data", "companies"):
        found = payload.get(key)
        if isinstance(found, list) and found:
            return [dict(c) for c in found if isinstance(c, Mapping)]
    return []


def company_from_listing(payload: Any, company_id: str) -> dict[str, Any] | None:
    """The company ``company_id`` in a ``GET /companies?company_id=`` answer: a ``company_list``
    (2.14's schema) or one company object (older versions), None when it holds no such company."""
    if not isinstance(payload, Mapping):
        return None
    candidates = [payload] if payload.get("type") == "company" else companies_of(payload)
    for company in candidates:
        if company.get("company_id") == company_id:
            return dict(company)
    return None


def next_page_cursor(payload: Mapping[str, Any]) -> str | None:
    """``pages.next.starting_after`` of a contacts list or search answer, None on the last page."""
    next_page = (payload.get("pages") or {}).get("next") or {}
    cursor = next_page.get("starting_after") if isinstance(next_page, Mapping) else None
    return cursor or None


_ATTRIBUTE_NAME = re.compile(r"""['"‘’“”]([^'"‘’“”]+)['"‘’“”]""")


def error_for_response(
    status: int,
    headers: Mapping[str, str],
    payload: Any,
    *,
    operation: str,
    now: float,
) -> IntercomError:
    """The typed error for a non-2xx answer (pure: no I/O, ``now`` in Unix seconds)."""
    code, message, request_id = parse_error_body(payload)
    lowered = {k.lower(): v for k, v in headers.items()}
    request_id = request_id or lowered.get("x-request-id")
    text = (
        f"Intercom {operation} answered {status}"
        + (f" {code}" if code else "")
        + (f": {message}" if message else "")
    )
    common: dict[str, Any] = {"status": status, "intercom_code": code, "request_id": request_id}
    if status in (401, 403):
        return IntercomAuthError(text, **common)
    if status == 404:
        return IntercomNotFound(text, **common)
    if status == 410:
        survivor = survivor_from_link(lowered.get("link"))
        if survivor:
            return ContactMerged(text, survivor_id=survivor, **common)
        return IntercomNotFound(text, **common)
    if status == 429:
        state = RateLimitState.from_headers(headers)
        reset_at = state.reset_at if state and state.reset_at else now + DEFAULT_RATE_LIMIT_WAIT
        return IntercomRateLimited(text, reset_at=reset_at, retry_after=max(0.0, reset_at - now), **common)
    if status == 409:
        existing = existing_contact_id(message)
        if existing:
            return ContactExists(text, existing_id=existing, **common)
    if status in (408, 409):
        return IntercomConflict(text, **common)
    if status >= 500:
        return IntercomUnavailable(text, **common)
    if is_company_exists(code, message):
        return CompanyExists(text, **common)
    if is_company_limit(code, message):
        return CompanyLimitReached(text, **common)
    if 400 <= status < 500:
        if message and "attribute" in message.lower() and status in (400, 422):
            named = _ATTRIBUTE_NAME.search(message)
            return InvalidAttribute(text, attribute=named.group(1) if named else None, **common)
        return IntercomBadRequest(text, **common)
    return IntercomUnavailable(text, **common)


# --- the client ---------------------------------------------------------------------------


@dataclass
class _Call:
    operation: str
    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None


class IntercomClient(JsonApiClient):
    upstream = UPSTREAM
    label = "Intercom"
    unavailable_error = IntercomUnavailable
    timeout_error = IntercomUnavailable
    timeout_code = "intercom_timeout"
    retried = (IntercomUnavailable, IntercomConflict)
    error_table = staticmethod(error_for_response)
    default_backoff_max = 1.0

    def __init__(self, base_url: str, token: str, *, version: str = "2.14", **options: Any):
        """``options``: :class:`~sync_worker.transport.JsonApiClient`'s (timeout, hooks, session,
        retries, clock)."""
        super().__init__(base_url, token, **options)
        self.version = version
        self.last_rate_limit: RateLimitState | None = None

    def __repr__(self) -> str:  # never shows the token
        return f"IntercomClient({self.base_url!r}, version={self.version!r})"

    # --- what the request loop asks (sync_worker.transport) ------------------------------

    def extra_headers(self) -> dict[str, str]:
        return {"Intercom-Version": self.version}

    def observe_response(self, response: requests.Response) -> None:
        state = RateLimitState.from_headers(response.headers)
        if state is not None:
            self.last_rate_limit = state

    def failure_fields(self, error: SyncError | None) -> dict[str, Any]:
        if isinstance(error, IntercomError):
            return {"intercom_code": error.intercom_code, "request_id": error.request_id}
        return super().failure_fields(error)

    # --- operations ------------------------------------------------------------------

    def get_contact(self, contact_id: str) -> dict[str, Any]:
        return self._call(_Call("get_contact", "GET", f"/contacts/{_segment(contact_id)}"))

    def search_contacts_by_email(self, email: str) -> list[dict[str, Any]]:
        """Contacts whose email is ``email`` (Intercom's search: new contacts show up after a delay)."""
        # One page, one call (the run reserves one search): more than a page of contacts with one
        # email is a duplicates problem the caller refuses (``MAX_CONTACTS_PER_EMAIL``) anyway.
        return self.search_contacts({"field": "email", "operator": "=", "value": email}).contacts

    def find_contacts_by_external_id(self, external_id: str) -> list[dict[str, Any]]:
        """Contacts whose standard ``external_id`` is ``external_id`` (search lags behind writes)."""
        if not external_id:
            raise ValueError("external_id must not be empty")
        return list(self.iter_search({"field": "external_id", "operator": "=", "value": external_id}))

    def search_contacts(
        self, query: Mapping[str, Any], *, per_page: int = SEARCH_PER_PAGE, starting_after: str | None = None
    ) -> ContactPage:
        """One page of Intercom's contact search for ``query`` (``{field, operator, value}`` or
        ``{operator: AND|OR, value: [...]}``)."""
        pagination: dict[str, Any] = {"per_page": per_page}
        if starting_after:
            pagination["starting_after"] = starting_after
        body = {"query": dict(query), "pagination": pagination}
        answer = self._call(_Call("search_contacts", "POST", "/contacts/search", json=body))
        total = answer.get("total_count")
        return ContactPage(
            list(answer.get("data") or []),
            next_page_cursor(answer),
            total if isinstance(total, int) else None,
        )

    def iter_search(
        self, query: Mapping[str, Any], *, per_page: int = SEARCH_PER_PAGE
    ) -> Iterator[dict[str, Any]]:
        """Every contact ``query`` matches, page by page."""
        cursor: str | None = None
        while True:
            page = self.search_contacts(query, per_page=per_page, starting_after=cursor)
            yield from page.contacts
            if not page.next_cursor or not page.contacts:
                return
            cursor = page.next_cursor

    def create_contact(
        self,
        *,
        role: str,
        email: str | None = None,
        external_id: str | None = None,
        name: str | None = None,
        custom_attributes: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """``POST /contacts``; :class:`ContactExists` (with ``existing_id``) when Intercom has one."""
        body: dict[str, Any] = {"role": role}
        for key, value in (("email", email), ("external_id", external_id), ("name", name)):
            if value is not None:
                body[key] = value
        if custom_attributes:
            body["custom_attributes"] = dict(custom_attributes)
        return self._call(_Call("create_contact", "POST", "/contacts", json=body))

    def archive_contact(self, contact_id: str) -> dict[str, Any]:
        return self._call(_Call("archive_contact", "POST", f"/contacts/{_segment(contact_id)}/archive"))

    def unarchive_contact(self, contact_id: str) -> dict[str, Any]:
        """``POST /contacts/{id}/unarchive``: the contact answers reads and writes again."""
        return self._call(_Call("unarchive_contact", "POST", f"/contacts/{_segment(contact_id)}/unarchive"))

    def list_contacts(self, per_page: int = 150, starting_after: str | None = None) -> ContactPage:
        params: dict[str, Any] = {"per_page": per_page}
        if starting_after:
            params["starting_after"] = starting_after
        answer = self._call(_Call("list_contacts", "GET", "/contacts", params=params))
        total = answer.get("total_count")
        return ContactPage(
            list(answer.get("data") or []),
            next_page_cursor(answer),
            total if isinstance(total, int) else None,
        )

    def iter_contacts(
        self, per_page: int = 150, starting_after: str | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every contact, page by page, following ``pages.next.starting_after``."""
        cursor = starting_after
        while True:
            page = self.list_contacts(per_page=per_page, starting_after=cursor)
            yield from page.contacts
            if not page.next_cursor or not page.contacts:
                return
            cursor = page.next_cursor

    def update_contact(
        self,
        contact_id: str,
        *,
        custom_attributes: Mapping[str, Any],
        standard: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One PUT writing ``custom_attributes`` and the ``standard`` fields (e.g. ``name``)."""
        body: dict[str, Any] = dict(standard or {})
        if "custom_attributes" in body:
            raise ValueError("pass custom attributes as custom_attributes=, not inside standard=")
        body["custom_attributes"] = dict(custom_attributes)
        return self._call(_Call("update_contact", "PUT", f"/contacts/{_segment(contact_id)}", json=body))

    def list_data_attributes(
        self, model: str = "contact", *, include_archived: bool = True
    ) -> list[dict[str, Any]]:
        """The workspace's data attributes, archived ones included unless told otherwise (an
        archived name cannot be written nor created again: the caller must see it)."""
        params = {"model": model, "include_archived": "true" if include_archived else "false"}
        answer = self._call(_Call("list_data_attributes", "GET", "/data_attributes", params=params))
        return list(answer.get("data") or [])

    def create_data_attribute(
        self,
        name: str,
        *,
        data_type: str = "string",
        model: str = "contact",
        description: str | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name, "model": model, "data_type": data_type}
        if description is not None:
            body["description"] = description
        return self._call(_Call("create_data_attribute", "POST", "/data_attributes", json=body))

    # --- companies and memberships ---------------------------------------------------

    def upsert_company(
        self, *, company_id: str, name: str, custom_attributes: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """``POST /companies``: create or update the company keyed by ``company_id``;
        :class:`CompanyExists` when a concurrent create won (read it back with :meth:`find_company`)."""
        if not company_id:
            raise ValueError("company_id must not be empty")
        body: dict[str, Any] = {"company_id": company_id, "name": name}
        if custom_attributes:
            body["custom_attributes"] = dict(custom_attributes)
        return self._call(_Call("upsert_company", "POST", "/companies", json=body))

    def find_company(self, company_id: str) -> dict[str, Any] | None:
        """The company keyed by ``company_id`` (``GET /companies?company_id=``), None when none."""
        if not company_id:
            raise ValueError("company_id must not be empty")
        try:
            answer = self._call(_Call("find_company", "GET", "/companies", params={"company_id": company_id}))
        except IntercomNotFound:
            return None
        return company_from_listing(answer, company_id)

    def get_company(self, company_intercom_id: str) -> dict[str, Any]:
        """The company by Intercom's own id (:class:`IntercomNotFound` when none)."""
        return self._call(_Call("get_company", "GET", f"/companies/{_segment(company_intercom_id)}"))

    def list_contact_companies(self, contact_id: str, *, per_page: int = 50) -> list[dict[str, Any]]:
        """Every company the contact is attached to, following ``pages`` when there are several."""
        companies: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self._call(
                _Call(
                    "list_contact_companies",
                    "GET",
                    f"/contacts/{_segment(contact_id)}/companies",
                    params={"page": page, "per_page": per_page},
                )
            )
            seen = {c.get("id") for c in companies}
            found = [c for c in companies_of(answer) if c.get("id") not in seen]
            companies.extend(found)
            pages = answer.get("pages")
            total_pages = pages.get("total_pages") if isinstance(pages, Mapping) else None
            # a page with nothing new ends the walk too (a server ignoring ``page`` cannot loop it)
            if not found or not isinstance(total_pages, int) or page >= total_pages:
                return companies
            page += 1

    def attach_company(self, contact_id: str, company_intercom_id: str) -> dict[str, Any]:
        """Attach the contact to the company (Intercom's id); :class:`CompanyLimitReached` past
        :data:`MAX_COMPANIES_PER_CONTACT`."""
        if not company_intercom_id:
            raise ValueError("company_intercom_id must not be empty")
        body = {"id": company_intercom_id}
        return self._call(
            _Call("attach_company", "POST", f"/contacts/{_segment(contact_id)}/companies", json=body)
        )

    def detach_company(self, contact_id: str, company_intercom_id: str) -> dict[str, Any]:
        path = f"/contacts/{_segment(contact_id)}/companies/{_segment(company_intercom_id)}"
        return self._call(_Call("detach_company", "DELETE", path))

    # --- transport -------------------------------------------------------------------

    def _call(self, call: _Call) -> dict[str, Any]:
        return self._request(call.operation, call.method, call.path, params=call.params, json=call.json)


def _segment(value: str) -> str:
    if not value:
        raise ValueError("an Intercom id must not be empty")
    return quote(str(value), safe="")
