"""Health, readiness, metrics, request ids, JSON errors and log hygiene, over real HTTP."""

from __future__ import annotations

import logging

import pytest
import requests

from sync_worker import keys
from sync_worker.devtools.localredis import LocalRedis, wait_until
from sync_worker.heartbeat import beat
from sync_worker.logs import JsonFormatter
from tests.fixtures.prometheus import key
from tests.fixtures.web import (
    CLIENT_SECRET,
    TRIGGER_TOKEN,
    WebServer,
    notification,
    serve,
    stop_web,
    web_settings,
)
from web.keys import readiness_probe
from web.metrics import FLUSH_INTERVAL_SECONDS
from web.openapi import build_spec

pytestmark = pytest.mark.integration


def test_healthz_is_200(web_server: WebServer) -> None:
    response = web_server.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_200_with_no_worker_running(web_server: WebServer) -> None:
    """The receiver stores triggers whether workers run or not: no worker must not pull it."""
    ready = web_server.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"redis": "ok"}
    assert ready.json()["workers"]["healthy"] is False  # told, not failed
    assert web_server.redis.pttl(readiness_probe()) > 0  # the write that shows Redis takes them


def test_readyz_fails_when_redis_refuses_writes() -> None:
    server = LocalRedis(persistent=False).start()
    served, web = serve(web_settings(server.url))
    try:
        assert web.get("/readyz").status_code == 200
        web.redis.config_set("min-replicas-to-write", "1")  # answers PING, stores nothing
        refused = web.get("/readyz")
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "redis_refuses_writes"
        assert "NOREPLICAS" in refused.json()["error"]["message"]
        web.redis.config_set("min-replicas-to-write", "0")
        assert web.get("/readyz").status_code == 200
    finally:
        stop_web(served)
        web.redis.close()
        server.cleanup()


def test_workers_health_needs_a_fresh_heartbeat_on_redis_time(web_server: WebServer) -> None:
    missing = web_server.get("/healthz/workers")
    assert missing.status_code == 503
    assert missing.json()["error"]["code"] == "no_worker"

    redis_now = float(web_server.redis.time()[0])
    web_server.redis.set(keys.worker_heartbeat(), str(redis_now - 120), ex=60)
    stale = web_server.get("/healthz/workers")
    assert stale.status_code == 503
    assert stale.json()["workers"]["latest_heartbeat_age_seconds"] >= 120

    beat(web_server.redis, "w@test")
    fresh = web_server.get("/healthz/workers")
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["workers"]["fresh_workers"] == 1


def test_metrics_count_outcomes_rejections_and_latency(web_server: WebServer) -> None:
    web_server.trigger({"email": "client@example.com"})  # queued
    web_server.trigger({"email": "client@example.com"})  # folded
    web_server.trigger({"email": "bad"})  # skipped invalid_email
    web_server.trigger({"email": "client@example.com"}, token="wrong")  # rejected invalid_token
    payload = notification(notification_id="notif_m1")
    web_server.post_webhook(payload)  # queued (webhook)
    web_server.post_webhook(payload)  # duplicate
    web_server.post_webhook(payload, secret="wrong")  # rejected invalid_signature

    samples = web_server.metric_samples()
    expected = {
        key("intercom_sync_web_queued_total", source="manual"): 1,
        key("intercom_sync_web_folded_total", source="manual"): 1,
        key("intercom_sync_web_queued_total", source="webhook"): 1,
        key("intercom_sync_web_skipped_total", reason="invalid_email", source="manual"): 1,
        key("intercom_sync_web_duplicate_total", source="webhook"): 1,
        key("intercom_sync_web_rejected_total", reason="invalid_token"): 1,
        key("intercom_sync_web_rejected_total", reason="invalid_signature"): 1,
        key("intercom_sync_web_accepted_total", route="/v1/sync"): 3,
        key("intercom_sync_web_accepted_total", route="/webhooks/intercom"): 2,
        key("intercom_sync_web_request_duration_seconds_count", route="/v1/sync"): 4,
        key("intercom_sync_web_request_duration_seconds_bucket", route="/webhooks/intercom", le="+Inf"): 3,
    }
    assert {name: samples.get(name) for name in expected} == expected


def test_metrics_are_shared_through_redis(web_server: WebServer) -> None:
    web_server.trigger({"email": "client@example.com"})
    # What any other web process reads: the hash in Redis, written by this process's flusher
    # within its interval (no /metrics call here to force it).
    wait_until(
        lambda: web_server.redis.hgetall("intercom-sync:web-metrics:queued") == {'{"source":"manual"}': "1"},
        10 * FLUSH_INTERVAL_SECONDS,
        message="the queued count in Redis",
    )


def test_sane_incoming_request_id_is_kept(web_server: WebServer) -> None:
    response = web_server.get("/healthz", headers={"X-Request-Id": "lb-1234.abc:9"})
    assert response.headers["X-Request-Id"] == "lb-1234.abc:9"


@pytest.mark.parametrize("incoming", ["has spaces", "x" * 200, "a\tb", ""])
def test_unsafe_incoming_request_id_is_replaced(web_server: WebServer, incoming: str) -> None:
    response = web_server.get("/healthz", headers={"X-Request-Id": incoming})
    assert response.headers["X-Request-Id"] != incoming
    assert len(response.headers["X-Request-Id"]) == 32


def test_every_answer_has_a_fresh_request_id(web_server: WebServer) -> None:
    ids = {web_server.get("/healthz").headers["X-Request-Id"] for _ in range(3)}
    assert len(ids) == 3


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/nowhere", 404, "not_found"),
        ("DELETE", "/healthz", 405, "method_not_allowed"),
        ("GET", "/webhooks/intercom", 405, "method_not_allowed"),
    ],
)
def test_flask_errors_are_json(web_server: WebServer, method: str, path: str, status: int, code: str) -> None:
    response = requests.request(
        method, f"{web_server.url}{path}", headers={"X-Request-Id": "req-1"}, timeout=5
    )
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {"code": code, "message": response.json()["error"]["message"]},
        "request_id": "req-1",
    }
    assert response.json()["error"]["message"]


def test_oversized_trigger_is_a_json_413(web_server: WebServer) -> None:
    response = requests.post(
        f"{web_server.url}/v1/sync",
        data=b"{" + b" " * 20000 + b"}",
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}", "Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_logs_carry_the_request_id_and_no_client_data_or_secrets(
    web_server: WebServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    requests.post(
        f"{web_server.url}/v1/sync",
        json={"email": "private.person@example.com", "contact_id": "c0ffee"},
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}", "X-Request-Id": "trace-42"},
        timeout=5,
    )
    web_server.post_webhook(notification(email="another.person@example.com"), secret="wrong")
    web_server.trigger({"email": "x"}, token="wrong-token-value")
    lines = [JsonFormatter().format(record) for record in caplog.records]
    request_lines = [line for line in lines if '"event": "request"' in line]
    assert any(
        '"request_id": "trace-42"' in line and '"contact_id": "c0ffee"' in line for line in request_lines
    )
    assert len(request_lines) == 3
    text = "\n".join(lines)
    for secret_or_data in (
        "private.person",
        "another.person",
        TRIGGER_TOKEN,
        CLIENT_SECRET,
        "wrong-token-value",
    ):
        assert secret_or_data not in text


def test_openapi_document_describes_the_routes(web_server: WebServer) -> None:
    response = web_server.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.1")
    for path in (
        "/webhooks/intercom",
        "/v1/sync",
        "/v1/connector/client-attributes",
        "/v1/admin/dead-letters",
        "/v1/admin/dead-letters/{entry_id}/retry",
        "/healthz",
        "/readyz",
        "/healthz/workers",
        "/metrics",
    ):
        assert path in spec["paths"], path
    assert set(spec["components"]["securitySchemes"]) == {
        "triggerToken",
        "connectorToken",
        "adminToken",
        "referralToken",
        "intercomSignature",
    }
    # Which token each route takes: the connector its own, never the trigger token (issue 12 item 8).
    operations = {path: next(iter(item.values())) for path, item in spec["paths"].items()}
    assert operations["/v1/sync"]["security"] == [{"triggerToken": []}]
    assert operations["/v1/connector/client-attributes"]["security"] == [{"connectorToken": []}]
    assert spec["paths"]["/webhooks/intercom"]["post"]["security"] == [{"intercomSignature": []}]
    assert spec["security"] == []  # an operation without its own takes none (health, metrics)
    assert spec == build_spec(web_server.settings)  # what the fuzz test generates from
