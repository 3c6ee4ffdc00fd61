"""The platform's ``Client`` record as ``docs/contracts/platform-api.yaml`` describes it: fields and types.

Guarantees (pure; :func:`record_problems`):
- it lists everything that keeps a record from being a contract ``Client`` the client profile
  can compute from: the record or a nested item not an object, a required field missing, a
  field of the wrong JSON type (an integer is never a boolean, nor a string of digits), a time
  that is not an ISO 8601 date-time with a zone, a ``balance`` that is not a plain decimal
  string of at most :data:`MAX_MONEY_DIGITS` integer digits (``"1e30"`` is not: money is a
  decimal string, and Decimal arithmetic to cents must be exact); ``[]`` when there is nothing;
- messages name fields and positions (``invoices[0].balance is not a decimal string``), never
  the values: they end up in logs and dead letters;
- ``strict=True`` adds the contract's prose rules the sandbox holds its own data to: times in
  UTC with a ``Z`` suffix, ``profile_url`` an absolute http(s) URL, the ``status`` enums. The
  workers do not (a platform sending ``+00:00`` or a new appointment status still syncs: the
  profile reads those);
- a record without problems can be computed: the profile's formatting meets no type it does not
  expect (``tests/unit/test_compute.py`` puts every JSON type in every field to show it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sync_worker.formatting import parse_utc

INVOICE_STATUSES = ("paid", "unpaid", "void")
APPOINTMENT_STATUSES = ("scheduled", "occurred", "late_cancellation", "cancelled", "no_show")
#: The most integer digits a money amount may have (a sum of many stays well inside Decimal's 28).
MAX_MONEY_DIGITS = 15

_UTC_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")
_DECIMAL = re.compile(rf"-?\d{{1,{MAX_MONEY_DIGITS}}}(\.\d+)?")

Check = Callable[[Any], bool]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parse_utc(value)
    except ValueError:
        return False
    return True


def _is_utc_time(value: Any) -> bool:
    if not isinstance(value, str) or not _UTC_TIME.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _is_decimal(value: Any) -> bool:
    return isinstance(value, str) and _DECIMAL.fullmatch(value.strip()) is not None


def _is_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _or_null(check: Check) -> Check:
    return lambda value: value is None or check(value)


#: Kind -> (check, what the message says the value is not).
KINDS: dict[str, tuple[Check, str]] = {
    "int": (_is_int, "an integer"),
    "str": (_is_str, "a string"),
    "str?": (_or_null(_is_str), "a string or null"),
    "bool": (lambda v: isinstance(v, bool), "a boolean"),
    "time": (_is_time, "an ISO 8601 date-time with a zone"),
    "decimal": (_is_decimal, f"a decimal string (at most {MAX_MONEY_DIGITS} integer digits)"),
    "url?": (_or_null(_is_str), "a string or null"),
    "object": (lambda v: isinstance(v, Mapping), "an object"),
    "array": (lambda v: isinstance(v, list), "an array"),
}
#: The stricter kinds of ``strict=True`` (the contract's prose).
STRICT_KINDS: dict[str, tuple[Check, str]] = {
    **KINDS,
    "time": (_is_utc_time, "a UTC ISO 8601 time with a Z suffix"),
    "url?": (_or_null(_is_url), "an absolute http(s) URL or null"),
}

#: Field -> (kind, required) of a ``Client``.
CLIENT_FIELDS: dict[str, tuple[str, bool]] = {
    "id": ("int", True),
    "email": ("str", True),
    "first_name": ("str", True),
    "last_name": ("str", True),
    "phone": ("str?", False),
    "status": ("str", True),
    "timezone": ("str?", False),
    "created_at": ("time", True),
    "profile_url": ("url?", False),
    "organization": ("object", True),
    "care_team": ("array", True),
    "tags": ("array", True),
    "group": ("str?", False),
    "invoices": ("array", True),
    "card_on_file": ("bool", True),
    "appointments": ("array", True),
    "intake_forms_completed": ("bool", True),
    "linked_accounts": ("array", True),
}
#: Fields of the objects nested in a ``Client`` (``organization`` one object, the others arrays of them).
NESTED_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "organization": {"id": ("int", True), "name": ("str", True), "currency": ("str", True)},
    "care_team": {"name": ("str", True), "role": ("str", False), "is_primary": ("bool", True)},
    "invoices": {
        "id": ("int", True),
        "status": ("str", True),
        "balance": ("decimal", True),
        "currency": ("str", True),
    },
    "appointments": {"id": ("int", True), "start_at": ("time", True), "status": ("str", True)},
    "linked_accounts": {
        "client_id": ("int", True),
        "name": ("str", True),
        "relationship": ("str", True),
        "is_primary": ("bool", True),
    },
}
#: Enums checked with ``strict=True`` only.
ENUMS: dict[tuple[str, str], tuple[str, ...]] = {
    ("invoices", "status"): INVOICE_STATUSES,
    ("appointments", "status"): APPOINTMENT_STATUSES,
}


def field_problems(
    obj: Mapping[str, Any], fields: Mapping[str, tuple[str, bool]], where: str, kinds: Mapping[str, Any]
) -> list[str]:
    """The problems of ``obj``'s ``fields`` (name -> (kind of :data:`KINDS`, required)); ``where``
    prefixes each field name (``invoices[0].``, ``""`` for the record itself)."""
    problems = []
    for name, (kind, required) in fields.items():
        if name not in obj:
            if required:
                problems.append(
                    f"{where[:-1]} is missing {name}" if where else f"missing required field {name}"
                )
            continue
        check, expected = kinds[kind]
        if not check(obj[name]):
            problems.append(f"{where}{name} is not {expected}")
    return problems


def record_problems(record: Any, *, strict: bool = False) -> list[str]:
    """What keeps ``record`` from being a contract ``Client`` ([] when nothing; see the module)."""
    if not isinstance(record, Mapping):
        return [f"a client record is a {type(record).__name__}, not an object"]
    kinds = STRICT_KINDS if strict else KINDS
    problems = field_problems(record, CLIENT_FIELDS, "", kinds)
    tags = record.get("tags")
    if isinstance(tags, list) and not all(isinstance(tag, str) for tag in tags):
        problems.append("tags are not all strings")
    return problems + nested_problems(record, NESTED_FIELDS, ENUMS if strict else {}, kinds)


def nested_problems(
    record: Mapping[str, Any],
    nested: Mapping[str, Mapping[str, tuple[str, bool]]],
    enums: Mapping[tuple[str, str], tuple[str, ...]],
    kinds: Mapping[str, Any],
) -> list[str]:
    """The problems of the objects nested in ``record`` (one object, or an array of them, per name
    of ``nested``), with the ``enums`` given; a field missing or of the wrong type is not said
    here (:func:`field_problems` of the record says it)."""
    problems = []
    for name, fields in nested.items():
        value = record.get(name)
        if isinstance(value, Mapping):
            items = [(f"{name}.", value)]
        elif isinstance(value, list):
            items = [(f"{name}[{index}].", item) for index, item in enumerate(value)]
        else:
            continue  # missing or of the wrong type: said by the record's fields
        for where, item in items:
            if not isinstance(item, Mapping):
                problems.append(f"{where[:-1]} is not an object")
                continue
            problems += field_problems(item, fields, where, kinds)
            for (owner, field), allowed in enums.items():
                if owner == name and field in item and item[field] not in allowed:
                    problems.append(f"{where}{field} is not one of {', '.join(allowed)}")
    return problems
