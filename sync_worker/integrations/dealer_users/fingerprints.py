"""What a dealer user and a location company show, as hashes: "write only what changed" compares them.

Guarantees (pure; the same inputs always give the same hash, key order does not matter):
- :func:`contact_fingerprint` covers the contact's write as it is sent (Intercom names and
  truncated values, :func:`~sync_worker.integrations.dealer_users.profile.contact_update`), the
  contact's id and the profile's version: a renamed attribute, a changed value, another contact
  or new rules change it;
- :func:`membership_fingerprint` covers the user's set of location ids and the contact's id (the
  order of the locations does not matter: memberships are a set);
- :func:`company_fingerprint` covers a company's write (its name and custom attributes as sent),
  whichever user it was computed for: a location shared by many users has one fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from sync_worker.integrations.dealer_users.profile import VERSION


def _digest(document: Any) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def contact_fingerprint(custom: Mapping[str, str], standard: Mapping[str, str], contact_id: str) -> str:
    return _digest({"v": VERSION, "contact": contact_id, "custom": dict(custom), "standard": dict(standard)})


def membership_fingerprint(location_ids: Iterable[str], contact_id: str) -> str:
    return _digest({"v": VERSION, "contact": contact_id, "locations": sorted(set(location_ids))})


def company_fingerprint(name: str, custom: Mapping[str, str]) -> str:
    return _digest({"v": VERSION, "name": name, "custom": dict(custom)})
