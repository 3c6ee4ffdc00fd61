"""Referral leads on the real parts: a Celery worker, the receiver, Redis, and the Intercom and
referral program sandboxes over HTTP (Intercom's agent routes send its signed webhooks to our
receiver).

Syncs of referral users are stored as the program's receiver stores them (``enqueue_sync`` of a
``SyncRequest(integration="referral_leads", source_id=<user id>)``); Intercom's webhooks arrive at
``/webhooks/intercom`` as Intercom sends them. The expected values are written out by hand from
the referral sandbox's sample (``sync_worker/devtools/sandbox/referral_dataset.py``) and
``docs/integrations/referral_leads.md``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from sync_worker import keys
from sync_worker.celery_app import REALTIME_QUEUE, create_celery
from sync_worker.config import Settings
from sync_worker.countbuffer import label_field
from sync_worker.deadletter import DeadLetterStore
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.sandbox.server import ServedApp
from sync_worker.dispatch import SyncRequest, enqueue_sync
from sync_worker.servicemetrics import SYNCS
from tests.fixtures.intercom_agent import IntercomAgent
from tests.fixtures.resilience import log_events
from tests.fixtures.web import stop_web
from tests.fixtures.workers import CLIENT_SECRET
from web import create_app

pytestmark = pytest.mark.integration

BY_PROPERTY = {
    "REFERRAL_QUALIFY_ON": "property",
    "REFERRAL_QUALIFY_PROPERTY": "Lead Status",
    "REFERRAL_QUALIFY_INITIAL": "New",
    "REFERRAL_QUALIFY_VALUES": "Qualified,Customer",
}


@dataclass
class Stack:
    env: dict[str, str]
    redis: redis_lib.Redis
    intercom: Any
    referral: Any
    agent: IntercomAgent
    workers: Any

    def __post_init__(self) -> None:
        self.celery = create_celery(Settings(REDIS_URL=self.env["REDIS_URL"]))

    def start(self, **env: str) -> None:
        self.workers.start(1, **{**self.env, **env})

    def sync(self, user_id: int, trigger: str = "webhook") -> None:
        request = SyncRequest(integration="referral_leads", source_id=str(user_id), trigger=trigger)
        enqueue_sync(request, self.redis, self.celery)

    def result(self, key: str) -> dict[str, Any] | None:
        raw = self.redis.get(f"intercom-sync:last-result:{key}")
        return json.loads(raw) if raw else None

    def wait_result(self, user_id: int, status: str | None = None, *, after: float = 0.0) -> dict[str, Any]:
        key = f"referral_leads:source:{user_id}"

        def done() -> dict[str, Any] | None:
            found = self.result(key)
            if found is None or found.get("finished_at", 0) <= after:
                return None
            return found if status is None or found["status"] == status else None

        wait_until(done, 30, message=f"referral {user_id}'s run ({status or 'any'})")
        return done() or {}

    def contacts_with(self, email: str) -> list[dict[str, Any]]:
        return [c for c in self.intercom.contacts() if (c.get("email") or "").lower() == email.lower()]

    def lead_of(self, user_id: int) -> dict[str, Any]:
        found = [
            c
            for c in self.intercom.contacts()
            if (c.get("custom_attributes") or {}).get("Referral ID") == str(user_id)
        ]
        assert len(found) == 1, found
        return found[0]

    def qualifications(self, user_id: int) -> list[dict[str, Any]]:
        return [q for q in self.referral.stats()["qualifications"] if q["id"] == user_id]

    def quiet(self) -> None:
        """Every webhook the Intercom sandbox sent was answered, and every sync they stored has run
        (and every request the workers sent Intercom validated against its 2.14 description)."""

        def settled() -> bool:
            sent = self.agent.notifications()
            answered = all(d["status"] is not None or d["error"] for d in sent["deliveries"])
            pending = self.redis.keys("intercom-sync:pending:referral_leads:*")
            return sent["pending"] == 0 and answered and not pending and self.redis.llen(REALTIME_QUEUE) == 0

        wait_until(settled, 30, message="the webhooks and their syncs to settle")
        assert self.intercom.stats()["validation_failures"] == 0  # every request we sent was Intercom's 2.14


WEBHOOK_TOKEN = "test-referral-webhook-token"


@pytest.fixture
def stack(referral_env, intercom_sandbox, referral_sandbox, workers, redis_url) -> Iterator[Stack]:
    env = {**referral_env, "SYNC_INTEGRATIONS": "referral_leads", "REFERRAL_WEBHOOK_TOKEN": WEBHOOK_TOKEN}
    web = ServedApp(create_app(Settings(**env))).start()
    intercom_sandbox.config(webhook_url=f"{web.url}/webhooks/intercom", webhook_secret=CLIENT_SECRET)
    referral_sandbox.config(
        webhook_url=f"{web.url}/webhooks/referrals", webhook_headers={"X-Referral-Token": WEBHOOK_TOKEN}
    )
    client = redis_lib.Redis.from_url(redis_url)
    agent = IntercomAgent(intercom_sandbox)
    try:
        yield Stack(env, client, intercom_sandbox, referral_sandbox, agent, workers)
    finally:
        agent.close()
        client.close()
        stop_web(web)


def test_a_referred_user_becomes_a_lead_with_the_mapped_fields_and_nothing_of_the_others(stack):
    stack.start(REFERRAL_FIELD_MAP='{"meta.Company": "Company", "code": null}')
    stack.sync(5002)
    assert stack.wait_result(5002)["status"] == "synced"
    [lead] = stack.contacts_with("lucas.moreau@example.com")
    assert lead["role"] == "lead" and lead["name"] == "Lucas"
    assert lead["custom_attributes"] == {
        "Referral Campaign": "Friends of Northwind",
        "Referred By": "Priya",
        "Referred At": "Jan 14, 2025 - 4:30 a.m. EST",
        "Company": "Moreau & Fils",
        "Referral ID": "5002",
        "Referral Status": "Pending",
    }
    shown = json.dumps(lead)
    assert "RF05002" not in shown and "sandbox.referral.invalid" not in shown  # code and url: not sent
    stats = stack.intercom.stats()
    assert stats["validation_failures"] == 0
    calls = stats["calls_by_operation"]
    assert (calls.get("SearchContacts"), calls.get("CreateContact")) == (1, 1), (
        calls
    )  # one search, one create


def test_a_join_in_the_program_is_a_lead_in_intercom_within_seconds(stack):
    """The whole path: the program's webhook to our receiver, the worker's read of the user, the lead."""
    stack.start()
    started = time.monotonic()
    joined = stack.referral.join(first_name="Nadia", email="Nadia.Kaur@Example.com", campaign_id=17)
    assert joined["webhook"]["status"] == 200, joined
    wait_until(lambda: stack.contacts_with("nadia.kaur@example.com"), 10, message="the lead")
    assert time.monotonic() - started < 10
    [lead] = stack.contacts_with("nadia.kaur@example.com")
    assert lead["role"] == "lead" and lead["name"] == "Nadia"
    attributes = lead["custom_attributes"]
    assert attributes["Referral ID"] == str(joined["user"]["id"])
    assert attributes["Referral Campaign"] == "Spring Referral Week"
    assert attributes["Referred By"] == "Tariq"  # the campaign's first direct user (5011)
    assert attributes["Referral Status"] == "Pending"


def test_the_same_referral_again_writes_nothing(stack):
    stack.start()
    stack.sync(5003)
    first = stack.wait_result(5003, "synced")
    lead = stack.lead_of(5003)
    assert lead["custom_attributes"]["Referred By"] == "Lucas"  # 5003 -> 5002, not the chain's top
    stack.sync(5003)
    assert stack.wait_result(5003, after=first["finished_at"])["status"] == "unchanged"
    assert stack.intercom.writes(lead["id"]) == []  # created with its values, never written since
    assert len(stack.contacts_with("amara.obi@example.com")) == 1


def test_a_direct_user_is_not_sent_by_default_and_one_without_email_is_skipped(stack):
    stack.start()
    stack.sync(5001)
    stack.sync(5004)
    direct = stack.wait_result(5001)
    missing = stack.wait_result(5004)
    assert (direct["status"], direct["outcomes"][0]["reason"]) == ("skipped", "type_not_sent")
    assert (missing["status"], missing["outcomes"][0]["reason"]) == ("skipped", "email_required")
    assert stack.contacts_with("priya.raman@example.com") == []
    assert stack.intercom.contacts() == []
    assert DeadLetterStore(stack.redis).count() == 0
    counted = label_field(
        {
            "integration": "referral_leads",
            "trigger": "webhook",
            "outcome": "skipped",
            "error_code": "email_required",
        }
    )
    wait_until(
        lambda: stack.redis.hget(keys.metric(SYNCS), counted) == b"1", 10, message="the skip to be counted"
    )


def test_an_email_intercom_has_updates_that_contact(stack):
    [maya] = stack.intercom.seed({"email": "maya.chen@example.com", "name": "Maya Chen", "role": "user"})
    stack.start()
    stack.sync(5005)
    assert stack.wait_result(5005)["status"] == "synced"
    [contact] = stack.contacts_with("maya.chen@example.com")
    assert contact["id"] == maya["id"] and contact["role"] == "user"
    assert contact["name"] == "Maya Chen"  # its own name is kept
    assert contact["custom_attributes"]["Referral ID"] == "5005"
    assert contact["custom_attributes"]["Referred By"] == "Priya"


def _qualified(stack: Stack, user_id: int) -> None:
    def reported() -> bool:
        lead = stack.lead_of(user_id)
        return lead["custom_attributes"].get("Referral Status") == "Qualified"

    wait_until(reported, 30, message=f"referral {user_id}'s lead to show Qualified")


@pytest.mark.parametrize("echo_writes", [False, True])
def test_an_agent_qualifying_the_lead_reports_it_once(stack, echo_writes):
    stack.intercom.config(echo_writes=echo_writes)
    stack.start(**BY_PROPERTY)
    stack.sync(5002)
    stack.wait_result(5002, "synced")
    lead = stack.lead_of(5002)
    assert lead["custom_attributes"]["Lead Status"] == "New"
    stack.quiet()
    assert stack.qualifications(5002) == []

    moved = stack.agent.change(lead["id"], custom_attributes={"Lead Status": "Qualified"})
    assert moved["receiver_status"] == 200, moved
    _qualified(stack, 5002)
    again = stack.agent.notify(lead["id"], notification_id=moved["notification_id"])  # delivered twice
    assert again["receiver_status"] == 200
    stack.agent.notify(lead["id"], topic="contact.lead.updated")  # the same state, a new notification
    stack.quiet()
    [call] = stack.qualifications(5002)
    assert call["qualified"] is True
    writes = stack.intercom.writes(lead["id"])
    assert [w["body"]["custom_attributes"] for w in writes] == [{"Referral Status": "Qualified"}]


def test_a_property_moving_back_reports_nothing_more(stack):
    stack.start(**BY_PROPERTY)
    stack.sync(5003)
    stack.wait_result(5003, "synced")
    lead = stack.lead_of(5003)
    stack.agent.change(lead["id"], custom_attributes={"Lead Status": "Contacted"})
    stack.quiet()
    assert stack.qualifications(5003) == []
    stack.agent.change(lead["id"], custom_attributes={"Lead Status": "Customer"})
    _qualified(stack, 5003)
    stack.agent.change(lead["id"], custom_attributes={"Lead Status": "New"})
    stack.agent.change(lead["id"], custom_attributes={"Lead Status": "Qualified"})
    stack.quiet()
    assert len(stack.qualifications(5003)) == 1


def test_converting_the_lead_qualifies_it_with_signed_up(stack):
    stack.start()  # REFERRAL_QUALIFY_ON defaults to signed_up
    stack.sync(5003)
    stack.wait_result(5003, "synced")
    lead = stack.lead_of(5003)
    stack.agent.change(lead["id"], name="Amara O.")  # a lead's update: not a signup
    stack.quiet()
    assert stack.qualifications(5003) == []
    signed = stack.agent.signup(lead["id"])
    assert signed["topic"] == "contact.lead.signed_up" and signed["receiver_status"] == 200
    _qualified(stack, 5003)
    stack.quiet()
    assert len(stack.qualifications(5003)) == 1


def test_a_referral_qualified_on_the_programs_side_is_not_reported_again(stack):
    stack.start()
    stack.sync(5006)
    stack.wait_result(5006, "synced")
    lead = stack.lead_of(5006)
    assert lead["custom_attributes"]["Referral Status"] == "Qualified"
    stack.agent.signup(lead["id"])
    stack.quiet()
    assert stack.qualifications(5006) == []


def _dead_letter(stack: Stack, user_id: int) -> dict[str, Any]:
    store = DeadLetterStore(stack.redis)

    def parked() -> Any:
        return store.get(f"referral_leads:source:{user_id}")

    wait_until(parked, 60, message=f"referral {user_id} to be parked")
    return parked().to_dict()


@pytest.mark.parametrize(
    ("failure", "codes", "attempts"),
    [
        # down: the first try and SYNC_TASK_MAX_RETRIES=3 retries
        ({"down": True}, {"referral_unavailable"}, 4),
        # its 429s (and our limiter, paused by them) are waits, not failures: no retry is spent,
        # the sync is parked once it has waited SYNC_RATE_LIMIT_MAX_WAIT_SECONDS
        ({"throttle": {"calls": 1000, "retry_after": 1}}, {"referral_rate_limited", "rate_limit_wait"}, 1),
    ],
)
def test_the_program_failing_qualification_retries_parks_and_an_operators_replay_sends_it_once(
    stack, failure, codes, attempts
):
    stack.start(**BY_PROPERTY, SYNC_RATE_LIMIT_MAX_WAIT_SECONDS="4")
    stack.sync(5002)
    stack.wait_result(5002, "synced")
    lead = stack.lead_of(5002)
    stack.quiet()
    stack.referral.config(**failure)
    stack.agent.change(lead["id"], custom_attributes={"Lead Status": "Qualified"})
    parked = _dead_letter(stack, 5002)
    assert parked["error_code"] in codes, parked
    assert parked["attempts"] == attempts, parked
    assert [q for q in stack.qualifications(5002) if q["status"] == 200] == []
    assert stack.lead_of(5002)["custom_attributes"]["Referral Status"] == "Pending"

    stack.referral.config(down=False, throttle=None)
    replayed = subprocess.run(
        [
            str(Path(sys.executable).with_name("sync-worker")),
            "dead-letters",
            "retry",
            "referral_leads:source:5002",
        ],
        env={**os.environ, "REDIS_URL": stack.env["REDIS_URL"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert replayed.returncode == 0, replayed.stderr
    _qualified(stack, 5002)
    stack.quiet()
    assert len([q for q in stack.qualifications(5002) if q["status"] == 200]) == 1
    assert DeadLetterStore(stack.redis).get("referral_leads:source:5002") is None


def test_the_person_signing_up_as_a_new_user_qualifies_the_referral_once(stack):
    """``contact.user.created`` for a user without ``Referral ID`` whose email is a pending
    referral's lead: qualified (signed_up), the user marked as referred; the lead merged into it
    later reports nothing more."""
    stack.start()
    stack.sync(5003)
    stack.wait_result(5003, "synced")
    lead = stack.lead_of(5003)
    created = stack.agent.create(email="amara.obi@example.com", name="Amara Obi", role="user")
    assert created["topic"] == "contact.user.created" and created["receiver_status"] == 200, created
    user_id = created["contact"]["id"]

    def user_marked() -> bool:
        return stack.intercom.contact(user_id)["custom_attributes"].get("Referral Status") == "Qualified"

    wait_until(user_marked, 30, message="the new user to show the referral as qualified")
    merged = stack.agent.merge(lead["id"], user_id)
    assert merged["topic"] == "contact.merged" and merged["receiver_status"] == 200
    stack.quiet()
    assert len(stack.qualifications(5003)) == 1
    assert stack.intercom.contact(user_id)["custom_attributes"]["Referral ID"] == "5003"


def test_a_webhook_about_an_unrelated_contact_costs_no_call(stack):
    stack.start()
    stack.sync(5002)
    stack.wait_result(5002, "synced")
    stack.quiet()
    before_referral = stack.referral.stats()["calls"]
    before_intercom = stack.intercom.stats()["calls_by_operation"]
    other = stack.agent.create(email="someone.else@example.com", name="Someone", role="user")
    assert other["receiver_status"] == 200
    stack.agent.change(other["contact"]["id"], name="Someone Else")  # contact.user.updated: no request
    key = f"referral_leads:id:{other['contact']['id']}"
    wait_until(lambda: stack.result(key), 30, message="the new user's run")
    assert stack.result(key)["status"] == "not_referral"
    stack.quiet()
    assert stack.referral.stats()["calls"] == before_referral
    assert stack.intercom.stats()["calls_by_operation"] == before_intercom


def test_one_address_referred_twice_is_one_contact_even_before_intercoms_search_shows_it(stack):
    stack.intercom.config(search_lag_seconds=60)  # a contact reaches Intercom's search a minute late
    stack.start()
    stack.sync(5015)
    stack.wait_result(5015, "synced")
    stack.sync(5016)
    stack.wait_result(5016, "synced")
    [contact] = stack.contacts_with("sam.taylor@example.com")
    assert contact["custom_attributes"]["Referral ID"] == "5016"  # the newer referral of the address
    assert contact["custom_attributes"]["Referral Campaign"] == "Spring Referral Week"


def test_two_runs_at_once_about_one_qualified_lead_report_it_once(stack):
    """A webhook with the lead's Referral ID and one by its email alone are two pending syncs (two
    keys) that run at the same time in two worker processes: the claim lets one report."""
    stack.start(**BY_PROPERTY)
    stack.sync(5002)
    stack.wait_result(5002, "synced")
    lead = stack.lead_of(5002)
    stack.workers.start(1, **{**stack.env, **BY_PROPERTY})  # a second worker process
    stack.referral.config(latency_ms=1000)  # each program call takes a second: the runs overlap
    stack.intercom.config(webhook_url=None)  # the agent's change sends no webhook: we store both
    stack.agent.change(lead["id"], custom_attributes={"Lead Status": "Qualified"})
    by_id = SyncRequest(
        integration="referral_leads",
        source_id="5002",
        contact_id=lead["id"],
        email=lead["email"],
        trigger="webhook",
    )
    by_email = SyncRequest(
        integration="referral_leads", contact_id=lead["id"], email=lead["email"], trigger="webhook"
    )
    enqueue_sync(by_id, stack.redis, stack.celery)
    enqueue_sync(by_email, stack.redis, stack.celery)
    _qualified(stack, 5002)
    wait_until(lambda: stack.result(f"referral_leads:id:{lead['id']}"), 30, message="the second run")
    stack.quiet()
    assert len(stack.qualifications(5002)) == 1
    waited = [
        e for e in log_events(stack.workers, "sync_retry") if e["error_code"] == "qualification_in_progress"
    ]
    assert len(waited) == 1  # the other run found the claim held and looked again
