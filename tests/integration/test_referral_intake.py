"""The referral program's intake over real processes: the program's sandbox sending its webhook to
the real receiver, real Celery workers, the Intercom sandbox. A lost referral webhook is made up
by the reconciliation walk (which reads pages, never a user at a time), a lost Intercom webhook by
the qualification backstop; a burst of joins is served from pages; the receiver's ``/metrics``
shows what the walks and the backstop did.

Beat's tasks are sent as beat sends them (``send_task`` by name on ``sync.bulk``), so a test
does not wait for a cron minute; the schedule itself is checked in ``tests/unit``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
import redis as redis_lib

from sync_worker import keys
from sync_worker.celery_app import BULK_QUEUE, create_celery
from sync_worker.config import Settings
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.sandbox.server import ServedApp
from sync_worker.keys import contact_key
from sync_worker.referral_intake.highwater import HighWater
from sync_worker.referral_intake.schedule import BACKSTOP_TASK, WALK_START_TASK
from sync_worker.referral_intake.tasks import LAST_WALK_KEY
from sync_worker.referral_intake.tasks import LOCK_KEY as WALK_LOCK_KEY
from sync_worker.resync.lock import RunLock
from tests.fixtures.intercom_agent import IntercomAgent
from tests.fixtures.prometheus import Key, key, scrape
from tests.fixtures.referral_sandbox import ReferralSandbox, served_referral
from tests.fixtures.resilience import log_events
from tests.fixtures.web import stop_web
from tests.fixtures.workers import Workers
from web import create_app
from web.referrals import ROUTE, TOKEN_HEADER

pytestmark = pytest.mark.integration

WEBHOOK_TOKEN = "test-referral-webhook-token"
#: The referral sandbox's call counts by operation: a page of users, one user.
PAGES = "GET /users"
USER_READS = "GET /users/{identifier}"
#: The spec's target: the lead is in Intercom within 10 s of the webhook.
LEAD_WITHIN_SECONDS = 10.0


@dataclass
class Stack:
    env: dict[str, str]
    referral: ReferralSandbox
    intercom: Any  # tests.fixtures.intercom_sandbox.IntercomSandbox
    redis: redis_lib.Redis
    receiver_url: str
    workers: Workers

    def send_beat_task(self, name: str) -> None:
        celery = create_celery(Settings(**self.env))
        try:
            celery.send_task(name, queue=BULK_QUEUE)
        finally:
            celery.close()

    def results(self) -> int:
        """How many referral users' syncs have ended (each leaves its last result)."""
        pattern = keys.last_result(contact_key(None, None, "referral_leads", "*"))
        return sum(1 for _ in self.redis.scan_iter(match=pattern, count=1000))

    def settled(self) -> bool:
        """Every user the program has had its sync run to its end."""
        return self.results() >= self.referral.stats()["users"]

    def walk_once(self) -> dict[str, Any]:
        """Beat's walk, sent and waited for to end, with every user's sync run; its record."""
        sent_at = time.time()
        self.send_beat_task(WALK_START_TASK)

        def ended() -> dict[str, Any] | None:
            raw = self.redis.get(LAST_WALK_KEY)
            record = json.loads(raw) if raw else None
            return record if record and record["ended_at"] >= sent_at else None

        wait_until(ended, 30, message="the walk to end")
        wait_until(self.settled, 30, message="every user's sync to run")
        record = ended()
        assert record is not None and record["status"] == "finished", record
        return record

    def lead(self, email: str) -> dict[str, Any] | None:
        found = [c for c in self.intercom.contacts() if (c.get("email") or "").lower() == email.lower()]
        return found[0] if found else None

    def wait_for_lead(self, email: str, timeout: float = 30.0) -> dict[str, Any]:
        wait_until(lambda: self.lead(email) is not None, timeout, interval=0.1, message=f"a lead for {email}")
        lead = self.lead(email)
        assert lead is not None
        return lead


@contextmanager
def running(service_env, intercom_sandbox, workers, redis_url, **extra: str) -> Iterator[Stack]:
    """The receiver and two worker processes running ``referral_leads`` (``extra``: its settings)."""
    with served_referral() as referral:
        env = {
            **service_env,
            "SYNC_INTEGRATIONS": "clients,referral_leads",
            "REFERRAL_API_URL": referral.url,
            "REFERRAL_API_TOKEN": referral.token,
            "REFERRAL_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            **extra,
        }
        receiver = ServedApp(create_app(Settings(**env))).start()
        referral.config(webhook_url=f"{receiver.url}{ROUTE}", webhook_headers={TOKEN_HEADER: WEBHOOK_TOKEN})
        workers.start(concurrency=2, **env)
        client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
        try:
            yield Stack(env, referral, intercom_sandbox, client, receiver.url, workers)
        finally:
            client.close()
            stop_web(receiver)


@pytest.fixture
def stack(service_env, intercom_sandbox, workers, redis_url) -> Iterator[Stack]:
    with running(service_env, intercom_sandbox, workers, redis_url) as started:
        yield started


@pytest.fixture
def property_stack(service_env, intercom_sandbox, workers, redis_url) -> Iterator[Stack]:
    """Qualification by ``Lead Status`` (New, then Qualified or Customer)."""
    with running(
        service_env,
        intercom_sandbox,
        workers,
        redis_url,
        REFERRAL_QUALIFY_ON="property",
        REFERRAL_QUALIFY_PROPERTY="Lead Status",
        REFERRAL_QUALIFY_INITIAL="New",
        REFERRAL_QUALIFY_VALUES="Qualified,Customer",
    ) as started:
        yield started


def test_a_join_is_a_lead_in_intercom_within_seconds(stack: Stack) -> None:
    joined = stack.referral.join(email="ann.join@example.com", first_name="Ann")
    assert joined["webhook"]["status"] == 200, joined
    lead = stack.wait_for_lead("ann.join@example.com", timeout=LEAD_WITHIN_SECONDS)
    assert lead["role"] == "lead"
    assert lead["custom_attributes"]["Referral ID"] == str(joined["user"]["id"])
    assert lead["custom_attributes"]["Referral Status"] == "Pending"


def test_a_lost_referral_webhook_is_made_up_by_the_walk_reading_pages(stack: Stack) -> None:
    stack.walk_once()  # the first walk stops nowhere: it walks the sample and sets the mark
    before = stack.referral.stats()["calls"]

    lost = stack.referral.join(email="lost.join@example.com", referrer_id=None, send_webhook=False)
    assert lost["webhook"]["sent"] is False
    assert stack.lead("lost.join@example.com") is None

    stack.walk_once()
    lead = stack.wait_for_lead("lost.join@example.com")
    assert lead["custom_attributes"]["Referral ID"] == str(lost["user"]["id"])
    mark = HighWater(stack.redis).get()
    assert mark is not None and mark.id == lost["user"]["id"]
    after = stack.referral.stats()["calls"]
    # One page read; the lost user's record came from it: no call for the user itself.
    assert after.get(PAGES, 0) - before.get(PAGES, 0) == 1
    assert after.get(USER_READS, 0) == before.get(USER_READS, 0)


def test_a_second_walk_stops_at_users_already_handled(stack: Stack) -> None:
    stack.walk_once()
    joined = stack.referral.join(email="seen.join@example.com", referrer_id=None)
    stack.wait_for_lead("seen.join@example.com")
    wait_until(stack.settled, 30, message="the webhook's sync to run")
    before = stack.referral.stats()["calls"]
    leads_before = len(stack.intercom.contacts())
    walked = stack.walk_once()
    assert (walked["pages"], walked["stored"], walked["already"]) == (1, 0, 1)
    mark = HighWater(stack.redis).get()
    assert mark is not None and mark.id == joined["user"]["id"]
    after = stack.referral.stats()["calls"]
    assert after.get(PAGES, 0) - before.get(PAGES, 0) == 1  # the newest page, and it stops there
    assert after.get(USER_READS, 0) == before.get(USER_READS, 0)
    assert len(stack.intercom.contacts()) == leads_before


def reported(stack: Stack, user_id: int) -> list[dict[str, Any]]:
    """The program's qualification calls about ``user_id``."""
    return [q for q in stack.referral.stats()["qualifications"] if q.get("id") == user_id]


def backstop_makes_it_up(stack: Stack, lead_id: str, user_id: int) -> None:
    """Beat's backstop reports the qualification once and marks the contact Qualified; a second
    backstop and a walk after it report nothing more."""
    assert reported(stack, user_id) == []
    stack.send_beat_task(BACKSTOP_TASK)
    wait_until(lambda: reported(stack, user_id), 30, message="the backstop to report the qualification")
    wait_until(
        lambda: stack.intercom.contact(lead_id)["custom_attributes"].get("Referral Status") == "Qualified",
        30,
        message="Referral Status = Qualified",
    )
    stack.send_beat_task(BACKSTOP_TASK)
    stack.walk_once()
    wait_until(stack.settled, 30, message="the syncs to run")
    assert len(reported(stack, user_id)) == 1


def test_a_lost_signed_up_webhook_is_made_up_by_the_backstop(stack: Stack) -> None:
    joined = stack.referral.join(email="signs.up@example.com", referrer_id=None)
    lead = stack.wait_for_lead("signs.up@example.com")
    # The lead signs up in Intercom, and Intercom's webhook about it is lost (none is configured).
    agent = IntercomAgent(stack.intercom)
    try:
        signed_up = agent.signup(lead["id"])
    finally:
        agent.close()
    assert signed_up["contact"]["role"] == "user"
    assert signed_up["receiver_status"] is None  # not delivered
    backstop_makes_it_up(stack, lead["id"], joined["user"]["id"])


def test_a_lost_property_webhook_is_made_up_by_the_backstop(property_stack: Stack) -> None:
    stack = property_stack
    joined = stack.referral.join(email="qualifies@example.com", referrer_id=None)
    lead = stack.wait_for_lead("qualifies@example.com")
    assert lead["custom_attributes"]["Lead Status"] == "New"
    stack.send_beat_task(BACKSTOP_TASK)  # nothing qualifies yet
    wait_until(
        lambda: log_events(stack.workers, "referral_backstop_finished"), 30, message="the first backstop"
    )
    assert log_events(stack.workers, "referral_backstop_finished")[-1]["stored"] == 0
    agent = IntercomAgent(stack.intercom)
    try:
        changed = agent.change(lead["id"], custom_attributes={"Lead Status": "Qualified"})
    finally:
        agent.close()
    assert changed["receiver_status"] is None  # the agent's change, its webhook lost
    backstop_makes_it_up(stack, lead["id"], joined["user"]["id"])


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
    reads = sum(after.get(op, 0) - before.get(op, 0) for op in (PAGES, USER_READS))
    assert reads < count  # fewer than one read a referral: pages serve the burst
    assert stack.referral.stats()["over_limit"] == 0


def test_one_walk_at_a_time(stack: Stack) -> None:
    held = RunLock(stack.redis, WALK_LOCK_KEY, ttl_seconds=60)
    assert held.acquire("another-walk")
    before = stack.referral.stats()["calls"].get(PAGES, 0)
    stack.send_beat_task(WALK_START_TASK)
    stack.send_beat_task(WALK_START_TASK)
    wait_until(
        lambda: len(log_events(stack.workers, "referral_walk_skipped")) == 2,
        30,
        message="both starts to find the walk's lock taken",
    )
    assert stack.referral.stats()["calls"].get(PAGES, 0) == before
    assert stack.redis.get(LAST_WALK_KEY) is None
    assert HighWater(stack.redis).get() is None
    assert held.release("another-walk")
    record = stack.walk_once()
    assert record["pages"] >= 1
    assert HighWater(stack.redis).get() is not None


def test_the_walk_waits_out_the_programs_429_and_outage_and_goes_on(stack: Stack) -> None:
    lost = stack.referral.join(email="late.join@example.com", referrer_id=None, send_webhook=False)
    stack.referral.config(throttle={"calls": 2, "retry_after": 1})
    record = stack.walk_once()
    assert stack.referral.stats()["throttled"] == 2
    assert record["status"] == "finished"
    assert stack.wait_for_lead("late.join@example.com")["custom_attributes"]["Referral ID"] == str(
        lost["user"]["id"]
    )
    assert log_events(stack.workers, "referral_walk_waiting")

    again = stack.referral.join(email="later.join@example.com", referrer_id=None, send_webhook=False)
    stack.referral.config(down=True)
    stack.send_beat_task(WALK_START_TASK)
    wait_until(
        lambda: log_events(stack.workers, "referral_walk_retry"), 30, message="the walk to retry its page"
    )
    stack.referral.config(down=False)
    stack.wait_for_lead("later.join@example.com")
    mark = HighWater(stack.redis).get()
    wait_until(
        lambda: (HighWater(stack.redis).get() or mark).id == again["user"]["id"],
        30,
        message="the retried walk to finish",
    )


WALK_ENDED = "intercom_sync_referral_walk_last_ended_timestamp_seconds"
WALK_RUNNING = "intercom_sync_referral_walk_running"
HIGH_WATER = "intercom_sync_referral_high_water_timestamp_seconds"
BACKSTOP_ENDED = "intercom_sync_referral_backstop_last_ended_timestamp_seconds"


def ended_since(samples: dict[Key, float], name: str, since: float, **labels: str) -> float | None:
    """The end time ``name`` shows, when it is ``since`` or later and has ``labels``; else None."""
    for (sample, label_set), value in samples.items():
        if sample == name and set(labels.items()) <= label_set and value >= since:
            return value
    return None


def test_metrics_show_the_walks_the_mark_and_the_backstop(stack: Stack) -> None:
    url = stack.receiver_url
    samples = scrape(url)
    assert samples[key(WALK_RUNNING)] == 0
    assert [k for k in samples if k[0].startswith("intercom_sync_referral_") and k[0] != WALK_RUNNING] == []
    held = RunLock(stack.redis, WALK_LOCK_KEY, ttl_seconds=60)
    assert held.acquire("another-walk")
    assert scrape(url)[key(WALK_RUNNING)] == 1
    assert held.release("another-walk")

    # A lead that signs up, Intercom's webhook lost: the backstop finds it and stores its sync.
    joined = stack.referral.join(email="metrics.signup@example.com", referrer_id=None)
    lead = stack.wait_for_lead("metrics.signup@example.com")
    agent = IntercomAgent(stack.intercom)
    try:
        assert agent.signup(lead["id"])["receiver_status"] is None
    finally:
        agent.close()
    sent_at = time.time()
    stack.send_beat_task(BACKSTOP_TASK)
    wait_until(
        lambda: ended_since(scrape(url), BACKSTOP_ENDED, sent_at, status="finished", error_code="none"),
        30,
        message="/metrics to show the backstop's end",
    )
    wait_until(lambda: reported(stack, joined["user"]["id"]), 30, message="the backstop's qualification")
    samples = scrape(url)
    assert samples[key("intercom_sync_referral_backstop_last_contacts", count="found")] == 1
    assert samples[key("intercom_sync_referral_backstop_last_contacts", count="stored")] == 1
    assert not any(k[0] == WALK_ENDED for k in samples)

    # The first walk: every user the program has, the joined one handled by its webhook already.
    record = stack.walk_once()
    mark = HighWater(stack.redis).get()
    assert mark is not None and mark.id == joined["user"]["id"]
    samples = scrape(url)
    assert samples[key(WALK_ENDED, status="finished", error_code="none")] == record["ended_at"]
    assert samples[key("intercom_sync_referral_walk_last_pages")] == record["pages"] >= 1
    stored = samples[key("intercom_sync_referral_walk_last_users", count="stored")]
    already = samples[key("intercom_sync_referral_walk_last_users", count="already")]
    assert (stored, already) == (record["stored"], record["already"])
    assert already >= 1 and stored + already == stack.referral.stats()["users"]
    assert samples[key(HIGH_WATER)] == mark.signed_up_at
    assert samples[key(WALK_RUNNING)] == 0

    # A walk the program's outage ends after its retries: failed, the lock let go, the mark unmoved.
    stack.referral.join(email="metrics.lost@example.com", referrer_id=None, send_webhook=False)
    stack.referral.config(down=True)
    sent_at = time.time()
    stack.send_beat_task(WALK_START_TASK)
    wait_until(
        lambda: ended_since(scrape(url), WALK_ENDED, sent_at, status="failed"), 60, message="the walk to fail"
    )
    samples = scrape(url)
    failed = [labels for (name, labels) in samples if name == WALK_ENDED]
    assert len(failed) == 1 and dict(failed[0])["error_code"] != "none", failed
    assert samples[key(WALK_RUNNING)] == 0
    assert samples[key(HIGH_WATER)] == mark.signed_up_at
    stack.referral.config(down=False)
