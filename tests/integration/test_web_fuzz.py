"""Property-based fuzzing of the receiver from its own OpenAPI description (schemathesis).

Every operation served gets up to ``MAX_EXAMPLES`` generated requests (valid and
invalid), sent over real HTTP with valid credentials (the webhook body signed),
so the generated data reaches validation, screening and the queue. Asserted for
every request: no 5xx (Redis is up, a worker heartbeat is fresh), the status, content type and body are the
ones documented, and a request answered ``queued`` left its message on the
realtime queue (``folded``: the contact's pending marker names its task), and a
data connector answer left the contact's sync waiting. Every route described is
served (the description cannot promise a route the app lacks).

A second, targeted property sends signed, well-formed conversation notifications
with arbitrary contact ids, addresses and author types: each is stored (its
message carries the contact id) or skipped with a reason, never refused.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from sync_worker import keys
from tests.fixtures.web import (
    ADMIN_TOKEN,
    CLIENT_SECRET,
    CONNECTOR_TOKEN,
    EXCLUDED_EMAIL,
    TRIGGER_TOKEN,
    WebServer,
    notification,
    web_settings,
)
from web import create_app
from web.auth import sign
from web.openapi import build_spec

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
CONNECTOR = "/v1/connector/client-attributes"


class CredentialedSession(requests.Session):
    """Adds the right bearer token, and signs webhook bodies, like a legitimate caller would."""

    def send(self, request: requests.PreparedRequest, **kwargs):  # type: ignore[override]
        path = urlsplit(request.url or "").path
        if path.startswith("/v1/admin/"):
            request.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        elif path == CONNECTOR:
            request.headers["Authorization"] = f"Bearer {CONNECTOR_TOKEN}"
        elif path.startswith("/v1/"):
            request.headers["Authorization"] = f"Bearer {TRIGGER_TOKEN}"
        elif path == "/webhooks/intercom" and request.method == "POST":
            body = request.body or b""
            request.headers["X-Hub-Signature"] = sign(
                body.encode() if isinstance(body, str) else body, CLIENT_SECRET
            )
        return super().send(request, **kwargs)


def _receiver_schema():
    """The description the app serves (``build_spec`` is what ``/openapi.json`` returns); every
    described route must be served (a flask ``<path:x>`` is an OpenAPI ``{x}``)."""
    settings_ = web_settings("redis://127.0.0.1:1/0")  # never connected: only the routes are read
    served = {
        re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for rule in create_app(settings_).url_map.iter_rules()
    }
    described = build_spec(settings_)
    missing = set(described["paths"]) - served
    assert not missing, f"described but not served: {missing}"
    return schemathesis.openapi.from_dict(described)


schema = _receiver_schema()


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with CredentialedSession() as credentialed:
        yield credentialed


def assert_stored(server: WebServer, answer: dict) -> None:
    """A ``queued`` answer's task is on the realtime queue; a ``folded`` one's is the contact's pending sync."""
    task_ids = {message["task_id"] for message in server.queued()}
    if answer["status"] == "queued":
        assert answer["task_id"] in task_ids, "answered queued but no message on sync.realtime"
    elif answer["status"] == "folded" and "contact_key" in answer:
        assert server.redis.get(keys.pending(answer["contact_key"])) == answer["task_id"]
        assert answer["task_id"] in task_ids


def test_the_data_connector_route_is_fuzzed() -> None:
    assert CONNECTOR in {result.ok().path for result in schema.get_all_operations()}


def assert_connector_stored(server: WebServer, body: dict) -> None:
    """A connector answer with values left the contact's sync waiting (its pending marker's task is queued)."""
    contact_key = keys.contact_key(body.get("contact_id"), body["email"])
    task_id = server.redis.get(keys.pending(contact_key))
    assert task_id is not None, "connector answered but stored no sync"
    assert task_id in {message["task_id"] for message in server.queued()}


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_every_acceptance_is_stored(case, web_server: WebServer, session) -> None:
    web_server.redis.set(keys.worker_heartbeat(), str(time.time()), ex=60)  # a worker is up
    response = case.call(base_url=web_server.url, session=session, timeout=10)
    case.validate_response(response, checks=CHECKS)
    if response.status_code in (200, 202) and response.headers.get("Content-Type") == "application/json":
        answer = response.json()
        if isinstance(answer, dict) and answer.get("status") in ("queued", "folded"):
            assert_stored(web_server, answer)
        if case.path == CONNECTOR and isinstance(answer, dict) and "stale" in answer:
            assert_connector_stored(web_server, case.body)


contact_ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,40}", fullmatch=True)
addresses = st.one_of(st.emails(), st.text(max_size=60), st.none(), st.just(EXCLUDED_EMAIL.upper()))


@given(
    contact_id=st.one_of(contact_ids, st.none()),
    email=addresses,
    topic=st.sampled_from(["conversation.user.created", "conversation.user.replied"]),
    author_type=st.sampled_from(["user", "lead", "admin", "bot"]),
)
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_signed_conversations_are_stored_or_skipped_with_a_reason(
    web_server: WebServer, contact_id: str | None, email: str | None, topic: str, author_type: str
) -> None:
    payload = notification(topic=topic, contact_id=contact_id, email=email)
    payload["data"]["item"]["source"]["author"]["type"] = author_type
    response = web_server.post_webhook(payload)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] in {"queued", "folded", "skipped"}, answer
    if answer["status"] == "skipped":
        assert answer["reason"] in {"invalid_email", "excluded", "no_contact"}
        assert answer["message"]
        return
    [message] = [m for m in web_server.queued() if m["task_id"] == answer["task_id"]]
    assert message["kwargs"]["contact_id"] == (contact_id or None)
    assert message["kwargs"]["trigger"] == "webhook"
