"""Dealer users over real processes: the receiver over HTTP, a real Celery worker, both sandboxes.

The expected values are written out by hand from the platform sandbox's sample users
(``sync_worker/devtools/sandbox/dealer_users_dataset.py``) and ``docs/integrations/dealer_users.md``.
"""

from __future__ import annotations

import json
import time

import pytest
import redis as redis_lib
import requests

from sync_worker import keys
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.sandbox.dealer_users_dataset import GONE_USER_ID
from tests.fixtures.workers import CLIENT_SECRET, TRIGGER_TOKEN
from web.auth import sign

pytestmark = pytest.mark.integration

OMAR = "omar.haddad@dealer.example"  # user124: a role listed twice, the shared location


@pytest.fixture
def service_env(service_env: dict[str, str]) -> dict[str, str]:
    return {**service_env, "SYNC_INTEGRATIONS": "clients,dealer_users"}


def _trigger(web_app, body: dict) -> requests.Response:
    return requests.post(
        f"{web_app.url}/v1/sync", json=body, headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"}, timeout=10
    )


def _result_after(redis_url: str, contact_key: str, started: float, timeout: float = 30) -> dict:
    """The worker's result for ``contact_key`` recorded after ``started``."""
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)

    found: list[dict] = []

    def finished() -> bool:
        raw = client.get(keys.last_result(contact_key))
        result = json.loads(raw) if raw else None
        if result and result["finished_at"] >= started:
            found.append(result)
        return bool(found)

    try:
        wait_until(finished, timeout, message=f"a result for {contact_key}")
    finally:
        client.close()
    return found[0]


def _user_created(contact: dict, notification_id: str = "notif_user_created_1") -> bytes:
    return json.dumps(
        {
            "type": "notification_event",
            "id": notification_id,
            "topic": "contact.user.created",
            "app_id": "abc123",
            "created_at": 1767225600,
            "data": {"type": "notification_event_data", "item": contact},
        }
    ).encode()


def test_a_triggered_user_is_created_then_an_unchanged_second_trigger_makes_no_intercom_call(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
):
    workers.start(1)
    started = time.time()
    response = _trigger(web_app, {"integration": "dealer_users", "user_id": "user123"})
    assert response.status_code == 202, response.text
    assert response.json()["contact_key"] == "dealer_users:source:user123"
    first = _result_after(service_env["REDIS_URL"], "dealer_users:source:user123", started)
    assert first["status"] == "synced", first
    (contact,) = [c for c in intercom_sandbox.contacts() if c.get("external_id") == "user123"]
    assert contact["role"] == "user" and contact["email"] == "dana@dealer.example"
    assert contact["name"] == "Dana Whitfield"
    assert contact["custom_attributes"] == {
        "Source": "Billing Center Dealer App",
        "User_roles": "Company Billing Admin, Location Sales Admin",
        "User_companies": "Company A, Company B",
    }
    assert [c["company_id"] for c in intercom_sandbox.contact_companies(contact["id"])] == [
        "location_id_1",
        "location_id_3",
    ]
    calls = intercom_sandbox.stats()["received_total"]
    again = time.time()
    assert _trigger(web_app, {"integration": "dealer_users", "user_id": "user123"}).status_code == 202
    second = _result_after(service_env["REDIS_URL"], "dealer_users:source:user123", again)
    assert second["status"] == "unchanged", second
    stats = intercom_sandbox.stats()
    assert stats["received_total"] == calls
    assert stats["validation_failures"] == 0


def test_contact_user_created_fills_a_new_messenger_user_within_seconds(
    intercom_sandbox, platform_sandbox, workers, web_app
):
    workers.start(1)
    intercom_sandbox.config(search_lag_seconds=600)  # Intercom's search does not show it yet
    (messenger,) = intercom_sandbox.seed({"email": OMAR, "role": "user"})
    body = _user_created({"type": "contact", "id": messenger["id"], "role": "user", "email": OMAR})
    sent = time.monotonic()
    response = requests.post(
        f"{web_app.url}/webhooks/intercom",
        data=body,
        headers={"Content-Type": "application/json", "X-Hub-Signature": sign(body, CLIENT_SECRET)},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert [s["integration"] for s in response.json()["syncs"]] == ["dealer_users"]

    def filled() -> bool:  # the contact's write comes first, its memberships after it
        attributes = intercom_sandbox.contact(messenger["id"]).get("custom_attributes", {})
        return bool(attributes.get("User_roles")) and bool(
            intercom_sandbox.contact_companies(messenger["id"])
        )

    wait_until(filled, 10, message="the Messenger's user to be filled")
    contact = intercom_sandbox.contact(messenger["id"])
    assert time.monotonic() - sent < 10
    assert contact["external_id"] == "user124"
    assert contact["custom_attributes"]["User_roles"] == "Location Sales Admin, Location Service Advisor"
    assert [c["company_id"] for c in intercom_sandbox.contact_companies(messenger["id"])] == ["location_id_1"]
    assert len(intercom_sandbox.contacts()) == 1


def test_a_user_the_platform_does_not_have_is_no_account_and_no_contact_is_created(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
):
    workers.start(1)
    started = time.time()
    assert _trigger(web_app, {"integration": "dealer_users", "user_id": GONE_USER_ID}).status_code == 202
    result = _result_after(service_env["REDIS_URL"], f"dealer_users:source:{GONE_USER_ID}", started)
    assert result["status"] == "no_account", result
    assert intercom_sandbox.contacts() == []
    assert intercom_sandbox.stats()["received_total"] == 0


def test_a_trigger_that_does_not_fit_its_integration_is_400(web_app):
    for body, problem in (
        ({"integration": "dealer_users", "email": OMAR}, "email"),
        ({"integration": "dealer_users"}, "user_id"),
        ({"user_id": "user123"}, "user_id"),
        ({"integration": "nope", "user_id": "user123"}, "nope"),
    ):
        response = _trigger(web_app, body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]["code"] == "invalid_body"
        assert problem in response.json()["error"]["message"]
