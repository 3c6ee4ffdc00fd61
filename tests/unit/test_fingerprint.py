"""The fingerprint "write only what changed" compares: what is written, not the values by key."""

from __future__ import annotations

from sync_worker.fingerprint import shown_fingerprint
from sync_worker.integrations.clients.profile import ClientProfile

PROFILE = ClientProfile()
VALUES = {"client_id": "131451", "name": "Olivia Brandt", "sessions": "2", "updated_on": "Jan 5, 2026"}


def test_the_same_update_gives_the_same_fingerprint_whatever_the_read_time_or_key_order():
    later = {**dict(reversed(list(VALUES.items()))), "updated_on": "Jan 6, 2026"}
    assert shown_fingerprint(PROFILE, VALUES, {}) == shown_fingerprint(PROFILE, later, {})


def test_a_value_a_name_or_the_profile_version_changes_it():
    base = shown_fingerprint(PROFILE, VALUES, {})
    assert shown_fingerprint(PROFILE, {**VALUES, "sessions": "3"}, {}) != base
    assert shown_fingerprint(PROFILE, VALUES, {"sessions": "Sessions Count"}) != base
    assert shown_fingerprint(PROFILE, VALUES, {"name": "Client Name"}) != base  # standard field -> custom

    class Next(ClientProfile):
        version = "2"

    assert shown_fingerprint(Next(), VALUES, {}) != base


def test_values_that_write_the_same_give_the_same_fingerprint():
    long = "x" * 300
    assert shown_fingerprint(PROFILE, {**VALUES, "tags": long}, {}) == shown_fingerprint(
        PROFILE, {**VALUES, "tags": long + "y"}, {}
    )  # both written as the same 255 characters
