"""The platform sandbox's dealer users: the ``/v1/users`` routes and their ``/_sandbox/users`` controls.

Guarantees:
- :class:`UsersStore` holds the stored users (validated by
  :mod:`~sync_worker.devtools.sandbox.dealer_users_dataset`) and at most one synthetic
  population (``count`` users sharing ``locations`` locations, ``seed``), generated on demand,
  never held: memory grows with the stored, patched and deleted users only. A stored user with a
  synthetic user's id replaces it (that is how a synthetic user is patched); a deleted synthetic
  user stays deleted until the next ``generate`` or reset;
- every user is served in one stable order, ascending ``user_id`` (the synthetic ids sort as
  their numbers do); ``GET /v1/users`` without ``email`` pages through it with an opaque keyset
  cursor (the last id served), so a user added or deleted between pages neither shifts nor
  repeats the others; ``next_cursor`` is null on the last page (and only there); ``limit`` is
  1..500 (default 100), a bad ``limit`` or ``cursor`` a 400;
- ``GET /v1/users?email=`` answers every user whose email matches trimmed and case-insensitively,
  in that order, ``next_cursor: null``; ``GET /v1/users/{id}`` the user, or 404
  ``{"error": ...}``; ``POST /v1/users/lookup`` answers every requested id under itself, ``null``
  for an unknown one; more than 100 ids or a bad body is a 400 (and every body while the
  ``lookup_refused`` knob is on);
- these routes sit behind the clients' gate (:mod:`~sync_worker.devtools.sandbox.platform`:
  latency, outage, the one rate-limit bucket, the bearer token), named by :func:`route_name`;
- control routes (no auth): ``GET /_sandbox/users`` (the stored users and the synthetic
  population), ``PUT`` (replace them all, no synthetic), ``POST`` (add or replace by id;
  ``?check=false`` stores a record that breaks the contract, given a string ``user_id``, so a
  test can serve one), ``PATCH /_sandbox/users/{id}`` (replace the top-level fields given,
  ``updated_at`` set to now unless given; the result is validated), ``DELETE
  /_sandbox/users/{id}`` (404 when unknown), ``POST /_sandbox/users/generate``
  ``{"count": N, "locations": M, "seed": S, "keep": false}`` (``keep`` keeps the stored users).
"""

from __future__ import annotations

import base64
import binascii
import bisect
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, jsonify, request

from sync_worker.devtools.sandbox.dataset import InvalidRecord
from sync_worker.devtools.sandbox.dealer_users_dataset import (
    apply_patch,
    catalogue_problems,
    synthetic_user,
    synthetic_user_id,
    synthetic_user_index,
    synthetic_user_number,
    validate_user,
    validate_users,
)
from sync_worker.devtools.sandbox.server import error_response, normalise_email, store_records

if TYPE_CHECKING:
    from sync_worker.devtools.sandbox.platform import PlatformState

MAX_LOOKUP_IDS = 100
PAGE_LIMITS = (1, 500)
DEFAULT_PAGE_LIMIT = 100
#: The most synthetic users one population may have (their ids have 8 digits).
MAX_SYNTHETIC_USERS = 10_000_000


@dataclass(frozen=True)
class Synthetic:
    count: int
    locations: int
    seed: int = 0


class UsersStore:
    """Stored users, the synthetic population, deletions (thread-safe)."""

    def __init__(self, users: Iterable[Mapping[str, Any]] = ()):
        self._initial = [dict(user) for user in validate_users(list(users))]
        self._lock = threading.Lock()
        self._lookup_ids = 0
        self.reset()

    # --- state ---------------------------------------------------------------------------

    def _set(self, users: Iterable[Mapping[str, Any]], synthetic: Synthetic | None) -> None:
        self._users: dict[str, dict[str, Any]] = {user["user_id"]: dict(user) for user in users}
        self._synthetic = synthetic
        self._deleted: set[str] = set()
        self._reindex()

    def _reindex(self) -> None:
        self._ids = sorted(self._users)
        self._by_email: dict[str, list[str]] = {}
        for user_id in self._ids:
            self._by_email.setdefault(normalise_email(self._users[user_id]["email"]), []).append(user_id)

    def reset(self) -> None:
        with self._lock:
            self._set(self._initial, None)
            self._lookup_ids = 0

    def _synthetic_number(self, user_id: str) -> int | None:
        """The number of the synthetic user ``user_id`` if it is served as generated."""
        if self._synthetic is None or user_id in self._users or user_id in self._deleted:
            return None
        i = synthetic_user_number(user_id)
        return i if i is not None and i < self._synthetic.count else None

    def _generated(self, i: int) -> dict[str, Any]:
        assert self._synthetic is not None
        return synthetic_user(i, locations=self._synthetic.locations, seed=self._synthetic.seed)

    def _get(self, user_id: str) -> dict[str, Any] | None:
        if user_id in self._users:
            return self._users[user_id]
        i = self._synthetic_number(user_id)
        return None if i is None else self._generated(i)

    # --- reads ---------------------------------------------------------------------------

    def get(self, user_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._get(user_id)

    def lookup(self, user_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        with self._lock:
            self._lookup_ids += len(user_ids)
            return {user_id: self._get(user_id) for user_id in user_ids}

    def by_email(self, email: str) -> list[dict[str, Any]]:
        wanted = normalise_email(email)
        with self._lock:
            ids = list(self._by_email.get(wanted, []))
            i = synthetic_user_index(wanted)
            if i is not None and self._synthetic_number(synthetic_user_id(i)) is not None:
                bisect.insort(ids, synthetic_user_id(i))
            return [user for user_id in ids if (user := self._get(user_id)) is not None]

    def page(self, after: str | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """Up to ``limit`` users with ids above ``after`` (all when None), and whether more follow."""
        with self._lock:
            synthetic = self._synthetic or Synthetic(0, 1)
            count = synthetic.count
            stored = bisect.bisect_right(self._ids, after) if after is not None else 0
            generated = bisect.bisect_right(range(count), after, key=synthetic_user_id) if after else 0
            picked: list[dict[str, Any] | int] = []  # a stored user, or a generated one's number
            while len(picked) <= limit:
                while generated < count and self._synthetic_number(synthetic_user_id(generated)) is None:
                    generated += 1  # patched (stored) or deleted: not served as generated
                next_stored = self._ids[stored] if stored < len(self._ids) else None
                next_generated = synthetic_user_id(generated) if generated < count else None
                if next_generated is not None and (next_stored is None or next_generated < next_stored):
                    picked.append(generated)
                    generated += 1
                elif next_stored is not None:
                    picked.append(self._users[next_stored])
                    stored += 1
                else:
                    break
        # generated users are made after the lock is released (pure, and slow in bulk)
        users = [
            item
            if isinstance(item, dict)
            else synthetic_user(item, locations=synthetic.locations, seed=synthetic.seed)
            for item in picked[:limit]
        ]
        return users, len(picked) > limit

    def total(self) -> int:
        with self._lock:
            if self._synthetic is None:
                return len(self._users)
            count = self._synthetic.count
            hidden = {  # in-range synthetic ids served as stored, or deleted
                user_id
                for user_id in (*self._users, *self._deleted)
                if (i := synthetic_user_number(user_id)) is not None and i < count
            }
            return len(self._users) + count - len(hidden)

    def listing(self) -> dict[str, Any]:
        with self._lock:
            synthetic = self._synthetic
            return {
                "users": [self._users[user_id] for user_id in self._ids],
                "synthetic": None if synthetic is None else vars(synthetic),
                "deleted": sorted(self._deleted),
            }

    def stats(self) -> dict[str, Any]:
        total = self.total()
        with self._lock:
            return {"users": total, "lookup_user_ids": self._lookup_ids}

    # --- changes -------------------------------------------------------------------------

    def replace(self, users: list[Any]) -> int:
        validate_users(users)
        with self._lock:
            self._set(users, None)
            return len(self._users)

    def upsert(self, users: list[Any], *, check: bool = True) -> int:
        """Add or replace ``users`` by id; ``check=False`` keeps users that break the contract."""
        for user in users:
            if check:
                validate_user(user)
            elif not isinstance(user, Mapping) or not isinstance(user.get("user_id"), str):
                raise InvalidRecord(["an unchecked user still needs a string user_id"], where="user")
        with self._lock:
            if check:
                problems = catalogue_problems([*self._users.values(), *users])
                if problems:
                    raise InvalidRecord(problems, where="users")
            for user in users:
                self._users[user["user_id"]] = dict(user)
            self._reindex()
            return len(users)

    def patch(self, user_id: str, changes: Mapping[str, Any]) -> dict[str, Any] | None:
        """The user with ``changes`` applied (validated; None when there is no such user)."""
        with self._lock:
            current = self._get(user_id)
            if current is None:
                return None
            if "user_id" in changes and changes["user_id"] != user_id:
                raise InvalidRecord(["user_id cannot change"], where=f"user {user_id!r}")
            stamped = {"updated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), **changes}
            patched = validate_user(apply_patch(current, stamped))
            self._users[user_id] = patched
            self._reindex()
            return patched

    def delete(self, user_id: str) -> bool:
        with self._lock:
            if self._get(user_id) is None:
                return False
            self._users.pop(user_id, None)
            i = synthetic_user_number(user_id)
            if self._synthetic is not None and i is not None and i < self._synthetic.count:
                self._deleted.add(user_id)
            self._reindex()
            return True

    def generate(self, synthetic: Synthetic, *, keep: bool = False) -> None:
        """Serve ``synthetic`` (replacing any earlier population; the stored users too unless ``keep``)."""
        if not 0 <= synthetic.count <= MAX_SYNTHETIC_USERS or synthetic.locations < 1:
            raise ValueError(f"count must be 0..{MAX_SYNTHETIC_USERS} and locations at least 1")
        with self._lock:
            self._set(self._users.values() if keep else (), synthetic)


# --- routes -------------------------------------------------------------------------------------


def route_name(method: str, path: str) -> str | None:
    """The stats name of a ``/v1/users`` route (None for any other path)."""
    if method == "GET" and path == "/v1/users":
        return "GET /v1/users"
    if method == "POST" and path == "/v1/users/lookup":
        return "POST /v1/users/lookup"
    if method == "GET" and path.startswith("/v1/users/"):
        return "GET /v1/users/{user_id}"
    return None


def encode_cursor(after: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": after}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The id a cursor resumes after (ValueError for a cursor this sandbox did not make)."""
    try:
        body = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise ValueError("invalid cursor") from exc
    if not isinstance(body, dict) or not isinstance(body.get("after"), str):
        raise ValueError("invalid cursor")
    return body["after"]


def _page_limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE_LIMIT
    low, high = PAGE_LIMITS
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"limit must be an integer from {low} to {high}")
    return int(text)


def _int(body: Mapping[str, Any], name: str, default: int | None = None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer")
    return value


def register(app: Flask, state: PlatformState) -> None:
    """Add the users routes and their control routes to the sandbox ``app`` (``state.users``)."""
    store = state.users

    def refused(message: str) -> Response:
        state.answered("400")
        return error_response(400, message)

    @app.get("/v1/users")
    def users_page() -> Response:
        email = request.args.get("email")
        if email is not None:
            if not email.strip():
                return refused("the email query parameter must not be blank")
            return jsonify({"data": store.by_email(email), "next_cursor": None})
        try:
            limit = _page_limit(request.args.get("limit"))
            cursor = request.args.get("cursor")
            after = decode_cursor(cursor) if cursor is not None else None
        except ValueError as exc:
            return refused(str(exc))
        page, more = store.page(after, limit)
        next_cursor = encode_cursor(page[-1]["user_id"]) if more and page else None
        return jsonify({"data": page, "next_cursor": next_cursor})

    @app.get("/v1/users/<path:user_id>")
    def users_one(user_id: str) -> Response:
        found = store.get(user_id)
        if found is None:
            return error_response(404, "no such user")
        return jsonify(found)

    @app.post("/v1/users/lookup")
    def users_lookup() -> Response:
        body = request.get_json(silent=True)
        user_ids = body.get("user_ids") if isinstance(body, dict) else None
        if not isinstance(user_ids, list):
            return refused('the body must be a JSON object {"user_ids": [...]}')
        if len(user_ids) > MAX_LOOKUP_IDS:
            return refused(f"at most {MAX_LOOKUP_IDS} user ids a call ({len(user_ids)} given)")
        if not all(isinstance(user_id, str) for user_id in user_ids):
            return refused("user_ids must be strings")
        if state.lookup_refused:
            return refused("unknown field 'user_ids' (sandbox: lookup_refused)")
        return jsonify({"data": store.lookup(user_ids)})

    # --- control routes ----------------------------------------------------------------------

    @app.get("/_sandbox/users")
    def users_listing() -> Response:
        return jsonify(store.listing())

    @app.route("/_sandbox/users", methods=["PUT", "POST"])
    def users_put() -> Response:
        return store_records(store.replace, store.upsert, noun="user", refused=InvalidRecord)

    @app.patch("/_sandbox/users/<path:user_id>")
    def users_patch(user_id: str) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return error_response(400, "the body must be a JSON object of the fields to change")
        try:
            patched = store.patch(user_id, body)
        except InvalidRecord as exc:
            return error_response(400, str(exc))
        return jsonify(patched) if patched is not None else error_response(404, "no such user")

    @app.delete("/_sandbox/users/<path:user_id>")
    def users_delete(user_id: str) -> Response:
        if not store.delete(user_id):
            return error_response(404, "no such user")
        return jsonify({"deleted": user_id})

    @app.post("/_sandbox/users/generate")
    def users_generate() -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return error_response(400, 'the body must be {"count": N, "locations": M, "seed": S}')
        try:
            synthetic = Synthetic(_int(body, "count"), _int(body, "locations"), _int(body, "seed", 0))
            keep = body.get("keep", False)
            if not isinstance(keep, bool):
                raise ValueError("keep must be true or false")
            store.generate(synthetic, keep=keep)
        except ValueError as exc:
            return error_response(400, str(exc))
        return jsonify({"users": store.total(), "synthetic": vars(synthetic)})
