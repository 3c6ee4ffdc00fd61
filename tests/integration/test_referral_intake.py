"""The referral program's intake over real processes: the program's sandbox sending its webhook to
the real receiver, real Celery workers, the Intercom sandbox. A lost referral webhook is made up
by the reconciliation walk (which reads pages, never a user at a time), a lost Intercom webhook by
the qualification backstop; a burst of joins is served from pages.

Beat's tasks are sent as beat sends them (``send_task`` by name on ``sync.bulk``), so a test
does not wait for a cron minute; the schedule itself is checked in ``tests/unit``.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import redis as redis_lib

from sync_worker.celery_app import BULK_QUEUE, create_celery
from sync_worker.config import Settings
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.sandbox.server import ServedApp
from sync_worker.referral_intake.highwater import HighWater
from sync_worker.referral_intake.schedule import BACKSTOP_TASK, WALK_START_TASK
from tests.fixtures.referral_sandbox import ReferralSandbox, served_referral
from tests.fixtures.web import stop_web
from web import create_app
from web.referrals import ROUTE, TOKEN_HEADER

pytestmark = pytest.mark.integration

WEBHOOK_TOKEN = "test-referral-webhook-token"
#: The spec's target: the lead is in Intercom within 10 s of the webhook.
LEAD_WITHIN_SECONDS = 10.0


@dataclass
class Stack:
    env: dict[str, str]
    referral: ReferralSandbox
    intercom: Any  # tests.fixtures.intercom_sandbox.IntercomSandbox
    redis: redis_lib.Redis
    receiver_url: str

    def send_beat_task(self, name: str) -> None:
        celery = create_celery(Settings(**self.env))
        try:
            celery.send_task(name, queue=BULK_QUEUE)
        finally:
            celery.close()

    def lead(self, email: str) -> dict[str, Any] | None:
        found = [c for c in self.intercom.contacts() if (c.get("email") or "").lower() == email.lower()]
        return found[0] if found else None

    def wait_for_lead(self, email: str, timeout: float = 30.0) -> dict[str, Any]:
        wait_until(lambda: self.lead(email) is not None, timeout, interval=0.1, message=f"a lead for {email}")
        lead = self.lead(email)
        assert lead is not None
        return lead


@pytest.fixture
def stack(service_env, intercom_sandbox, workers, redis_url) -> Iterator[Stack]:
    with served_referral() as referral:
        env = {
            **service_env,
            "SYNC_INTEGRATIONS": "clients,referral_leads",
            "REFERRAL_API_URL": referral.url,
            "REFERRAL_API_TOKEN": referral.token,
            "REFERRAL_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        }
        receiver = ServedApp(create_app(Settings(**env))).start()
        referral.config(webhook_url=f"{receiver.url}{ROUTE}", webhook_headers={TOKEN_HEADER: WEBHOOK_TOKEN})
        workers.start(concurrency=2, **env)
        client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
        try:
            yield Stack(env, referral, intercom_sandbox, client, receiver.url)
        finally:
            client.close()
            stop_web(receiver)


def test_a_join_is_a_lead_in_intercom_within_seconds(stack: Stack) -> None:
    joined = stack.referral.join(email="ann.join@example.com", first_name="Ann")
    assert joined["webhook"]["status"] == 200, joined
    lead = stack.wait_for_lead("ann.join@example.com", timeout=LEAD_WITHIN_SECONDS)
    assert lead["role"] == "lead"
    assert lead["custom_attributes"]["Referral ID"] == str(joined["user"]["id"])
    assert lead["custom_attributes"]["Referral Status"] == "Pending"


def test_a_lost_referral_webhook_is_made_up_by_the_walk_reading_pages(stack: Stack) -> None:
    # The walk's first run stops nowhere: let it walk the sample and set the mark.
    stack.send_beat_task(WALK_START_TASK)
    wait_until(lambda: HighWater(stack.redis).get() is not None, 30, message="the first walk to finish")
    before = stack.referral.stats()["calls"]

    lost = stack.referral.join(email="lost.join@example.com", referrer_id=None, send_webhook=False)
    assert lost["webhook"]["sent"] is False
    assert stack.lead("lost.join@example.com") is None

    stack.send_beat_task(WALK_START_TASK)
    lead = stack.wait_for_lead("lost.join@example.com")
    assert lead["custom_attributes"]["Referral ID"] == str(lost["user"]["id"])
    wait_until(
        lambda: (
            (HighWater(stack.redis).get() or None) is not None
            and HighWater(stack.redis).get().id == lost["user"]["id"]
        ),
        30,
        message="the walk to move its mark to the lost user",
    )
    after = stack.referral.stats()["calls"]
    # One page read; the lost user's record came from it: no call for the user itself.
    assert after.get("users", 0) - before.get("users", 0) == 1
    assert after.get("user", 0) == before.get("user", 0)


def test_a_second_walk_stops_at_users_already_handled(stack: Stack) -> None:
    stack.send_beat_task(WALK_START_TASK)
    wait_until(lambda: HighWater(stack.redis).get() is not None, 30, message="the first walk to finish")
    mark = HighWater(stack.redis).get()
    joined = stack.referral.join(email="seen.join@example.com", referrer_id=None)
    stack.wait_for_lead("seen.join@example.com")
    wait_until(lambda: stack.redis.llen("sync.realtime") == 0, 30, message="the webhook's sync to run")
    before = stack.referral.stats()["calls"]
    stack.send_beat_task(WALK_START_TASK)
    wait_until(
        lambda: HighWater(stack.redis).get() is not None and HighWater(stack.redis).get() != mark,
        30,
        message="the second walk to finish",
    )
    assert HighWater(stack.redis).get().id == joined["user"]["id"]
    after = stack.referral.stats()["calls"]
    assert after.get("users", 0) - before.get("users", 0) == 1  # the newest page, and it stops there
    assert after.get("user", 0) == before.get("user", 0)


def test_a_lost_intercom_webhook_is_made_up_by_the_backstop(stack: Stack) -> None:
    joined = stack.referral.join(email="signs.up@example.com", referrer_id=None)
    lead = stack.wait_for_lead("signs.up@example.com")
    user_id = joined["user"]["id"]
    # The lead signs up (becomes a user) in Intercom, and Intercom's webhook about it is lost.
    converted = stack.intercom.client().update_contact(
        lead["id"], custom_attributes={}, standard={"role": "user"}
    )
    assert converted["role"] == "user"
    assert stack.referral.stats()["qualifications"] == []

    stack.send_beat_task(BACKSTOP_TASK)

    def reported() -> list[dict[str, Any]]:
        return [q for q in stack.referral.stats()["qualifications"] if q.get("id") == user_id]

    wait_until(lambda: reported(), 30, message="the backstop to report the qualification")
    wait_until(
        lambda: stack.intercom.contact(lead["id"])["custom_attributes"].get("Referral Status") == "Qualified",
        30,
        message="Referral Status = Qualified",
    )
    # Once, also when the backstop runs again.
    stack.send_beat_task(BACKSTOP_TASK)
    stack.send_beat_task(WALK_START_TASK)
    wait_until(lambda: HighWater(stack.redis).get() is not None, 30, message="a walk after it")
    wait_until(lambda: stack.redis.llen("sync.bulk") == 0, 30, message="beat's tasks to run")
    assert len(reported()) == 1


def test_a_burst_of_joins_is_served_from_pages(stack: Stack) -> None:
    count = 40
    before = stack.referral.stats()["calls"]
    with ThreadPoolExecutor(max_workers=8) as pool:
        joined = list(
            pool.map(
                lambda n: stack.referral.join(email=f"burst{n}@example.com", referrer_id=None), range(count)
            )
        )
    assert all(each["webhook"]["status"] == 200 for each in joined)
    for n in range(count):
        stack.wait_for_lead(f"burst{n}@example.com")
    after = stack.referral.stats()["calls"]
    reads = sum(after.get(op, 0) - before.get(op, 0) for op in ("user", "users"))
    assert reads < count  # fewer than one read a referral: pages serve the burst
    assert stack.referral.stats()["over_limit"] == 0
