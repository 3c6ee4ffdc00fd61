"""The platform's ``User`` record as ``docs/contracts/platform-api.yaml`` describes it: fields and types.

Guarantees (pure; :func:`user_problems`, built on :mod:`sync_worker.platform_records`'s checks):
- it lists everything that keeps a record from being a contract ``User`` the dealer users
  integration can compute from: the record or a nested item (``roles``, ``companies``,
  ``locations``) not an object, a required field missing, a field of the wrong JSON type, a
  blank ``user_id``, an ``updated_at`` that is not an ISO 8601 date-time with a zone; ``[]``
  when there is nothing;
- messages name fields and positions (``locations[2].company_id is not a string``), never the
  values: they end up in logs and dead letters;
- ``strict=True`` adds the contract's prose rules the sandbox holds its own data to: times in
  UTC with a ``Z`` suffix, the ``status`` and ``roles[].scope`` enums. The workers do not (a
  platform adding a status or a scope still syncs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sync_worker.platform_records import KINDS, STRICT_KINDS, field_problems, nested_problems

USER_STATUSES = ("active", "disabled")
ROLE_SCOPES = ("company", "location")

#: Field -> (kind, required) of a ``User``.
USER_FIELDS: dict[str, tuple[str, bool]] = {
    "user_id": ("str", True),
    "email": ("str", True),
    "first_name": ("str", True),
    "last_name": ("str", True),
    "status": ("str", True),
    "roles": ("array", True),
    "companies": ("array", True),
    "locations": ("array", True),
    "updated_at": ("time", True),
}
#: Fields of the objects in a ``User``'s arrays.
USER_NESTED_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "roles": {"name": ("str", True), "scope": ("str", False)},
    "companies": {"id": ("str", True), "name": ("str", True)},
    "locations": {"id": ("str", True), "name": ("str", True), "company_id": ("str", True)},
}
#: Enums checked with ``strict=True`` only.
USER_ENUMS: dict[tuple[str, str], tuple[str, ...]] = {("roles", "scope"): ROLE_SCOPES}


def user_problems(record: Any, *, strict: bool = False) -> list[str]:
    """What keeps ``record`` from being a contract ``User`` ([] when nothing; see the module)."""
    if not isinstance(record, Mapping):
        return [f"a user record is a {type(record).__name__}, not an object"]
    kinds = STRICT_KINDS if strict else KINDS
    problems = field_problems(record, USER_FIELDS, "", kinds)
    user_id = record.get("user_id")
    if isinstance(user_id, str) and not user_id.strip():
        problems.append("user_id is blank")
    if strict and isinstance(record.get("status"), str) and record["status"] not in USER_STATUSES:
        problems.append(f"status is not one of {', '.join(USER_STATUSES)}")
    return problems + nested_problems(record, USER_NESTED_FIELDS, USER_ENUMS if strict else {}, kinds)
