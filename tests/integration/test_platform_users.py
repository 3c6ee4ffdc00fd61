"""The platform client's dealer users reads against the platform sandbox (and a misbehaving stand-in), over real HTTP."""

# The fixture is imported (until conftest registers it), so its parameter names redefine the import.

from __future__ import annotations

import json
import math
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from flask import Flask, Response, jsonify

from sync_worker.devtools.sandbox.dealer_users_dataset import (
    EMAIL_CHANGE,
    GONE_USER_ID,
    LOCATION_MOVE,
    MOVED_LOCATION_ID,
    load_sample_users,
    over_cap_user,
    synthetic_user,
    synthetic_user_email,
    synthetic_user_id,
)
from sync_worker.devtools.sandbox.platform_users import Synthetic, UsersStore
from sync_worker.devtools.sandbox.server import ServedApp
from sync_worker.errors import PermanentError, TransientError
from sync_worker.platform import (
    PlatformAuthError,
    PlatformClient,
    PlatformContractError,
    PlatformRateLimited,
    PlatformRequestError,
    PlatformUnavailable,
    UsersPage,
    check_user,
)
from tests.fixtures.platform_contract import contract_validator, schema_errors
from tests.fixtures.platform_sandbox import PlatformSandbox, RecordingHooks, sandbox_process

pytestmark = pytest.mark.integration

ONE = "GET /v1/users/{user_id}"
PAGE = "GET /v1/users"
LOOKUP = "POST /v1/users/lookup"
SAMPLE_IDS = sorted(user["user_id"] for user in load_sample_users())


def sample_user(user_id: str) -> dict[str, Any]:
    return next(user for user in load_sample_users() if user["user_id"] == user_id)


def ids(users: list[dict[str, Any]]) -> list[str]:
    return [user["user_id"] for user in users]


# --- one user ------------------------------------------------------------------------------------


def test_user_answers_the_record_and_none_for_a_user_the_platform_no_longer_has(
    platform_sandbox: PlatformSandbox,
):
    hooks = RecordingHooks()
    client = platform_sandbox.client(hooks=hooks)

    assert client.user("user123") == sample_user("user123")
    assert client.user(GONE_USER_ID) is None

    assert hooks.before == [("platform", "user")] * 2  # a 404 is an answer: not retried
    assert [status for _, status, _ in hooks.after] == [200, 404]
    assert platform_sandbox.stats()["calls"] == {ONE: 2}
    answer = requests.get(
        f"{platform_sandbox.url}/v1/users/{GONE_USER_ID}",
        headers={"Authorization": f"Bearer {platform_sandbox.token}"},
        timeout=5,
    )
    assert answer.status_code == 404 and isinstance(answer.json()["error"], str)


def test_user_ids_are_sent_as_one_path_segment(platform_sandbox: PlatformSandbox):
    odd = dict(sample_user("user124"), user_id="dealer/42 ?x#y", email="odd@dealer.example")
    platform_sandbox.add_users(odd)
    client = platform_sandbox.client()

    assert client.user("dealer/42 ?x#y") == odd
    assert client.user("dealer") is None
    with pytest.raises(ValueError):
        client.user("  ")
    assert platform_sandbox.stats()["calls"] == {ONE: 2}


def test_users_by_email_is_trimmed_case_insensitive_in_user_id_order(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    twin = dict(sample_user("user124"), user_id="user100", email="OMAR.Haddad@dealer.example")
    platform_sandbox.add_users(twin)

    assert ids(client.users_by_email(" priya.raman@DEALER.example")) == ["user131"]  # stored with spaces
    assert ids(client.users_by_email("omar.haddad@dealer.example")) == ["user100", "user124"]
    assert client.users_by_email("nobody@dealer.example") == []
    with pytest.raises(ValueError):
        client.users_by_email(" ")


# --- paging --------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 4, 16, 17, 100])
def test_iter_users_walks_every_user_once_in_a_stable_order(platform_sandbox: PlatformSandbox, limit):
    walked = ids(list(platform_sandbox.client().iter_users(limit=limit)))

    assert walked == SAMPLE_IDS
    assert platform_sandbox.stats()["calls"] == {PAGE: max(1, math.ceil(len(SAMPLE_IDS) / limit))}


def test_the_last_page_and_only_it_has_no_next_cursor(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    first = client.users_page(limit=10)
    assert isinstance(first, UsersPage) and ids(first.users) == SAMPLE_IDS[:10]
    assert isinstance(first.next_cursor, str)
    last = client.users_page(first.next_cursor, limit=10)
    assert ids(last.users) == SAMPLE_IDS[10:] and last.next_cursor is None
    assert client.users_page(first.next_cursor, limit=7).next_cursor is None  # exactly the rest
    assert client.users_page(limit=16).next_cursor is not None


def test_a_user_added_or_deleted_between_pages_shifts_nothing(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    first = client.users_page(limit=5)
    platform_sandbox.delete_user(SAMPLE_IDS[0])  # already served
    platform_sandbox.delete_user(SAMPLE_IDS[6])  # not yet served
    platform_sandbox.add_users(dict(sample_user("user124"), user_id="user000", email="early@dealer.example"))
    platform_sandbox.add_users(dict(sample_user("user124"), user_id="user999", email="late@dealer.example"))

    rest: list[dict[str, Any]] = []
    cursor = first.next_cursor
    while cursor is not None:
        page = client.users_page(cursor, limit=5)
        rest += page.users
        cursor = page.next_cursor

    expected = [user_id for user_id in SAMPLE_IDS[5:] if user_id != SAMPLE_IDS[6]] + ["user999"]
    assert ids(rest) == expected  # nothing repeated, nothing skipped; user000 sorts before the cursor


def test_page_limits_and_bad_cursors_are_refused(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    for limit in (0, 501, True):
        with pytest.raises(ValueError):
            client.users_page(limit=limit)
    assert platform_sandbox.stats()["total_calls"] == 0
    assert len(client.users_page(limit=500).users) == len(SAMPLE_IDS)

    headers = {"Authorization": f"Bearer {platform_sandbox.token}"}
    for params in ({"limit": "0"}, {"limit": "501"}, {"limit": "ten"}, {"email": " "}):
        answer = requests.get(f"{platform_sandbox.url}/v1/users", params=params, headers=headers, timeout=5)
        assert answer.status_code == 400 and "error" in answer.json(), params
    with pytest.raises(PlatformRequestError) as raised:
        client.users_page("not-a-cursor")
    assert raised.value.status == 400 and "invalid cursor" in raised.value.message


# --- lookup ----------------------------------------------------------------------------------------


def test_lookup_users_answers_every_id_with_none_for_unknown_ones(platform_sandbox: PlatformSandbox):
    found = platform_sandbox.client().lookup_users(["user125", GONE_USER_ID, "user125", "user130"])

    assert list(found) == ["user125", GONE_USER_ID, "user130"]
    assert found["user125"] == sample_user("user125")
    assert found[GONE_USER_ID] is None
    assert found["user130"]["status"] == "disabled"
    stats = platform_sandbox.stats()
    assert stats["calls"] == {LOOKUP: 1} and stats["lookup_user_ids"] == 3  # duplicates dropped


def test_lookup_users_splits_more_than_100_ids_into_calls_of_100(platform_sandbox: PlatformSandbox):
    platform_sandbox.generate_users(240, locations=50, keep=True)
    wanted = [synthetic_user_id(i) for i in range(240)] + ["user123", GONE_USER_ID]

    found = platform_sandbox.client().lookup_users(wanted)

    assert list(found) == wanted
    assert found[synthetic_user_id(239)] == synthetic_user(239, locations=50)
    assert found["user123"] == sample_user("user123") and found[GONE_USER_ID] is None
    stats = platform_sandbox.stats()
    assert stats["calls"] == {LOOKUP: 3} and stats["lookup_user_ids"] == 242


def test_lookup_of_nothing_makes_no_call_and_blank_ids_are_refused(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    assert client.lookup_users([]) == {}
    with pytest.raises(ValueError):
        client.lookup_users(["user123", ""])
    assert platform_sandbox.stats()["total_calls"] == 0


def test_sandbox_refuses_bad_lookups(platform_sandbox: PlatformSandbox):
    headers = {"Authorization": f"Bearer {platform_sandbox.token}"}
    url = f"{platform_sandbox.url}/v1/users/lookup"
    too_many = requests.post(
        url, json={"user_ids": [f"u{i}" for i in range(101)]}, headers=headers, timeout=5
    )
    not_a_list = requests.post(url, json={"user_ids": "user123"}, headers=headers, timeout=5)
    not_strings = requests.post(url, json={"user_ids": [123]}, headers=headers, timeout=5)
    no_auth = requests.post(url, json={"user_ids": []}, timeout=5)

    statuses = [r.status_code for r in (too_many, not_a_list, not_strings, no_auth)]
    assert statuses == [400, 400, 400, 401]
    assert "at most 100" in too_many.json()["error"]
    platform_sandbox.config(lookup_refused=True)
    with pytest.raises(PlatformRequestError):
        platform_sandbox.client().lookup_users(["user123"])


# --- errors ----------------------------------------------------------------------------------------


def test_a_malformed_user_is_a_contract_error_on_its_own_read(platform_sandbox: PlatformSandbox):
    broken = sample_user("user126")
    broken["locations"][0].pop("company_id")
    broken["roles"] = "Company Billing Admin"
    platform_sandbox.add_users(broken, check=False)
    client = platform_sandbox.client()

    with pytest.raises(PlatformContractError) as raised:
        client.user("user126")
    assert isinstance(raised.value, PermanentError)
    assert "roles is not an array" in raised.value.message
    assert "locations[0] is missing company_id" in raised.value.message
    assert "lucas" not in raised.value.message.lower()  # fields, never values
    with pytest.raises(PlatformContractError):
        client.users_by_email("lucas.moreau@dealer.example")

    # the batch reads answer it as sent, so the walk goes on and the caller checks it alone
    walked = {user["user_id"]: user for user in client.iter_users(limit=5)}
    assert walked["user126"] == broken
    assert client.lookup_users(["user126"])["user126"] == broken
    with pytest.raises(PlatformContractError):
        check_user(walked["user126"])
    assert check_user(walked["user125"]) == sample_user("user125")


def test_sandbox_refuses_users_that_break_the_contract_unless_told(platform_sandbox: PlatformSandbox):
    broken = dict(sample_user("user123"), status="suspended")
    answer = requests.post(f"{platform_sandbox.url}/_sandbox/users", json=broken, timeout=5)
    assert answer.status_code == 400 and "status is not one of active, disabled" in answer.json()["error"]
    renamed = sample_user("user124")
    renamed["locations"][0]["name"] = "Somewhere Else"  # location_id_1 as nine other users do not say
    answer = requests.post(f"{platform_sandbox.url}/_sandbox/users", json=renamed, timeout=5)
    assert answer.status_code == 400 and "two names" in answer.json()["error"]
    nameless = requests.post(
        f"{platform_sandbox.url}/_sandbox/users", json={"email": "x"}, params={"check": "false"}, timeout=5
    )
    assert nameless.status_code == 400
    assert platform_sandbox.stats()["users"] == len(SAMPLE_IDS)


def test_429_is_raised_at_once_with_retry_after_through_the_hooks(platform_sandbox: PlatformSandbox):
    platform_sandbox.config(rate_limit={"per_second": 1})
    hooks = RecordingHooks()
    client = platform_sandbox.client(hooks=hooks)

    assert client.user("user123") is not None
    with pytest.raises(PlatformRateLimited) as raised:
        client.lookup_users(["user123"])

    assert isinstance(raised.value, TransientError) and raised.value.retry_after == 1.0
    assert hooks.before == [("platform", "user"), ("platform", "lookup_users")]
    assert hooks.after[-1][1] == 429 and hooks.after[-1][2]["Retry-After"] == "1"
    stats = platform_sandbox.stats()
    assert stats["calls"] == {ONE: 1, LOOKUP: 1} and stats["rate_limited"] == 1  # no in-call retry


def test_users_and_clients_share_one_rate_limit_window(platform_sandbox: PlatformSandbox):
    platform_sandbox.config(rate_limit={"per_second": 2})
    client = platform_sandbox.client()
    client.clients_by_email("maya.chen@example.com")
    client.clients_by_email("maya.chen@example.com")
    for read in (lambda: client.users_page(), lambda: client.users_by_email("dana@dealer.example")):
        with pytest.raises(PlatformRateLimited):
            read()
    assert platform_sandbox.stats()["rate_limited"] == 2


def test_outages_and_tokens_apply_to_the_users_routes(platform_sandbox: PlatformSandbox):
    hooks = RecordingHooks()
    platform_sandbox.config(outage="503")
    with pytest.raises(PlatformUnavailable):
        platform_sandbox.client(hooks=hooks).user("user123")
    assert hooks.before == [("platform", "user")] * 3  # retried in the call, like the clients' reads
    platform_sandbox.config(outage=None)
    with pytest.raises(PlatformAuthError):
        platform_sandbox.client(token="wrong").users_page()
    platform_sandbox.config(token_revoked=True)
    with pytest.raises(PlatformAuthError):
        platform_sandbox.client().lookup_users(["user123"])


# --- control routes ------------------------------------------------------------------------------


def test_the_email_change_and_the_location_move_through_the_control_routes(platform_sandbox: PlatformSandbox):
    client = platform_sandbox.client()
    user_id, changes = EMAIL_CHANGE
    old_email = sample_user(user_id)["email"]

    patched = platform_sandbox.patch_user(user_id, **changes)

    assert (
        patched["email"] == changes["email"] and patched["updated_at"] != sample_user(user_id)["updated_at"]
    )
    assert ids(client.users_by_email(changes["email"])) == [user_id]
    assert client.users_by_email(old_email) == []

    for mover, move in LOCATION_MOVE:
        platform_sandbox.patch_user(mover, **move)
    (loser, _), (gainer, _) = LOCATION_MOVE
    after = client.lookup_users([loser, gainer])
    assert MOVED_LOCATION_ID not in [loc["id"] for loc in after[loser]["locations"]]
    assert [loc["id"] for loc in after[gainer]["locations"]][-1] == MOVED_LOCATION_ID
    assert {u["user_id"] for u in platform_sandbox.users()["users"]} == set(SAMPLE_IDS)

    platform_sandbox.reset()
    assert client.user(user_id)["email"] == old_email


def test_patch_and_delete_refuse_what_they_cannot_do(platform_sandbox: PlatformSandbox):
    url = f"{platform_sandbox.url}/_sandbox/users"
    assert requests.patch(f"{url}/{GONE_USER_ID}", json={"email": "x@y"}, timeout=5).status_code == 404
    assert requests.patch(f"{url}/user123", json={"roles": "admin"}, timeout=5).status_code == 400
    assert requests.patch(f"{url}/user123", json={"user_id": "user9"}, timeout=5).status_code == 400
    assert requests.delete(f"{url}/{GONE_USER_ID}", timeout=5).status_code == 404

    platform_sandbox.delete_user("user123")
    assert platform_sandbox.client().user("user123") is None
    assert platform_sandbox.stats()["users"] == len(SAMPLE_IDS) - 1


def test_the_user_over_the_cap_and_a_replaced_dataset(platform_sandbox: PlatformSandbox):
    platform_sandbox.add_users(over_cap_user())
    assert len(platform_sandbox.client().user(over_cap_user()["user_id"])["locations"]) == 1001
    platform_sandbox.set_users([sample_user("user123")])
    assert ids(list(platform_sandbox.client().iter_users())) == ["user123"]


def test_generated_users_are_served_on_demand_and_change_like_stored_ones(platform_sandbox: PlatformSandbox):
    answer = platform_sandbox.generate_users(50_000, locations=500, seed=3)
    assert answer == {"users": 50_000, "synthetic": {"count": 50_000, "locations": 500, "seed": 3}}
    client = platform_sandbox.client()

    assert client.user(synthetic_user_id(49_999)) == synthetic_user(49_999, locations=500, seed=3)
    assert client.user(synthetic_user_id(50_000)) is None
    assert client.user("user123") is None  # generate replaced the stored users (keep=false)
    assert ids(client.users_by_email(synthetic_user_email(7).upper())) == [synthetic_user_id(7)]
    first = client.users_page(limit=500)
    assert ids(first.users) == [synthetic_user_id(i) for i in range(500)]

    moved = platform_sandbox.patch_user(synthetic_user_id(8), email="moved@dealer.example")
    platform_sandbox.delete_user(synthetic_user_id(9))
    page = client.users_page(limit=5, cursor=client.users_page(limit=6).next_cursor)
    assert ids(page.users) == [synthetic_user_id(i) for i in (6, 7, 8, 10, 11)]  # 9 deleted
    assert page.users[2] == moved
    assert client.users_by_email(synthetic_user_email(8)) == []
    assert platform_sandbox.stats()["users"] == 49_999
    assert platform_sandbox.users() == {
        "users": [moved],
        "synthetic": answer["synthetic"],
        "deleted": [synthetic_user_id(9)],
    }


def test_a_synthetic_population_costs_no_memory_per_user():
    """The store keeps nothing per generated user: 50,000 cost what 10,000 do, and pages walked are freed."""
    tracemalloc.start()
    try:
        sizes = []
        for count in (10_000, 50_000):
            store = UsersStore()
            before = tracemalloc.get_traced_memory()[0]
            store.generate(Synthetic(count, locations=500))
            after = None
            for _ in range(10):  # 5,000 users walked
                users, more = store.page(after, 500)
                after = users[-1]["user_id"]
            assert more and store.get(synthetic_user_id(count - 1)) is not None
            del users
            sizes.append(tracemalloc.get_traced_memory()[0] - before)
            assert store.total() == count
    finally:
        tracemalloc.stop()
    assert max(sizes) < 64 * 1024, sizes


# --- a platform that breaks the contract -------------------------------------------------------------


class Misbehaving:
    """A stand-in platform answering the users routes with whatever the test sets."""

    def __init__(self) -> None:
        self.body: Any = {"data": [], "next_cursor": None}
        self.calls = 0
        app = Flask(__name__)

        @app.route("/v1/users", methods=["GET"])
        @app.route("/v1/users/lookup", methods=["POST"])
        @app.route("/v1/users/<user_id>", methods=["GET"])
        def answer(user_id: str | None = None) -> Response:
            self.calls += 1
            return jsonify(self.body)

        self.served = ServedApp(app)


@pytest.fixture
def misbehaving() -> Iterator[tuple[Misbehaving, PlatformClient]]:
    stand_in = Misbehaving()
    with stand_in.served as served:
        yield stand_in, PlatformClient(served.url, "t", backoff_base=0.01, backoff_max=0.05)


USER = sample_user("user123")


@pytest.mark.parametrize(
    ("read", "body"),
    [
        ("page", {"data": [USER]}),  # no next_cursor
        ("page", {"data": {"user123": USER}, "next_cursor": None}),
        ("page", {"data": [USER], "next_cursor": 5}),
        ("page", {"data": [dict(USER, user_id=None)], "next_cursor": None}),
        ("lookup", {"data": {}}),  # the requested id unanswered
        ("lookup", {"data": {"user123": sample_user("user124")}}),  # another user
        ("lookup", {"data": [USER]}),
        ("one", {"user_id": "user123"}),
        ("by_email", {"data": [dict(USER, locations=None)], "next_cursor": None}),
    ],
)
def test_wrong_shapes_are_contract_errors(misbehaving, read, body):
    stand_in, client = misbehaving
    stand_in.body = body
    calls = {
        "page": lambda: client.users_page(),
        "lookup": lambda: client.lookup_users(["user123"]),
        "one": lambda: client.user("user123"),
        "by_email": lambda: client.users_by_email("dana@dealer.example"),
    }
    with pytest.raises(PlatformContractError):
        calls[read]()
    assert stand_in.calls == 1  # permanent: not retried


def test_a_cursor_answered_twice_stops_the_walk(misbehaving):
    stand_in, client = misbehaving
    stand_in.body = {"data": [USER], "next_cursor": "again"}
    with pytest.raises(PlatformContractError, match="twice"):
        list(client.iter_users())
    assert stand_in.calls == 2


def test_the_sandbox_process_serves_users_from_a_file_or_generated(tmp_path):
    users = tmp_path / "users.json"
    users.write_text(json.dumps([sample_user("user139")]), encoding="utf-8")
    with sandbox_process("--users", str(users)) as client:
        assert client.user("user139") == sample_user("user139") and client.user("user123") is None
    with sandbox_process("--synthetic-users", "1000", "50") as client:
        assert client.user(synthetic_user_id(999)) == synthetic_user(999, locations=50)
        assert client.user(synthetic_user_id(1000)) is None and client.user("user123") is None


def _response_schema(path: str, method: str, status: str) -> str:
    escaped = path.replace("~", "~0").replace("/", "~1")
    return f"#/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema"


def test_every_users_answer_validates_against_the_contracts_response_schemas(
    platform_sandbox: PlatformSandbox,
):
    platform_sandbox.generate_users(30, locations=10, keep=True)
    headers = {"Authorization": f"Bearer {platform_sandbox.token}"}
    url = platform_sandbox.url
    answers = [
        (
            "/v1/users",
            "get",
            requests.get(f"{url}/v1/users", params={"limit": 20}, headers=headers, timeout=5),
        ),
        (
            "/v1/users",
            "get",
            requests.get(
                f"{url}/v1/users", params={"email": "DANA@dealer.example"}, headers=headers, timeout=5
            ),
        ),
        (
            "/v1/users",
            "get",
            requests.get(f"{url}/v1/users", params={"limit": 0}, headers=headers, timeout=5),
        ),
        ("/v1/users/{user_id}", "get", requests.get(f"{url}/v1/users/user130", headers=headers, timeout=5)),
        (
            "/v1/users/{user_id}",
            "get",
            requests.get(f"{url}/v1/users/{GONE_USER_ID}", headers=headers, timeout=5),
        ),
        ("/v1/users/{user_id}", "get", requests.get(f"{url}/v1/users/user130", timeout=5)),
        (
            "/v1/users/lookup",
            "post",
            requests.post(
                f"{url}/v1/users/lookup",
                json={"user_ids": ["user123", GONE_USER_ID, synthetic_user_id(29)]},
                headers=headers,
                timeout=5,
            ),
        ),
        (
            "/v1/users/lookup",
            "post",
            requests.post(f"{url}/v1/users/lookup", json={}, headers=headers, timeout=5),
        ),
    ]
    assert [answer.status_code for _, _, answer in answers] == [200, 200, 400, 200, 404, 401, 200, 400]
    for path, method, answer in answers:
        status = str(answer.status_code)
        pointer = (
            _response_schema(path, method, status)
            if status == "200"
            else "#/components/responses/Error/content/application~1json/schema"
        )
        assert schema_errors(contract_validator(pointer), answer.json()) == [], (path, status)
    page, lookup = answers[0][2].json(), answers[6][2].json()
    assert page["next_cursor"] is not None and len(page["data"]) == 20
    assert lookup["data"][GONE_USER_ID] is None and lookup["data"][synthetic_user_id(29)] is not None
