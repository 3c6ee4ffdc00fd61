"""The bulk re-sync end to end: real worker processes, real Redis, both sandboxes over HTTP.

The Intercom sandbox holds ``CONTACTS`` contacts ``client{i}@example.com`` (plus a few
without email or excluded); the platform sandbox serves the synthetic client of each.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from sync_worker import keys as service_keys
from sync_worker.celery_app import BULK_QUEUE, create_celery
from sync_worker.config import Settings
from sync_worker.deadletter import DeadLetterStore
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.processes import Child, worker_argv
from sync_worker.devtools.sandbox.server import ServedApp
from sync_worker.dispatch import SyncRequest, enqueue_sync
from sync_worker.resync import keys
from sync_worker.resync.lock import RunLock
from sync_worker.resync.messages import publish_chunk, publish_walk
from sync_worker.resync.runs import (
    CANCELLED,
    FINISHED,
    RUNNING,
    Chunk,
    RunOptions,
    RunRecord,
    RunStore,
    split_evenly,
)
from sync_worker.resync.settings import PAGE_SIZE, ResyncSettings
from sync_worker.resync.starter import StartResult, resume_if_stalled, start
from sync_worker.resync.walk import plan_page
from sync_worker.runtime import Runtime
from tests.fixtures.platform_sandbox import served_platform
from tests.fixtures.resilience import log_events
from tests.fixtures.web import stop_web
from tests.fixtures.workers import ADMIN_TOKEN

pytestmark = pytest.mark.integration

CONTACTS = 600
PAGES = -(-(CONTACTS + 3) // 150)
RUN_TIMEOUT = 90
LOCK_TTL = 2
#: A lock that expires in seconds, so a stalled run is resumed within the test; the reschedule
#: cap is shorter still, or the workers refuse to start (``celery_app.check_resync_lock_ttl``:
#: 0.5 s plus the 1 s chunk budget of ``env`` is under the 2 s lock).
SHORT_LOCK = {"SYNC_RESYNC_LOCK_TTL_SECONDS": str(LOCK_TTL), "SYNC_MAX_RESCHEDULE_SECONDS": "0.5"}


@pytest.fixture
def platform_sandbox():
    """The platform sandbox serving the sample dataset and ``CONTACTS`` synthetic clients."""
    with served_platform(synthetic_count=CONTACTS) as sandbox:
        yield sandbox


@pytest.fixture
def env(bulk_env) -> dict[str, str]:
    return bulk_env


@pytest.fixture
def seeded(intercom_sandbox) -> dict[str, str]:
    """Email -> contact id of every contact with an email."""
    seeds = [{"email": f"client{i}@example.com", "name": f"Client {i}"} for i in range(CONTACTS)]
    seeds += [
        {"email": None, "name": "No Email"},
        {"email": None, "role": "lead"},
        {"email": "support@example.com"},
    ]
    created = intercom_sandbox.seed(*seeds)
    return {c["email"]: c["id"] for c in created if c["email"]}


class Pool:
    """Worker processes loading the re-sync tasks, stopped (and their logs shown on failure) at the end."""

    def __init__(self, env: dict[str, str], log_dir: Path):
        self.env, self.log_dir, self.children = env, log_dir, []

    def start(self, concurrency: int = 2, **extra: str) -> Child:
        name = f"rw{len(self.children) + 1}"
        argv = [
            *worker_argv(concurrency=concurrency, hostname=f"{name}@test"),
            "--include",
            "sync_worker.resync.tasks",
        ]
        child = Child(name, argv, env={**self.env, **extra}, log_path=self.log_dir / f"{name}.log").start()
        self.children.append(child)
        started = time.time() - 1
        client = redis_lib.Redis.from_url(self.env["REDIS_URL"], decode_responses=True)
        wait_until(
            lambda: float(client.hget(service_keys.worker_heartbeats(), f"{name}@test") or 0) >= started,
            60,
            message=f"worker {name}",
        )
        client.close()
        return child

    def logs(self) -> str:
        return "\n".join(f"----- {c.name} -----\n{c.log_text()[-3000:]}" for c in self.children)


@pytest.fixture
def pool(env, tmp_path, request):
    workers = Pool(env, tmp_path)
    yield workers
    for child in workers.children:
        child.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(workers.logs())


@pytest.fixture
def store(env):
    client = redis_lib.Redis.from_url(env["REDIS_URL"])
    yield RunStore(client, lock_ttl_seconds=300, keep_seconds=3600)
    client.close()


def cli(env: dict[str, str], *args: str) -> dict:
    """``sync-worker resync ... --json`` in its own process; its (last) JSON line."""
    code = "import sys; from sync_worker.cli.resync import resync; resync(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, *args, "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_run(env: dict[str, str], **options) -> StartResult:
    """Start a run from this process (as the web app does), with the workers' settings."""
    client = redis_lib.Redis.from_url(env["REDIS_URL"])
    try:
        return start(
            client,
            create_celery(Settings(**env)),
            RunOptions(trigger="manual", **options),
            ResyncSettings(**env),
        )
    finally:
        client.close()


def finished(store: RunStore, run_id: str, timeout: float = RUN_TIMEOUT) -> RunRecord:
    wait_until(lambda: store.load(run_id).status != RUNNING, timeout, message=f"re-sync {run_id} to end")
    record = store.load(run_id)
    assert record.status == FINISHED, record
    return record


def puts(intercom_sandbox) -> int:
    return intercom_sandbox.stats()["calls_by_operation"].get("UpdateContact", 0)


def list_calls(intercom_sandbox) -> int:
    return intercom_sandbox.stats()["calls_by_operation"].get("ListContacts", 0)


# --- tests ----------------------------------------------------------------------------------------


def test_a_run_syncs_every_contact_and_a_second_run_writes_nothing(
    env, seeded, pool, store, intercom_sandbox, platform_sandbox
):
    pool.start(concurrency=4)  # four processes write their first contacts at the same moment
    first = cli(env)
    assert first["status"] == "started"
    record = finished(store, first["run_id"])
    counts = record.counts
    assert (counts["seen"], counts["skipped"], counts["no_email"], counts["queued"]) == (
        CONTACTS + 3,
        3,
        2,
        CONTACTS,
    )
    assert (counts["written"], counts["synced"], counts["failed"], counts["pages"]) == (
        CONTACTS,
        CONTACTS,
        0,
        PAGES,
    )
    shown = {c["email"]: c["custom_attributes"] for c in intercom_sandbox._call("GET", "/contacts")}
    assert all(shown[email].get("Data Status") == "Live" for email in seeded if email.startswith("client"))
    assert shown["support@example.com"] == {}
    assert puts(intercom_sandbox) == CONTACTS
    # The data-attribute schema: listed once and each custom attribute created once, for every process.
    calls = intercom_sandbox.stats()["calls_by_operation"]
    assert (calls.get("lisDataAttributes"), calls.get("createDataAttribute")) == (1, 21)  # sic: the spec's id

    second = start_run(env)
    record = finished(store, second.run_id)
    assert (record.counts["unchanged"], record.counts["written"]) == (CONTACTS, 0)
    assert puts(intercom_sandbox) == CONTACTS  # no PUT at all

    # Two clients change on the platform: a dry run counts them and writes nothing, a real run writes them.
    extra = [{**json.loads(json.dumps(_record(i))), "id": 90_000_000 + i} for i in (7, 300)]
    platform_sandbox.add_clients(*extra)
    dry = start_run(env, dry_run=True)
    record = finished(store, dry.run_id)
    assert record.dry_run and (record.counts["written"], record.counts["unchanged"]) == (2, CONTACTS - 2)
    assert puts(intercom_sandbox) == CONTACTS
    real = cli(env)
    record = finished(store, real["run_id"])
    assert (record.counts["written"], record.counts["unchanged"]) == (2, CONTACTS - 2)
    assert puts(intercom_sandbox) == CONTACTS + 2
    assert (
        intercom_sandbox.contact(seeded["client7@example.com"])["custom_attributes"]["Multiple Accounts"]
        != "No"
    )

    report = cli(env, "status", real["run_id"])
    assert report["status"] == "finished" and report["counts"]["written"] == 2 and report["fraction"] == 1.0


def _record(i: int) -> dict:
    from sync_worker.devtools.sandbox.dataset import synthetic_record

    return synthetic_record(i)


def test_a_malformed_record_is_its_contacts_platform_data_invalid_and_the_chunk_goes_on(
    env, pool, store, intercom_sandbox, platform_sandbox
):
    """Issue 12 item 5: one bad record neither fails its chunk nor spends the chunk's retries (the
    old code retried the whole chunk on its AttributeError / InvalidOperation, then parked the
    contacts under the exception's name)."""
    created = intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(10)))
    ids = {c["email"]: c["id"] for c in created}
    numeric_date = {**_record(3), "created_at": 1717430400}
    huge_balance = _record(5)
    huge_balance["invoices"] = [{"id": 1, "status": "unpaid", "balance": "1e30", "currency": "CAD"}]
    platform_sandbox.add_clients(numeric_date, huge_balance, check=False)
    pool.start(concurrency=1)
    record = finished(store, start_run(env).run_id)
    assert (record.counts["synced"], record.counts["failed"], record.counts["queued"]) == (8, 2, 10)
    assert platform_sandbox.stats()["lookup_emails"] == 10  # one read of the chunk: no retry
    letters = DeadLetterStore(redis_lib.Redis.from_url(env["REDIS_URL"], decode_responses=True))
    for email in ("client3@example.com", "client5@example.com"):
        letter = letters.get(f"id:{ids[email]}")
        assert letter is not None, email
        assert (letter.error_code, letter.attempts) == ("platform_data_invalid", 1)
        assert email not in letter.error_message
        assert intercom_sandbox.contact(ids[email])["custom_attributes"] == {}
    assert letters.count() == 2
    live = intercom_sandbox.contact(ids["client4@example.com"])["custom_attributes"]
    assert live["Data Status"] == "Live"


def test_an_only_changed_run_writes_every_contact_again_after_its_attributes_are_renamed(
    env, pool, store, intercom_sandbox
):
    """Issue 12 item 9: on the old code the renamed run counted every contact unchanged."""
    created = intercom_sandbox.seed(*({"email": f"client{i}@example.com"} for i in range(5)))
    first = pool.start(concurrency=1)
    assert finished(store, start_run(env).run_id).counts["written"] == 5
    assert finished(store, start_run(env).run_id).counts["unchanged"] == 5
    first.stop()

    renamed = {"SYNC_ATTRIBUTE_NAMES": json.dumps({"sessions": "Sessions Count"})}
    pool.start(concurrency=1, **renamed)
    record = finished(store, start_run(env).run_id)  # the worker holds the names
    assert (record.counts["written"], record.counts["unchanged"]) == (5, 0)
    for contact in created:
        assert "Sessions Count" in intercom_sandbox.contact(contact["id"])["custom_attributes"]


def test_a_run_killed_halfway_resumes_from_its_checkpoint(env, seeded, pool, store, intercom_sandbox):
    settings = {
        **SHORT_LOCK,
        "SYNC_RESYNC_MAX_IN_FLIGHT": "2",
        "SYNC_RESYNC_PAGES_PER_STEP": "1",
    }
    intercom_sandbox.config(delay_ms=3)
    worker = pool.start(concurrency=2, **settings)
    run_id = cli(env)["run_id"]
    wait_until(
        lambda: store.load(run_id).page >= PAGES // 2, RUN_TIMEOUT, interval=0.01, message="half the walk"
    )
    worker.kill()
    at_kill = store.load(run_id)
    assert at_kill.status == RUNNING and not at_kill.walk_done, "the run ended before the kill: slow it down"
    listed_before = list_calls(intercom_sandbox)
    wait_until(lambda: store._redis.get(keys.lock()) is None, 10, message="the dead run's lock to expire")

    pool.start(concurrency=2, **settings)  # a restarted worker resumes the stalled run (watchdog at start)
    record = finished(store, run_id)
    assert record.resumed >= 1
    assert (
        list_calls(intercom_sandbox) - listed_before <= PAGES - at_kill.page + 1
    )  # no re-walk from the start
    assert list_calls(intercom_sandbox) <= PAGES + 1
    assert record.counts["queued"] == CONTACTS and record.counts["failed"] == 0
    assert record.counts["written"] + record.counts["unchanged"] == CONTACTS
    shown = {c["email"]: c["custom_attributes"] for c in intercom_sandbox._call("GET", "/contacts")}
    assert all(shown[email].get("Data Status") == "Live" for email in seeded if email.startswith("client"))


LOST_CHUNKS = {**SHORT_LOCK, "SYNC_RESYNC_MAX_IN_FLIGHT": "2"}


def _a_run_whose_first_chunks_died_with_a_worker(env: dict[str, str], store: RunStore) -> str:
    """A run with page 0 committed and its two chunks pending, their messages never to come back
    in the test (a SIGKILLed worker held them: they return only after the visibility timeout);
    its lock held as the dead worker's last commit left it. Built the way a walk step builds it."""
    runtime = Runtime(Settings(**env))
    store = RunStore(store._redis, lock_ttl_seconds=LOCK_TTL, keep_seconds=3600)  # the workers' ttl
    run_id = "20260101T000000-deadwork"
    store.create(run_id, RunOptions())
    RunLock(store._redis, keys.lock(), ttl_seconds=LOCK_TTL).acquire(run_id)
    listed = runtime.intercom.list_contacts(per_page=PAGE_SIZE)
    pairs, counts = plan_page(listed.contacts, tuple(runtime.settings.excluded_emails))
    chunks = [(f"0.{n}", Chunk(tuple(group))) for n, group in enumerate(split_evenly(pairs, 100))]
    assert len(chunks) == 2 and listed.next_cursor
    committed, _ = store.commit_page(
        run_id, gen=0, page=0, next_cursor=listed.next_cursor, counts={**counts, "pages": 1}, chunks=chunks
    )
    assert committed
    runtime.redis.close()
    return run_id


def _bulk_queue_empty(store: RunStore) -> bool:
    return store._redis.llen(BULK_QUEUE) == 0


def test_a_walk_paused_behind_chunks_lost_with_their_worker_lets_the_lock_expire(env, seeded, pool, store):
    """The chunks in flight died with a worker, so the walk pauses at the bound: a pause is not
    progress, so it must not keep the run's lock alive, or the watchdog (beat's, every minute)
    never resumes the run and it waits for the visibility timeout (an hour by default)."""
    pool.start(concurrency=2, **LOST_CHUNKS)  # no run yet: its start-up watchdog has nothing to do
    run_id = _a_run_whose_first_chunks_died_with_a_worker(env, store)
    celery_app = create_celery(Settings(**env))
    publish_walk(celery_app, run_id, 0, 1)  # the next step, taken by the live worker
    wait_until(lambda: _bulk_queue_empty(store), 10, message="the walk step to be taken")
    wait_until(lambda: store._redis.get(keys.lock()) is None, 10, message="the paused run's lock to expire")
    assert store.load(run_id).page == 1  # paused at the bound, not walking on

    resumed = resume_if_stalled(store._redis, celery_app, ResyncSettings(**{**env, **LOST_CHUNKS}))
    assert resumed is not None and resumed.status == "resumed"  # as beat's watchdog would
    record = finished(store, run_id)
    assert record.resumed == 1 and record.counts["queued"] == CONTACTS and record.counts["failed"] == 0
    assert record.counts["written"] + record.counts["unchanged"] == CONTACTS


def test_a_restarted_worker_resumes_the_run_before_it_runs_what_the_dead_one_left_queued(
    env, seeded, pool, store
):
    """A worker died holding one chunk's message; the other chunk's message and the walk's next
    step were still queued. Its replacement, started after the lock expired, resumes the run
    before it takes any of those: were a leftover to run first, its progress would take the lock
    again and the start-up watchdog would see a live run, leaving the lost chunk to the next
    watchdog (none here: no beat)."""
    run_id = _a_run_whose_first_chunks_died_with_a_worker(env, store)
    celery_app = create_celery(Settings(**env))
    publish_chunk(celery_app, run_id, "0.1", 0)  # left queued by the dead worker
    publish_walk(celery_app, run_id, 0, 1)
    wait_until(lambda: store._redis.get(keys.lock()) is None, 10, message="the dead run's lock to expire")

    pool.start(concurrency=2, **LOST_CHUNKS)
    record = finished(store, run_id)
    assert record.resumed == 1 and record.counts["queued"] == CONTACTS and record.counts["failed"] == 0
    assert record.counts["written"] + record.counts["unchanged"] == CONTACTS


def test_a_walk_stopped_by_the_rate_limit_carries_on_from_the_page_it_reached(
    env, seeded, pool, store, intercom_sandbox
):
    """Two Intercom calls per 10-second window: a step reads two pages, then the next token is
    further away than a task may wait, so the step ends there and its successor must start at
    the third page (a message for the step's first page would find the checkpoint moved on)."""
    limits = {"INTERCOM_CALLS_PER_WINDOW": "2", "INTERCOM_WINDOW_SECONDS": "10"}
    intercom_sandbox.config(rate_limit=2, window_seconds=10)
    pool.start(concurrency=1, SYNC_RESYNC_PAGES_PER_STEP="4", SYNC_RESYNC_MAX_IN_FLIGHT="100", **limits)
    run = start_run({**env, **limits}, dry_run=True)  # a dry run: the pages are the only Intercom calls
    record = finished(store, run.run_id, timeout=PAGES * 10 + 30)
    assert (record.counts["pages"], record.counts["queued"]) == (PAGES, CONTACTS)
    assert record.resumed == 0  # not rescued by the watchdog
    assert list_calls(intercom_sandbox) == PAGES
    assert intercom_sandbox.stats()["rate_limited"] == 0


def test_a_chunk_waits_for_the_intercom_budget_before_reading_the_platform(
    env, seeded, store, intercom_sandbox, platform_sandbox
):
    """In this process, with the parts a chunk task builds: while Intercom's budget is spent for
    longer than a task may wait, a chunk is put back whole, with no platform call made."""
    from sync_worker.resync.chunks import ChunkRunner
    from sync_worker.runtime import MAX_INLINE_WAIT_SECONDS

    runtime = Runtime(Settings(**env))
    runner = ChunkRunner(
        store=store,
        platform=runtime.platform,
        circuit=runtime.circuit,
        contact_sync=runtime.pipeline("clients"),
        park=lambda *_: None,
        backoff=lambda attempt: 1.0,
        max_retries=3,
        time_budget_seconds=5,
        intercom_wait=runtime.limiters["intercom"].peek,
        max_inline_wait=MAX_INLINE_WAIT_SECONDS,
    )
    store.create("r1", RunOptions())
    contacts = tuple((seeded[f"client{i}@example.com"], f"client{i}@example.com") for i in range(3))
    store.commit_page(
        "r1", gen=0, page=0, next_cursor=None, counts={"queued": 3}, chunks=[("0.0", Chunk(contacts))]
    )
    runtime.limiters["intercom"].pause_for(30)  # as after a 429

    outcome = runner.run("r1", "0.0", 0)
    assert outcome.status == "rescheduled" and 20 < outcome.countdown <= 30
    assert outcome.rest.contacts == contacts and outcome.rest.attempt == 0
    assert store.chunk("r1", "0.0") == outcome.rest  # stored as the chunk's next version
    assert platform_sandbox.stats()["calls"] == {}
    assert puts(intercom_sandbox) == 0

    runtime.redis.delete(runtime.limiters["intercom"].key)  # the pause is over
    done = runner.run("r1", "0.0", outcome.rest.version)
    assert done.status == "done" and done.counts == {"synced": 3, "written": 3} and done.finished
    assert platform_sandbox.stats()["calls"] == {"POST /v1/clients/lookup": 1}
    assert puts(intercom_sandbox) == 3
    runtime.redis.close()


#: A platform circuit that opens after 5 failed reads and lets a probe through after 1 s.
SHORT_CIRCUIT = {"SYNC_CIRCUIT_OPEN_SECONDS": "1"}


def shown_statuses(intercom_sandbox, seeded) -> dict[str, str | None]:
    """Each synced contact's ``Data Status``, by email."""
    shown = {c["email"]: c["custom_attributes"] for c in intercom_sandbox._call("GET", "/contacts")}
    return {email: shown[email].get("Data Status") for email in seeded if email.startswith("client")}


def test_a_run_during_a_platform_outage_holds_its_chunks_and_ends_with_every_contact_live(
    env, seeded, pool, store, intercom_sandbox, platform_sandbox, redis_url
):
    """Issue 12 item 3: the platform answers 503 from the run's start for longer than a chunk's
    retries last (the old code then wrote every chunk's contacts stale and walked on). The chunks
    are held, the walk pauses behind them, and once the platform is back the run writes every
    contact Live, with no PUT spent on a stale value."""
    pool.start(concurrency=2, **SHORT_CIRCUIT)
    platform_sandbox.config(outage="503")
    run = start_run(env)
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    wait_until(
        lambda: client.hget(f"{service_keys.PREFIX}:circuit:platform", "state") == "open",
        30,
        message="the platform circuit to open",
    )
    # Longer than the retries of every chunk in flight (3, a few hundred ms each): each held many times.
    wait_until(  # (or, as the old code did, stale values written)
        lambda: len(log_events(pool, "resync_chunk_held")) >= 4 * 6 or store.load(run.run_id).counts["stale"],
        60,
        message="the chunks in flight to be held again and again",
    )
    during = store.load(run.run_id)
    assert during.status == RUNNING and during.counts["queued"] < CONTACTS  # the walk waits
    assert (during.counts["written"], during.counts["stale"], during.counts["failed"]) == (0, 0, 0)
    assert puts(intercom_sandbox) == 0

    platform_sandbox.config(outage=None)
    record = finished(store, run.run_id)
    assert (record.counts["synced"], record.counts["written"]) == (CONTACTS, CONTACTS)
    assert (record.counts["stale"], record.counts["deferred"], record.counts["failed"]) == (0, 0, 0)
    assert set(shown_statuses(intercom_sandbox, seeded).values()) == {"Live"}
    assert puts(intercom_sandbox) == CONTACTS  # one PUT a contact, none of stale values
    assert DeadLetterStore(client).count() == 0
    client.close()


def test_a_run_held_past_the_bound_hands_each_contact_a_refresh_that_makes_it_live(
    env, seeded, pool, store, intercom_sandbox, platform_sandbox, redis_url
):
    """Issue 12 item 3: a platform unreadable longer than the hold's bound (2 s here, the rate-limit
    max wait): the run writes nothing, hands every contact a scheduled stale refresh and finishes;
    once the platform is back those refreshes show every contact Live, with no trigger."""
    # Refreshes that find the platform down back off to 10 s (not 2): realtime work, they come
    # first, and at 600 contacts every 2 s they would keep the workers from the run's chunks.
    pool.start(
        concurrency=2,
        SYNC_RATE_LIMIT_MAX_WAIT_SECONDS="2",
        SYNC_RETRY_BACKOFF_MAX_SECONDS="10",
        **SHORT_CIRCUIT,
    )
    platform_sandbox.config(outage="503")
    run = start_run(env)
    record = finished(store, run.run_id)
    assert (record.counts["written"], record.counts["stale"], record.counts["failed"]) == (0, 0, 0)
    assert (record.counts["deferred"], record.counts["queued"]) == (CONTACTS, CONTACTS)
    assert len(log_events(pool, "resync_chunk_held")) > 0

    platform_sandbox.config(outage=None)  # back; no trigger and no run from here on
    wait_until(
        lambda: set(shown_statuses(intercom_sandbox, seeded).values()) == {"Live"},
        90,
        message="the refreshes to show every contact Live",
    )
    client = redis_lib.Redis.from_url(redis_url, decode_responses=True)
    assert DeadLetterStore(client).count() == 0
    client.close()


def test_concurrent_beat_like_starters_start_one_run(env, store):
    code = (
        "import json, redis, sys\n"
        "from sync_worker.resync.tasks import start_resync\n"
        "redis.Redis.from_url(sys.argv[1]).blpop('test:go', 30)\n"
        "print(json.dumps(start_resync()))\n"
    )
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", code, env["REDIS_URL"]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    client = redis_lib.Redis.from_url(env["REDIS_URL"])
    client.rpush("test:go", *range(6))  # release the starters (each blocks on this list) at once
    results = []
    for process in starters:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["status"] for r in results].count("started") == 1, results
    assert {r["status"] for r in results} <= {"started", "already_running"}
    assert len({r["run_id"] for r in results}) == 1
    assert len(store.recent(50)) == 1


def test_a_realtime_sync_during_a_bulk_run_completes_within_seconds(
    env, seeded, pool, store, intercom_sandbox
):
    intercom_sandbox.config(delay_ms=15)
    pool.start(concurrency=2)
    run_id = cli(env)["run_id"]
    wait_until(
        lambda: store.load(run_id).counts["written"] >= 100, RUN_TIMEOUT, message="the bulk run to be busy"
    )
    email = "client590@example.com"
    request = SyncRequest(contact_id=seeded[email], email=email, trigger="webhook", force_write=True)
    client = redis_lib.Redis.from_url(env["REDIS_URL"], decode_responses=True)
    sent = time.time()
    enqueue_sync(request, client, create_celery(Settings(REDIS_URL=env["REDIS_URL"])))
    result_key = service_keys.last_result(request.contact_key)
    wait_until(
        lambda: "webhook" in (client.get(result_key) or ""), 10, interval=0.02, message="the realtime sync"
    )
    took = json.loads(client.get(result_key))["finished_at"] - sent
    assert store.load(run_id).status == RUNNING, "the bulk run ended first: slow it down"
    print(f"realtime sync during the bulk run took {took:.2f}s")
    assert took < 4.0, took
    assert store.end(run_id, CANCELLED)  # the rest of the run proves nothing more


def test_admin_routes_start_and_report_runs(env, store):
    from web import create_app as create_web
    from web import resync as resync_routes

    app = create_web(Settings(**env))
    if "resync" not in app.blueprints:
        app.register_blueprint(resync_routes.bp)
    served = ServedApp(app).start()
    url = f"{served.url}/v1/admin/resync"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    try:
        assert requests.post(url, json={}, timeout=10).status_code == 401
        assert (
            requests.post(url, json={}, headers={"Authorization": "Bearer nope"}, timeout=10).status_code
            == 401
        )
        assert requests.post(url, json={"dry_run": "yes"}, headers=auth, timeout=10).status_code == 400
        started = requests.post(url, json={"dry_run": True}, headers=auth, timeout=10)
        assert started.status_code == 202 and started.json()["status"] == "started"
        run_id = started.json()["run_id"]
        again = requests.post(url, json={}, headers=auth, timeout=10)
        assert again.status_code == 409 and again.json()["run_id"] == run_id
        report = requests.get(f"{url}/{run_id}", headers=auth, timeout=10)
        assert report.status_code == 200
        assert report.json()["status"] == "running" and report.json()["dry_run"] is True
        assert report.json()["counts"]["seen"] == 0
        assert requests.get(f"{url}/latest", headers=auth, timeout=10).json()["id"] == run_id
        assert requests.get(f"{url}/nope", headers=auth, timeout=10).status_code == 404
        assert requests.get(f"{url}/{run_id}", timeout=10).status_code == 401
    finally:
        stop_web(served)
