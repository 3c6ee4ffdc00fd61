"""The page reader against the real referral sandbox and a real Redis: syncs served from pages
read after their request, one read in flight for every reader, a user off the newest page read
once, never a record read before the request."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sync_worker.referral_intake.pagecache import PageCache
from sync_worker.referral_intake.pagereader import LOCK_KEY, PageReader
from sync_worker.resync.lock import RunLock

pytestmark = pytest.mark.integration

PAGES = "GET /users"
USER_READS = "GET /users/{identifier}"


def reader_for(referral_sandbox, redis_client, **options) -> PageReader:
    lock = RunLock(redis_client, LOCK_KEY, ttl_seconds=15)
    return PageReader(referral_sandbox.client(), PageCache(redis_client), lock, **options)


def calls(referral_sandbox) -> dict[str, int]:
    return referral_sandbox.stats()["calls"]


def test_many_syncs_at_once_are_served_by_one_page(referral_sandbox, redis_client) -> None:
    joined = [
        referral_sandbox.join(email=f"many{n}@example.com", send_webhook=False)["user"] for n in range(20)
    ]
    requested_at = time.time()  # the webhooks were stored now
    reader = reader_for(referral_sandbox, redis_client, min_interval=60)  # however slow the machine
    with ThreadPoolExecutor(max_workers=20) as pool:
        found = list(
            pool.map(lambda user: reader.user(str(user["id"]), None, requested_at=requested_at), joined)
        )
    assert [user["id"] for user in found] == [user["id"] for user in joined]
    assert [user["email"] for user in found] == [f"many{n}@example.com" for n in range(20)]
    assert calls(referral_sandbox).get(PAGES, 0) == 1
    assert calls(referral_sandbox).get(USER_READS, 0) == 0


def test_a_user_named_by_code_is_served_from_the_page(referral_sandbox, redis_client) -> None:
    user = referral_sandbox.join(email="coded@example.com", send_webhook=False)["user"]
    found = reader_for(referral_sandbox, redis_client).user(
        f"code:{user['code']}", None, requested_at=time.time()
    )
    assert found is not None and found["id"] == user["id"]
    assert calls(referral_sandbox).get(USER_READS, 0) == 0


def test_a_user_off_the_newest_page_is_read_once_after_it(referral_sandbox, redis_client) -> None:
    oldest = referral_sandbox.client().users_page(per_page=250).users[-1]
    before = calls(referral_sandbox)
    found = reader_for(referral_sandbox, redis_client, per_page=5).user(
        str(oldest["id"]), None, requested_at=time.time()
    )
    assert found == oldest
    after = calls(referral_sandbox)
    assert after[PAGES] - before[PAGES] == 1
    assert after.get(USER_READS, 0) - before.get(USER_READS, 0) == 1


def test_a_record_read_before_the_request_is_not_served(referral_sandbox, redis_client) -> None:
    user = referral_sandbox.join(email="fresh@example.com", first_name="Now", send_webhook=False)["user"]
    requested_at = time.time()
    stale = {**user, "first_name": "Before"}
    PageCache(redis_client).store([stale], requested_at - 1.0)  # read before the webhook was stored
    found = reader_for(referral_sandbox, redis_client).user(str(user["id"]), None, requested_at=requested_at)
    assert found is not None and found["first_name"] == "Now"
    assert calls(referral_sandbox).get(PAGES, 0) == 1


def test_a_user_named_by_email_alone_is_read_by_email(referral_sandbox, redis_client) -> None:
    user = referral_sandbox.join(email="only.email@example.com", send_webhook=False)["user"]
    found = reader_for(referral_sandbox, redis_client).user(
        None, "Only.Email@example.com", requested_at=time.time()
    )
    assert found is not None and found["id"] == user["id"]
    assert calls(referral_sandbox).get(PAGES, 0) == 0
    assert calls(referral_sandbox).get(USER_READS, 0) == 1
