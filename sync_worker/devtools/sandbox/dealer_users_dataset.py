"""Dealer users for the platform sandbox: the sample, validation, patches and synthetic users.

Guarantees:
- :func:`validate_user` accepts exactly the records the contract's ``User`` schema
  (``docs/contracts/platform-api.yaml``) accepts, plus its prose rules (UTC times with a ``Z``,
  the ``status`` and ``scope`` enums: :func:`sync_worker.platform_users.user_problems` with
  ``strict=True``); it raises :class:`~sync_worker.devtools.sandbox.dataset.InvalidRecord`
  listing every problem (fields, never values);
- :func:`validate_users` also refuses a dataset where a ``user_id`` appears twice, or where one
  location id (or company id) has two names, or a location two companies: a location is one
  Intercom company, so every user must describe it the same way;
- :func:`load_users` returns a file's users (a JSON array) only when :func:`validate_users`
  accepts them; :func:`load_sample_users` returns a fresh copy of :data:`SAMPLE_USERS` (valid, 17 users);
  :func:`apply_patch` is the pure change the sandbox's ``PATCH /_sandbox/users/{id}`` applies;
- :func:`synthetic_user` is a pure function of ``(i, locations, seed)``: a valid user with id
  :func:`synthetic_user_id` ``(i)`` (ids sort as ``i`` does), email ``dealer.user{i}@dealer.example``
  and 2-4 distinct locations of ``locations`` shared ones (fewer when there are fewer), each
  location always with the same name and company; nothing is stored, so a sandbox can serve
  50,000 users in constant memory.

The sample (fictional people; the seed's ``user123`` first). ``Location 1`` (``location_id_1``)
is shared by ten users; every location's company is among its user's companies:

=========  =================================================================================
user id    rule exercised
=========  =================================================================================
user123    the seed's example: roles ``Company Billing Admin, Location Sales Admin``, companies
           ``Company A, Company B``, locations ``Location 1`` and ``Location 3``
user124    a role listed twice: ``Location Sales Admin, Location Service Advisor``
user125    four locations of two companies (``Company A``, ``Northwind Motors``)
user126    a company listed twice, not in name order: ``Northwind Motors, Company A``
user127    the email change: :data:`EMAIL_CHANGE` (``lee.old@`` becomes ``lee.new@``)
user128    the moved location's first owner: :data:`LOCATION_MOVE` takes ``Lakeside South``
           from it ...
user129    ... and gives it to this user (which keeps ``Lakeside North``)
user130    ``status: disabled``
user131    email with spaces and capitals (``  Priya.Raman@Dealer.Example ``), whitespace inside
           and around the names (``Priya   Devi`` / `` Raman ``)
user132    no roles, no companies, no locations: ``-``, ``-`` and no membership
user133    blank first and last names: the contact's name is left as it is
user134    roles and companies each joined over 255 characters (truncation)
user135    a role without ``scope`` (optional)
user136    location roles only, two locations of ``Company A``
user137    two locations of two companies (``Location 1``, ``Lakeside North``)
user138    one role, one company, the shared location
user139    a location name with non-ASCII characters (``Québec – Centre-Ville``)
=========  =================================================================================

Not loaded by default, for the tests to apply through the control routes:
:data:`GONE_USER_ID` (``user404``) is a user the platform no longer has (no record has it: the
platform answers 404 and ``null`` in a lookup); :func:`over_cap_user` has more locations than
Intercom's 1,000 company associations (:data:`INTERCOM_COMPANY_CAP`).
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

from sync_worker.devtools.sandbox.dataset import InvalidRecord, validate_unique
from sync_worker.platform_users import user_problems

#: A user the platform no longer has: in no record, so ``GET /v1/users/user404`` is a 404.
GONE_USER_ID = "user404"
#: Intercom's limit on a contact's company associations (``over_cap_user`` exceeds it).
INTERCOM_COMPANY_CAP = 1000
#: The location :data:`LOCATION_MOVE` moves, and the location ten sample users share.
MOVED_LOCATION_ID = "loc_ls_south"
SHARED_LOCATION_ID = "location_id_1"
SAMPLE_UPDATED_AT = "2025-06-02T14:30:00Z"

COMPANIES: dict[str, str] = {
    "co_a": "Company A",
    "co_b": "Company B",
    "co_nw": "Northwind Motors",
    "co_ls": "Lakeside Auto Group",
    **{f"co_long_{k}": f"Long Dealer Company Name Number {k} Incorporated" for k in range(8)},
}
#: Location id -> (name, company id).
LOCATIONS: dict[str, tuple[str, str]] = {
    "location_id_1": ("Location 1", "co_a"),
    "location_id_2": ("Location 2", "co_a"),
    "location_id_3": ("Location 3", "co_b"),
    "loc_qc_centre": ("Québec – Centre-Ville", "co_b"),
    "loc_nw_downtown": ("Northwind Downtown", "co_nw"),
    "loc_nw_airport": ("Northwind Airport", "co_nw"),
    "loc_ls_north": ("Lakeside North", "co_ls"),
    "loc_ls_south": ("Lakeside South", "co_ls"),
}
_LONG_ROLES = [(f"Regional Dealer Operations Role {k}", "company") for k in range(12)]

#: Roles (name, scope or None), company ids, location ids as the platform lists them.
_Sample = tuple[str, str, str, str, list[tuple[str, str | None]], list[str], list[str], str]
_SAMPLE: list[_Sample] = [
    (
        "user123",
        "dana@dealer.example",
        "Dana",
        "Whitfield",
        [("Company Billing Admin", "company"), ("Location Sales Admin", "location")],
        ["co_a", "co_b"],
        ["location_id_1", "location_id_3"],
        "active",
    ),
    (
        "user124",
        "omar.haddad@dealer.example",
        "Omar",
        "Haddad",
        [
            ("Location Sales Admin", "location"),
            ("Location Service Advisor", "location"),
            ("Location Sales Admin", "location"),
        ],
        ["co_a"],
        ["location_id_1"],
        "active",
    ),
    (
        "user125",
        "aisha.bello@dealer.example",
        "Aisha",
        "Bello",
        [("Company Owner", "company")],
        ["co_a", "co_nw"],
        ["location_id_1", "location_id_2", "loc_nw_downtown", "loc_nw_airport"],
        "active",
    ),
    (
        "user126",
        "lucas.moreau@dealer.example",
        "Lucas",
        "Moreau",
        [("Company Billing Admin", "company")],
        ["co_nw", "co_a", "co_nw"],
        ["loc_nw_downtown", "location_id_1"],
        "active",
    ),
    (
        "user127",
        "lee.old@dealer.example",
        "Hannah",
        "Lee",
        [("Location Sales Admin", "location")],
        ["co_b"],
        ["location_id_3"],
        "active",
    ),
    (
        "user128",
        "noah.tremblay@dealer.example",
        "Noah",
        "Tremblay",
        [("Location Sales Admin", "location")],
        ["co_a", "co_ls"],
        ["location_id_1", "loc_ls_south"],
        "active",
    ),
    (
        "user129",
        "zoe.kaplan@dealer.example",
        "Zoe",
        "Kaplan",
        [("Location Service Advisor", "location")],
        ["co_ls"],
        ["loc_ls_north"],
        "active",
    ),
    (
        "user130",
        "sam.roy@dealer.example",
        "Sam",
        "Roy",
        [("Location Sales Admin", "location")],
        ["co_a"],
        ["location_id_1"],
        "disabled",
    ),
    (
        "user131",
        "  Priya.Raman@Dealer.Example ",
        "Priya   Devi",
        " Raman ",
        [("Company Billing Admin", "company")],
        ["co_b"],
        ["location_id_3"],
        "active",
    ),
    ("user132", "no.access@dealer.example", "Jordan", "Ellis", [], [], [], "active"),
    (
        "user133",
        "unnamed@dealer.example",
        "",
        " ",
        [("Location Sales Admin", "location")],
        ["co_b"],
        ["location_id_3"],
        "active",
    ),
    (
        "user134",
        "riley.chen@dealer.example",
        "Riley",
        "Chen",
        _LONG_ROLES,
        [f"co_long_{k}" for k in range(8)],
        [],
        "active",
    ),
    (
        "user135",
        "casey.singh@dealer.example",
        "Casey",
        "Singh",
        [("Dealer Staff", None)],
        ["co_a"],
        ["location_id_1"],
        "active",
    ),
    (
        "user136",
        "morgan.gagnon@dealer.example",
        "Morgan",
        "Gagnon",
        [("Location Sales Admin", "location"), ("Location Service Advisor", "location")],
        ["co_a"],
        ["location_id_1", "location_id_2"],
        "active",
    ),
    (
        "user137",
        "taylor.brown@dealer.example",
        "Taylor",
        "Brown",
        [("Location Sales Admin", "location")],
        ["co_a", "co_ls"],
        ["location_id_1", "loc_ls_north"],
        "active",
    ),
    (
        "user138",
        "avery.wilson@dealer.example",
        "Avery",
        "Wilson",
        [("Location Service Advisor", "location")],
        ["co_a"],
        ["location_id_1"],
        "active",
    ),
    (
        "user139",
        "quinn.cote@dealer.example",
        "Quinn",
        "Côté",
        [("Location Sales Admin", "location")],
        ["co_b"],
        ["loc_qc_centre"],
        "active",
    ),
]


def _role(name: str, scope: str | None) -> dict[str, str]:
    return {"name": name} if scope is None else {"name": name, "scope": scope}


def _location(location_id: str) -> dict[str, str]:
    name, company_id = LOCATIONS[location_id]
    return {"id": location_id, "name": name, "company_id": company_id}


def _record(sample: _Sample) -> dict[str, Any]:
    user_id, email, first, last, roles, companies, locations, status = sample
    return {
        "user_id": user_id,
        "email": email,
        "first_name": first,
        "last_name": last,
        "status": status,
        "roles": [_role(name, scope) for name, scope in roles],
        "companies": [{"id": company_id, "name": COMPANIES[company_id]} for company_id in companies],
        "locations": [_location(location_id) for location_id in locations],
        "updated_at": SAMPLE_UPDATED_AT,
    }


#: The sample users (see the module's table).
SAMPLE_USERS: list[dict[str, Any]] = [_record(sample) for sample in _SAMPLE]


def _sample_user(user_id: str) -> dict[str, Any]:
    return next(user for user in SAMPLE_USERS if user["user_id"] == user_id)


#: (user id, changes for ``PATCH /_sandbox/users/{id}``): the email change.
EMAIL_CHANGE: tuple[str, dict[str, Any]] = ("user127", {"email": "lee.new@dealer.example"})
#: The location move, as two patches applied in order: user128 loses ``Lakeside South`` (keeping
#: ``Location 1``), user129 gains it after ``Lakeside North``.
LOCATION_MOVE: tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]] = (
    (
        "user128",
        {
            "locations": [
                loc for loc in _sample_user("user128")["locations"] if loc["id"] != MOVED_LOCATION_ID
            ],
            "companies": [{"id": "co_a", "name": COMPANIES["co_a"]}],
        },
    ),
    (
        "user129",
        {"locations": [*_sample_user("user129")["locations"], _location(MOVED_LOCATION_ID)]},
    ),
)


def over_cap_user(user_id: str = "user140") -> dict[str, Any]:
    """A valid user with :data:`INTERCOM_COMPANY_CAP` + 1 locations of its own (not in the sample)."""
    return {
        "user_id": user_id,
        "email": "fleet.buyer@dealer.example",
        "first_name": "Fleet",
        "last_name": "Buyer",
        "status": "active",
        "roles": [_role("Company Owner", "company")],
        "companies": [{"id": "co_fleet", "name": "Fleet Wholesale"}],
        "locations": [
            {"id": f"loc_fleet_{k:04d}", "name": f"Fleet Yard {k}", "company_id": "co_fleet"}
            for k in range(INTERCOM_COMPANY_CAP + 1)
        ],
        "updated_at": SAMPLE_UPDATED_AT,
    }


def apply_patch(record: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` with the top-level fields of ``changes`` replaced (a new dict; ``record`` unchanged)."""
    patched = copy.deepcopy(dict(record))
    patched.update(copy.deepcopy(dict(changes)))
    return patched


# --- validation (pure) ----------------------------------------------------------------------


def validate_user(record: Any) -> dict[str, Any]:
    """``record`` itself when it is a valid contract ``User`` (prose rules too); else InvalidRecord."""
    problems = user_problems(record, strict=True)
    if problems:
        where = f"user {record.get('user_id')!r}" if isinstance(record, Mapping) else "user record"
        raise InvalidRecord(problems, where=where)
    return record


def catalogue_problems(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Locations or companies described two ways across ``records`` (ids in the messages)."""
    locations: dict[str, tuple[str, str]] = {}
    companies: dict[str, str] = {}
    problems: list[str] = []
    for record in records:
        for location in record["locations"]:
            seen = locations.setdefault(location["id"], (location["name"], location["company_id"]))
            if seen != (location["name"], location["company_id"]):
                problems.append(f"location {location['id']} has two names or companies")
        for company in record["companies"]:
            if companies.setdefault(company["id"], company["name"]) != company["name"]:
                problems.append(f"company {company['id']} has two names")
    return list(dict.fromkeys(problems))


def validate_users(records: Any) -> list[dict[str, Any]]:
    """``records`` when a list of valid users with unique ids, each location and company described one way."""
    validate_unique(records, validate_user, key="user_id", noun="users", where="users")
    problems = catalogue_problems(records)
    if problems:
        raise InvalidRecord(problems, where="users")
    return records


def load_users(path: str | PathLike[str]) -> list[dict[str, Any]]:
    """The valid users in the JSON array at ``path`` (InvalidRecord otherwise)."""
    with Path(path).open(encoding="utf-8") as handle:
        return validate_users(json.load(handle))


def load_sample_users() -> list[dict[str, Any]]:
    """A fresh copy of :data:`SAMPLE_USERS` (see the module's table)."""
    return validate_users(copy.deepcopy(SAMPLE_USERS))


# --- synthetic users (pure) -------------------------------------------------------------------

_SYNTHETIC_PREFIX = "synthetic-user-"
_SYNTHETIC_ID = re.compile(r"synthetic-user-([0-9]{8})")
_SYNTHETIC_EMAIL = re.compile(r"dealer\.user(0|[1-9][0-9]*)@dealer\.example")
_FIRST = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn")
_LAST = ("Martin", "Roy", "Singh", "Chen", "Smith", "Gagnon", "Brown", "Lee", "Wilson", "Cote")
_ROLES: Sequence[tuple[str, str]] = (
    ("Company Billing Admin", "company"),
    ("Company Owner", "company"),
    ("Location Sales Admin", "location"),
    ("Location Service Advisor", "location"),
    ("Location Parts Manager", "location"),
)
#: Locations per synthetic dealer company.
LOCATIONS_PER_COMPANY = 10


def synthetic_user_id(i: int) -> str:
    """The id of synthetic user ``i``: zero-padded, so ids sort as their numbers do."""
    return f"{_SYNTHETIC_PREFIX}{i:08d}"


def synthetic_user_number(user_id: str) -> int | None:
    """The ``i`` of a :func:`synthetic_user_id` ``(i)``, else None."""
    match = _SYNTHETIC_ID.fullmatch(user_id)
    return int(match.group(1)) if match else None


def synthetic_user_email(i: int) -> str:
    return f"dealer.user{i}@dealer.example"


def synthetic_user_index(email: str) -> int | None:
    """The ``i`` of a ``dealer.user{i}@dealer.example`` email (trimmed, any case), else None."""
    match = _SYNTHETIC_EMAIL.fullmatch(email.strip().lower())
    return int(match.group(1)) if match else None


def synthetic_location(j: int) -> dict[str, str]:
    """Shared location ``j``: the same name and company for every user that has it."""
    return {
        "id": f"synthetic-location-{j:05d}",
        "name": f"Location {j}",
        "company_id": f"synthetic-company-{j // LOCATIONS_PER_COMPANY:04d}",
    }


def synthetic_user(i: int, *, locations: int, seed: int = 0) -> dict[str, Any]:
    """User number ``i`` of the synthetic population ``(locations, seed)``: valid, the same on every call."""
    if i < 0 or locations < 1:
        raise ValueError("synthetic users are numbered from 0 and need at least one location")
    rng = random.Random(f"synthetic-user:{seed}:{i}")
    picked = [synthetic_location(j) for j in rng.sample(range(locations), min(locations, rng.randint(2, 4)))]
    company_ids = list(dict.fromkeys(location["company_id"] for location in picked))
    return {
        "user_id": synthetic_user_id(i),
        "email": synthetic_user_email(i),
        "first_name": rng.choice(_FIRST),
        "last_name": rng.choice(_LAST),
        "status": "active" if rng.random() < 0.95 else "disabled",
        "roles": [_role(name, scope) for name, scope in rng.sample(_ROLES, rng.randint(1, 2))],
        "companies": [
            {"id": company_id, "name": f"Dealer Company {company_id.rsplit('-', 1)[1]}"}
            for company_id in company_ids
        ],
        "locations": picked,
        "updated_at": f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T12:00:00Z",
    }
