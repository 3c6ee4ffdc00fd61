"""``POST /v1/connector/client-attributes`` over real HTTP, against the platform sandbox.

Each test serves the receiver with the platform sandbox's URL and a 1-second
connector deadline (the ``SYNC_CONNECTOR_DEADLINE_SECONDS`` setting, declared
below as it is proposed for ``sync_worker/config.py``). The expected live values
are written out by hand from the sample dataset and ``docs/integrations/clients.md``
(they are the ones ``test_end_to_end.py`` shows), not computed by our code.
"""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis as redis_lib
import requests

from sync_worker.cache import LastKnownValues
from sync_worker.circuit import CLOSED, HALF_OPEN, CircuitBreaker
from sync_worker.devtools.localredis import wait_until
from sync_worker.devtools.sandbox.dataset import load_sample
from sync_worker.devtools.sandbox.server import ServedApp
from sync_worker.ratelimit import RateLimiter
from tests.fixtures.web import (
    CONNECTOR_TOKEN,
    EXCLUDED_EMAIL,
    TRIGGER_TOKEN,
    WebServer,
    serve,
    stop_web,
    web_settings,
)
from web.context import EXTENSION, WebContext

pytestmark = pytest.mark.integration

DEADLINE = 1.0
#: Allowed past the deadline for the HTTP round trip on a busy 2-core CI machine.
MARGIN = 0.5
PATH = "/v1/connector/client-attributes"
OLIVIA_EMAIL = "olivia.brandt@example.com"
CONTACT_ID = "6650f0c2a1b2c3d4e5f60718"
DATE_TIME = re.compile(r"^[A-Z][a-z]{2} \d{1,2}, \d{4} - \d{1,2}:\d{2} [ap]\.m\. E[SD]T$")
STALE = re.compile(r"^Stale - platform unavailable since [A-Z][a-z]{2} \d{1,2}, \d{4} - .+ E[SD]T$")
OLIVIA_LIVE = {
    "client_id": "131451",
    "name": "Olivia Brandt",
    "phone": "+1 416 555 1451",
    "profile_link": "https://platform.example.com/clients/131451",
    "status": "Active",
    "timezone": "America/Toronto",
    "client_since": "Jun 3, 2024",
    "account_exists": "Yes",
    "therapists": "Priya Raman",
    "tags": "-",
    "group": "-",
    "unpaid_invoices": "Yes, CAD$1,250.50 due",
    "card_on_file": "Yes",
    "sessions": "2",
    "last_appointment": "May 13, 2024 - 9:00 a.m. EDT",
    "next_appointment": "No Appointments",
    "intake_completed": "Yes",
    "sub_org": "Ruh Care Inc.",
    "multiple_accounts": "No",
    "linked_accounts": "-",
    "data_status": "Live",
}
ATTRIBUTE_KEYS = [*OLIVIA_LIVE.keys(), "updated_on"]
#: What the worker last wrote for the contact (some values differ from today's, to tell them apart).
CACHED = {**OLIVIA_LIVE, "sessions": "1", "updated_on": "Jan 5, 2026 - 9:00 a.m. EST"}


Serve = Callable[..., tuple[ServedApp, WebServer]]


@pytest.fixture
def serve_connector(redis_url: str, platform_sandbox) -> Iterator[Serve]:
    """Starts receivers on the platform sandbox with a ``DEADLINE`` (or the settings given)."""
    started: list[tuple[ServedApp, WebServer]] = []

    def start(**overrides: Any) -> tuple[ServedApp, WebServer]:
        values = {
            "PLATFORM_API_URL": platform_sandbox.url,
            "PLATFORM_API_TOKEN": platform_sandbox.token,
            "SYNC_CONNECTOR_DEADLINE_SECONDS": DEADLINE,
            **overrides,
        }
        started.append(serve(web_settings(redis_url, **values)))
        return started[-1]

    yield start
    for served, server in started:
        stop_web(served)
        server.redis.close()


@pytest.fixture
def served(serve_connector: Serve) -> tuple[ServedApp, WebServer]:
    return serve_connector()


@pytest.fixture
def connector(served: tuple[ServedApp, WebServer]) -> WebServer:
    return served[1]


def ask(
    server: WebServer, body: Any, *, token: str | None = CONNECTOR_TOKEN
) -> tuple[requests.Response, float]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    started = time.monotonic()
    response = requests.post(f"{server.url}{PATH}", json=body, headers=headers, timeout=10)
    return response, time.monotonic() - started


def binary(server: WebServer) -> redis_lib.Redis:
    return redis_lib.Redis.from_url(server.settings.redis_url)


def shared_circuit(server: WebServer) -> CircuitBreaker:
    """The platform circuit as the server's settings build it (the one every worker shares)."""
    settings = server.settings
    return CircuitBreaker(
        binary(server),
        "platform",
        failure_threshold=settings.circuit_failure_threshold,
        window_seconds=settings.circuit_window_seconds,
        open_seconds=settings.circuit_open_seconds,
    )


def half_open(server: WebServer) -> CircuitBreaker:
    """Opens the server's platform circuit and waits until it lets a probe through."""
    circuit = shared_circuit(server)
    for _ in range(circuit.failure_threshold):
        circuit.record_failure()
    wait_until(
        lambda: circuit.state().state == HALF_OPEN,
        timeout=circuit.open_seconds + 5,
        interval=0.02,
        message="the circuit to half-open",
    )
    return circuit


def remember(server: WebServer, contact_id: str, email: str | None = OLIVIA_EMAIL) -> None:
    LastKnownValues(binary(server)).store(
        contact_id, CACHED, datetime(2026, 1, 5, 14, tzinfo=UTC), email=email
    )


ANSWERS = "intercom_sync_web_connector_answers_total"


def connector_answers(server: WebServer) -> dict[tuple[str, str], int]:
    """The answers ``/metrics`` counts, by ``(freshness, reason)`` (the receiver writes its own
    buffer before it answers ``/metrics``, so every answer already given is in)."""
    return {
        (labels["freshness"], labels["reason"]): int(value)
        for (name, label_set), value in server.metric_samples().items()
        if name == ANSWERS and (labels := dict(label_set))
    }


def assert_one_connector_sync(server: WebServer, *, email: str, contact_id: str | None) -> None:
    [message] = server.queued()
    assert message["kwargs"]["trigger"] == "connector"
    assert message["kwargs"]["email"] == email
    assert message["kwargs"]["contact_id"] == contact_id


def test_live_answer_has_every_value_computed_now(connector: WebServer, platform_sandbox) -> None:
    response, _ = ask(connector, {"email": OLIVIA_EMAIL, "contact_id": CONTACT_ID})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer) == [*ATTRIBUTE_KEYS[:-2], "updated_on", "data_status", "stale"]  # display order
    assert answer.pop("stale") is False
    assert DATE_TIME.match(answer.pop("updated_on"))
    assert answer == OLIVIA_LIVE
    assert platform_sandbox.stats()["total_calls"] == 1
    assert_one_connector_sync(connector, email=OLIVIA_EMAIL, contact_id=CONTACT_ID)
    assert connector_answers(connector) == {("live", "none"): 1}


def test_one_platform_client_serves_every_answer_of_a_process_and_a_forked_child_builds_its_own(
    served: tuple[ServedApp, WebServer], platform_sandbox
) -> None:
    app, server = served
    context = app.app.extensions[EXTENSION]
    assert isinstance(context, WebContext)
    reader = context.platform
    for _ in range(2):
        response, _ = ask(server, {"email": OLIVIA_EMAIL, "contact_id": CONTACT_ID})
        assert response.json()["stale"] is False
    client = reader.client()
    assert client is not None and reader.client() is client
    answers, told = os.pipe()
    child = os.fork()
    if child == 0:  # as a gunicorn worker forked from a process that already read the platform
        try:
            own = reader.client()
            read = reader.read_clients(OLIVIA_EMAIL, timeout=DEADLINE)
            os.write(told, f"{own is not client} {len(read.records or [])}".encode())
        finally:
            os._exit(0)
    os.close(told)
    ready, _, _ = select.select([answers], [], [], 10)
    said = os.read(answers, 100).decode() if ready else "no answer"
    if not ready:
        os.kill(child, signal.SIGKILL)  # never left running, nor waited for
    os.waitpid(child, 0)
    os.close(answers)
    assert said == "True 1"  # its own client, and it reads the platform
    assert reader.client() is client  # the parent keeps its own
    assert platform_sandbox.stats()["total_calls"] == 3


def assert_answered_from_cache(connector: WebServer) -> None:
    """Asked for the remembered contact, the connector answers its cached values flagged stale, in time."""
    response, elapsed = ask(connector, {"email": OLIVIA_EMAIL, "contact_id": CONTACT_ID})
    assert response.status_code == 200, response.text
    assert elapsed < DEADLINE + MARGIN
    answer = response.json()
    assert answer.pop("stale") is True
    assert STALE.match(answer.pop("data_status")), response.text
    assert answer == {key: value for key, value in CACHED.items() if key != "data_status"}


def test_platform_slower_than_the_deadline_but_not_the_workers_timeout_answers_stale_and_leaves_the_circuit_closed(
    connector: WebServer, platform_sandbox
) -> None:
    remember(connector, CONTACT_ID)
    workers_timeout = connector.settings.platform_timeout_seconds
    latency = (DEADLINE + workers_timeout) / 2  # past the connector's budget, within a worker's timeout
    assert DEADLINE < latency < workers_timeout
    platform_sandbox.config(latency_ms=int(latency * 1000))
    assert_answered_from_cache(connector)
    # A worker would have been answered: the workers' circuit learnt nothing from it.
    state = shared_circuit(connector).state()
    assert (state.state, state.failures, state.unavailable_since) == (CLOSED, 0, None)
    assert_one_connector_sync(connector, email=OLIVIA_EMAIL, contact_id=CONTACT_ID)
    # Told apart from an outage: the connector's own deadline ran out, the platform did not fail.
    assert connector_answers(connector) == {("stale", "deadline"): 1}


def test_a_connector_timeout_as_long_as_the_workers_counts_as_a_platform_failure(
    serve_connector: Serve, platform_sandbox
) -> None:
    _, connector = serve_connector(PLATFORM_TIMEOUT_SECONDS=DEADLINE / 2)  # shorter than the budget
    remember(connector, CONTACT_ID)
    platform_sandbox.config(latency_ms=int(DEADLINE * 3000))
    assert_answered_from_cache(connector)
    # It waited what a worker waits (not its longer budget), and a worker would have failed too.
    assert shared_circuit(connector).state().failures == 1
    assert_one_connector_sync(connector, email=OLIVIA_EMAIL, contact_id=CONTACT_ID)
    assert connector_answers(connector) == {("stale", "unavailable"): 1}


def test_a_probe_cut_short_by_the_deadline_lets_the_next_probe_through_at_once(
    serve_connector: Serve, platform_sandbox
) -> None:
    # A probe's turn lasts the open time (4 s, well past this 1 s answer): only a release frees it sooner.
    _, connector = serve_connector(SYNC_CIRCUIT_OPEN_SECONDS=4)
    circuit = half_open(connector)
    platform_sandbox.config(latency_ms=int(DEADLINE * 3000))
    probed = time.monotonic()
    response, _ = ask(connector, {"email": OLIVIA_EMAIL})
    assert response.json()["stale"] is True
    assert platform_sandbox.stats()["total_calls"] == 1  # it was the probe
    state = circuit.state()
    assert (state.state, state.failures) == (HALF_OPEN, circuit.failure_threshold)  # no verdict
    probe = circuit.admit()
    assert time.monotonic() - probed < circuit.probe_timeout_seconds  # else the turn simply ran out
    assert probe is not None and probe.probe is not None  # the next probe may go now
    assert connector_answers(connector) == {("stale", "deadline"): 1}


def test_a_rate_limited_probe_closes_the_circuit(serve_connector: Serve, platform_sandbox) -> None:
    _, connector = serve_connector(SYNC_CIRCUIT_OPEN_SECONDS=0.5)
    circuit = half_open(connector)
    platform_sandbox.config(rate_limit={"per_second": 0.5})  # under one token: every call is a 429
    response, _ = ask(connector, {"email": OLIVIA_EMAIL})
    assert response.json()["stale"] is True
    assert platform_sandbox.stats()["rate_limited"] == 1
    # The platform answered: it is up, so the probe closed the circuit for every worker.
    state = circuit.state()
    assert (state.state, state.failures, state.unavailable_since) == (CLOSED, 0, None)


def test_outage_without_last_known_values_answers_only_the_stale_status(
    connector: WebServer, platform_sandbox
) -> None:
    platform_sandbox.config(outage="503")
    response, elapsed = ask(connector, {"email": OLIVIA_EMAIL})
    assert response.status_code == 200, response.text
    assert elapsed < DEADLINE + MARGIN
    answer = response.json()
    assert answer.pop("stale") is True
    assert STALE.match(answer.pop("data_status"))
    assert answer == {key: None for key in ATTRIBUTE_KEYS if key != "data_status"}
    assert platform_sandbox.stats()["outage_answers"] == 1
    assert_one_connector_sync(connector, email=OLIVIA_EMAIL, contact_id=None)
    assert connector_answers(connector) == {("stale", "unavailable"): 1}


def test_open_circuit_answers_from_the_cache_by_email_without_calling_the_platform(
    connector: WebServer, platform_sandbox
) -> None:
    remember(connector, CONTACT_ID)
    circuit = CircuitBreaker(binary(connector), "platform")
    for _ in range(circuit.failure_threshold):
        circuit.record_failure()
    since = circuit.state().unavailable_since
    assert since is not None
    response, _ = ask(connector, {"email": " Olivia.Brandt@Example.com"})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["stale"] is True
    assert answer["sessions"] == "1"  # the cached value, found by email
    assert STALE.match(answer["data_status"])
    assert platform_sandbox.stats()["total_calls"] == 0
    assert len(connector.queued()) == 1


def test_exhausted_platform_budget_answers_stale_without_calling_the_platform(
    connector: WebServer, platform_sandbox
) -> None:
    remember(connector, CONTACT_ID)
    limiter = RateLimiter(
        binary(connector), "platform", limit=connector.settings.platform_calls_per_second, window_seconds=1
    )
    limiter.pause_for(30)
    response, elapsed = ask(connector, {"email": OLIVIA_EMAIL, "contact_id": CONTACT_ID})
    assert response.status_code == 200, response.text
    assert elapsed < DEADLINE + MARGIN
    assert response.json()["stale"] is True
    assert response.json()["client_id"] == "131451"
    assert platform_sandbox.stats()["total_calls"] == 0
    # Not an outage: the circuit is untouched.
    assert CircuitBreaker(binary(connector), "platform").state().failures == 0
    assert len(connector.queued()) == 1


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: r.update(created_at=1717430400), id="numeric created_at"),
        pytest.param(lambda r: r["invoices"][0].update(balance="1e30"), id="balance 1e30"),
        pytest.param(lambda r: r.update(organization="Ruh Care Inc."), id="organization a string"),
    ],
)
def test_malformed_platform_values_answer_the_last_known_ones_stale_never_a_5xx(
    connector: WebServer, platform_sandbox, change: Callable[[dict], object]
) -> None:
    """Issue 12 item 5: these answered 500 (AttributeError, InvalidOperation) on the old code."""
    [olivia] = [dict(r) for r in load_sample() if r["email"] == OLIVIA_EMAIL]
    olivia["invoices"] = [dict(invoice) for invoice in olivia["invoices"]]
    change(olivia)
    platform_sandbox.add_clients(olivia, check=False)
    remember(connector, CONTACT_ID)
    response, elapsed = ask(connector, {"email": OLIVIA_EMAIL, "contact_id": CONTACT_ID})
    assert response.status_code == 200, response.text
    assert elapsed < DEADLINE + MARGIN
    answer = response.json()
    assert answer["stale"] is True
    assert answer["sessions"] == "1"  # the last known values
    assert STALE.match(answer["data_status"])
    assert connector_answers(connector) == {("stale", "platform_data_invalid"): 1}
    assert len(connector.queued()) == 1  # the worker still syncs (and parks) the contact
    # The platform answered: no failure counts against the circuit.
    assert CircuitBreaker(binary(connector), "platform").state().failures == 0


def test_excluded_email_is_skipped_and_nothing_is_read_or_queued(
    connector: WebServer, platform_sandbox
) -> None:
    response, _ = ask(connector, {"email": EXCLUDED_EMAIL.upper(), "contact_id": CONTACT_ID})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "skipped",
        "reason": "excluded",
        "message": response.json()["message"],
    }
    assert response.json()["message"]
    assert connector.queued() == []
    assert platform_sandbox.stats()["total_calls"] == 0


def test_invalid_email_is_skipped(connector: WebServer) -> None:
    response, _ = ask(connector, {"email": "not an address"})
    assert response.status_code == 200, response.text
    assert response.json()["reason"] == "invalid_email"
    assert connector.queued() == []


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "missing_token"),
        (CONNECTOR_TOKEN + "x", "invalid_token"),
        # The token pasted into every workflow action reads no client data (issue 12 item 8: on the
        # old code it was the connector's token).
        (TRIGGER_TOKEN, "invalid_token"),
    ],
)
def test_missing_or_wrong_token_is_401_and_nothing_is_queued(
    connector: WebServer, platform_sandbox, token: str | None, code: str
) -> None:
    response, _ = ask(connector, {"email": OLIVIA_EMAIL}, token=token)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == code
    assert connector.queued() == []
    assert platform_sandbox.stats()["total_calls"] == 0


@pytest.mark.parametrize(
    "body",
    [{}, {"contact_id": CONTACT_ID}, {"email": "  "}, {"email": OLIVIA_EMAIL, "reply_to": "x@example.com"}],
)
def test_a_body_without_an_email_or_with_unknown_fields_is_400(connector: WebServer, body: dict) -> None:
    response, _ = ask(connector, body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_body"
    assert connector.queued() == []


def test_the_connector_token_does_not_trigger_syncs(connector: WebServer) -> None:
    response = connector.trigger({"email": OLIVIA_EMAIL}, token=CONNECTOR_TOKEN)
    assert response.status_code == 401
    assert connector.queued() == []


@pytest.mark.parametrize(
    ("token", "why"),
    [(None, "is not set"), ("", "is not set"), (TRIGGER_TOKEN, "the same as SYNC_TRIGGER_TOKEN")],
)
def test_without_a_token_of_its_own_the_route_is_disabled_and_the_start_says_so(
    serve_connector: Serve,
    platform_sandbox,
    caplog: pytest.LogCaptureFixture,
    token: str | None,
    why: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="web.connector")
    _, server = serve_connector(SYNC_CONNECTOR_TOKEN=token)
    [line] = [r for r in caplog.records if r.getMessage() == "connector_disabled"]
    assert line.setting == "SYNC_CONNECTOR_TOKEN" and why in line.reason
    for presented in (TRIGGER_TOKEN, CONNECTOR_TOKEN, token):
        response, _ = ask(server, {"email": OLIVIA_EMAIL}, token=presented)
        assert response.status_code == 403, response.text
        assert response.json()["error"]["code"] == "not_configured"
        assert why in response.json()["error"]["message"]
    assert server.trigger({"email": OLIVIA_EMAIL}).status_code == 202  # the other routes are served
    assert platform_sandbox.stats()["total_calls"] == 0
