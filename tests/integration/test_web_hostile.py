"""Hostile traffic against the receiver as deployed (``web.serve``, ``processes.web_argv``), then proof it is fine.

One battery of bad requests, each answered with its documented status and a JSON
error whose code and message say what was wrong; none leaves anything on the
queue. Afterwards the same server is healthy: ``/healthz`` answers, a signed
webhook and a trigger are queued, and ``/metrics`` counts every refusal by its
reason. The per-route tests (``test_web_webhooks.py``, ``test_web_triggers.py``)
cover each case in detail against an in-process server; this one shows they
hold together under the real server, in one process lifetime.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
import requests

from sync_worker.devtools.localredis import wait_until
from tests.fixtures.deployed import deployed_web
from tests.fixtures.web import (
    CLIENT_SECRET,
    TRIGGER_TOKEN,
    decode_message,
    notification,
    web_settings,
)
from web.auth import sign

pytestmark = pytest.mark.integration

MAX_BODY_BYTES = 8 * 1024


@pytest.fixture
def deployed(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """The receiver's server serving ``web:create_app()`` from the environment, as the README runs it."""
    settings = web_settings(redis_url)
    env = {
        "REDIS_URL": redis_url,
        "INTERCOM_CLIENT_SECRET": CLIENT_SECRET,
        "SYNC_TRIGGER_TOKEN": TRIGGER_TOKEN,
        "SYNC_WEBHOOK_MAX_BODY_BYTES": str(settings.webhook_max_body_bytes),
    }
    with deployed_web(env, tmp_path) as url:
        yield url


def _post(url: str, path: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{url}{path}", data=body, headers=headers, timeout=10)


def _signed(body: bytes, **extra: str) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-Hub-Signature": sign(body, CLIENT_SECRET), **extra}


def _hostile_requests(url: str) -> list[tuple[str, requests.Response, int, str]]:
    """(what, answer, expected status, expected error code) for each bad request."""
    good = json.dumps(notification(notification_id="notif_hostile")).encode()
    oversized = json.dumps({**notification(), "padding": "x" * (MAX_BODY_BYTES * 2)}).encode()
    webhook, trigger = "/webhooks/intercom", "/v1/sync"
    bearer = {"Content-Type": "application/json", "Authorization": f"Bearer {TRIGGER_TOKEN}"}
    email = json.dumps({"email": "client@example.com"}).encode()
    return [
        (
            "missing signature",
            _post(url, webhook, good, {"Content-Type": "application/json"}),
            401,
            "missing_signature",
        ),
        (
            "bad signature",
            _post(
                url,
                webhook,
                good,
                {"Content-Type": "application/json", "X-Hub-Signature": "sha1=" + "0" * 40},
            ),
            401,
            "invalid_signature",
        ),
        ("oversized body", _post(url, webhook, oversized, _signed(oversized)), 413, "payload_too_large"),
        ("malformed JSON", _post(url, webhook, b"{not json", _signed(b"{not json")), 400, "malformed_json"),
        (
            "wrong content type",
            _post(url, webhook, good, {**_signed(good), "Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
        ),
        (
            "trigger without token",
            _post(url, trigger, email, {"Content-Type": "application/json"}),
            401,
            "missing_token",
        ),
        (
            "trigger with a wrong token",
            _post(url, trigger, email, {**bearer, "Authorization": "Bearer not-the-token"}),
            401,
            "invalid_token",
        ),
        (
            "trigger with unknown fields",
            _post(url, trigger, b'{"emial": "a@b.co"}', bearer),
            400,
            "invalid_body",
        ),
    ]


def test_hostile_requests_are_refused_with_reasons_and_the_server_stays_healthy(
    deployed: str, redis_url: str
) -> None:
    client = redis_lib.Redis.from_url(redis_url)
    answers = _hostile_requests(deployed)
    for what, response, status, code in answers:
        assert response.status_code == status, (what, response.text)
        assert response.headers["Content-Type"].startswith("application/json"), what
        body = response.json()
        assert body["error"]["code"] == code, (what, body)
        assert len(body["error"]["message"]) > 10, (what, body)  # a sentence, not a bare code
        assert body["request_id"] == response.headers["X-Request-Id"], what
    assert client.llen("sync.realtime") == 0  # nothing refused was stored

    replayed = notification(notification_id="notif_twice", contact_id="6650ee")
    raw = json.dumps(replayed).encode()
    first = _post(deployed, "/webhooks/intercom", raw, _signed(raw))
    again = _post(deployed, "/webhooks/intercom", raw, _signed(raw))
    unknown_topic = json.dumps(notification(topic="contact.user.tag.created")).encode()
    ignored = _post(deployed, "/webhooks/intercom", unknown_topic, _signed(unknown_topic))
    assert (first.status_code, first.json()["status"]) == (200, "queued"), first.text
    assert (again.status_code, again.json()["status"]) == (200, "duplicate"), again.text
    assert ignored.status_code == 200, ignored.text  # acknowledged, never 410 (that unsubscribes)

    assert requests.get(f"{deployed}/healthz", timeout=5).status_code == 200
    trigger = requests.post(
        f"{deployed}/v1/sync",
        json={"email": "client@example.com"},
        headers={"Authorization": f"Bearer {TRIGGER_TOKEN}"},
        timeout=10,
    )
    assert trigger.status_code == 202, trigger.text
    queued = [decode_message(raw) for raw in reversed(client.lrange("sync.realtime", 0, -1))]
    assert [(m["kwargs"]["contact_id"], m["kwargs"]["email"]) for m in queued] == [
        ("6650ee", "client@example.com"),
        (None, "client@example.com"),
    ]

    expected = Counter(code for _what, _response, _status, code in answers)
    seen: dict[str, object] = {}

    def every_refusal_counted() -> bool:
        # The server writes its counts within its flush interval: wait for them.
        metrics = requests.get(f"{deployed}/metrics", timeout=5)
        assert metrics.status_code == 200
        rejected = Counter(
            {
                reason: float(value)
                for reason, value in re.findall(
                    r'^intercom_sync_web_rejected_total\{[^}]*reason="([a-z_]+)"[^}]*\} (\S+)$',
                    metrics.text,
                    re.MULTILINE,
                )
            }
        )
        seen["rejected"] = {reason: rejected[reason] for reason in expected}
        return seen["rejected"] == dict(expected)

    wait_until(every_refusal_counted, 10, message=f"the refusals counted by reason (last: {seen})")
    assert seen["rejected"] == dict(expected)
    client.close()
