"""Companies and contact-company memberships of the Intercom sandbox.

Guarantees (all under the owning :class:`~sync_worker.devtools.sandbox.intercom.IntercomState`'s
lock, so a create-or-update and an attach are atomic with respect to every other request):
- ``POST /companies`` creates the company named by ``company_id`` or updates the one that has it
  (``company_id`` is never changed); ``custom_attributes`` are checked against the company data
  attributes (unknown, archived, wrong type, strings over 255 characters: 400, nothing written);
- a company created by :meth:`CompanyBook.race` "by another client" makes the next create of that
  ``company_id`` answer 400 ``unique_company_constraint`` "Company already exists." (what Intercom
  answers a concurrent create), the company existing by then, so a read back finds it;
- ``GET /companies?company_id=`` answers Intercom's ``company_list`` with that company (404
  ``company_not_found`` when none); ``GET /companies/{id}`` the company by Intercom's id;
- a contact holds at most :data:`MAX_COMPANIES_PER_CONTACT` companies: one more is refused with
  400 ``contact_company_limit_exceeded``; attaching an attached company changes nothing and answers
  the company; detaching one not attached answers the company too (nothing to undo);
- ``user_count`` is the number of contacts attached; every write to a company is counted in its
  control view (``writes``), so a test can show a company shared by many users was written once.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from flask import Flask, jsonify, request

MAX_COMPANIES_PER_CONTACT = 1000
DEFAULT_COMPANIES_PER_PAGE = 50
MAX_COMPANIES_PER_PAGE = 150
CONTACT_COMPANIES_SHOWN = 10  # a contact object lists at most this many of its companies


class CompanyBook:
    """The companies and memberships of one sandbox state."""

    def __init__(
        self,
        *,
        lock: threading.RLock,
        clock: Callable[[], float],
        new_id: Callable[[], str],
        live_contact: Callable[[str], Any],
        check_value: Callable[[str, Any], None],
        app_id: str,
        api_error: type[Exception],
    ):
        self._lock = lock
        self._clock = clock
        self._new_id = new_id
        self._live_contact = live_contact  # raises the API's 404 for an unknown contact
        self._check_value = check_value  # (name, value): raises the API's 400 for a bad company value
        self._app_id = app_id
        self._error = api_error
        self.error_type = api_error  # what the API's refusals raise
        self._companies: dict[str, dict[str, Any]] = {}  # Intercom id -> stored company
        self._by_company_id: dict[str, str] = {}  # company_id -> Intercom id
        self._members: dict[str, list[str]] = {}  # contact id -> Intercom company ids, attach order
        self._races: dict[str, dict[str, Any]] = {}  # company_id -> what "another client" writes

    # --- companies -----------------------------------------------------------------------

    def upsert(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /companies``: create or update by ``company_id``."""
        company_id = body.get("company_id")
        if not isinstance(company_id, str) or not company_id:
            raise self._error(400, "parameter_not_found", "company_id not specified")
        custom = dict(body.get("custom_attributes") or {})
        with self._lock:
            for name, value in custom.items():
                self._check_value(name, value)
            existing = self._by_company_id.get(company_id)
            race = self._races.pop(company_id, None) if existing is None else None
            if race is not None:
                self._store(company_id, {**body, **race})
                raise self._error(400, "unique_company_constraint", "Company already exists.")
            return self._render(self._store(company_id, body, existing))

    def _store(
        self, company_id: str, body: Mapping[str, Any], intercom_id: str | None = None
    ) -> dict[str, Any]:
        now = int(self._clock())
        if intercom_id is None:
            intercom_id = str(body.get("id") or self._new_id())
            stored: dict[str, Any] = {
                "id": intercom_id,
                "company_id": company_id,
                "name": None,
                "custom_attributes": {},
                "created_at": now,
                "remote_created_at": now,
                "writes": 0,
            }
            self._companies[intercom_id] = stored
            self._by_company_id[company_id] = intercom_id
        stored = self._companies[intercom_id]
        for key in ("name", "plan", "size", "website", "industry", "monthly_spend", "remote_created_at"):
            if key in body:
                stored[key] = body[key]
        for name, value in dict(body.get("custom_attributes") or {}).items():
            if value is None:
                stored["custom_attributes"].pop(name, None)
            else:
                stored["custom_attributes"][name] = value
        stored["updated_at"] = now
        stored["writes"] += 1
        return stored

    def find(self, company_id: str) -> dict[str, Any]:
        """``GET /companies?company_id=``: Intercom's ``company_list`` holding that company."""
        with self._lock:
            intercom_id = self._by_company_id.get(company_id)
            if intercom_id is None:
                raise self._error(404, "company_not_found", "Company Not Found")
            company = self._render(self._companies[intercom_id])
            return {
                "type": "list",
                "data": [company],
                "total_count": 1,
                "pages": {"type": "pages", "page": 1, "per_page": 1, "total_pages": 1},
            }

    def get(self, intercom_id: str) -> dict[str, Any]:
        with self._lock:
            return self._render(self._company(intercom_id))

    def _company(self, intercom_id: str) -> dict[str, Any]:
        stored = self._companies.get(intercom_id)
        if stored is None:
            raise self._error(404, "company_not_found", "Company Not Found")
        return stored

    def race(self, company_id: str, changes: Mapping[str, Any]) -> None:
        """The next create of ``company_id`` loses to another client writing ``changes``."""
        with self._lock:
            self._races[company_id] = dict(changes)

    def refusal(self, status: int, code: str, message: str) -> Exception:
        """The API error to raise for a refused request."""
        return self._error(status, code, message)

    # --- memberships ---------------------------------------------------------------------

    def attach(self, contact_id: str, intercom_id: Any) -> dict[str, Any]:
        """``POST /contacts/{id}/companies``."""
        with self._lock:
            self._live_contact(contact_id)
            if not isinstance(intercom_id, str) or not intercom_id:
                raise self._error(400, "parameter_not_found", "company not specified")
            company = self._company(intercom_id)
            members = self._members.setdefault(contact_id, [])
            if intercom_id not in members:
                if len(members) >= MAX_COMPANIES_PER_CONTACT:
                    raise self._error(
                        400,
                        "contact_company_limit_exceeded",
                        f"Contact has reached the maximum of {MAX_COMPANIES_PER_CONTACT} company associations",
                    )
                members.append(intercom_id)
            return self._render(company)

    def detach(self, contact_id: str, intercom_id: str) -> dict[str, Any]:
        """``DELETE /contacts/{id}/companies/{company_id}``."""
        with self._lock:
            self._live_contact(contact_id)
            company = self._company(intercom_id)
            members = self._members.get(contact_id, [])
            if intercom_id in members:
                members.remove(intercom_id)
            return self._render(company)

    def of_contact(
        self, contact_id: str, *, page: int = 1, per_page: int = DEFAULT_COMPANIES_PER_PAGE
    ) -> dict[str, Any]:
        """``GET /contacts/{id}/companies``: one page, in Intercom's answer shape (``data``)."""
        with self._lock:
            self._live_contact(contact_id)
            if not 1 <= per_page <= MAX_COMPANIES_PER_PAGE or page < 1:
                raise self._error(
                    400, "parameter_invalid", f"per_page must be between 1 and {MAX_COMPANIES_PER_PAGE}"
                )
            ids = self._members.get(contact_id, [])
            chunk = ids[(page - 1) * per_page : page * per_page]
            total_pages = max(1, math.ceil(len(ids) / per_page))
            return {
                "type": "list",
                "data": [self._render(self._companies[i]) for i in chunk],
                "total_count": len(ids),
                "pages": {
                    "type": "pages",
                    "next": None
                    if page >= total_pages
                    else f"/contacts/{contact_id}/companies?page={page + 1}",
                    "page": page,
                    "per_page": per_page,
                    "total_pages": total_pages,
                },
            }

    def contact_listing(self, contact_id: str) -> dict[str, Any]:
        """The ``companies`` list a contact object carries (references, at most 10)."""
        with self._lock:
            ids = self._members.get(contact_id, [])
            return {
                "type": "list",
                "data": [
                    {"type": "company", "id": i, "url": f"/companies/{i}"}
                    for i in ids[:CONTACT_COMPANIES_SHOWN]
                ],
                "url": f"/contacts/{contact_id}/companies",
                "total_count": len(ids),
                "has_more": len(ids) > CONTACT_COMPANIES_SHOWN,
            }

    def forget_contact(self, contact_id: str) -> None:
        with self._lock:
            self._members.pop(contact_id, None)

    # --- control ---------------------------------------------------------------------------

    def seed(self, seeds: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Create or update companies as someone else would (no validation of custom attributes)."""
        with self._lock:
            created = []
            for seed in seeds:
                company_id = seed.get("company_id")
                if not isinstance(company_id, str) or not company_id:
                    raise ValueError("a seeded company needs a company_id")
                created.append(
                    self.stored(self._store(company_id, seed, self._by_company_id.get(company_id)))
                )
            return created

    def seed_attachment(self, contact_id: str, selector: Mapping[str, Any]) -> dict[str, Any]:
        """Attach a company (``{"id"}`` or ``{"company_id"}``) as someone else would (limit applies)."""
        with self._lock:
            intercom_id = selector.get("id") or self._by_company_id.get(str(selector.get("company_id")))
            return self.attach(contact_id, intercom_id)

    def stored(self, company: Mapping[str, Any]) -> dict[str, Any]:
        return {**self._render(company), "writes": company["writes"]}

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.stored(c) for c in self._companies.values()]

    def stored_of_contact(self, contact_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [self.stored(self._companies[i]) for i in self._members.get(contact_id, [])]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {
                "companies": len(self._companies),
                "attachments": sum(len(m) for m in self._members.values()),
            }

    def _render(self, stored: Mapping[str, Any]) -> dict[str, Any]:
        users = sum(1 for members in self._members.values() if stored["id"] in members)
        company = {
            "type": "company",
            "id": stored["id"],
            "company_id": stored["company_id"],
            "app_id": self._app_id,
            "name": stored["name"],
            "remote_created_at": stored["remote_created_at"],
            "created_at": stored["created_at"],
            "updated_at": stored["updated_at"],
            "monthly_spend": stored.get("monthly_spend", 0),
            "session_count": 0,
            "user_count": users,
            "tags": {"type": "tag.list", "tags": []},
            "segments": {"type": "segment.list", "segments": []},
            "plan": {"type": "plan", "name": stored["plan"]} if stored.get("plan") else {},
            "custom_attributes": dict(stored["custom_attributes"]),
        }
        for key in ("size", "website", "industry"):
            if key in stored:
                company[key] = stored[key]
        return company


def add_company_routes(app: Flask, book: Callable[[], CompanyBook]) -> None:
    """Intercom's company routes and their ``/_sandbox/`` control routes on ``app``.

    ``book`` gives the current :class:`CompanyBook` (a reset makes a new one)."""

    def body() -> dict[str, Any]:
        payload = request.get_json(silent=True)
        return payload if isinstance(payload, dict) else {}

    def number(name: str, default: int) -> int:
        raw = request.args.get(name)
        try:
            return int(raw) if raw is not None else default
        except ValueError:
            return 0  # refused as out of range

    @app.post("/companies")
    def upsert_company() -> Any:
        return jsonify(book().upsert(body()))

    @app.get("/companies")
    def retrieve_company() -> Any:
        company_id = request.args.get("company_id")
        if not company_id:  # listing by name, tag or segment: not needed by the sync
            raise book().refusal(501, "not_implemented", "The sandbox finds companies by company_id only")
        return jsonify(book().find(company_id))

    @app.get("/companies/<company_id>")
    def show_company(company_id: str) -> Any:
        if company_id == "scroll":  # Intercom's scroll over every company: not needed by the sync
            raise book().refusal(
                501, "not_implemented", "The sandbox does not implement scrollOverAllCompanies"
            )
        return jsonify(book().get(company_id))

    @app.get("/contacts/<contact_id>/companies")
    def contact_companies(contact_id: str) -> Any:
        page, per_page = number("page", 1), number("per_page", DEFAULT_COMPANIES_PER_PAGE)
        return jsonify(book().of_contact(contact_id, page=page, per_page=per_page))

    @app.post("/contacts/<contact_id>/companies")
    def attach_company(contact_id: str) -> Any:
        return jsonify(book().attach(contact_id, body().get("id")))

    @app.delete("/contacts/<contact_id>/companies/<company_id>")
    def detach_company(contact_id: str, company_id: str) -> Any:
        return jsonify(book().detach(contact_id, company_id))

    # --- control routes ------------------------------------------------------------------

    @app.get("/_sandbox/companies")
    def sandbox_companies() -> Any:
        return jsonify(book().all())

    @app.post("/_sandbox/companies")
    def sandbox_seed_companies() -> Any:
        payload = request.get_json(silent=True)
        many = isinstance(payload, list)
        try:
            created = book().seed(payload if many else [payload or {}])
        except (ValueError, TypeError, AttributeError) as exc:
            return jsonify({"error": str(exc)}), 400
        return jsonify(created if many else created[0]), 201

    @app.post("/_sandbox/companies/race")
    def sandbox_race() -> Any:
        payload = body()
        company_id = payload.pop("company_id", None)
        if not isinstance(company_id, str) or not company_id:
            return jsonify({"error": "company_id is required"}), 400
        book().race(company_id, payload)
        return jsonify({"race": company_id})

    @app.get("/_sandbox/contacts/<contact_id>/companies")
    def sandbox_contact_companies(contact_id: str) -> Any:
        return jsonify(book().stored_of_contact(contact_id))

    @app.post("/_sandbox/contacts/<contact_id>/companies")
    def sandbox_attach(contact_id: str) -> Any:
        payload = request.get_json(silent=True)
        selectors = payload if isinstance(payload, list) else [payload if isinstance(payload, dict) else {}]
        try:
            attached = [book().seed_attachment(contact_id, selector) for selector in selectors]
            return jsonify(attached if isinstance(payload, list) else attached[0]), 201
        except book().error_type as exc:  # the API's refusal, told as a control route tells one
            return jsonify({"error": getattr(exc, "message", str(exc))}), getattr(exc, "status", 400)
