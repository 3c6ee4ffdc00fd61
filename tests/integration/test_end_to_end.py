"""The whole path over real processes: web over HTTP, a real Celery worker, both sandboxes.

The expected values below are written out by hand from the sample dataset's
record (``sync_worker/devtools/sandbox/data/sample_clients.json``) and the attribute
rules (``docs/integrations/clients.md``), not computed by our own code.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import requests

from sync_worker.devtools.devstack import NO_ACCOUNT_EMAIL, seed_intercom_contacts
from sync_worker.devtools.localredis import wait_until
from tests.fixtures.workers import CLIENT_SECRET, TRIGGER_TOKEN

DATE_TIME = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4} - \d{1,2}:\d{2} [ap]\.m\. E[SD]T$")

OLIVIA_EMAIL = "olivia.brandt@example.com"
OLIVIA_EXPECTED = {
    "Client ID": "131451",
    "Phone Number": "+1 416 555 1451",
    "Client Profile Link": "https://platform.example.com/clients/131451",
    "Client Status": "Active",
    "Time Zone": "America/Toronto",
    "Client Since": "Jun 3, 2024",
    "Platform Account Exists": "Yes",
    "Therapist Name": "Priya Raman",
    "Tags": "-",
    "Group": "-",
    "Unpaid Invoices": "Yes, CAD$1,250.50 due",
    "Card on File": "Yes",
    "Number of Sessions": "2",
    "Last Appointment": "May 13, 2024 - 9:00 a.m. EDT",
    "Next Appointment": "No Appointments",
    "Intake Forms Completed": "Yes",
    "Sub Org": "Ruh Care Inc.",
    "Multiple Accounts": "No",
    "Linked Accounts": "-",
    "Data Status": "Live",
}


def _seeded(intercom_sandbox) -> dict[str, dict]:
    return {contact["email"]: contact for contact in seed_intercom_contacts(intercom_sandbox.url)}


def _synced(intercom_sandbox, contact_id: str) -> dict:
    def done() -> dict | None:
        attributes = intercom_sandbox.contact(contact_id).get("custom_attributes", {})
        return attributes if attributes.get("Data Status") else None

    wait_until(done, 30, message=f"contact {contact_id} to be synced")
    return intercom_sandbox.contact(contact_id)


def _assert_olivia(contact: dict) -> None:
    attributes = dict(contact["custom_attributes"])
    updated_on = attributes.pop("User Data Updated On")
    assert DATE_TIME.match(updated_on), updated_on
    assert attributes == OLIVIA_EXPECTED
    assert contact["name"] == "Olivia Brandt"


def _webhook(contact_id: str, email: str, notification_id: str = "notif_1") -> bytes:
    return json.dumps(
        {
            "type": "notification_event",
            "id": notification_id,
            "topic": "conversation.user.created",
            "app_id": "abc123",
            "created_at": 1767225600,
            "data": {
                "type": "notification_event_data",
                "item": {
                    "type": "conversation",
                    "id": "9001",
                    "source": {"author": {"type": "user", "id": contact_id, "email": email}},
                    "contacts": {"type": "contact.list", "contacts": [{"type": "contact", "id": contact_id}]},
                },
            },
        }
    ).encode()


def _sign(body: bytes) -> str:
    return "sha1=" + hmac.new(CLIENT_SECRET.encode(), body, hashlib.sha1).hexdigest()


def test_signed_webhook_syncs_the_contact(intercom_sandbox, platform_sandbox, workers, web_app):
    contact_id = _seeded(intercom_sandbox)[OLIVIA_EMAIL]["id"]
    workers.start(1)
    body = _webhook(contact_id, OLIVIA_EMAIL)
    response = requests.post(
        f"{web_app.url}/webhooks/intercom",
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature": _sign(body)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    _assert_olivia(_synced(intercom_sandbox, contact_id))
    stats = intercom_sandbox.stats()
    assert stats["validation_failures"] == 0


def test_manual_trigger_by_email_syncs_the_contact(intercom_sandbox, platform_sandbox, workers, web_app):
    contact_id = _seeded(intercom_sandbox)[OLIVIA_EMAIL]["id"]
    workers.start(1)
    response = requests.post(
        f"{web_app.url}/v1/sync",
        json={"email": "Olivia.Brandt@example.com "},
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    _assert_olivia(_synced(intercom_sandbox, contact_id))


def test_no_platform_account_shows_no_and_keeps_the_name(
    intercom_sandbox, platform_sandbox, workers, web_app
):
    contact = _seeded(intercom_sandbox)[NO_ACCOUNT_EMAIL]
    workers.start(1)
    response = requests.post(
        f"{web_app.url}/v1/sync",
        json={"contact_id": contact["id"]},
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    synced = _synced(intercom_sandbox, contact["id"])
    attributes = dict(synced["custom_attributes"])
    assert DATE_TIME.match(attributes.pop("User Data Updated On"))
    assert attributes.pop("Platform Account Exists") == "No"
    assert attributes.pop("Multiple Accounts") == "No"
    assert attributes.pop("Data Status") == "Live"
    assert set(attributes.values()) == {"-"}, attributes
    assert synced["name"] == "Nora Account"


def test_every_sample_contact_syncs_and_every_request_matches_the_spec(
    intercom_sandbox, platform_sandbox, workers, web_app
):
    contacts = _seeded(intercom_sandbox)
    workers.start(1, concurrency=2)
    for contact in contacts.values():
        response = requests.post(
            f"{web_app.url}/v1/sync",
            json={"contact_id": contact["id"]},
            headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
    for contact in contacts.values():
        attributes = _synced(intercom_sandbox, contact["id"])["custom_attributes"]
        assert attributes["Data Status"] == "Live"
        assert all(len(value) <= 255 for value in attributes.values())
    sami = _synced(intercom_sandbox, contacts["sami.ruhsuf@example.com"]["id"])["custom_attributes"]
    assert sami["Client ID"] == "131445 | 131446 | 131447"
    assert sami["Multiple Accounts"] == "Yes"
    stats = intercom_sandbox.stats()
    assert stats["validation_failures"] == 0
