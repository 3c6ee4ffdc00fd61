"""The webhook's common case answered before Flask (:mod:`web.fastpath`), over real HTTP.

A webhook with a ``Content-Length`` takes the fast path; the same webhook sent chunked (no
``Content-Length``) is answered by the Flask view: both must answer, store, count and log alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import flask
import pytest
import requests

from tests.fixtures.prometheus import key
from tests.fixtures.web import CLIENT_SECRET, EXCLUDED_EMAIL, WebServer, notification
from web.auth import sign

pytestmark = pytest.mark.integration

ROUTE = "/webhooks/intercom"


def chunked_webhook(server: WebServer, payload: dict, request_id: str) -> requests.Response:
    body = json.dumps(payload).encode()
    return requests.post(
        f"{server.url}{ROUTE}",
        data=iter([body]),  # a generator body: sent chunked, no Content-Length
        headers={
            "Content-Type": "application/json",
            "X-Hub-Signature": sign(body, CLIENT_SECRET),
            "X-Request-Id": request_id,
        },
        timeout=10,
    )


@pytest.fixture(name="flask_dispatches")
def flask_dispatches_fixture() -> Iterator[list[str]]:
    """The paths of the requests Flask dispatched while the test ran (its ``request_started`` signal)."""
    seen: list[str] = []

    def started(_sender: object, **_extra: object) -> None:
        seen.append(flask.request.path)

    flask.request_started.connect(started)
    yield seen
    flask.request_started.disconnect(started)


def access_lines(caplog: pytest.LogCaptureFixture) -> list[dict]:
    fields = ("request_id", "method", "route", "status", "contact_id", "notification_id", "outcome")
    return [
        {name: getattr(record, name) for name in fields} | {"error_code": record.error_code}
        for record in caplog.records
        if record.name == "web.access" and record.getMessage() == "request"
    ]


def test_a_common_webhook_is_answered_without_flask_and_exactly_as_the_view_answers(
    web_server: WebServer, flask_dispatches: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="web.access")
    fast = notification(contact_id="fast01", email="fast@example.com")
    viewed = notification(contact_id="view01", email="view@example.com")

    fast_answer = web_server.post_webhook(fast, headers={"X-Request-Id": "req-fast"})
    assert flask_dispatches == [], "the common case must not go through Flask's dispatch"
    view_answer = chunked_webhook(web_server, viewed, "req-view")
    assert flask_dispatches == [ROUTE]

    for answer, request_id in ((fast_answer, "req-fast"), (view_answer, "req-view")):
        assert answer.status_code == 200, answer.text
        assert answer.headers["Content-Type"] == "application/json"
        assert answer.headers["X-Request-Id"] == request_id
        assert list(answer.json()) == ["status", "task_id"]
        assert answer.json()["status"] == "queued"
    assert [m["task_id"] for m in web_server.queued()] == [
        fast_answer.json()["task_id"],
        view_answer.json()["task_id"],
    ]
    assert [m["kwargs"]["contact_id"] for m in web_server.queued()] == ["fast01", "view01"]

    lines = access_lines(caplog)
    assert [line["request_id"] for line in lines] == ["req-fast", "req-view"]
    common = {"method": "POST", "route": ROUTE, "status": 200, "outcome": "queued", "error_code": None}
    assert lines[0] == common | {
        "request_id": "req-fast",
        "contact_id": "fast01",
        "notification_id": fast["id"],
    }
    assert lines[1] == common | {
        "request_id": "req-view",
        "contact_id": "view01",
        "notification_id": viewed["id"],
    }

    samples = web_server.metric_samples()
    assert samples[key("intercom_sync_web_queued_total", source="webhook")] == 2
    assert samples[key("intercom_sync_web_accepted_total", route=ROUTE)] == 2
    assert samples[key("intercom_sync_web_request_duration_seconds_count", route=ROUTE)] == 2


def test_a_replay_through_the_fast_path_is_a_counted_duplicate(web_server: WebServer) -> None:
    payload = notification(notification_id="notif_fast_twice", contact_id="fast02")
    assert web_server.post_webhook(payload).json()["status"] == "queued"
    again = web_server.post_webhook(payload)
    assert again.json() == {"status": "duplicate", "notification_id": "notif_fast_twice"}
    assert len(web_server.queued()) == 1
    samples = web_server.metric_samples()
    assert samples[key("intercom_sync_web_duplicate_total", source="webhook")] == 1


def test_what_the_fast_path_does_not_answer_goes_to_the_view(
    web_server: WebServer, flask_dispatches: list[str]
) -> None:
    skipped = web_server.post_webhook(notification(email=EXCLUDED_EMAIL))
    assert skipped.json()["status"] == "skipped"
    unsigned = web_server.post_webhook(notification(), secret="not-the-secret")
    assert unsigned.status_code == 401
    assert unsigned.json()["error"]["code"] == "invalid_signature"
    assert flask_dispatches == [ROUTE, ROUTE]
    assert web_server.queued() == []
