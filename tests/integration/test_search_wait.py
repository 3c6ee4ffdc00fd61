"""Email-only triggers for contacts Intercom's search does not show yet, and folded triggers in a
backlog, with real worker processes.

Intercom: a contact created moments ago "may not yet be available when searching ... This
delay can take a few minutes". The sandbox's ``search_lag_seconds`` plays that delay.
"""

from __future__ import annotations

import json
import time

import pytest
import redis as redis_lib
import requests

from sync_worker import keys
from sync_worker.devtools.localredis import wait_until
from sync_worker.dispatch import FOLD_CLOCK_TOLERANCE_SECONDS, SyncRequest, claim
from tests.fixtures.resilience import OLIVIA_EMAIL, dead_letters, is_live, log_events, wait_for_attributes
from tests.fixtures.workers import TRIGGER_TOKEN

pytestmark = pytest.mark.integration

SEARCH_LAG_SECONDS = 6.0  # longer than the error retries of the test settings (3, 0.2 s to 2 s)


def _trigger(web_url: str, body: dict) -> dict:
    response = requests.post(
        f"{web_url}/v1/sync", json=body, headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"}, timeout=10
    )
    assert response.status_code == 202, response.text
    return response.json()


def _result(redis_url: str, contact_key: str) -> dict | None:
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    try:
        raw = client.get(keys.last_result(contact_key))
    finally:
        client.close()
    return json.loads(raw) if raw else None


def test_an_email_only_trigger_waits_for_a_contact_search_does_not_show_yet(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
):
    intercom_sandbox.config(search_lag_seconds=SEARCH_LAG_SECONDS)
    [contact] = intercom_sandbox.seed(email=OLIVIA_EMAIL, name="Olivia Brandt")
    workers.start(1, SYNC_CONTACT_SEARCH_WAIT_SECONDS="60")
    _trigger(web_app.url, {"email": OLIVIA_EMAIL})

    values = wait_for_attributes(intercom_sandbox, contact["id"], is_live, 45, "the new contact synced")
    assert values["Client ID"] == "131451"
    assert log_events(workers, "sync_search_again")  # it searched again ...
    assert not log_events(workers, "sync_retry")  # ... without spending an error retry
    assert dead_letters(service_env["REDIS_URL"]).count() == 0


def test_an_email_only_trigger_for_no_contact_ends_not_found_after_the_wait(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
):
    wait_seconds = 4.0
    workers.start(1, SYNC_CONTACT_SEARCH_WAIT_SECONDS=str(wait_seconds))
    email = "nobody.yet@example.com"
    contact_key = keys.contact_key(None, email)
    started = time.time()
    _trigger(web_app.url, {"email": email})

    wait_until(lambda: _result(service_env["REDIS_URL"], contact_key), 30, message="a result")
    result = _result(service_env["REDIS_URL"], contact_key)
    assert result is not None and result["status"] == "not_found", result
    assert "after" in result["outcomes"][0]["reason"]
    assert result["finished_at"] - started >= wait_seconds  # it kept searching for the whole wait
    [ended] = log_events(workers, "contact_not_found")
    assert ended["searches"] >= 2 and "nobody" not in json.dumps(ended)  # counts, no email
    assert dead_letters(service_env["REDIS_URL"]).count() == 0


def test_a_folded_newer_email_outlives_any_backlog_and_is_gone_once_consumed(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
):
    [contact] = intercom_sandbox.seed(email=OLIVIA_EMAIL, name="Olivia Brandt")
    client = redis_lib.Redis.from_url(service_env["REDIS_URL"], decode_responses=True)
    contact_key = keys.contact_key(contact["id"], None)
    # No worker yet: a backlog. The second trigger (the email changed) folds into the first.
    assert (
        _trigger(web_app.url, {"contact_id": contact["id"], "email": "old.address@example.com"})["status"]
        == "queued"
    )
    assert _trigger(web_app.url, {"contact_id": contact["id"], "email": OLIVIA_EMAIL})["status"] == "folded"
    assert client.pttl(keys.pending(contact_key)) > 0  # the marker keeps its bound
    assert client.pttl(keys.pending_payload(contact_key)) == -1  # the payload waits as long as its message

    workers.start(1)
    values = wait_for_attributes(intercom_sandbox, contact["id"], is_live, 30, "the folded email synced")
    assert values["Client ID"] == "131451"  # Olivia's account: the newer email was read
    assert not client.exists(keys.pending_payload(contact_key))  # consumed, so deleted
    client.close()


def test_a_payload_left_by_a_lost_message_does_not_take_a_later_run_back(redis_url):
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    now = time.time()
    run = SyncRequest(contact_id="c1", email="new@example.com", trigger="retry", requested_at=now)
    for age, expected in ((FOLD_CLOCK_TOLERANCE_SECONDS + 3600, "new@example.com"), (5.0, "old@example.com")):
        left = SyncRequest(contact_id="c1", email="old@example.com", requested_at=now - age)
        client.set(keys.pending_payload(run.contact_key), json.dumps(left.to_kwargs()))
        assert claim(client, run).email == expected  # a lost message's: ignored; a receiver's skew: folded
        assert not client.exists(keys.pending_payload(run.contact_key))
    client.close()
