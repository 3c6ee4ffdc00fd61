"""Issue 3, "never lose a contact": workers killed, Redis restarted, the platform down.

Real parts only: redis-server processes, ``celery worker`` processes, the receiver over
HTTP, the Intercom and platform sandboxes over HTTP. A test holds a sync mid-run with a
sandbox knob and waits on what the sandbox, Redis or a worker's log shows, never on a
sleep; every deadline is generous (the machine may be loaded). Each test checks the
contact ends with exactly what one clean sync writes (``tests/fixtures/resilience.py``).
The rate-limit and dead-letter faults are in ``test_resilience_ratelimit.py`` and
``test_resilience_deadletters.py``.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import redis as redis_lib

from sync_worker import keys
from sync_worker.devstack import NO_ACCOUNT_EMAIL, seed_intercom_contacts
from sync_worker.localredis import wait_until
from sync_worker.sandbox.dataset import load_sample
from tests.fixtures.resilience import (
    FAST_REDELIVERY,
    FAST_VISIBILITY_SECONDS,
    STALE_PREFIX,
    assert_synced,
    attributes,
    dead_letters,
    is_live,
    log_events,
    platform_reads,
    pool_children,
    records_by_email,
    trigger,
    wait_for_attributes,
)

pytestmark = pytest.mark.integration


# --- a worker killed mid-sync -----------------------------------------------------------------


def test_a_pool_child_killed_mid_sync_is_requeued_at_once_and_the_contact_synced(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, olivia_records, redis_url
):
    # The platform read holds the run for 20 s (the client waits 30): time to kill it mid-sync.
    [worker] = workers.start(1, PLATFORM_TIMEOUT_SECONDS="30")
    platform_sandbox.config(latency_ms=20_000)
    trigger(web_app.url, olivia)
    wait_until(lambda: platform_reads(platform_sandbox) >= 1, 30, message="the sync to reach the platform")

    [child] = pool_children(worker.pid)
    os.kill(child, signal.SIGKILL)
    assert attributes(intercom_sandbox, olivia["id"]) == {}  # the killed run wrote nothing
    platform_sandbox.config(latency_ms=0)

    # The visibility timeout is an hour here: only an immediate requeue syncs the contact in time.
    wait_for_attributes(intercom_sandbox, olivia["id"], is_live, 60, "the requeued sync")
    assert_synced(intercom_sandbox, olivia, olivia_records)
    assert worker.alive()
    assert child not in pool_children(worker.pid)
    assert platform_reads(platform_sandbox) == 2  # the killed run's read, then the requeued run's
    assert len(intercom_sandbox.writes(olivia["id"])) == 1
    assert dead_letters(redis_url).count() == 0


def test_a_whole_worker_killed_mid_sync_is_redelivered_to_a_new_worker(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, olivia_records, redis_url
):
    # The run must fit the short time limit (10 s, soft 8 s): a 5 s hold, a 6 s client timeout.
    env = {**FAST_REDELIVERY, "PLATFORM_TIMEOUT_SECONDS": "6"}
    [first] = workers.start(1, **env)
    platform_sandbox.config(latency_ms=5_000)
    trigger(web_app.url, olivia)
    wait_until(lambda: platform_reads(platform_sandbox) >= 1, 30, message="the sync to reach the platform")

    first.kill()  # SIGKILL to the main process and its pool child: nothing is handed back
    assert not first.alive()
    assert attributes(intercom_sandbox, olivia["id"]) == {}
    client = redis_lib.Redis.from_url(redis_url)
    assert client.hlen("unacked") == 1  # the message is still the dead worker's
    platform_sandbox.config(latency_ms=0)

    workers.start(1, **env)
    # Back on the queue once older than the visibility timeout, at the next sweep.
    wait_for_attributes(
        intercom_sandbox, olivia["id"], is_live, FAST_VISIBILITY_SECONDS + 60, "the redelivered sync"
    )
    assert_synced(intercom_sandbox, olivia, olivia_records)
    assert client.hlen("unacked") == 0
    assert len(intercom_sandbox.writes(olivia["id"])) == 1
    assert dead_letters(redis_url).count() == 0


# --- Redis restarted --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["restart", "crash"])
def test_every_trigger_accepted_before_a_redis_restart_is_synced(
    how, private_stack, intercom_sandbox, platform_sandbox
):
    contacts = seed_intercom_contacts(intercom_sandbox.url)
    for contact in contacts:  # accepted with no worker running: they wait on the queue
        trigger(private_stack.web_url, contact)
    client = redis_lib.Redis.from_url(private_stack.redis.url)
    assert client.llen("sync.realtime") == len(contacts)

    if how == "restart":
        private_stack.redis.restart()  # SIGTERM: Redis finishes its append-only file and exits
    else:
        private_stack.redis.kill()  # SIGKILL: only what was fsynced survives (every write is)
        private_stack.redis.start()
    assert client.llen("sync.realtime") == len(contacts)

    private_stack.workers.start(2)
    by_email = records_by_email(load_sample())
    for contact in contacts:
        wait_for_attributes(intercom_sandbox, contact["id"], is_live, 90, f"{contact['email']} to be synced")
        assert_synced(intercom_sandbox, contact, by_email.get(contact["email"], []))
    nora = next(c for c in contacts if c["email"] == NO_ACCOUNT_EMAIL)
    assert attributes(intercom_sandbox, nora["id"])["Platform Account Exists"] == "No"
    assert dead_letters(private_stack.redis.url).count() == 0


def test_a_sync_that_loses_redis_mid_run_is_synced_once_redis_is_back(
    private_stack, intercom_sandbox, platform_sandbox, olivia, olivia_records
):
    [worker] = private_stack.workers.start(1, **FAST_REDELIVERY, PLATFORM_TIMEOUT_SECONDS="6")
    platform_sandbox.config(latency_ms=2_000)
    trigger(private_stack.web_url, olivia)
    wait_until(lambda: platform_reads(platform_sandbox) >= 1, 30, message="the sync to reach the platform")
    private_stack.redis.kill()  # the run needs Redis again as soon as the platform answers
    wait_until(
        lambda: "sync_requeued_redis_unavailable" in worker.log_text(),
        60,
        message="the run to hand its message back",
    )
    private_stack.redis.start()
    platform_sandbox.config(latency_ms=0)

    wait_for_attributes(
        intercom_sandbox, olivia["id"], is_live, FAST_VISIBILITY_SECONDS + 60, "the sync after Redis is back"
    )
    assert_synced(intercom_sandbox, olivia, olivia_records)
    assert dead_letters(private_stack.redis.url).count() == 0


# --- the platform down -------------------------------------------------------------------------


def test_platform_down_shows_last_known_values_flagged_stale_then_fresh_ones_without_a_trigger(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, olivia_records, redis_url
):
    workers.start(1, SYNC_CIRCUIT_OPEN_SECONDS="3")
    trigger(web_app.url, olivia)
    live = wait_for_attributes(intercom_sandbox, olivia["id"], is_live, 60, "the first sync")

    platform_sandbox.config(outage="503")
    trigger(web_app.url, olivia)
    stale = wait_for_attributes(
        intercom_sandbox,
        olivia["id"],
        lambda values: values.get("Data Status", "").startswith(STALE_PREFIX),
        60,
        "the stale values",
    )
    del stale["Data Status"], live["Data Status"]
    assert stale == live  # the last known values, their read time included
    # A real outage: enough failed reads to open the circuit, so the fresh sync has to wait for it.
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    wait_until(
        lambda: client.hget(f"{keys.PREFIX}:circuit:platform", "state") == "open",
        60,
        message="the platform circuit to open",
    )

    platform_sandbox.config(outage=None)  # back; no new trigger from here on
    wait_for_attributes(intercom_sandbox, olivia["id"], is_live, 90, "the scheduled fresh sync")
    assert_synced(intercom_sandbox, olivia, olivia_records)
    writes = [write["body"]["custom_attributes"] for write in intercom_sandbox.writes(olivia["id"])]
    # Live, the stale values once (the fresh syncs that found the platform down rewrote nothing), Live.
    statuses = [write["Data Status"] for write in writes]
    assert statuses[0] == statuses[2] == "Live" and statuses[1].startswith(STALE_PREFIX), statuses
    assert len(statuses) == 3, statuses
    assert all(write["Platform Account Exists"] == "Yes" for write in writes)
    last = json.loads(client.get(keys.last_result(f"id:{olivia['id']}")))
    assert [outcome["trigger"] for outcome in last["outcomes"]] == ["stale_refresh"]
    assert dead_letters(redis_url).count() == 0


def test_triggers_during_an_outage_share_one_stale_refresh_and_the_platform_is_read_once_when_back(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, olivia_records, redis_url
):
    """Every trigger of the contact during the outage ends stale, but only the first starts a chain of
    fresh syncs: the others find its refresh pending. Once the platform is back, that one refresh reads
    it (one read, not one per trigger) and the contact ends Live without another trigger."""
    triggers = 3
    # The first refresh waits 1.5-3 s (the backoff): every trigger's own run ends before it starts. A
    # trigger queued while a refresh runs is taken by that run and its own message runs later, maybe
    # after the platform is back: one more read, which is how a trigger during a run works.
    workers.start(
        1,
        SYNC_CIRCUIT_OPEN_SECONDS="3",
        SYNC_RETRY_BACKOFF_BASE_SECONDS="3",
        SYNC_RETRY_BACKOFF_MAX_SECONDS="6",
    )
    trigger(web_app.url, olivia)
    wait_for_attributes(intercom_sandbox, olivia["id"], is_live, 60, "the first sync")

    def manual_runs() -> int:
        finished = log_events(workers, "sync_finished")
        return sum(1 for line in finished if line["trigger"] == "manual")

    platform_sandbox.config(outage="503")
    for sent in range(1, triggers + 1):
        trigger(web_app.url, olivia)
        # Each trigger's run ends before the next is sent: none is folded into a pending one.
        wait_until(lambda n=sent: manual_runs() >= 1 + n, 60, message=f"the run of trigger {sent}")
    manual = [line for line in log_events(workers, "sync_finished") if line["trigger"] == "manual"][1:]
    assert [line["status"] for line in manual] == ["stale"] * triggers

    def links() -> list[int]:
        return [line["refreshes"] for line in log_events(workers, "fresh_sync_scheduled")]

    # The chain goes on while the platform is down: its refresh, stale again, schedules the next.
    wait_until(lambda: 2 in links(), 60, message="a refresh to find the platform down and schedule the next")
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    claim = keys.stale_refresh(f"id:{olivia['id']}")
    assert client.get(claim) is not None and client.pttl(claim) > 0  # pending, and it expires
    reads = platform_reads(platform_sandbox)
    platform_sandbox.config(outage=None)  # back; no new trigger from here on
    wait_for_attributes(intercom_sandbox, olivia["id"], is_live, 90, "the scheduled fresh sync")
    wait_until(
        lambda: client.llen("sync.realtime") == 0 and client.hlen("unacked") == 0,
        60,
        message="no sync left in the broker, pending or running",
    )

    assert platform_reads(platform_sandbox) - reads == 1
    assert_synced(intercom_sandbox, olivia, olivia_records)
    # One chain: started once (refreshes 1), each later link once; the other triggers joined it.
    scheduled = links()
    assert scheduled == list(range(1, len(scheduled) + 1)), scheduled
    joined = log_events(workers, "fresh_sync_already_pending")
    assert [line["refreshes"] for line in joined] == [0] * (triggers - 1), joined
    assert client.get(claim) is None  # the refresh that found the platform back let it go
    last = json.loads(client.get(keys.last_result(f"id:{olivia['id']}")))
    assert [outcome["trigger"] for outcome in last["outcomes"]] == ["stale_refresh"]
    assert dead_letters(redis_url).count() == 0
