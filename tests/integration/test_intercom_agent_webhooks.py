"""An agent's changes in the Intercom sandbox reach the receiver as Intercom's signed webhooks.

Each control route applies the change, posts Intercom's notification envelope about the whole
contact (ISO 8601 times, signed ``X-Hub-Signature: sha1=...`` with the client secret, checked
here with the receiver's own :func:`web.auth.signature_matches` and by the real receiver), and
answers with the notification id and the receiver's status; a redelivery carries the same id;
``echo_writes`` sends our own API writes back, after the API answered, in order.
"""

from __future__ import annotations

from datetime import datetime

import pytest
import requests

from sync_worker.devtools.localredis import wait_until
from tests.fixtures.intercom_agent import AGENT_SECRET
from tests.fixtures.web import CLIENT_SECRET
from web.auth import SIGNATURE_HEADER, signature_matches

pytestmark = pytest.mark.integration

LEAD_STATUS = "Lead Status"
TIMES = ("created_at", "updated_at", "signed_up_at", "last_seen_at")


@pytest.fixture
def lead(intercom_sandbox) -> dict:
    intercom_sandbox.create_attribute(LEAD_STATUS)
    intercom_sandbox.create_attribute("Referral ID")
    (seeded,) = intercom_sandbox.seed(
        {
            "email": "referred@example.com",
            "name": "Referred Person",
            "role": "lead",
            "custom_attributes": {LEAD_STATUS: "New", "Referral ID": "5001"},
        }
    )
    return seeded


def _parsed(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0, value
    return parsed


def test_an_agents_change_is_applied_and_posted_signed_with_the_client_secret(
    intercom_sandbox, intercom_agent, webhook_inbox, lead
):
    answer = intercom_agent.change(lead["id"], custom_attributes={LEAD_STATUS: "Qualified"})

    assert answer["receiver_status"] == 200 and answer["receiver_answer"] == {"status": "ok"}
    assert answer["topic"] == "contact.lead.updated" and answer["error"] is None
    assert intercom_sandbox.contact(lead["id"])["custom_attributes"][LEAD_STATUS] == "Qualified"
    assert intercom_sandbox.writes(lead["id"]) == []  # an agent's change is not one of our PUTs
    (received,) = webhook_inbox.received()
    header = received.headers[SIGNATURE_HEADER]
    assert header.startswith("sha1=") and len(header) == len("sha1=") + 40
    assert signature_matches(received.body, header, AGENT_SECRET.encode())
    assert not signature_matches(received.body, header, b"another-secret")
    assert not signature_matches(received.body + b" ", header, AGENT_SECRET.encode())
    assert received.headers["Content-Type"] == "application/json"

    envelope = received.json()
    assert envelope["type"] == "notification_event" and envelope["id"] == answer["notification_id"]
    assert envelope["topic"] == "contact.lead.updated" and envelope["app_id"] == "sandbox"
    assert envelope["delivery_attempts"] == 1
    assert isinstance(envelope["created_at"], int) and envelope["first_sent_at"] == envelope["created_at"]
    assert envelope["data"]["type"] == "notification_event_data"
    item = envelope["data"]["item"]
    assert item["type"] == "contact" and item["id"] == lead["id"] and item["role"] == "lead"
    assert item["email"] == "referred@example.com" and item["name"] == "Referred Person"
    assert item["custom_attributes"] == {LEAD_STATUS: "Qualified", "Referral ID": "5001"}


def test_the_webhooks_contact_carries_iso_8601_times_where_the_api_has_unix_seconds(
    intercom_sandbox, intercom_agent, webhook_inbox, lead
):
    intercom_agent.change(lead["id"], name="Renamed")
    signed_up = intercom_agent.signup(lead["id"])
    rest = intercom_agent.api("GET", f"/contacts/{lead['id']}").json()

    updated, converted = (r.json()["data"]["item"] for r in webhook_inbox.received())
    assert updated["signed_up_at"] is None and updated["last_seen_at"] is None  # a lead never signed up
    assert isinstance(updated["created_at"], str) and isinstance(updated["updated_at"], str)
    assert _parsed(updated["created_at"]).timestamp() == lead["created_at"]
    assert signed_up["topic"] == "contact.lead.signed_up"
    for name in ("created_at", "updated_at", "signed_up_at"):
        assert isinstance(rest[name], int)
        assert isinstance(converted[name], str) and _parsed(converted[name]).timestamp() == rest[name]
    assert converted["last_seen_at"] is None


def test_signup_converts_the_lead_into_a_user_and_says_so(
    intercom_sandbox, intercom_agent, webhook_inbox, lead
):
    answer = intercom_agent.signup(lead["id"], external_id="app-user-7")

    assert answer["topic"] == "contact.lead.signed_up" and answer["receiver_status"] == 200
    contact = intercom_agent.api("GET", f"/contacts/{lead['id']}").json()
    assert contact["role"] == "user" and contact["external_id"] == "app-user-7"
    assert contact["signed_up_at"] is not None
    (received,) = webhook_inbox.received()
    item = received.json()["data"]["item"]
    assert item["role"] == "user" and item["custom_attributes"]["Referral ID"] == "5001"

    again = requests.post(f"{intercom_sandbox.url}/_sandbox/agent/signup/{lead['id']}", timeout=10)
    assert again.status_code == 400  # a user does not sign up twice
    changed = intercom_agent.change(lead["id"], custom_attributes={LEAD_STATUS: "Customer"})
    assert changed["topic"] == "contact.user.updated"  # the same contact, a user now
    assert len(webhook_inbox.received()) == 2


def test_an_agents_merge_posts_contact_merged_about_the_surviving_user(
    intercom_sandbox, intercom_agent, webhook_inbox, lead
):
    (user,) = intercom_sandbox.seed({"email": "referred@example.com", "role": "user"})

    answer = intercom_agent.merge(lead["id"], user["id"])

    assert answer["topic"] == "contact.merged" and answer["receiver_status"] == 200
    (received,) = webhook_inbox.received()
    item = received.json()["data"]["item"]
    assert item["id"] == user["id"] and item["role"] == "user"
    assert item["custom_attributes"]["Referral ID"] == "5001"  # found again by its referral id
    assert intercom_agent.api("GET", f"/contacts/{lead['id']}").status_code == 404


def test_a_redelivery_carries_the_same_id_and_body_with_one_more_attempt(
    intercom_sandbox, intercom_agent, webhook_inbox, lead
):
    first = intercom_agent.change(lead["id"], custom_attributes={LEAD_STATUS: "Qualified"})
    intercom_agent.change(lead["id"], custom_attributes={LEAD_STATUS: "Customer"})

    again = intercom_agent.notify(lead["id"], notification_id=first["notification_id"])

    assert again["notification_id"] == first["notification_id"] and again["delivery_attempts"] == 2
    original, _, redelivered = (r.json() for r in webhook_inbox.received())
    assert redelivered["id"] == original["id"] and redelivered["delivery_attempts"] == 2
    assert redelivered["data"] == original["data"]  # the contact as it was, not as it is now
    assert redelivered["first_sent_at"] == original["first_sent_at"]
    assert redelivered["data"]["item"]["custom_attributes"][LEAD_STATUS] == "Qualified"

    chosen = intercom_agent.notify(lead["id"], topic="contact.user.created", notification_id="notif_chosen-1")
    assert chosen["notification_id"] == "notif_chosen-1" and chosen["delivery_attempts"] == 1
    fresh = webhook_inbox.received()[-1].json()
    assert fresh["topic"] == "contact.user.created" and fresh["id"] == "notif_chosen-1"
    assert fresh["data"]["item"]["custom_attributes"][LEAD_STATUS] == "Customer"  # as it is now
    logged = intercom_agent.notifications()["deliveries"]
    assert [d["notification_id"] for d in logged].count(first["notification_id"]) == 2


def test_the_receivers_answer_is_reported_and_nothing_is_sent_without_a_url(
    intercom_sandbox, intercom_agent, webhook_inbox, lead
):
    webhook_inbox.status = 503
    assert intercom_agent.change(lead["id"], name="A")["receiver_status"] == 503

    intercom_sandbox.config(webhook_url=None)
    unsent = intercom_agent.change(lead["id"], name="B")
    assert unsent["receiver_status"] is None and "webhook_url" in unsent["error"]
    assert intercom_sandbox.contact(lead["id"])["name"] == "B"  # the change applies regardless
    assert len(webhook_inbox.received()) == 1


def test_the_real_receiver_accepts_the_sandboxs_signature_and_refuses_another_secret(
    intercom_sandbox, intercom_agent, web_server, lead
):
    intercom_sandbox.config(webhook_url=f"{web_server.url}/webhooks/intercom", webhook_secret=CLIENT_SECRET)
    accepted = intercom_agent.change(lead["id"], custom_attributes={LEAD_STATUS: "Qualified"})
    assert accepted["receiver_status"] == 200, accepted["receiver_answer"]

    intercom_sandbox.config(webhook_secret="not-the-client-secret")
    refused = intercom_agent.change(lead["id"], custom_attributes={LEAD_STATUS: "Customer"})
    assert refused["receiver_status"] == 401
    assert refused["receiver_answer"]["error"]["code"] == "invalid_signature"


def test_with_echo_writes_each_api_put_comes_back_in_order_after_the_api_answered(
    intercom_sandbox, intercom_agent, webhook_inbox, lead
):
    client = intercom_sandbox.client()
    client.update_contact(lead["id"], custom_attributes={LEAD_STATUS: "Silent"})  # echo off: no echo
    intercom_sandbox.config(echo_writes=True)
    webhook_inbox.gate.clear()  # the receiver holds its answers back

    for value in ("One", "Two", "Three"):
        written = client.update_contact(lead["id"], custom_attributes={LEAD_STATUS: value})
        assert written["custom_attributes"][LEAD_STATUS] == value  # answered, the receiver still silent
    wait_until(lambda: len(webhook_inbox.received()) == 1, 10, message="the first echo to arrive")
    assert intercom_agent.notifications()["pending"] >= 1  # the echo waits on the receiver, not the API
    webhook_inbox.gate.set()
    wait_until(lambda: len(webhook_inbox.received()) == 3, 10, message="three echoes")

    echoes = [r.json() for r in webhook_inbox.received()]
    assert [e["topic"] for e in echoes] == ["contact.lead.updated"] * 3
    assert [e["data"]["item"]["custom_attributes"][LEAD_STATUS] for e in echoes] == ["One", "Two", "Three"]
    assert len({e["id"] for e in echoes}) == 3
    for received in webhook_inbox.received():
        assert signature_matches(received.body, received.headers[SIGNATURE_HEADER], AGENT_SECRET.encode())
    wait_until(lambda: intercom_agent.notifications()["pending"] == 0, 10, message="the outbox drained")
    assert len(webhook_inbox.received()) == 3 and len(intercom_sandbox.writes(lead["id"])) == 4
