"""Merged and deleted contacts under the pinned version (2.14), with real worker processes.

Intercom 2.14 answers 404 for a merged contact as for a deleted one (only Preview answers 410
with a ``Link``). A run that meets the 404 with an email known searches the email again and
writes the survivor; a contact found neither way ends ``gone``: an outcome, no dead letter.
"""

from __future__ import annotations

import json

import pytest
import redis as redis_lib
import requests

from sync_worker import keys
from sync_worker.devtools.localredis import wait_until
from tests.fixtures.resilience import (
    OLIVIA_EMAIL,
    dead_letters,
    is_live,
    log_events,
    trigger,
    wait_for_attributes,
)
from tests.fixtures.workers import ADMIN_TOKEN, TRIGGER_TOKEN

pytestmark = pytest.mark.integration


def _last_result(redis_url: str, contact_id: str) -> dict | None:
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    try:
        raw = client.get(keys.last_result(keys.contact_key(contact_id, None)))
    finally:
        client.close()
    return json.loads(raw) if raw else None


def _finished(redis_url: str, contact_id: str) -> dict:
    wait_until(
        lambda: _last_result(redis_url, contact_id) is not None,
        30,
        message=f"a result for {contact_id}",
    )
    result = _last_result(redis_url, contact_id)
    assert result is not None
    return result


def test_a_merged_contact_under_2_14_is_synced_onto_the_survivor_found_by_email(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
):
    old, survivor = intercom_sandbox.seed({"email": OLIVIA_EMAIL}, {"email": OLIVIA_EMAIL, "role": "user"})
    intercom_sandbox.merge(old["id"], into=survivor["id"])
    workers.start(1)  # INTERCOM_API_VERSION unset: the pinned 2.14
    trigger(web_app.url, old)  # the workflow still knows the merged-away id

    values = wait_for_attributes(intercom_sandbox, survivor["id"], is_live, 30, "the survivor synced")
    assert values["Client ID"] == "131451"
    result = _finished(service_env["REDIS_URL"], old["id"])
    assert [o["status"] for o in result["outcomes"]] == ["synced"]
    assert result["outcomes"][0]["contact_id"] == survivor["id"]
    refused = [r for r in intercom_sandbox.stats()["recent_requests"] if r["operation"] == "UpdateContact"]
    assert refused[0]["status"] == 404  # what 2.14 answers; the run then searched by email
    assert dead_letters(service_env["REDIS_URL"]).count() == 0


def test_a_deleted_contact_without_a_match_ends_gone_with_no_dead_letter(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
):
    [contact] = intercom_sandbox.seed(email=OLIVIA_EMAIL)
    [id_only] = intercom_sandbox.seed(email="id.only@example.com")
    intercom_sandbox.delete(contact["id"])
    intercom_sandbox.delete(id_only["id"])
    workers.start(1)
    trigger(web_app.url, contact)  # id and email: the PUT answers 404, the search finds no one
    response = requests.post(  # no email: the GET answers 404
        f"{web_app.url}/v1/sync",
        json={"contact_id": id_only["id"]},
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text

    for gone in (contact, id_only):
        result = _finished(service_env["REDIS_URL"], gone["id"])
        assert [o["status"] for o in result["outcomes"]] == ["gone"], result
    assert dead_letters(service_env["REDIS_URL"]).count() == 0
    logged = {line["contact_id"] for line in log_events(workers, "contact_gone")}
    assert logged == {contact["id"], id_only["id"]}


def test_a_replayed_dead_letter_of_a_deleted_contact_ends_gone_and_is_not_parked_again(
    intercom_sandbox, platform_sandbox, workers, web_app, service_env
):
    [contact] = intercom_sandbox.seed(email=OLIVIA_EMAIL)
    intercom_sandbox.delete(contact["id"])
    store = dead_letters(service_env["REDIS_URL"])
    store.park(  # as the old code parked it: "not found", replayed by the cron for ever
        contact_id=contact["id"],
        email=OLIVIA_EMAIL,
        error_code="intercom_not_found",
        error_message="Intercom update_contact answered 404 not_found",
        trigger="webhook",
        kwargs={"contact_id": contact["id"], "email": OLIVIA_EMAIL, "trigger": "webhook"},
    )
    workers.start(1)
    response = requests.post(
        f"{web_app.url}/v1/admin/dead-letters/retry-all",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert response.status_code in (200, 202), response.text

    wait_until(
        lambda: (
            (_last_result(service_env["REDIS_URL"], contact["id"]) or {}).get("status") in ("gone", "failed")
        ),
        30,
        message="the replay to end",
    )
    result = _last_result(service_env["REDIS_URL"], contact["id"])
    assert [o["status"] for o in result["outcomes"]] == ["gone"], result
    assert store.count() == 0
