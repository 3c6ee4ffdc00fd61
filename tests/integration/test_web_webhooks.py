"""The Intercom webhook route over real HTTP: signature, shape, topics, dedupe, size, queueing."""

from __future__ import annotations

import json

import pytest
import requests

from tests.fixtures.prometheus import key
from tests.fixtures.web import (
    CLIENT_SECRET,
    EXCLUDED_EMAIL,
    MAX_BODY_BYTES,
    WebServer,
    notification,
    serve,
    stop_web,
    web_settings,
)
from web.auth import sign

pytestmark = pytest.mark.integration


def error_code(response: requests.Response) -> str:
    body = response.json()
    assert body["error"]["message"], "every error carries a readable message"
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body["error"]["code"]


def test_head_answers_200_for_intercoms_url_check(web_server: WebServer) -> None:
    response = requests.head(f"{web_server.url}/webhooks/intercom", timeout=5)
    assert response.status_code == 200


def test_signed_conversation_queues_one_sync_with_the_contact(web_server: WebServer) -> None:
    response = web_server.post_webhook(notification(contact_id="6650aa", email="client@example.com"))
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "queued"
    [message] = web_server.queued()
    assert message["task_id"] == response.json()["task_id"]
    assert message["task"] == "sync_worker.tasks.sync_contact"
    assert message["kwargs"]["contact_id"] == "6650aa"
    assert message["kwargs"]["email"] == "client@example.com"
    assert message["kwargs"]["trigger"] == "webhook"


def test_missing_signature_is_401(web_server: WebServer) -> None:
    response = web_server.post_webhook(notification(), secret=None)
    assert response.status_code == 401
    assert error_code(response) == "missing_signature"
    assert web_server.queued() == []


def test_bad_signature_is_401(web_server: WebServer) -> None:
    response = web_server.post_webhook(notification(), secret="not-the-secret")
    assert response.status_code == 401
    assert error_code(response) == "invalid_signature"
    assert "X-Hub-Signature" in response.json()["error"]["message"]
    assert web_server.queued() == []


def test_signature_over_other_bytes_is_401(web_server: WebServer) -> None:
    body = json.dumps(notification()).encode()
    response = web_server.post_webhook(body + b" ", headers={"X-Hub-Signature": sign(body, CLIENT_SECRET)})
    assert response.status_code == 401
    assert error_code(response) == "invalid_signature"


def test_no_client_secret_refuses_every_post(redis_url: str) -> None:
    served, server = serve(web_settings(redis_url, INTERCOM_CLIENT_SECRET=None))
    try:
        response = server.post_webhook(notification())
        assert response.status_code == 403
        assert error_code(response) == "not_configured"
        assert "INTERCOM_CLIENT_SECRET" in response.json()["error"]["message"]
        assert requests.head(f"{server.url}/webhooks/intercom", timeout=5).status_code == 200
        assert server.queued() == []
    finally:
        stop_web(served)


def test_replayed_notification_is_acknowledged_as_duplicate_and_queued_once(web_server: WebServer) -> None:
    payload = notification(notification_id="notif_retry-1")
    first = web_server.post_webhook(payload)
    second = web_server.post_webhook(payload)
    assert first.status_code == 200 and first.json()["status"] == "queued"
    assert second.status_code == 200
    assert second.json()["status"] == "duplicate"
    assert len(web_server.queued()) == 1


def test_ping_is_acknowledged(web_server: WebServer) -> None:
    payload = {
        "type": "notification_event",
        "id": "notif_ping",
        "topic": "ping",
        "data": {"item": {"type": "ping", "message": "Hello from Intercom"}},
    }
    response = web_server.post_webhook(payload)
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "topic": "ping"}
    assert web_server.queued() == []


def test_unsubscribed_topic_is_acknowledged_and_ignored_never_410(web_server: WebServer) -> None:
    response = web_server.post_webhook(notification(topic="conversation.admin.closed"))
    assert response.status_code == 200
    assert response.json() == {"status": "ignored", "topic": "conversation.admin.closed"}
    assert web_server.queued() == []


def test_subscribed_topics_are_configurable(redis_url: str) -> None:
    served, server = serve(web_settings(redis_url, SYNC_WEBHOOK_TOPICS="conversation.admin.closed"))
    try:
        assert (
            server.post_webhook(notification(topic="conversation.admin.closed")).json()["status"] == "queued"
        )
        assert (
            server.post_webhook(notification(topic="conversation.user.created")).json()["status"] == "ignored"
        )
        assert len(server.queued()) == 1
    finally:
        stop_web(served)


def test_oversized_body_is_413(web_server: WebServer) -> None:
    payload = notification()
    payload["padding"] = "x" * (MAX_BODY_BYTES + 10)
    response = web_server.post_webhook(payload)
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"
    assert str(MAX_BODY_BYTES) in response.json()["error"]["message"]


def test_oversized_chunked_body_is_413(web_server: WebServer) -> None:
    def chunks():
        for _ in range(MAX_BODY_BYTES // 1024 + 4):
            yield b" " * 1024

    response = requests.post(
        f"{web_server.url}/webhooks/intercom",
        data=chunks(),
        headers={"Content-Type": "application/json", "X-Hub-Signature": "sha1=00"},
        timeout=10,
    )
    assert response.status_code == 413
    assert error_code(response) == "payload_too_large"


def test_malformed_json_is_400(web_server: WebServer) -> None:
    response = web_server.post_webhook(b'{"type": "notification_event",')
    assert response.status_code == 400
    assert error_code(response) == "malformed_json"
    assert "not valid JSON" in response.json()["error"]["message"]


def test_wrong_shape_is_400_naming_the_field(web_server: WebServer) -> None:
    payload = notification()
    del payload["topic"]
    response = web_server.post_webhook(payload)
    assert response.status_code == 400
    assert error_code(response) == "invalid_body"
    assert "topic" in response.json()["error"]["message"]


def test_conversation_of_the_wrong_shape_is_400(web_server: WebServer) -> None:
    payload = notification()
    payload["data"]["item"]["contacts"] = {"contacts": [{"type": "contact"}]}  # no id
    response = web_server.post_webhook(payload)
    assert response.status_code == 400
    assert error_code(response) == "invalid_body"
    assert "data.item" in response.json()["error"]["message"]
    assert web_server.queued() == []


def test_wrong_content_type_is_415(web_server: WebServer) -> None:
    response = web_server.post_webhook(notification(), headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert error_code(response) == "unsupported_media_type"


def test_excluded_author_is_skipped_and_counted_not_queued(web_server: WebServer) -> None:
    response = web_server.post_webhook(notification(email=EXCLUDED_EMAIL.upper()))
    assert response.status_code == 200
    assert response.json()["status"] == "skipped"
    assert response.json()["reason"] == "excluded"
    assert web_server.queued() == []
    samples = web_server.metric_samples()
    assert samples[key("intercom_sync_web_skipped_total", reason="excluded", source="webhook")] == 1


def test_invalid_email_is_skipped_with_the_reason(web_server: WebServer) -> None:
    response = web_server.post_webhook(notification(email="not-an-address"))
    assert response.status_code == 200
    assert response.json()["reason"] == "invalid_email"
    assert "Invalid email address" in response.json()["message"]
    assert web_server.queued() == []


def test_conversation_without_a_contact_is_skipped(web_server: WebServer) -> None:
    payload = notification(contact_id=None, email=None)
    payload["data"]["item"]["source"]["author"] = {"type": "admin", "id": "991", "email": "agent@example.org"}
    response = web_server.post_webhook(payload)
    assert response.status_code == 200
    assert response.json()["reason"] == "no_contact"
    assert web_server.queued() == []


def test_admin_authored_conversation_syncs_the_listed_contact_by_id(web_server: WebServer) -> None:
    payload = notification(topic="conversation.user.replied", contact_id="77aa", email=None)
    payload["data"]["item"]["source"]["author"] = {"type": "admin", "id": "991", "email": "agent@example.org"}
    response = web_server.post_webhook(payload)
    assert response.json()["status"] == "queued", response.text
    [message] = web_server.queued()
    assert message["kwargs"]["contact_id"] == "77aa"
    assert message["kwargs"]["email"] is None
    assert message["kwargs"]["author_email"] == "agent@example.org"


def test_second_notification_for_a_waiting_contact_is_folded(web_server: WebServer) -> None:
    first = web_server.post_webhook(notification(contact_id="6650bb"))
    second = web_server.post_webhook(notification(contact_id="6650bb", topic="conversation.user.replied"))
    assert first.json()["status"] == "queued"
    assert second.json()["status"] == "folded"
    assert second.json()["task_id"] == first.json()["task_id"]
    assert len(web_server.queued()) == 1


def test_a_store_that_fails_half_way_is_503_and_its_retry_is_queued(web_server: WebServer) -> None:
    web_server.redis.set("sync.realtime", "not a list")  # the message push fails inside the script
    payload = notification(notification_id="notif_half", contact_id="6650dd")
    failed = web_server.post_webhook(payload)
    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "queue_unavailable"
    web_server.redis.delete("sync.realtime")

    # Intercom's retry: neither a duplicate nor folded into a marker without a message.
    retried = web_server.post_webhook(payload)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] == "queued"
    [message] = web_server.queued()
    assert message["task_id"] == retried.json()["task_id"]
    assert web_server.post_webhook(payload).json()["status"] == "duplicate"


def test_a_replayed_skipped_notification_is_a_duplicate(web_server: WebServer) -> None:
    payload = notification(notification_id="notif_skip_twice", email=EXCLUDED_EMAIL)
    assert web_server.post_webhook(payload).json()["status"] == "skipped"
    assert web_server.post_webhook(payload).json()["status"] == "duplicate"
    assert web_server.queued() == []
