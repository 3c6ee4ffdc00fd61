"""``/v1/admin/dead-letters`` over real HTTP: auth, listing, inspect, replay, remove, purge."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from sync_worker.celery_app import BULK_QUEUE, REALTIME_QUEUE
from sync_worker.deadletter import DeadLetterStore
from sync_worker.devtools.localredis import wait_until
from sync_worker.dispatch import SyncRequest
from sync_worker.replayruns import BATCH
from tests.fixtures.web import (
    ADMIN_TOKEN,
    TRIGGER_TOKEN,
    WebServer,
    serve,
    stop_web,
    web_settings,
)
from tests.fixtures.workers import bulk_worker

pytestmark = pytest.mark.integration

#: A store large enough that replaying it inside the request took seconds.
THOUSANDS = 5_000


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


def test_retry_all_answers_with_a_queued_run_whose_progress_it_reports(web_server: WebServer) -> None:
    for n in range(3):
        park(web_server, f"contact{n}")
    response = web_server.admin("POST", "/retry-all")
    assert response.status_code == 202, response.text
    run = response.json()
    assert (run["status"], run["total"], run["replayed"], run["failed"]) == ("queued", 3, 0, 0)
    assert run["links"]["self"] == f"/v1/admin/dead-letters/retry-all/{run['id']}"
    [step] = web_server.queued(BULK_QUEUE)  # the run's first step; no worker runs it here
    assert step["kwargs"] == {"run_id": run["id"], "step": 0}
    assert web_server.queued() == []  # nothing replayed in the request
    assert DeadLetterStore(web_server.redis).count() == 3

    status = web_server.admin("GET", f"/retry-all/{run['id']}")
    assert status.status_code == 200 and status.json() == {k: v for k, v in run.items() if k != "links"}
    assert web_server.admin("GET", "/retry-all").json()["id"] == run["id"]  # the latest run
    missing = web_server.admin("GET", "/retry-all/nope")
    assert missing.status_code == 404 and error_code(missing) == "replay_run_not_found"


def test_retry_all_of_thousands_answers_at_once_and_a_worker_replays_them_all(
    web_server: WebServer, tmp_path: Path
) -> None:
    """Issue 12 item 17: the old route replayed every entry inside the request (5,000 here took
    seconds; a large store ran into gunicorn's 30 s timeout). Now the POST only stores a run and
    its first step, and a worker replays them in steps, its progress readable meanwhile."""
    store = DeadLetterStore(web_server.redis)
    for n in range(THOUSANDS):
        store.park(
            contact_id=f"c{n}",
            email=None,
            error_code="intercom_error",
            error_message="Intercom refused the update",
            trigger="webhook",
            kwargs={"contact_id": f"c{n}", "trigger": "webhook"},
        )
    began = time.monotonic()
    response = web_server.admin("POST", "/retry-all")
    answered_in = time.monotonic() - began
    assert response.status_code == 202, response.text
    assert answered_in < 0.5, answered_in
    run_id = response.json()["id"]
    assert response.json()["total"] == THOUSANDS

    worker = bulk_worker(web_server.settings.redis_url, tmp_path / "bulk.log")
    try:
        seen: list[int] = []

        def finished() -> bool:
            run = web_server.admin("GET", f"/retry-all/{run_id}").json()
            seen.append(run["done"])
            return run["status"] == "finished"

        wait_until(finished, 120, interval=0.02, message="the replay run to finish")
    finally:
        worker.stop()
    run = web_server.admin("GET", f"/retry-all/{run_id}").json()
    assert (run["replayed"], run["failed"], run["total"]) == (THOUSANDS, 0, THOUSANDS)
    assert run["step"] == THOUSANDS // BATCH + 1  # in steps of BATCH: none ran past a task's time limit
    assert store.count() == 0
    assert web_server.redis.llen(REALTIME_QUEUE) == THOUSANDS  # one replayed sync per entry
    assert seen == sorted(seen)  # progress only grows


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
