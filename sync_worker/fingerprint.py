"""What a contact shows, as one hash: "write only what changed" compares what is written.

Guarantees (pure, :func:`shown_fingerprint`):
- the hash covers the update as :func:`sync_worker.attributes.build_update` writes it: the
  Intercom names (custom attributes and standard fields) with their values, truncated as
  written, so renaming an attribute (``SYNC_ATTRIBUTE_NAMES``) or changing what a ``None``
  writes changes the hash and the next "only changed" run writes the contact;
- it covers the profile's ``name`` and ``version`` too, so a profile whose rules change bumps
  its version and every contact is written again once;
- the profile's ``volatile_keys`` (the read time) are left out, so a value that changes on
  every read alone never makes a write;
- the same values, names and profile always give the same hash (key order does not matter).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from sync_worker.attributes import build_update
from sync_worker.profiles.base import Profile


def shown_fingerprint(
    profile: Profile, values: Mapping[str, str | None], names_override: Mapping[str, str]
) -> str:
    """The hash of what writing ``values`` shows on the contact (see the module's guarantees)."""
    stable = {key: value for key, value in values.items() if key not in profile.volatile_keys}
    custom, standard = build_update(stable, profile.attributes, names_override)
    document = {
        "profile": [profile.name, profile.version],
        "custom_attributes": custom,
        "standard": standard,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
