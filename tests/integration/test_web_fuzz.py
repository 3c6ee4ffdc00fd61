"""Property-based fuzzing of the receiver from its own OpenAPI description (schemathesis).

Every operation served gets up to ``MAX_EXAMPLES`` generated requests (valid and
invalid), sent over real HTTP with valid credentials (the webhook body signed),
so the generated data reaches validation, screening and the queue. Asserted for
every request: no 5xx (Redis is up, a worker heartbeat is fresh), the status, content type and body are the
ones documented, and a request answered ``queued`` left its message on the
realtime queue (``folded``: the contact's pending marker names its task).

A second, targeted property sends signed, well-formed conversation notifications
with arbitrary contact ids, addresses and author types: each is stored (its
message carries the contact id) or skipped with a reason, never refused.
"""

from __future__ import annotations

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
#: Described for its owner to implement; fuzzed once the app serves it.
NOT_YET_SERVED = "/v1/connector/client-attributes"


class CredentialedSession(requests.Session):
    """Adds the right bearer token, and signs webhook bodies, like a legitimate caller would."""

    def send(self, request: requests.PreparedRequest, **kwargs):  # type: ignore[override]
        path = urlsplit(request.url or "").path
        if path.startswith("/v1/admin/"):
            request.headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        elif path.startswith("/v1/"):
            request.headers["Authorization"] = f"Bearer {TRIGGER_TOKEN}"
        elif path == "/webhooks/intercom" and request.method == "POST":
            body = request.body or b""
            request.headers["X-Hub-Signature"] = sign(
                body.encode() if isinstance(body, str) else body, CLIENT_SECRET
            )
        return super().send(request, **kwargs)


def _receiver_schema():
    """The description the app serves (``build_spec`` is what ``/openapi.json`` returns), minus
    the routes this build does not serve yet."""
    settings_ = web_settings("redis://127.0.0.1:1/0")  # never connected: only the routes are read
    served = {rule.rule for rule in create_app(settings_).url_map.iter_rules()}
    loaded = schemathesis.openapi.from_dict(build_spec(settings_))
    if NOT_YET_SERVED not in served:
        loaded = loaded.exclude(path=NOT_YET_SERVED)
    return loaded


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
