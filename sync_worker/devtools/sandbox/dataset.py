"""Platform datasets for the sandbox: the sample file, validation, and synthetic clients.

Guarantees:
- :func:`validate_record` accepts exactly the records the contract's ``Client`` schema
  (``docs/contracts/platform-api.yaml``) accepts, plus the contract's prose rules: times are UTC
  ISO 8601 with a ``Z`` suffix, ``balance`` is a decimal string, ``profile_url`` is an
  absolute URL; it raises :class:`InvalidRecord` listing every problem (fields, never values);
- :func:`load` returns a file's records (a JSON array) only when every record is valid and
  every ``id`` unique; :func:`load_sample` loads ``data/sample_clients.json``;
- :func:`synthetic_record` is a pure function of ``(i, seed)``: a valid client with id
  ``SYNTHETIC_BASE_ID + i`` and email ``client{i}@example.com``; :func:`synthetic` yields
  ``n`` of them one at a time (constant memory), and :func:`synthetic_index` maps an email
  back to its ``i``, so a sandbox can serve millions of clients without holding them.

The sample dataset (``data/sample_clients.json``, 24 accounts, fictional people) exercises
every rule of ``docs/integrations/clients.md``; the attribute tests rely on these ids:

=================  ==========================================================================
client id          rule exercised
=================  ==========================================================================
131447, 131446,    one email (``sami.ruhsuf@example.com``), three accounts in three
131445             organisations (USD, CAD, EUR), listed out of id order; 131446 is the seed's
                   example (CAD$150 due, Mar 1, 2024, care team primary second, tags, group,
                   linked accounts with a primary second); 131445 has only a void invoice
131468, 131467     one email in two cases (``HANNAH.LEE@`` / ``hannah.lee@``), two accounts in
                   the same organisation (duplicates kept in joins), out of id order
131450             mixed-case email (``Maya.Chen@Example.com``); unpaid CAD 150.00 + 25.50 and
                   USD 20.00 (paid and void ignored): ``Yes, CAD$175.50 + USD$20 due``;
                   appointments of every status in the past and the future, listed unsorted:
                   DST edges 2025-03-09T06:59Z / 07:00Z and 2025-11-02T05:30Z / 06:30Z, a past
                   ``scheduled`` (not next), a future ``occurred`` (counted, never last),
                   future ``cancelled``/``no_show`` before the next ``scheduled``
131451             two unpaid invoices summing to CAD 1,250.50 (thousands and cents)
131452             only paid and void invoices: ``No``
131453             an unpaid invoice with balance ``0.00``: ``No``
131454             USD organisation owing CAD, AUD (``"30"``) and USD: ``USD$5.25 + AUD$30 + CAD$10``
131455             EUR (not a dollar currency): ``EUR 150``
131456             AUD organisation, ``Australia/Sydney``
131457             nothing to show: null phone/timezone/profile_url/group, empty care team,
                   tags, invoices, appointments, linked accounts; no card, no intake
131458             optional fields (phone, timezone, profile_url, group) absent altogether
131459             30 tags joined over 255 characters (truncation); an appointment at noon
                   (2025-01-22T17:00Z) and one at midnight (2030-01-23T05:00Z) Toronto time
131460             12 linked accounts joined over 255 characters, primary 8th; USD 12,345.67
131461, 131462     linked accounts with the primary last; 131462 has leading/trailing spaces in
                   its email, names and phone
131463             whitespace inside names (``Mary  Anne`` / ``de la   Cruz``); primary therapist
                   last of four
131464             ``created_at`` 2024-03-01T04:30Z is Feb 29, 2024 in Toronto; two sessions on
                   the 2024 fall-back night
131465             amounts written ``"200"``, ``"150.5"``, ``"0.99"``: ``CAD$351.49``
131466             status ``Waitlist``, no card, intake not completed, no care team
131469             only cancelled / no-show appointments: 0 sessions, ``No Appointments``
131470             12 occurred sessions in 2025, next appointment in summer time (EDT)
=================  ==========================================================================

No account uses ``no.account@example.com`` (the dev stack's contact without an account). Past
appointments are in 2024-2025 and future ones in 2030 or later, so the data reads the same
under any clock until 2030.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

from sync_worker import platform_records
from sync_worker.platform_records import APPOINTMENT_STATUSES, INVOICE_STATUSES

SAMPLE_RESOURCE = "data/sample_clients.json"
SYNTHETIC_BASE_ID = 10_000_000

_SYNTHETIC_EMAIL = re.compile(r"client(0|[1-9][0-9]*)@example\.com")


class InvalidRecord(ValueError):
    """A record the contract refuses; ``problems`` lists why (field names, no values)."""

    def __init__(self, problems: list[str], *, where: str = "client record"):
        super().__init__(f"{where} breaks the platform contract: " + "; ".join(problems))
        self.problems = problems


# --- validation (pure) ----------------------------------------------------------------------


def record_problems(record: Any) -> list[str]:
    """Everything that keeps ``record`` from being a contract ``Client`` ([] when it is one): the
    workers' check (:mod:`sync_worker.platform_records`) with the contract's prose rules too."""
    return platform_records.record_problems(record, strict=True)


def validate_record(record: Any) -> dict[str, Any]:
    """``record`` itself when it is a valid contract ``Client``; else :class:`InvalidRecord`."""
    problems = record_problems(record)
    if problems:
        where = f"client {record.get('id')!r}" if isinstance(record, Mapping) else "client record"
        raise InvalidRecord(problems, where=where)
    return record


def validate_dataset(records: Any) -> list[dict[str, Any]]:
    """``records`` when it is a list of valid clients with unique ids; else :class:`InvalidRecord`."""
    return validate_unique(records, validate_record, key="id", noun="clients", where="dataset")


def validate_unique(
    records: Any, validate: Callable[[Any], Any], *, key: str, noun: str, where: str
) -> list[dict[str, Any]]:
    """``records`` when it is a list each of whose items ``validate`` accepts, no ``key`` twice;
    else :class:`InvalidRecord` (``validate``'s, or one naming the list's problem)."""
    if not isinstance(records, list):
        raise InvalidRecord([f"the {where} is not a JSON array of {noun}"], where=where)
    seen: set[Any] = set()
    for record in records:
        validate(record)
        if record[key] in seen:
            raise InvalidRecord([f"{key} {record[key]} appears twice"], where=where)
        seen.add(record[key])
    return records


# --- files --------------------------------------------------------------------------------


def load(path: str | PathLike[str]) -> list[dict[str, Any]]:
    """The valid clients in the JSON array at ``path`` (:class:`InvalidRecord` otherwise)."""
    with Path(path).open(encoding="utf-8") as handle:
        return validate_dataset(json.load(handle))


def load_sample() -> list[dict[str, Any]]:
    """A fresh copy of the sample dataset (see the module docstring for what it exercises)."""
    text = (
        resources.files("sync_worker.devtools.sandbox").joinpath(SAMPLE_RESOURCE).read_text(encoding="utf-8")
    )
    return validate_dataset(json.loads(text))


# --- synthetic clients (pure) ------------------------------------------------------------------

_FIRST = ("Alex", "Sam", "Jordan", "Taylor", "Morgan", "Casey", "Riley", "Jamie", "Avery", "Quinn")
_LAST = ("Martin", "Roy", "Singh", "Chen", "Smith", "Gagnon", "Brown", "Lee", "Wilson", "Cote")
_ORGS = (
    {"id": 10, "name": "Ruh Care Inc.", "currency": "CAD"},
    {"id": 11, "name": "Ruh Care West", "currency": "CAD"},
    {"id": 20, "name": "Ruh Corp.", "currency": "USD"},
    {"id": 30, "name": "Ruh Europe GmbH", "currency": "EUR"},
    {"id": 40, "name": "Ruh Care Australia Pty Ltd", "currency": "AUD"},
)
_ZONES = (
    "America/Toronto",
    "America/Vancouver",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    None,
)
_THERAPISTS = ("Priya Raman", "Dana Whitfield", "Omar Haddad", "Aisha Bello", "Lucas Moreau")
_TAGS = ("Anxiety", "Couples", "Family", "Grief", "Sliding Scale", "VIP", "Trauma", "Sleep")
_STATUSES = ("Active", "Active", "Active", "Inactive", "Waitlist")
_RELATIONS = ("Spouse", "Child", "Parent", "Sibling")


def synthetic_email(i: int) -> str:
    return f"client{i}@example.com"


def synthetic_index(email: str) -> int | None:
    """The ``i`` of a ``client{i}@example.com`` email (trimmed, any case), else None."""
    match = _SYNTHETIC_EMAIL.fullmatch(email.strip().lower())
    return int(match.group(1)) if match else None


def _time(rng: random.Random, first_year: int, last_year: int) -> str:
    return (
        f"{rng.randint(first_year, last_year)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        f"T{rng.randint(0, 23):02d}:{rng.choice((0, 15, 30, 45)):02d}:00Z"
    )


def synthetic_record(i: int, seed: int = 0) -> dict[str, Any]:
    """Client number ``i`` of the synthetic dataset ``seed``: valid, and the same on every call."""
    if i < 0:
        raise ValueError("synthetic clients are numbered from 0")
    rng = random.Random(f"synthetic-client:{seed}:{i}")
    client_id = SYNTHETIC_BASE_ID + i
    org = dict(rng.choice(_ORGS))
    team = [
        {"name": name, "role": "therapist", "is_primary": False}
        for name in rng.sample(_THERAPISTS, rng.randint(0, 3))
    ]
    if team:
        rng.choice(team)["is_primary"] = True
    currencies = (org["currency"], org["currency"], "USD", "CAD")
    invoices = [
        {
            "id": client_id * 10 + k,
            "status": rng.choice(INVOICE_STATUSES),
            "balance": f"{rng.randint(0, 3000)}.{rng.choice((0, 0, 25, 50, 99)):02d}",
            "currency": rng.choice(currencies),
        }
        for k in range(rng.randint(0, 3))
    ]
    appointments = [
        {
            "id": client_id * 100 + k,
            "start_at": _time(rng, 2024, 2025) if rng.random() < 0.7 else _time(rng, 2030, 2032),
            "status": rng.choice(APPOINTMENT_STATUSES),
        }
        for k in range(rng.randint(0, 8))
    ]
    linked = [
        {
            "client_id": SYNTHETIC_BASE_ID + rng.randint(0, max(i, 1) * 2),
            "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
            "relationship": rng.choice(_RELATIONS),
            "is_primary": k == 0 and rng.random() < 0.5,
        }
        for k in range(rng.choice((0, 0, 0, 1, 2)))
    ]
    return {
        "id": client_id,
        "email": synthetic_email(i),
        "first_name": rng.choice(_FIRST),
        "last_name": rng.choice(_LAST),
        "phone": f"+1 416 555 {i % 10_000:04d}" if rng.random() < 0.9 else None,
        "status": rng.choice(_STATUSES),
        "timezone": rng.choice(_ZONES),
        "created_at": _time(rng, 2019, 2025),
        "profile_url": f"https://platform.example.com/clients/{client_id}",
        "organization": org,
        "care_team": team,
        "tags": rng.sample(_TAGS, rng.randint(0, 3)),
        "group": rng.choice((None, None, "Tuesday Evening Group", "Teen Group")),
        "invoices": invoices,
        "card_on_file": rng.random() < 0.6,
        "appointments": appointments,
        "intake_forms_completed": rng.random() < 0.8,
        "linked_accounts": linked,
    }


def synthetic(n: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """Synthetic clients ``0 .. n-1`` of dataset ``seed``, generated one at a time."""
    for i in range(n):
        yield synthetic_record(i, seed)


def emails_of(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distinct normalised emails of ``records``, in first-seen order."""
    return list(dict.fromkeys(str(record["email"]).strip().lower() for record in records))
