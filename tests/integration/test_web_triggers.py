"""``POST /v1/sync`` over real HTTP: auth, validation, queued/folded, skips."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.fixtures.web import (
    EXCLUDED_EMAIL,
    TRIGGER_TOKEN,
    WebServer,
    serve,
    stop_web,
    web_settings,
)

pytestmark = pytest.mark.integration


def error_of(response: requests.Response) -> dict[str, str]:
    body = response.json()
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert body["error"]["message"]
    return body["error"]


def test_missing_token_is_401(web_server: WebServer) -> None:
    response = web_server.trigger({"email": "client@example.com"}, token=None)
    assert response.status_code == 401
    assert error_of(response)["code"] == "missing_token"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert web_server.queued() == []


def test_wrong_token_is_401(web_server: WebServer) -> None:
    response = web_server.trigger({"email": "client@example.com"}, token=TRIGGER_TOKEN + "x")
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_token"
    assert TRIGGER_TOKEN not in response.text
    assert web_server.queued() == []


def test_unset_token_refuses_every_call(redis_url: str) -> None:
    served, server = serve(web_settings(redis_url, SYNC_TRIGGER_TOKEN=None))
    try:
        for token in (None, "", "anything"):
            response = server.trigger({"email": "client@example.com"}, token=token)
            assert response.status_code == 403
            assert error_of(response)["code"] == "not_configured"
            assert "SYNC_TRIGGER_TOKEN" in error_of(response)["message"]
        assert server.queued() == []
    finally:
        stop_web(served)


def test_queued_then_folded_with_one_message(web_server: WebServer) -> None:
    first = web_server.trigger({"email": "Client@Example.com"})
    second = web_server.trigger({"email": "client@example.com", "reply_to": "other@example.com"})
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "queued"
    assert first.json()["contact_key"] == "email:client@example.com"
    assert "expected_delay_seconds" in first.json()
    assert second.status_code == 202
    assert second.json()["status"] == "folded"
    assert second.json()["task_id"] == first.json()["task_id"]
    [message] = web_server.queued()
    assert message["task_id"] == first.json()["task_id"]
    assert message["kwargs"]["email"] == "Client@Example.com"
    assert message["kwargs"]["trigger"] == "manual"


def test_contact_id_alone_is_queued_under_the_id(web_server: WebServer) -> None:
    response = web_server.trigger({"contact_id": "6650f0c2a1b2c3d4e5f60718"})
    assert response.status_code == 202, response.text
    assert response.json()["contact_key"] == "id:6650f0c2a1b2c3d4e5f60718"
    [message] = web_server.queued()
    assert message["kwargs"]["contact_id"] == "6650f0c2a1b2c3d4e5f60718"


def test_excluded_email_is_skipped_with_the_reason(web_server: WebServer) -> None:
    response = web_server.trigger({"email": f"  {EXCLUDED_EMAIL.upper()} "})
    assert response.status_code == 200
    assert response.json()["status"] == "skipped"
    assert response.json()["reason"] == "excluded"
    assert web_server.queued() == []


def test_excluded_reply_to_is_skipped(web_server: WebServer) -> None:
    response = web_server.trigger({"contact_id": "abc123", "reply_to": EXCLUDED_EMAIL})
    assert response.status_code == 200
    assert response.json()["reason"] == "excluded"
    assert web_server.queued() == []


def test_invalid_email_is_skipped_with_the_reason(web_server: WebServer) -> None:
    response = web_server.trigger({"email": "no-at-sign.example.com"})
    assert response.status_code == 200
    assert response.json() == {
        "status": "skipped",
        "reason": "invalid_email",
        "message": "Invalid email address: no-at-sign.example.com",
    }
    assert web_server.queued() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "email or a contact_id"),
        ({"email": ""}, "email or a contact_id"),
        ({"email": "a@example.com", "extra": 1}, "extra"),
        ({"email": 5}, "email"),
        ({"contact_id": "has spaces"}, "contact_id"),
        ([], "body"),
    ],
)
def test_invalid_bodies_are_400_naming_the_problem(web_server: WebServer, body: object, field: str) -> None:
    response = web_server.trigger(body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_body"
    assert field in error["message"]
    assert web_server.queued() == []


def test_malformed_json_is_400(web_server: WebServer) -> None:
    response = requests.post(
        f"{web_server.url}/v1/sync",
        data=b"{email: nope}",
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert error_of(response)["code"] == "malformed_json"


def test_form_body_is_415(web_server: WebServer) -> None:
    response = requests.post(
        f"{web_server.url}/v1/sync",
        data={"email": "client@example.com"},
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 415
    assert error_of(response)["code"] == "unsupported_media_type"


def test_get_is_405_with_a_json_error(web_server: WebServer) -> None:
    response = web_server.get("/v1/sync")
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def test_concurrent_triggers_queue_one_sync_per_contact(web_server: WebServer) -> None:
    bodies = [{"contact_id": f"c{n % 4}"} for n in range(24)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(web_server.trigger, bodies))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses if r.status_code != 202]
    statuses = [r.json()["status"] for r in responses]
    assert statuses.count("queued") == 4
    assert statuses.count("folded") == 20
    assert sorted(m["kwargs"]["contact_id"] for m in web_server.queued()) == ["c0", "c1", "c2", "c3"]
