"""The platform client against the platform sandbox (and a misbehaving stand-in), over real HTTP."""

# The fixture is imported (until conftest registers it), so its parameter names redefine the import.

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import requests
from flask import Flask, Response, jsonify

from sync_worker.devtools.localredis import free_port, wait_until
from sync_worker.devtools.sandbox.dataset import load_sample, synthetic_record
from sync_worker.devtools.sandbox.platform import EXTENSION, create_app
from sync_worker.devtools.sandbox.server import ServedApp
from sync_worker.errors import PermanentError, TransientError
from sync_worker.platform import (
    PlatformAuthError,
    PlatformClient,
    PlatformContractError,
    PlatformRateLimited,
    PlatformRequestError,
    PlatformTimedOut,
    PlatformUnavailable,
)
from tests.fixtures.platform_sandbox import PlatformSandbox, RecordingHooks, sandbox_process

pytestmark = pytest.mark.integration

CLIENTS = "GET /v1/clients"
LOOKUP = "POST /v1/clients/lookup"


def ids(records: list[dict[str, Any]]) -> list[int]:
    return [record["id"] for record in records]


# --- reading ----------------------------------------------------------------------------------


def test_clients_by_email_returns_every_account_in_platform_order(platform_sandbox: PlatformSandbox):
    records = platform_sandbox.client().clients_by_email("sami.ruhsuf@example.com")

    assert ids(records) == [131447, 131446, 131445]
    assert {r["organization"]["currency"] for r in records} == {"USD", "CAD", "EUR"}
    assert records[1] == next(r for r in load_sample() if r["id"] == 131446)


@pytest.mark.parametrize(
    ("asked", "expected"),
    [
        ("  MAYA.chen@example.COM ", [131450]),  # stored as Maya.Chen@Example.com
        ("daniel.kim@EXAMPLE.org", [131462]),  # stored with spaces around it
        ("hannah.lee@example.com", [131468, 131467]),  # stored in two cases
        ("no.account@example.com", []),
    ],
)
def test_email_matching_is_trimmed_and_case_insensitive(platform_sandbox: PlatformSandbox, asked, expected):
    assert ids(platform_sandbox.client().clients_by_email(asked)) == expected


def test_lookup_answers_every_email_lower_cased_with_empty_lists_for_no_account(
    platform_sandbox: PlatformSandbox,
):
    found = platform_sandbox.client().lookup(
        [
            "Sami.Ruhsuf@example.com",
            " nobody@example.org",
            "sami.ruhsuf@example.com",
            "OLIVIA.BRANDT@example.com",
        ]
    )

    assert list(found) == ["sami.ruhsuf@example.com", "nobody@example.org", "olivia.brandt@example.com"]
    assert ids(found["sami.ruhsuf@example.com"]) == [131447, 131446, 131445]
    assert found["nobody@example.org"] == []
    assert ids(found["olivia.brandt@example.com"]) == [131451]
    stats = platform_sandbox.stats()
    assert stats["calls"] == {LOOKUP: 1}
    assert stats["lookup_emails"] == 3  # duplicates are dropped before sending


def test_lookup_splits_more_than_100_emails_into_calls_of_100(platform_sandbox: PlatformSandbox):
    emails = [f"person{i}@example.org" for i in range(250)] + ["maya.chen@example.com"]

    found = platform_sandbox.client().lookup(emails)

    assert len(found) == 251
    assert ids(found["maya.chen@example.com"]) == [131450]
    assert all(found[f"person{i}@example.org"] == [] for i in range(250))
    stats = platform_sandbox.stats()
    assert stats["calls"] == {LOOKUP: 3}
    assert stats["lookup_emails"] == 251


def test_lookup_of_nothing_makes_no_call(platform_sandbox: PlatformSandbox):
    assert platform_sandbox.client().lookup([]) == {}
    assert platform_sandbox.stats()["total_calls"] == 0


def test_blank_email_is_refused_before_any_call(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    with pytest.raises(ValueError):
        client.clients_by_email("   ")
    with pytest.raises(ValueError):
        client.lookup(["a@example.com", " "])
    assert platform_sandbox.stats()["total_calls"] == 0


def test_health(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    assert client.health() is True
    platform_sandbox.config(outage="503")
    assert client.health() is False
    assert PlatformClient(f"http://127.0.0.1:{free_port()}", "t", timeout=0.5).health() is False


# --- errors ---------------------------------------------------------------------------------------


def test_wrong_token_is_a_permanent_auth_error_not_retried(platform_sandbox: PlatformSandbox):
    hooks = RecordingHooks()
    client = platform_sandbox.client(token="wrong-token", hooks=hooks)

    with pytest.raises(PlatformAuthError) as raised:
        client.clients_by_email("maya.chen@example.com")

    assert isinstance(raised.value, PermanentError) and raised.value.status == 401
    assert "missing or invalid bearer token" in raised.value.message
    assert "wrong-token" not in repr(client)
    assert platform_sandbox.stats()["unauthorized"] == 1
    assert [status for _, status, _ in hooks.after] == [401]


def test_503_outage_is_unavailable_after_the_in_call_retries(platform_sandbox: PlatformSandbox):
    platform_sandbox.config(outage="503")
    hooks = RecordingHooks()

    with pytest.raises(PlatformUnavailable) as raised:
        platform_sandbox.client(hooks=hooks).clients_by_email("maya.chen@example.com")

    assert isinstance(raised.value, TransientError) and raised.value.status == 503
    assert not isinstance(raised.value, PlatformTimedOut)  # the platform answered: it is down, not slow
    assert hooks.before == [("platform", "clients_by_email")] * 3
    assert [(upstream, status) for upstream, status, _ in hooks.after] == [("platform", 503)] * 3
    stats = platform_sandbox.stats()
    assert stats["calls"] == {CLIENTS: 3}
    assert stats["outage_answers"] == 3


def test_retries_stop_as_soon_as_the_platform_answers(platform_sandbox: PlatformSandbox):
    class ClearOutageAfterFirstFailure(RecordingHooks):
        def after_response(self, upstream: str, status: int, headers: Mapping[str, str]) -> None:
            super().after_response(upstream, status, headers)
            if status == 503:
                platform_sandbox.config(outage=None)

    platform_sandbox.config(outage="503")
    hooks = ClearOutageAfterFirstFailure()

    assert ids(platform_sandbox.client(hooks=hooks).clients_by_email("olivia.brandt@example.com")) == [131451]
    assert [status for _, status, _ in hooks.after] == [503, 200]
    assert platform_sandbox.stats()["calls"] == {CLIENTS: 2}


def test_timeout_outage_is_unavailable_within_the_client_timeout(platform_sandbox: PlatformSandbox):
    platform_sandbox.config(outage="timeout")
    hooks = RecordingHooks()
    client = platform_sandbox.client(timeout=0.2, hooks=hooks)

    started = time.monotonic()
    with pytest.raises(PlatformTimedOut) as raised:
        client.clients_by_email("maya.chen@example.com")
    elapsed = time.monotonic() - started

    assert isinstance(raised.value, PlatformUnavailable) and raised.value.code == "platform_unavailable"
    assert 0.6 <= elapsed < 3.0  # three attempts of 0.2 s, short backoff, no hang
    assert len(hooks.before) == 3
    assert hooks.after == []  # no response came back
    platform_sandbox.config(outage=None)  # held requests are released ...
    assert ids(client.clients_by_email("maya.chen@example.com")) == [131450]  # ... and the platform answers


def test_unreachable_platform_is_unavailable(platform_sandbox: PlatformSandbox):
    hooks = RecordingHooks()
    client = PlatformClient(
        f"http://127.0.0.1:{free_port()}", "t", hooks=hooks, backoff_base=0.01, backoff_max=0.05
    )

    with pytest.raises(PlatformUnavailable) as raised:
        client.lookup(["maya.chen@example.com"])

    assert not isinstance(raised.value, PlatformTimedOut)  # refused at once, not waited for
    assert hooks.before == [("platform", "lookup")] * 3
    assert hooks.after == []


def test_429_is_raised_at_once_with_retry_after(platform_sandbox: PlatformSandbox):
    platform_sandbox.config(rate_limit={"per_second": 1})
    hooks = RecordingHooks()
    client = platform_sandbox.client(hooks=hooks)

    assert ids(client.clients_by_email("maya.chen@example.com")) == [131450]
    with pytest.raises(PlatformRateLimited) as raised:
        client.clients_by_email("maya.chen@example.com")

    assert isinstance(raised.value, TransientError)
    assert raised.value.retry_after == 1.0
    assert hooks.after[-1][1] == 429 and hooks.after[-1][2]["Retry-After"] == "1"
    stats = platform_sandbox.stats()
    assert stats["calls"] == {CLIENTS: 2}  # no in-call retry of a 429
    assert stats["rate_limited"] == 1


def test_rate_limit_refills(platform_sandbox: PlatformSandbox):
    platform_sandbox.config(rate_limit={"per_second": 5})
    client = platform_sandbox.client()
    answered = 0
    with pytest.raises(PlatformRateLimited):
        for _ in range(100):
            client.clients_by_email("noah.tremblay@example.com")
            answered += 1
    assert 5 <= answered < 100  # the bucket holds 5 tokens

    def passes() -> bool:
        return client.clients_by_email("noah.tremblay@example.com") != []

    wait_until(passes, timeout=2.0, message="a refilled token")
    platform_sandbox.config(rate_limit=None)
    for _ in range(30):
        client.clients_by_email("noah.tremblay@example.com")


def test_latency_knob_delays_answers_and_trips_short_timeouts(platform_sandbox: PlatformSandbox):
    assert platform_sandbox.config(latency_ms=300)["latency_ms"] == 300

    started = time.monotonic()
    assert ids(platform_sandbox.client().clients_by_email("zoe.kaplan@example.org")) == [131453]
    assert time.monotonic() - started >= 0.3

    with pytest.raises(PlatformTimedOut):
        platform_sandbox.client(timeout=0.1, max_attempts=1).clients_by_email("zoe.kaplan@example.org")


def test_a_total_timeout_for_the_call_replaces_the_client_timeout(platform_sandbox: PlatformSandbox):
    platform_sandbox.config(latency_ms=2000)
    client = platform_sandbox.client(timeout=5.0, max_attempts=1)

    started = time.monotonic()
    with pytest.raises(PlatformTimedOut) as raised:
        client.clients_by_email("zoe.kaplan@example.org", total_timeout=0.3)
    elapsed = time.monotonic() - started

    assert 0.3 <= elapsed < 0.3 + 0.5
    assert "0.3s" in raised.value.message
    platform_sandbox.config(latency_ms=0)
    assert ids(client.clients_by_email("zoe.kaplan@example.org", total_timeout=2.0)) == [131453]


def test_a_total_timeout_bounds_a_slow_connect_and_a_slow_answer_together():
    """A listener whose accept queue is full drops the first SYN, so connecting takes the kernel's
    1 s retransmission; once connected it never answers. With ``timeout=1.5`` requests waits up to
    1.5 s to connect and 1.5 s more to read (about 2.5 s here); the total keeps the call to 1.5 s."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)  # the queue's one place
    freed = threading.Thread(target=lambda: (threading.Event().wait(0.3), listener.accept()), daemon=True)
    client = PlatformClient(f"http://127.0.0.1:{port}", "t", timeout=5.0, max_attempts=1)
    try:
        freed.start()  # makes room after the client's first SYN was dropped: it connects on the retry
        started = time.monotonic()
        with pytest.raises(PlatformTimedOut):
            client.clients_by_email("a@example.com", total_timeout=1.5)
        elapsed = time.monotonic() - started
    finally:
        client.close()
        filler.close()
        listener.close()
    assert 1.5 <= elapsed < 1.5 + 0.5


def test_log_lines_carry_no_email(platform_sandbox: PlatformSandbox, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG, logger="sync_worker.platform")
    email = "maya.chen@example.com"
    platform_sandbox.client().clients_by_email(email)
    platform_sandbox.config(outage="503")
    with pytest.raises(PlatformUnavailable):
        platform_sandbox.client().lookup([email])

    platform_records = [r for r in caplog.records if r.name == "sync_worker.platform"]
    assert len(platform_records) == 4  # one success, three failed attempts
    for record in platform_records:
        assert "maya" not in (record.getMessage() + repr(vars(record))).lower()


# --- sandbox control routes ----------------------------------------------------------------------


def test_sandbox_refuses_bad_lookups_with_contract_errors(platform_sandbox: PlatformSandbox):
    headers = {"Authorization": f"Bearer {platform_sandbox.token}"}
    url = f"{platform_sandbox.url}/v1/clients/lookup"

    too_many = requests.post(
        url, json={"emails": [f"p{i}@example.com" for i in range(101)]}, headers=headers, timeout=5
    )
    not_a_list = requests.post(url, json={"emails": "a@example.com"}, headers=headers, timeout=5)
    no_auth = requests.post(url, json={"emails": []}, timeout=5)
    no_email = requests.get(f"{platform_sandbox.url}/v1/clients", headers=headers, timeout=5)

    assert (too_many.status_code, not_a_list.status_code, no_auth.status_code) == (400, 400, 401)
    assert no_email.status_code == 400
    assert "at most 100" in too_many.json()["error"]
    assert isinstance(no_auth.json()["error"], str)


def test_set_add_and_reset_clients(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    first, second = synthetic_record(1), synthetic_record(2)
    second["email"] = "Shared@Example.com"
    first["email"] = "shared@example.com"

    platform_sandbox.set_clients([second, first])
    assert ids(client.clients_by_email("shared@example.com")) == [second["id"], first["id"]]
    assert client.clients_by_email("maya.chen@example.com") == []

    changed = dict(first, status="Discharged")
    platform_sandbox.add_clients(changed, synthetic_record(3))
    assert [r["status"] for r in client.clients_by_email("shared@example.com")][1] == "Discharged"
    assert platform_sandbox.stats()["records"] == 3

    platform_sandbox.reset()
    assert ids(client.clients_by_email("maya.chen@example.com")) == [131450]
    assert platform_sandbox.stats()["calls"] == {CLIENTS: 1}


def test_sandbox_refuses_records_that_break_the_contract(platform_sandbox: PlatformSandbox):
    broken = synthetic_record(1)
    del broken["invoices"]
    broken["appointments"][0:0] = [{"id": 1, "start_at": "2025-01-01 10:00", "status": "done"}]

    answer = requests.put(f"{platform_sandbox.url}/_sandbox/clients", json=[broken], timeout=5)

    assert answer.status_code == 400
    problem = answer.json()["error"]
    assert "missing required field invoices" in problem
    assert "appointments[0].start_at" in problem and "appointments[0].status" in problem
    assert platform_sandbox.stats()["records"] == len(load_sample())


def test_bad_config_is_refused(platform_sandbox: PlatformSandbox):
    refused = ({"outage": "500"}, {"latency_ms": -1}, {"rate_limit": {"per_second": 0}}, {"speed": 1})
    for knobs in (*refused, {"token_revoked": "yes"}):
        answer = requests.put(f"{platform_sandbox.url}/_sandbox/config", json=knobs, timeout=5)
        assert answer.status_code == 400, knobs
    assert platform_sandbox.config() == {
        "latency_ms": 0,
        "lookup_refused": False,
        "outage": None,
        "rate_limit": None,
        "token_revoked": False,
    }


def test_a_revoked_token_is_refused_until_restored(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    platform_sandbox.config(token_revoked=True)
    with pytest.raises(PlatformAuthError):
        client.clients_by_email("olivia.brandt@example.com")
    platform_sandbox.config(token_revoked=False)
    assert client.clients_by_email("olivia.brandt@example.com")


def test_synthetic_clients_are_served_on_demand():
    app = create_app([], token="t", synthetic_count=1_000_000)
    with ServedApp(app) as served:
        client = PlatformClient(served.url, "t")
        assert client.clients_by_email("client999999@example.com") == [synthetic_record(999_999)]
        assert client.clients_by_email("client1000000@example.com") == []
        assert ids(client.lookup(["CLIENT7@example.com"])["client7@example.com"]) == [
            synthetic_record(7)["id"]
        ]
        # A stored record with a synthetic client's id replaces it (how a benchmark changes clients).
        changed = dict(synthetic_record(7), status="Discharged")
        requests.post(f"{served.url}/_sandbox/clients", json=[changed], timeout=5).raise_for_status()
        assert client.clients_by_email("client7@example.com") == [changed]
        assert client.lookup(["client8@example.com"])["client8@example.com"] == [synthetic_record(8)]
        app.extensions[EXTENSION].close()


def test_sandbox_runs_as_its_own_process(tmp_path):
    dataset = tmp_path / "clients.json"
    dataset.write_text(
        __import__("json").dumps([dict(synthetic_record(0), email="solo@example.com")]), encoding="utf-8"
    )
    with sandbox_process("--dataset", str(dataset)) as client:
        assert ids(client.clients_by_email("solo@example.com")) == [synthetic_record(0)["id"]]
        assert client.clients_by_email("maya.chen@example.com") == []  # the sample is not loaded


# --- a platform that breaks the contract -------------------------------------------------------------


class Misbehaving:
    """A stand-in platform answering whatever the test sets, counting calls."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {"data": []}
        self.raw: str | None = None
        self.calls = 0
        app = Flask(__name__)

        @app.route("/v1/clients", methods=["GET"])
        @app.route("/v1/clients/lookup", methods=["POST"])
        def answer() -> Response:
            self.calls += 1
            if self.raw is not None:
                return Response(self.raw, status=self.status, content_type="text/html")
            response = jsonify(self.body)
            response.status_code = self.status
            return response

        self.served = ServedApp(app)


@pytest.fixture
def misbehaving() -> Iterator[tuple[Misbehaving, PlatformClient]]:
    stand_in = Misbehaving()
    with stand_in.served as served:
        yield stand_in, PlatformClient(served.url, "t", backoff_base=0.01, backoff_max=0.05)


def test_records_are_returned_as_sent_for_the_sync_to_check_one_by_one(misbehaving):
    """A malformed record is its own contact's ``platform_data_invalid`` (``sync_worker.compute``),
    not a failed call: in a bulk lookup it would fail every email of the batch."""
    stand_in, client = misbehaving
    record = synthetic_record(1)
    del record["organization"]["currency"]
    stand_in.body = {"data": {"client0@example.com": [synthetic_record(0)], "client1@example.com": [record]}}
    found = client.lookup(["client0@example.com", "client1@example.com"])
    assert found == {"client0@example.com": [synthetic_record(0)], "client1@example.com": [record]}
    assert stand_in.calls == 1


@pytest.mark.parametrize(
    "body",
    [{"records": []}, {"data": {"a@example.com": []}}, {"data": "x"}],
)
def test_wrong_shapes_are_contract_errors(misbehaving, body):
    stand_in, client = misbehaving
    stand_in.body = body
    with pytest.raises(PlatformContractError):
        client.clients_by_email("a@example.com")


def test_lookup_missing_a_requested_email_is_a_contract_error(misbehaving):
    stand_in, client = misbehaving
    stand_in.body = {"data": {"a@example.com": []}}
    with pytest.raises(PlatformContractError):
        client.lookup(["a@example.com", "b@example.com"])


def test_a_2xx_that_is_not_json_is_unavailable_and_retried(misbehaving):
    stand_in, client = misbehaving
    stand_in.raw = "<html>maintenance</html>"
    with pytest.raises(PlatformUnavailable):
        client.clients_by_email("a@example.com")
    assert stand_in.calls == 3


def test_other_4xx_is_a_request_error_with_the_contract_message(misbehaving):
    stand_in, client = misbehaving
    stand_in.status, stand_in.body = 422, {"error": "email is not searchable"}

    with pytest.raises(PlatformRequestError) as raised:
        client.clients_by_email("a@example.com")

    assert raised.value.status == 422
    assert raised.value.message == "platform clients_by_email answered 422: email is not searchable"
    assert stand_in.calls == 1
