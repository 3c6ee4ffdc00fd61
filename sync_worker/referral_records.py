"""The referral program's ``User`` record as ``docs/contracts/referral-api.yaml`` describes it.

Guarantees (pure; :func:`user_problems`):
- it lists everything that keeps a record from being a contract ``User``: the record not an
  object, a required field missing, a field of the wrong JSON type (an integer is never a
  boolean nor a string of digits), a time that is not an ISO 8601 date-time with a zone, a
  ``meta`` that is not an array of ``{field: string, value: any}`` objects; ``[]`` when nothing;
- messages name fields and positions (``meta[1].field is not a string``), never the values:
  they end up in logs;
- ``strict=True`` adds the contract's enums (``source``, ``type``) and times in UTC with a
  ``Z`` suffix, which the sandbox holds its own data to; the client does not (a program
  adding a new ``source`` still syncs);
- :func:`campaign_problems` does the same for a campaign (``id`` integer, ``name`` string).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# One set of JSON type checks for both contracts: the platform's, with the nullable kinds a User adds.
from sync_worker.platform_records import KINDS as _PLATFORM_KINDS
from sync_worker.platform_records import STRICT_KINDS as _PLATFORM_STRICT_KINDS
from sync_worker.platform_records import _is_int, _is_time, _is_utc_time, _or_null, field_problems

SOURCES = ("Direct", "Referred", "Api", "Added", "Zapier", "Widget", "Popup", "Embed", "Test")
#: ``person_invited``: referred by someone; ``person_referring``: joined the campaign directly.
REFERRED = "person_invited"
DIRECT = "person_referring"
TYPES = (DIRECT, REFERRED)

_NULLABLE = {
    "int?": (_or_null(_is_int), "an integer or null"),
    "time?": (_or_null(_is_time), "an ISO 8601 date-time with a zone, or null"),
}
_KINDS = {**_PLATFORM_KINDS, **_NULLABLE}
_STRICT_KINDS = {
    **_PLATFORM_STRICT_KINDS,
    **_NULLABLE,
    "time?": (_or_null(_is_utc_time), "a UTC ISO 8601 time with a Z suffix, or null"),
}

#: Field -> (kind, required) of a ``User``.
USER_FIELDS: dict[str, tuple[str, bool]] = {
    "id": ("int", True),
    "campaign_id": ("int", True),
    "referrer_id": ("int?", False),
    "code": ("str", True),
    "url": ("str?", False),
    "first_name": ("str", True),
    "email": ("str?", True),
    "source": ("str", True),
    "type": ("str", True),
    "signed_up_at": ("time", True),
    "qualified_at": ("time?", True),
    "unsubscribed_at": ("time?", False),
    "meta": ("array", False),
}
ENUMS: dict[str, tuple[str, ...]] = {"source": SOURCES, "type": TYPES}


def user_problems(record: Any, *, strict: bool = False) -> list[str]:
    """What keeps ``record`` from being a contract ``User`` ([] when nothing; see the module)."""
    if not isinstance(record, Mapping):
        return [f"a user record is a {type(record).__name__}, not an object"]
    kinds = _STRICT_KINDS if strict else _KINDS
    problems = field_problems(record, USER_FIELDS, "", kinds)
    if strict:
        problems += [
            f"{name} is not one of {', '.join(allowed)}"
            for name, allowed in ENUMS.items()
            if isinstance(record.get(name), str) and record[name] not in allowed
        ]
    meta = record.get("meta")
    if isinstance(meta, list):
        for index, item in enumerate(meta):
            if not isinstance(item, Mapping):
                problems.append(f"meta[{index}] is not an object")
                continue
            if not isinstance(item.get("field"), str):
                problems.append(f"meta[{index}].field is not a string")
            if "value" not in item:
                problems.append(f"meta[{index}] is missing value")
    return problems


def campaign_problems(record: Any) -> list[str]:
    """What keeps ``record`` from being a contract campaign (``{id, name}``)."""
    if not isinstance(record, Mapping):
        return [f"a campaign is a {type(record).__name__}, not an object"]
    problems = []
    if not _is_int(record.get("id")):
        problems.append("id is not an integer")
    if not isinstance(record.get("name"), str):
        problems.append("name is not a string")
    return problems
