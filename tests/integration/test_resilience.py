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
from sync_worker.devtools.devstack import NO_ACCOUNT_EMAIL, seed_intercom_contacts
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.sandbox.dataset import load_sample
from tests.fixtures.resilience import (
    FAST_REDELIVERY,
    FAST_VISIBILITY_SECONDS,
    OLIVIA_EMAIL,
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
    [raw] = client.hvals("unacked")
    task_id = json.loads(raw)[0]["headers"]["id"]  # kombu's entry: [message, exchange, routing key]
    assert client.scard(keys.delivery_runs(task_id, 0)) == 1  # the death counts (MAX_DELIVERIES)
    platform_sandbox.config(latency_ms=0)

    workers.start(1, **env)
    # Back on the queue once older than the visibility timeout, at the next sweep.
    wait_for_attributes(
        intercom_sandbox, olivia["id"], is_live, FAST_VISIBILITY_SECONDS + 60, "the redelivered sync"
    )
    assert_synced(intercom_sandbox, olivia, olivia_records)
    # The ack follows the write: wait for it. Acknowledged, its delivery tokens are deleted with
    # it, not left for a day (issue 12 item 12).
    wait_until(
        lambda: client.hlen("unacked") == 0 and delivery_keys(client) == [],
        30,
        message="the redelivered message acknowledged and its delivery tokens deleted",
    )
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
    # Every message (triggers, stale refreshes, their retries) acknowledged leaves no delivery tokens.
    wait_broker_drained(client)
    assert delivery_keys(client) == []


def delivery_keys(client: redis_lib.Redis) -> list:
    """The ``keys.delivery_runs`` keys left in Redis."""
    return list(client.scan_iter(f"{keys.PREFIX}:delivery-runs:*"))


def start_synced(workers, web_app, intercom_sandbox, contact: dict, *, backoff_base: int, **env: str) -> None:
    """One worker whose stale refreshes wait ``backoff_base`` / 2 to ``backoff_base`` s at first (then
    double) and whose circuit stays open 3 s (``env``: more settings); the contact synced Live once
    through it."""
    workers.start(
        1,
        SYNC_CIRCUIT_OPEN_SECONDS="3",
        SYNC_RETRY_BACKOFF_BASE_SECONDS=str(backoff_base),
        SYNC_RETRY_BACKOFF_MAX_SECONDS=str(2 * backoff_base),
        **env,
    )
    trigger(web_app.url, contact)
    wait_for_attributes(intercom_sandbox, contact["id"], is_live, 60, "the first sync")


def refreshes_logged(workers, event: str) -> list[int]:
    """The ``refreshes`` of every log line of ``event`` (``fresh_sync_scheduled``, ``..._already_pending``)."""
    return [line["refreshes"] for line in log_events(workers, event)]


def wait_broker_drained(client: redis_lib.Redis) -> None:
    """No sync is left in the broker, pending or running."""
    wait_until(
        lambda: client.llen("sync.realtime") == 0 and client.hlen("unacked") == 0,
        60,
        message="no sync left in the broker, pending or running",
    )


def heal_without_trigger(intercom_sandbox, contact: dict, client: redis_lib.Redis) -> None:
    """The platform is back: the pending refresh shows the contact Live, and no sync is left in the
    broker, pending or running."""
    wait_for_attributes(intercom_sandbox, contact["id"], is_live, 90, "the scheduled fresh sync")
    wait_broker_drained(client)


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
    start_synced(workers, web_app, intercom_sandbox, olivia, backoff_base=3)

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
        return refreshes_logged(workers, "fresh_sync_scheduled")

    # The chain goes on while the platform is down: its refresh, stale again, schedules the next.
    wait_until(lambda: 2 in links(), 60, message="a refresh to find the platform down and schedule the next")
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    claim = keys.stale_refresh(f"id:{olivia['id']}")
    assert client.get(claim) is not None and client.pttl(claim) > 0  # pending, and it expires
    reads = platform_reads(platform_sandbox)
    platform_sandbox.config(outage=None)  # back; no new trigger from here on
    heal_without_trigger(intercom_sandbox, olivia, client)

    assert platform_reads(platform_sandbox) - reads == 1
    assert_synced(intercom_sandbox, olivia, olivia_records)
    # One chain: started once (refreshes 1), each later link once; the other triggers joined it.
    scheduled = links()
    assert scheduled == list(range(1, len(scheduled) + 1)), scheduled
    joined = refreshes_logged(workers, "fresh_sync_already_pending")
    assert joined == [0] * (triggers - 1), joined
    assert client.get(claim) is None  # the refresh that found the platform back let it go
    last = json.loads(client.get(keys.last_result(f"id:{olivia['id']}")))
    assert [outcome["trigger"] for outcome in last["outcomes"]] == ["stale_refresh"]
    assert dead_letters(redis_url).count() == 0
    # Every message (triggers, stale refreshes, their retries) acknowledged leaves no delivery tokens.
    wait_broker_drained(client)
    assert delivery_keys(client) == []


@pytest.mark.parametrize("claim_expires", [False, True], ids=["claim-held", "claim-expired"])
def test_a_stale_refresh_runs_with_the_newest_email_of_the_triggers_that_deferred_to_it(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, redis_url, claim_expires
):
    """The contact's email changes during an outage: the second trigger, with the new email, ends stale
    and finds the first trigger's refresh pending, so it schedules nothing; that refresh, once the
    platform is back, reads the client under the new email (not the old one it was scheduled with).
    It does so too when its claim expired meanwhile (a refresh that starts late): the newest request
    outlives the claim."""
    new_email = "olivia.b@example.net"
    # Another client (its own values, so the two reads cannot be confused) under the new email; the old
    # email still has Olivia's client, which the refresh must no longer read.
    [noah] = records_by_email(load_sample())["noah.tremblay@example.com"]
    new_records = [{**noah, "id": 990452, "email": new_email}]
    # The first refresh waits 4-8 s (the backoff): the second trigger's run ends before it starts.
    start_synced(workers, web_app, intercom_sandbox, olivia, backoff_base=8)

    def links() -> list[int]:
        return refreshes_logged(workers, "fresh_sync_scheduled")

    def deferred() -> list[int]:
        return refreshes_logged(workers, "fresh_sync_already_pending")

    platform_sandbox.config(outage="503")
    trigger(web_app.url, olivia)  # A: the old email
    wait_until(lambda: links() == [1], 60, message="trigger A's run to end stale and schedule a refresh")
    platform_sandbox.add_clients(*new_records)  # the platform's data changes while it cannot be read
    trigger(web_app.url, {**olivia, "email": new_email})  # B: same contact id, the new email
    # B's run ends by deferring to the pending refresh, or (were that refresh running) by starting a chain.
    wait_until(lambda: deferred() or links().count(1) > 1, 60, message="trigger B's run to end stale")
    assert deferred() == [0], (deferred(), links())  # B scheduled nothing: A's refresh was pending
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    claim = keys.stale_refresh(f"id:{olivia['id']}")
    newest = keys.stale_refresh_request(f"id:{olivia['id']}")
    noted_ttl, claim_ttl = client.pttl(newest), client.pttl(claim)  # checked once the outcome is
    if claim_expires:
        client.delete(claim)  # as its expiry would: the refresh still runs, with B's request

    platform_sandbox.config(outage=None)  # back; no new trigger from here on
    heal_without_trigger(intercom_sandbox, olivia, client)

    assert_synced(intercom_sandbox, olivia, new_records)  # the new email's client, not Olivia's old one
    assert noted_ttl > max(claim_ttl, 0)  # B's request was noted, to outlive the claim
    assert log_events(workers, "stale_refresh_took_newer_request")
    scheduled = links()
    assert scheduled == list(range(1, len(scheduled) + 1)), scheduled  # one chain
    assert client.get(claim) is None
    last = json.loads(client.get(keys.last_result(f"id:{olivia['id']}")))
    assert [outcome["trigger"] for outcome in last["outcomes"]] == ["stale_refresh"]
    assert last["outcomes"][0]["status"] == "synced"
    logged = "".join(child.log_text() for child in workers.children)
    assert new_email not in logged and OLIVIA_EMAIL not in logged  # no email in any log line
    assert dead_letters(redis_url).count() == 0


def test_a_live_run_after_the_outage_gives_the_pending_refresh_its_newer_email(
    intercom_sandbox, platform_sandbox, workers, web_app, olivia, redis_url
):
    """A refresh pending from an outage never reads an older email than a live run since: trigger B
    (a new email) ends stale and defers to A's refresh; the platform is back and trigger C (a newer
    email still) syncs Live before that refresh starts; the refresh then reads C's email, not B's, so
    the contact keeps C's client."""
    stale_email, live_email = "olivia.b@example.net", "olivia.c@example.net"
    sample = records_by_email(load_sample())
    [noah], [zoe] = sample["noah.tremblay@example.com"], sample["zoe.kaplan@example.org"]
    stale_records = [{**noah, "id": 990452, "email": stale_email}]
    live_records = [{**zoe, "id": 990453, "email": live_email}]
    # The circuit never opens (C's run must read the platform as soon as it is back), and the first
    # refresh waits 5-10 s: B's and C's runs end before it starts (checked below, by the log's order).
    start_synced(
        workers, web_app, intercom_sandbox, olivia, backoff_base=10, SYNC_CIRCUIT_FAILURE_THRESHOLD="1000"
    )

    def finished() -> list[dict]:
        return log_events(workers, "sync_finished")

    platform_sandbox.config(outage="503")
    trigger(web_app.url, olivia)  # A: the old email
    wait_until(
        lambda: refreshes_logged(workers, "fresh_sync_scheduled") == [1],
        60,
        message="trigger A's run to end stale and schedule a refresh",
    )
    platform_sandbox.add_clients(*stale_records, *live_records)
    trigger(web_app.url, {**olivia, "email": stale_email})  # B
    wait_until(
        lambda: refreshes_logged(workers, "fresh_sync_already_pending") == [0],
        60,
        message="trigger B's run to end stale and defer to A's refresh",
    )
    platform_sandbox.config(outage=None)  # back
    before = len(finished())
    trigger(web_app.url, {**olivia, "email": live_email})  # C
    wait_until(lambda: len(finished()) > before, 60, message="trigger C's run")
    live_run = finished()[before]
    assert (live_run["trigger"], live_run["status"]) == ("manual", "synced"), live_run
    wait_until(
        lambda: any(line["trigger"] == "stale_refresh" for line in finished()),
        60,
        message="A's refresh to run",
    )
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    wait_broker_drained(client)

    runs = [(line["trigger"], line["status"]) for line in finished()]
    assert [kind for kind, _ in runs[-2:]] == ["manual", "stale_refresh"], runs  # C, then the refresh
    assert [line["changed"] for line in log_events(workers, "stale_refresh_took_newer_request")] == [
        ["email"]
    ]
    assert_synced(intercom_sandbox, olivia, live_records)  # C's client, not B's (nor Olivia's)
    assert dead_letters(redis_url).count() == 0
