"""``/v1/admin/dead-letters`` over real HTTP: auth, listing, inspect, replay, remove, purge."""

from __future__ import annotations

from typing import Any

import pytest

from sync_worker.deadletter import DeadLetterStore
from sync_worker.dispatch import SyncRequest
from tests.fixtures.web import (
    ADMIN_TOKEN,
    TRIGGER_TOKEN,
    WebServer,
    serve,
    stop_web,
    web_settings,
)

pytestmark = pytest.mark.integration


def park(
    server: WebServer, contact_id: str | None, email: str | None = None, code: str = "intercom_error"
) -> str:
    request = SyncRequest(contact_id=contact_id, email=email, trigger="webhook")
    entry = DeadLetterStore(server.redis).park(
        contact_id=contact_id,
        email=email,
        error_code=code,
        error_message="Intercom refused the update",
        trigger="webhook",
        kwargs=request.to_kwargs(),
    )
    return entry.id


def error_code(response: Any) -> str:
    body = response.json()
    assert body["error"]["message"]
    assert body["request_id"] == response.headers["X-Request-Id"]
    return body["error"]["code"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", ""),
        ("DELETE", "?confirm=true"),
        ("POST", "/retry-all"),
        ("GET", "/id:abc"),
        ("DELETE", "/id:abc"),
        ("POST", "/id:abc/retry"),
    ],
)
def test_every_admin_route_needs_the_admin_token(web_server: WebServer, method: str, path: str) -> None:
    entry_id = park(web_server, "abc")
    assert error_code(web_server.admin(method, path, token=None)) == "missing_token"
    wrong = web_server.admin(method, path, token=TRIGGER_TOKEN)  # the trigger token is not the admin token
    assert wrong.status_code == 401
    assert error_code(wrong) == "invalid_token"
    assert DeadLetterStore(web_server.redis).get(entry_id) is not None  # nothing happened
    assert web_server.queued() == []


def test_unset_admin_token_refuses_every_call(redis_url: str) -> None:
    served, server = serve(web_settings(redis_url, SYNC_ADMIN_TOKEN=None))
    try:
        response = server.admin("GET", token=ADMIN_TOKEN)
        assert response.status_code == 403
        assert error_code(response) == "not_configured"
        assert "SYNC_ADMIN_TOKEN" in response.json()["error"]["message"]
    finally:
        stop_web(served)


def test_list_pages_newest_failure_first_with_the_count(web_server: WebServer) -> None:
    ids = [park(web_server, f"contact{n}") for n in range(3)]
    response = web_server.admin("GET", params={"offset": 0, "limit": 2})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["count"] == 3
    assert (page["offset"], page["limit"]) == (0, 2)
    assert [item["id"] for item in page["items"]] == [ids[2], ids[1]]
    rest = web_server.admin("GET", params={"offset": 2, "limit": 2}).json()
    assert [item["id"] for item in rest["items"]] == [ids[0]]


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": "ten"}, {"offset": -1}, {"limit": 100000}])
def test_bad_pagination_is_400(web_server: WebServer, params: dict[str, Any]) -> None:
    response = web_server.admin("GET", params=params)
    assert response.status_code == 400
    assert error_code(response) == "invalid_parameter"


def test_get_one_entry_and_404_for_unknown(web_server: WebServer) -> None:
    entry_id = park(web_server, None, email="odd/name@example.com", code="contact_gone")
    found = web_server.admin("GET", f"/{entry_id}")
    assert found.status_code == 200, found.text
    assert found.json()["id"] == "email:odd/name@example.com"
    assert found.json()["error_code"] == "contact_gone"
    missing = web_server.admin("GET", "/id:nobody")
    assert missing.status_code == 404
    assert error_code(missing) == "dead_letter_not_found"


def test_retry_one_queues_a_replay_and_removes_the_entry(web_server: WebServer) -> None:
    entry_id = park(web_server, "abc")
    response = web_server.admin("POST", f"/{entry_id}/retry")
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    [message] = web_server.queued()
    assert message["task_id"] == response.json()["task_id"]
    assert message["kwargs"]["contact_id"] == "abc"
    assert message["kwargs"]["trigger"] == "replay"
    assert DeadLetterStore(web_server.redis).get(entry_id) is None
    again = web_server.admin("POST", f"/{entry_id}/retry")
    assert again.status_code == 404


def test_retry_all_replays_every_entry(web_server: WebServer) -> None:
    for n in range(3):
        park(web_server, f"contact{n}")
    response = web_server.admin("POST", "/retry-all")
    assert response.status_code == 202, response.text
    assert response.json() == {"replayed": 3, "failed": 0}
    assert sorted(m["kwargs"]["contact_id"] for m in web_server.queued()) == [
        "contact0",
        "contact1",
        "contact2",
    ]
    assert DeadLetterStore(web_server.redis).count() == 0


def test_delete_one_entry(web_server: WebServer) -> None:
    entry_id = park(web_server, "abc")
    response = web_server.admin("DELETE", f"/{entry_id}")
    assert response.status_code == 200
    assert response.json()["status"] == "removed"
    assert web_server.admin("DELETE", f"/{entry_id}").status_code == 404
    assert web_server.queued() == []


def test_purge_needs_confirmation(web_server: WebServer) -> None:
    park(web_server, "a")
    park(web_server, "b")
    refused = web_server.admin("DELETE")
    assert refused.status_code == 400
    assert error_code(refused) == "confirmation_required"
    assert DeadLetterStore(web_server.redis).count() == 2
    purged = web_server.admin("DELETE", params={"confirm": "true"})
    assert purged.status_code == 200
    assert purged.json() == {"status": "purged", "removed": 2}
    assert DeadLetterStore(web_server.redis).count() == 0
