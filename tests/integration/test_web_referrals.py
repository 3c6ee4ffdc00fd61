"""``POST /webhooks/referrals`` over real HTTP: the token, the body's reasons, stored before the
200 (the message on the realtime queue), deduplicated, 503 when Redis cannot be reached."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from sync_worker.devtools.localredis import LocalRedis
from sync_worker.keys import contact_key, pending
from tests.fixtures.web import EXCLUDED_EMAIL, MAX_BODY_BYTES, WebServer, serve, stop_web, web_settings
from web.openapi import build_spec
from web.referrals import ROUTE, TOKEN_HEADER

pytestmark = pytest.mark.integration

REFERRAL_TOKEN = "referral-token-for-tests"
#: Intercom's and the program's deliveries time out within seconds: a refusal must come well before.
REFUSAL_BOUND_SECONDS = 2.0


def referral_settings(redis_url: str, **overrides: Any):
    values = {"SYNC_INTEGRATIONS": "clients,referral_leads", "REFERRAL_WEBHOOK_TOKEN": REFERRAL_TOKEN}
    return web_settings(redis_url, **{**values, **overrides})


@pytest.fixture(scope="module")
def shared_receiver(redis_server) -> Iterator[WebServer]:
    served, server = serve(referral_settings(f"redis://127.0.0.1:{redis_server.port}/0"))
    yield server
    stop_web(served)
    server.redis.close()


@pytest.fixture
def receiver(shared_receiver: WebServer) -> WebServer:
    shared_receiver.metrics.flush()
    shared_receiver.redis.flushdb()
    return shared_receiver


def post(
    server: WebServer,
    body: Any,
    *,
    token: str | None = REFERRAL_TOKEN,
    content_type: str = "application/json",
) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": content_type}
    if token is not None:
        headers[TOKEN_HEADER] = token
    return requests.post(f"{server.url}{ROUTE}", data=data, headers=headers, timeout=10)


def error_of(response: requests.Response) -> dict[str, str]:
    body = response.json()
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert body["error"]["message"]
    return body["error"]


def test_a_join_stores_one_referral_sync_before_the_200(receiver: WebServer) -> None:
    response = post(
        receiver, {"event": "user.join", "id": 5001, "email": "ann@example.com", "campaign_id": 12}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "queued"
    assert answer["source_id"] == "5001"
    [message] = receiver.queued()
    assert message["task_id"] == answer["task_id"]
    kwargs = message["kwargs"]
    assert kwargs["integration"] == "referral_leads"
    assert kwargs["source_id"] == "5001"
    assert kwargs["email"] == "ann@example.com"
    assert kwargs["trigger"] == "webhook"
    assert kwargs["contact_id"] is None
    key = contact_key(None, None, "referral_leads", "5001")
    assert receiver.redis.get(pending(key)) == answer["task_id"]


def test_the_user_is_named_by_id_else_code_else_email(receiver: WebServer) -> None:
    by_code = post(receiver, {"code": "AB12CD", "email": "bo@example.com"}).json()
    by_email = post(receiver, {"email": "Cy@Example.com"}).json()
    by_digits = post(receiver, {"id": "5003", "code": "ZZ99"}).json()
    assert by_code["source_id"] == "code:AB12CD"
    assert by_email["source_id"] is None
    assert by_digits["source_id"] == "5003"
    kwargs = [message["kwargs"] for message in receiver.queued()]
    assert [(k["source_id"], k["email"]) for k in kwargs] == [
        ("code:AB12CD", "bo@example.com"),
        (None, "Cy@Example.com"),
        ("5003", None),
    ]
    assert all(k["integration"] == "referral_leads" for k in kwargs)


def test_the_same_join_delivered_twice_stores_one(receiver: WebServer) -> None:
    body = {"event": "user.join", "id": 5002}
    first = post(receiver, body)
    second = post(receiver, body)
    assert first.json()["status"] == "queued"
    assert second.status_code == 200
    assert second.json() == {"status": "duplicate", "source_id": "5002"}
    assert len(receiver.queued()) == 1
    # Another event about the same user is not a duplicate: it folds into the waiting sync.
    other = post(receiver, {"event": "lead.created", "id": 5002})
    assert other.json()["status"] == "folded"
    assert other.json()["task_id"] == first.json()["task_id"]
    assert len(receiver.queued()) == 1


def test_concurrent_deliveries_of_one_join_store_one(receiver: WebServer) -> None:
    body = {"event": "user.join", "id": 5010}
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = [r.json()["status"] for r in pool.map(lambda _: post(receiver, body), range(8))]
    assert answers.count("queued") == 1
    assert answers.count("duplicate") == 7
    assert len(receiver.queued()) == 1


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        (REFERRAL_TOKEN + "x", "invalid_token"),
        ("x", "invalid_token"),
    ],
)
def test_a_missing_or_wrong_token_is_401(receiver: WebServer, token: str | None, code: str) -> None:
    response = post(receiver, {"id": 5001}, token=token)
    assert response.status_code == 401
    assert error_of(response)["code"] == code
    assert REFERRAL_TOKEN not in response.text
    assert receiver.queued() == []


def test_a_bearer_token_is_not_the_header(receiver: WebServer) -> None:
    response = requests.post(
        f"{receiver.url}{ROUTE}",
        json={"id": 5001},
        headers={"Authorization": f"Bearer {REFERRAL_TOKEN}"},
        timeout=10,
    )
    assert response.status_code == 401
    assert error_of(response)["code"] == "missing_token"
    assert TOKEN_HEADER in error_of(response)["message"]


def test_unset_token_refuses_every_call(redis_url: str) -> None:
    served, server = serve(referral_settings(redis_url, REFERRAL_WEBHOOK_TOKEN=None))
    try:
        for token in (None, "", "anything"):
            response = post(server, {"id": 5001}, token=token)
            assert response.status_code == 403
            assert error_of(response)["code"] == "not_configured"
            assert "REFERRAL_WEBHOOK_TOKEN" in error_of(response)["message"]
        assert server.queued() == []
    finally:
        stop_web(served)


def test_the_route_is_served_only_when_the_integration_runs(redis_url: str) -> None:
    served, server = serve(web_settings(redis_url, REFERRAL_WEBHOOK_TOKEN=REFERRAL_TOKEN))
    try:
        response = post(server, {"id": 5001})
        assert response.status_code == 404
        assert server.queued() == []
    finally:
        stop_web(served)


@pytest.mark.parametrize(
    "body",
    [{}, {"event": "user.join"}, {"id": None, "code": "", "email": "  "}, {"campaign_id": 12, "name": "Ann"}],
)
def test_a_body_naming_no_user_is_400_with_the_reason(receiver: WebServer, body: dict) -> None:
    response = post(receiver, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "no_user"
    assert "id" in error["message"] and "code" in error["message"] and "email" in error["message"]
    assert receiver.queued() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "five"}, "id"),
        ({"id": 0}, "id"),
        ({"id": True}, "id"),
        ({"code": "has spaces"}, "code"),
        ({"email": 5}, "email"),
        ({"id": 5001, "campaign_id": "x"}, "campaign_id"),
        ([5001], "body"),
    ],
)
def test_a_field_of_the_wrong_type_is_400_naming_it(receiver: WebServer, body: object, field: str) -> None:
    response = post(receiver, body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_body"
    assert error["message"].startswith(field)
    assert receiver.queued() == []


def test_malformed_json_oversized_and_wrong_type_are_refused(receiver: WebServer) -> None:
    assert error_of(post(receiver, b"{not json"))["code"] == "malformed_json"
    big = json.dumps({"id": 5001, "note": "x" * MAX_BODY_BYTES}).encode()
    oversized = post(receiver, big)
    assert oversized.status_code == 413
    assert error_of(oversized)["code"] == "payload_too_large"
    wrong = post(receiver, {"id": 5001}, content_type="text/plain")
    assert wrong.status_code == 415
    assert receiver.queued() == []


def test_an_excluded_address_is_skipped_with_the_reason(receiver: WebServer) -> None:
    response = post(receiver, {"id": 5004, "email": EXCLUDED_EMAIL.upper()})
    assert response.status_code == 200
    assert response.json()["status"] == "skipped"
    assert response.json()["reason"] == "excluded"
    assert receiver.queued() == []


def test_an_invalid_address_is_skipped_only_when_it_alone_names_the_user(receiver: WebServer) -> None:
    alone = post(receiver, {"email": "no-at-sign.example.com"})
    assert alone.json()["status"] == "skipped"
    assert alone.json()["reason"] == "invalid_email"
    with_id = post(receiver, {"id": 5005, "email": "no-at-sign.example.com"})
    assert with_id.json()["status"] == "queued"
    [message] = receiver.queued()
    assert message["kwargs"]["source_id"] == "5005"
    assert message["kwargs"]["email"] is None  # the worker reads the user's own address


def test_a_store_that_fails_half_way_is_503_and_its_retry_is_stored(receiver: WebServer) -> None:
    receiver.redis.set("sync.realtime", "not a list")  # the message push fails inside the script
    body = {"event": "user.join", "id": 5006}
    failed = post(receiver, body)
    assert failed.status_code == 503
    assert error_of(failed)["code"] == "queue_unavailable"
    assert int(failed.headers["Retry-After"]) > 0
    receiver.redis.delete("sync.realtime")
    retried = post(receiver, body)  # no idempotency key was set by the failed store
    assert retried.json()["status"] == "queued"
    [message] = receiver.queued()
    assert message["task_id"] == retried.json()["task_id"]
    assert post(receiver, body).json()["status"] == "duplicate"


def test_redis_down_is_503_in_time_then_stored_again() -> None:
    own = LocalRedis(persistent=False).start()
    served, server = serve(referral_settings(own.url))
    try:
        own.stop()
        started = time.monotonic()
        response = post(server, {"id": 5007})
        took = time.monotonic() - started
        assert response.status_code == 503
        assert took < REFUSAL_BOUND_SECONDS
        assert error_of(response)["code"] == "queue_unavailable"
        assert "nothing was stored" in error_of(response)["message"]
        own.start()
        again = post(server, {"id": 5007})
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "queued"
        assert len(server.queued()) == 1
    finally:
        stop_web(served)
        own.cleanup()


def test_the_route_is_in_the_receivers_openapi(receiver: WebServer) -> None:
    spec = receiver.get("/openapi.json").json()
    operation = spec["paths"][ROUTE]["post"]
    assert operation["security"] == [{"referralToken": []}]
    assert set(operation["responses"]) >= {"200", "400", "401", "403", "413", "415", "503"}
    scheme = spec["components"]["securitySchemes"]["referralToken"]
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": TOKEN_HEADER}


class TokenSession(requests.Session):
    """Adds the referral program's header, as the program would."""

    def send(self, request: requests.PreparedRequest, **kwargs):  # type: ignore[override]
        request.headers[TOKEN_HEADER] = REFERRAL_TOKEN
        return super().send(request, **kwargs)


#: The receiver's own description with the integration running, the referral route only.
referral_schema = schemathesis.openapi.from_dict(
    build_spec(referral_settings("redis://127.0.0.1:1/0"))  # never connected: only the routes are read
).include(path=ROUTE)


@referral_schema.parametrize()
@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_fuzzed_bodies_are_answered_as_described_and_every_acceptance_stored(
    case, receiver: WebServer
) -> None:
    with TokenSession() as session:
        response = case.call(base_url=receiver.url, session=session, timeout=10)
    case.validate_response(
        response,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
    answered_json = response.headers.get("Content-Type") == "application/json"
    if case.method == "POST" and response.status_code == 200 and answered_json:
        answer = response.json()
        if answer["status"] in ("queued", "folded"):
            assert answer["task_id"] in {m["task_id"] for m in receiver.queued()}
