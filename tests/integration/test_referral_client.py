"""The referral client against the real referral sandbox over HTTP, through the shared limiter on a real Redis."""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
import requests
import yaml
from flask import Flask, jsonify, request
from openapi_schema_validator import OAS31Validator

from sync_worker.config import Settings
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.sandbox.server import ServedApp
from sync_worker.haltprobe import probe_referral
from sync_worker.halts import REFERRAL, HaltStore, UpstreamHalted
from sync_worker.ratelimit import RateLimitHooks
from sync_worker.referral import (
    ReferralAuthError,
    ReferralContractError,
    ReferralRateLimited,
    ReferralRequestError,
    ReferralUnavailable,
)
from sync_worker.runtime import Runtime, referral_limiter
from tests.fixtures.referral_sandbox import SANDBOX_TOKEN, served_referral
from tests.fixtures.spawned import run_together

pytestmark = pytest.mark.integration

SPEC = Path(__file__).resolve().parents[2] / "docs" / "contracts" / "referral-api.yaml"


def response_validator(path: str, method: str = "get") -> OAS31Validator:
    spec = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    schema = spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    return OAS31Validator(
        {**schema, "components": spec["components"]}, format_checker=OAS31Validator.FORMAT_CHECKER
    )


def test_pages_follow_links_next_newest_first_and_answer_the_contract(referral_sandbox):
    raw = requests.get(
        f"{referral_sandbox.url}/users",
        params={"per_page": 5},
        headers={"Authorization": f"Bearer {SANDBOX_TOKEN}"},
        timeout=5,
    ).json()
    assert [e.message for e in response_validator("/users").iter_errors(raw)] == []
    assert raw["links"]["next"].startswith(referral_sandbox.url + "/users?")

    client = referral_sandbox.client()
    users = list(client.iter_users_newest_first(per_page=5))
    assert len(users) == 22 and users[0]["id"] == 5022
    keys = [(user["signed_up_at"], user["id"]) for user in users]
    assert keys == sorted(keys, reverse=True)
    assert referral_sandbox.stats()["calls"]["GET /users"] == 5 + 1  # five pages, and the raw one

    only = list(client.iter_users_newest_first(per_page=2, campaign_id=14))
    assert {user["campaign_id"] for user in only} == {14} and len(only) == 5  # campaign kept on every page
    first = client.users_page(per_page=250)
    assert len(first.users) == 22 and first.next_url is None and first.rejected == []


def test_stopping_early_reads_no_more_pages(referral_sandbox):
    client = referral_sandbox.client()
    walk = client.iter_users_newest_first(per_page=3)
    newest = [next(walk) for _ in range(4)]  # the first page and one user of the second
    assert [user["id"] for user in newest] == [5022, 5021, 5020, 5019]
    assert referral_sandbox.stats()["calls"]["GET /users"] == 2


def test_a_next_link_to_another_host_is_refused_and_not_called(referral_sandbox):
    referral_sandbox.config(links_base_url="http://127.0.0.2:9")
    client = referral_sandbox.client()
    with pytest.raises(ReferralContractError, match="another host"):
        client.users_page(per_page=5)
    with pytest.raises(ReferralContractError, match="another host"):
        client.next_page("http://127.0.0.2:9/users?page=2")
    assert referral_sandbox.stats()["total_calls"] == 1


def test_user_by_id_code_or_email_and_404_is_none(referral_sandbox):
    client = referral_sandbox.client()
    assert client.user(5002)["first_name"] == "Lucas"
    assert client.user("RF05003")["id"] == 5003
    assert client.user("MAYA.chen@example.com")["id"] == 5005  # trimmed, any case
    assert client.user("sam.taylor@example.com")["id"] == 5016  # the newest of its two campaigns
    assert client.user("sam.taylor@example.com", campaign_id=12)["id"] == 5015
    assert client.user(999_999) is None
    assert client.user("nobody@example.com") is None
    assert referral_sandbox.stats()["calls"]["GET /users/{identifier}"] == 7


def test_a_record_breaking_the_contract_is_left_out_of_its_page(referral_sandbox):
    referral_sandbox.add_users(
        {"id": 6001, "campaign_id": 12, "code": "BAD", "email": 7, "signed_up_at": "2030-01-01T00:00:00Z"},
        check=False,
    )
    client = referral_sandbox.client()
    page = client.users_page(per_page=3)
    assert [user["id"] for user in page.users] == [5022, 5021]
    assert [(bad.id, "email is not a string or null" in bad.problems) for bad in page.rejected] == [
        (6001, True)
    ]
    with pytest.raises(ReferralContractError, match="breaks the contract"):
        client.user(6001)


def test_qualify_is_recorded_and_sets_qualified_at_once(referral_sandbox):
    client = referral_sandbox.client()
    qualified = client.qualify(5002)
    assert qualified["id"] == 5002 and qualified["qualified_at"] is not None
    again = client.qualify(5002)
    assert again["qualified_at"] == qualified["qualified_at"]
    assert client.user(5006)["qualified_at"] == "2025-02-21T16:00:00Z"
    with pytest.raises(ReferralRequestError) as missing:
        client.qualify(999_999)
    assert missing.value.status == 404
    calls = referral_sandbox.stats()["qualifications"]
    assert [(c["id"], c["qualified"], c["status"]) for c in calls] == [
        (5002, True, 200),
        (5002, True, 200),
        (999_999, True, 404),
    ]


def test_campaign_names_are_kept_in_process(referral_sandbox):
    client = referral_sandbox.client()
    assert client.campaign(12) == {"id": 12, "name": "Friends of Northwind"}
    assert client.campaign(12)["name"] == "Friends of Northwind"
    assert client.campaign(99) is None and client.campaign(99) is None
    assert referral_sandbox.stats()["calls"]["GET /campaigns/{id}"] == 2
    fresh = referral_sandbox.client(campaign_ttl=0)
    fresh.campaign(14)
    fresh.campaign(14)
    assert referral_sandbox.stats()["calls"]["GET /campaigns/{id}"] == 4


def test_down_is_unavailable_after_the_retries(referral_sandbox):
    referral_sandbox.config(down=True)
    client = referral_sandbox.client(max_attempts=3)
    with pytest.raises(ReferralUnavailable) as caught:
        client.user(5001)
    assert caught.value.status == 503 and caught.value.transient
    stats = referral_sandbox.stats()
    assert stats["calls"]["GET /users/{identifier}"] == 3 and stats["outage_answers"] == 3
    referral_sandbox.config(down=False)
    assert client.user(5001)["id"] == 5001


def test_slow_past_the_timeout_is_unavailable(referral_sandbox):
    referral_sandbox.config(latency_ms=1500)
    client = referral_sandbox.client(timeout=0.2, max_attempts=2)
    with pytest.raises(ReferralUnavailable, match="timed out"):
        client.user(5001)
    assert referral_sandbox.stats()["calls"]["GET /users/{identifier}"] == 2


def test_a_revoked_token_is_an_auth_error_that_halts_the_referral_upstream_only(
    referral_sandbox, redis_client
):
    referral_sandbox.config(token_revoked=True)
    client = referral_sandbox.client()
    with pytest.raises(ReferralAuthError) as caught:
        client.users_page()
    assert referral_sandbox.stats()["calls"]["GET /users"] == 1  # permanent: not retried
    halts = HaltStore(redis_client, wait_seconds=5)
    halted = halts.escalate(caught.value, run_id="test")
    assert halted is not None and halted.halt.upstream == REFERRAL and halted.halt.reason == "auth"
    halts.check()  # the contact syncs' upstreams are not halted
    with pytest.raises(UpstreamHalted):
        halts.check([REFERRAL])
    assert [halt.upstream for halt in halts.all()] == [REFERRAL]


def test_a_429_pauses_the_shared_limiter_for_every_worker(referral_sandbox, redis_url):
    worker_a = referral_limiter(redis_lib.Redis.from_url(redis_url), 540)
    worker_b = referral_limiter(redis_lib.Redis.from_url(redis_url), 540)
    client = referral_sandbox.client(hooks=RateLimitHooks({REFERRAL: worker_a}, max_wait=0.1))
    referral_sandbox.config(throttle={"calls": 1, "retry_after": 2})
    with pytest.raises(ReferralRateLimited) as caught:
        client.user(5001)
    assert caught.value.retry_after == 2.0
    assert referral_sandbox.stats()["calls"]["GET /users/{identifier}"] == 1  # raised at once, no retry
    wait = worker_b.try_acquire()  # another worker, its own connection: paused too
    assert 1.5 < wait <= 2.0
    started = time.monotonic()
    wait_until(lambda: worker_b.try_acquire() == 0.0, timeout=5, interval=0.05, message="the pause to lift")
    assert time.monotonic() - started > 1.0
    assert client.user(5001)["id"] == 5001
    assert referral_sandbox.stats()["throttled"] == 1


def test_the_rate_window_answers_429_with_retry_after_and_blocks_a_caller_that_keeps_going_over():
    with served_referral(rate_limit={"calls": 3, "window_seconds": 30}) as sandbox:
        client = sandbox.client()
        for _ in range(3):
            client.user(5001)
        with pytest.raises(ReferralRateLimited) as caught:
            client.user(5001)
        assert 1 <= caught.value.retry_after <= 30
        stats = sandbox.stats()
        assert (stats["over_limit"], stats["max_in_window"], stats["blocked"]) == (1, 4, False)
        for _ in range(3):  # over the limit more than three times: the program blocks the caller
            with pytest.raises(ReferralRateLimited):
                client.user(5001)
        with pytest.raises(ReferralAuthError) as blocked:
            client.user(5001)
        assert blocked.value.status == 403  # a refused caller: it halts the upstream like a revoked token
        stats = sandbox.stats()
        assert (stats["over_limit"], stats["blocked"], stats["blocked_answers"]) == (4, True, 1)
        sandbox.reset()
        assert sandbox.stats()["blocked"] is False


def _receiver() -> tuple[Flask, list[dict[str, Any]]]:
    """A stand-in for our receiver's ``POST /webhooks/referrals``: it keeps what it was sent."""
    received: list[dict[str, Any]] = []
    app = Flask("receiver")

    @app.post("/webhooks/referrals")
    def webhook():
        received.append({"body": request.get_json(), "token": request.headers.get("X-Referral-Token")})
        return jsonify({"status": "stored"})

    return app, received


def test_join_creates_a_user_and_sends_the_webhook_with_the_custom_header(referral_sandbox):
    app, received = _receiver()
    with ServedApp(app) as receiver:
        referral_sandbox.config(
            webhook_url=f"{receiver.url}/webhooks/referrals", webhook_headers={"X-Referral-Token": "tok-1"}
        )
        joined = referral_sandbox.join(first_name="Quinn", email="quinn.adams@example.com", campaign_id=14)
        lost = referral_sandbox.join(send_webhook=False, email=None)
    user = joined["user"]
    assert joined["webhook"] == {"sent": True, "id": user["id"], "status": 200}
    assert (user["type"], user["campaign_id"], user["referrer_id"]) == ("person_invited", 14, 5007)
    assert received == [
        {
            "body": {
                "event": "user.join",
                "id": user["id"],
                "code": user["code"],
                "email": "quinn.adams@example.com",
                "campaign_id": 14,
            },
            "token": "tok-1",
        }
    ]
    assert lost["webhook"]["sent"] is False and lost["user"]["email"] is None
    client = referral_sandbox.client()
    assert client.user(lost["user"]["id"])["id"] == lost["user"]["id"]  # the poll still finds it
    assert client.users_page(per_page=1).users[0]["id"] == lost["user"]["id"]  # newest first
    assert referral_sandbox.stats()["webhooks"] == [{"sent": True, "id": user["id"], "status": 200}]


# --- many processes through one shared limiter -----------------------------------------------

#: The sandbox's window (the program's minute, scaled down) and its limit; our budget for it.
BURST_WINDOW = 2.0
BURST_PROGRAM_LIMIT = 100
BURST_BUDGET = 90
BURST_PROCESSES = 4
BURST_CALLS = 45


def _burst(sandbox_url: str, redis_url: str, times, ready, go, results) -> None:
    """Child process: a worker's client and limiter; ``BURST_CALLS`` user reads as fast as it is let."""
    from sync_worker.referral import ReferralClient, ReferralRateLimited

    client_redis = redis_lib.Redis.from_url(redis_url)
    limiter = referral_limiter(client_redis, BURST_BUDGET, minute_seconds=BURST_WINDOW)
    client = ReferralClient(
        sandbox_url, SANDBOX_TOKEN, hooks=RateLimitHooks({REFERRAL: limiter}, max_wait=5.0), max_attempts=1
    )
    ready.wait()
    go.wait()
    answered, limited = 0, 0
    for i in range(BURST_CALLS):
        try:
            client.user(5001 + i % 22)
            answered += 1
        except ReferralRateLimited:
            limited += 1
    results.put((answered, limited))
    client.close()
    client_redis.close()


def test_a_burst_of_processes_never_puts_more_than_the_limit_in_any_window(redis_url):
    rate = {"calls": BURST_PROGRAM_LIMIT, "window_seconds": BURST_WINDOW}
    with served_referral(rate_limit=rate) as sandbox:
        started = time.monotonic()
        answers, _, _ = run_together(
            functools.partial(_burst, sandbox.url), redis_url, BURST_PROCESSES, lambda: (0.0, 0.0)
        )
        elapsed = time.monotonic() - started
        stats = sandbox.stats()
    total = BURST_PROCESSES * BURST_CALLS
    assert answers == [(BURST_CALLS, 0)] * BURST_PROCESSES
    assert stats["total_calls"] == total and stats["over_limit"] == 0
    # The budget in slices: 9 calls per 0.2 s, so any 2-second span sees at most 11 slices' worth.
    assert stats["max_in_window"] <= 99 < BURST_PROGRAM_LIMIT
    assert stats["max_in_window"] >= 80, stats  # and the budget was used, not starved
    assert elapsed >= (total - 99) / 45  # 180 calls at 45 a second: the limiter held them back


def test_threads_sharing_one_client_stay_under_the_limit_too(redis_url):
    rate = {"calls": 20, "window_seconds": 1.0}
    with served_referral(rate_limit=rate) as sandbox:
        limiter = referral_limiter(redis_lib.Redis.from_url(redis_url), 18, minute_seconds=1.0)
        client = sandbox.client(hooks=RateLimitHooks({REFERRAL: limiter}, max_wait=5.0), max_attempts=1)
        errors: list[BaseException] = []

        def read() -> None:
            try:
                for _ in range(8):
                    client.user(5002)
            except BaseException as exc:  # collected: the assertion below names it
                errors.append(exc)

        threads = [threading.Thread(target=read) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        stats = sandbox.stats()
    assert errors == [] and stats["total_calls"] == 48
    assert stats["over_limit"] == 0 and stats["max_in_window"] <= 20


def test_the_runtimes_client_takes_every_call_from_the_shared_budget(referral_env, referral_sandbox):
    runtime = Runtime(Settings(**referral_env))
    assert runtime.referral.user(5001)["id"] == 5001
    assert runtime.referral.campaign(12)["name"] == "Friends of Northwind"
    limiter = runtime.limiters[REFERRAL]
    assert (limiter.limit, limiter.window_seconds) == (54, 6.0)
    assert limiter.attempt().seq == 3  # the next token is the third granted: both calls took one
    assert referral_sandbox.stats()["total_calls"] == 2


def test_the_halt_probe_for_the_referral_program_fails_while_the_token_is_refused(
    referral_env, referral_sandbox
):
    runtime = Runtime(Settings(**referral_env))
    referral_sandbox.config(token_revoked=True)
    with pytest.raises(ReferralAuthError):
        probe_referral(runtime)
    referral_sandbox.config(token_revoked=False)  # a new token in place: one page of one user works
    probe_referral(runtime)
    assert referral_sandbox.stats()["calls"]["GET /users"] == 2


def test_the_sandbox_answers_json_errors_and_refuses_bad_knobs(referral_sandbox):
    auth = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
    url = referral_sandbox.url
    for method, path, status in [
        ("GET", "/users?per_page=0", 422),
        ("GET", "/users?per_page=251", 422),
        ("GET", "/users?page=x", 422),
        ("PUT", "/users/5001", 405),
        ("GET", "/campaigns/abc", 404),
        ("PUT", "/users/qualification", 422),  # no body
    ]:
        answer = requests.request(method, url + path, headers=auth, timeout=5)
        assert answer.status_code == status and isinstance(answer.json()["message"], str), (path, answer.text)
    for knobs in ({"nope": 1}, {"down": "yes"}, {"throttle": {"calls": -1}}, {"rate_limit": {"calls": 0}}):
        answer = requests.put(f"{url}/_sandbox/config", json=knobs, timeout=5)
        assert answer.status_code == 400, knobs
    assert referral_sandbox.config()["rate_limit"] == {"calls": 600, "window_seconds": 60.0}
    unauthenticated = requests.get(f"{url}/users", timeout=5)
    assert unauthenticated.status_code == 401 and unauthenticated.json() == {"message": "Unauthenticated."}
