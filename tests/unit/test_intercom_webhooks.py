"""The sandbox's Intercom notifications (pure parts): envelope, ISO 8601 times, signature, topics."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from sync_worker.devtools.sandbox.intercom_agent import change_topic
from sync_worker.devtools.sandbox.intercom_webhooks import iso8601, notification, signature, webhook_contact
from web.auth import signature_matches

NEW_YEAR = 1767225600  # 2026-01-01T00:00:00Z


def test_iso8601_is_utc_with_milliseconds_and_none_stays_none():
    assert iso8601(NEW_YEAR) == "2026-01-01T00:00:00.000+00:00"
    assert iso8601(NEW_YEAR + 61) == "2026-01-01T00:01:01.000+00:00"
    assert datetime.fromisoformat(iso8601(NEW_YEAR)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert iso8601(None) is None


def test_the_webhook_contact_has_iso_times_and_everything_else_untouched():
    contact = {
        "type": "contact",
        "id": "c1",
        "role": "lead",
        "created_at": NEW_YEAR,
        "updated_at": NEW_YEAR + 1,
        "signed_up_at": None,
        "last_seen_at": None,
        "custom_attributes": {"Referred At": 1767225600, "Lead Status": "New"},
    }
    item = webhook_contact(contact)
    assert item["created_at"] == "2026-01-01T00:00:00.000+00:00"
    assert item["updated_at"] == "2026-01-01T00:00:01.000+00:00"
    assert item["signed_up_at"] is None and item["last_seen_at"] is None
    assert item["custom_attributes"] == contact["custom_attributes"]  # custom values as stored
    assert contact["created_at"] == NEW_YEAR  # the contact given is not changed


def test_the_envelope_is_intercoms_with_unix_times_of_its_own():
    envelope = notification(
        "contact.lead.updated",
        {"id": "c1", "created_at": NEW_YEAR},
        app_id="ws1",
        notification_id="n1",
        now=NEW_YEAR + 5.7,
    )
    assert envelope["type"] == "notification_event" and envelope["app_id"] == "ws1"
    assert envelope["id"] == "n1" and envelope["topic"] == "contact.lead.updated"
    assert envelope["created_at"] == envelope["first_sent_at"] == NEW_YEAR + 5
    assert envelope["delivery_attempts"] == 1
    assert envelope["data"] == {
        "type": "notification_event_data",
        "item": {"id": "c1", "created_at": "2026-01-01T00:00:00.000+00:00"},
    }


def test_the_signature_is_hmac_sha1_of_the_body_and_the_receiver_accepts_it():
    body = b'{"type": "notification_event"}'
    expected = "sha1=" + hmac.new(b"secret", body, hashlib.sha1).hexdigest()
    assert signature(body, "secret") == expected
    assert signature_matches(body, signature(body, "secret"), b"secret")
    assert not signature_matches(body, signature(body, "other"), b"secret")


def test_the_topic_of_an_agents_change():
    assert change_topic("lead", "lead") == "contact.lead.updated"
    assert change_topic("user", "user") == "contact.user.updated"
    assert change_topic("lead", "user") == "contact.lead.signed_up"
