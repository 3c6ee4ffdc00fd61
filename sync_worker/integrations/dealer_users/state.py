"""What the dealer users integration remembers in Redis: per user and per location company.

Guarantees:
- a user's record (:class:`UserRecord`, under :func:`sync_worker.keys.source_record` by its
  ``user_id``, whatever trigger named it) holds the contact this service writes for the user, the
  fingerprints of the contact's last accepted write and of its last carried-out memberships, and
  the companies this service attached for it; each part is stored only after Intercom accepted
  it (:meth:`UserStates.contact_written`, :meth:`UserStates.memberships_written`), so the record
  never claims what Intercom does not show; the contact id is stored as soon as it is known
  (:meth:`UserStates.bind`), so a later run never looks for (or creates) another one;
- a company's record (:func:`sync_worker.keys.company_record` by ``company_id``) is shared by
  every user of the location: its Intercom id and the fingerprint of its last accepted write;
  :meth:`CompanyStates.lock` serialises the writes of one company across workers, so a location
  shared by many users syncing at once is written once per change;
- records expire after ``ttl_seconds`` (90 days by default, as last known values do), renewed at
  every write: a departed user's state does not stay for ever, an expired one costs one write.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import redis as redis_lib
from redis.lock import Lock

from sync_worker import keys

DEFAULT_TTL_SECONDS = 90 * 24 * 3600
#: How long one company's write may hold its lock, and how long another run waits for it.
COMPANY_LOCK_SECONDS = 30
COMPANY_LOCK_WAIT_SECONDS = 10
#: How long finding or creating one user's contact may hold its lock, and how long another waits.
USER_LOCK_SECONDS = 60
USER_LOCK_WAIT_SECONDS = 20


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class UserRecord:
    """What was last written for one user (all None / empty for a user never written)."""

    contact_id: str | None = None
    contact_fingerprint: str | None = None
    membership_fingerprint: str | None = None
    ours: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True)
class CompanyRecord:
    intercom_id: str
    fingerprint: str


class UserStates:
    def __init__(self, client: redis_lib.Redis, integration: str, *, ttl_seconds: int = DEFAULT_TTL_SECONDS):
        self._redis = client
        self._integration = integration
        self._ttl = ttl_seconds

    def _key(self, user_id: str) -> str:
        return keys.source_record(self._integration, user_id)

    def load(self, user_id: str) -> UserRecord:
        raw = {_text(k): _text(v) for k, v in self._redis.hgetall(self._key(user_id)).items()}
        return UserRecord(
            contact_id=raw.get("contact_id"),
            contact_fingerprint=raw.get("contact_fingerprint"),
            membership_fingerprint=raw.get("membership_fingerprint"),
            ours=frozenset(json.loads(raw["ours"])) if raw.get("ours") else frozenset(),
        )

    def _set(self, user_id: str, mapping: dict[str, str], *, drop: Iterable[str] = ()) -> None:
        pipe = self._redis.pipeline()
        dropped = list(drop)
        if dropped:
            pipe.hdel(self._key(user_id), *dropped)
        pipe.hset(self._key(user_id), mapping=mapping)
        pipe.expire(self._key(user_id), self._ttl)
        pipe.execute()

    def bind(self, user_id: str, contact_id: str) -> None:
        """The user's contact is ``contact_id``; fingerprints of another contact are dropped."""
        self._set(
            user_id,
            {"contact_id": contact_id},
            drop=("contact_fingerprint", "membership_fingerprint")
            if self.load(user_id).contact_id != contact_id
            else (),
        )

    def forget_contact(self, user_id: str) -> None:
        """The contact is gone from Intercom: look for (or create) the user's contact again."""
        self._redis.hdel(self._key(user_id), "contact_id", "contact_fingerprint", "membership_fingerprint")

    def lock(self, user_id: str) -> Lock:
        """The lock a user's contact is found or created under (a context manager; redis-py's
        ``LockError`` when another run holds it past :data:`USER_LOCK_WAIT_SECONDS`)."""
        return self._redis.lock(
            f"{self._key(user_id)}:lock", timeout=USER_LOCK_SECONDS, blocking_timeout=USER_LOCK_WAIT_SECONDS
        )

    def contact_written(self, user_id: str, contact_id: str, fingerprint: str) -> None:
        self._set(user_id, {"contact_id": contact_id, "contact_fingerprint": fingerprint})

    def memberships_written(self, user_id: str, fingerprint: str, ours: Iterable[str]) -> None:
        self._set(user_id, {"membership_fingerprint": fingerprint, "ours": json.dumps(sorted(set(ours)))})


class CompanyStates:
    def __init__(self, client: redis_lib.Redis, integration: str, *, ttl_seconds: int = DEFAULT_TTL_SECONDS):
        self._redis = client
        self._integration = integration
        self._ttl = ttl_seconds

    def _key(self, company_id: str) -> str:
        return keys.company_record(self._integration, company_id)

    def load_many(self, company_ids: Iterable[str]) -> dict[str, CompanyRecord | None]:
        """The record of each company (None: never written, or expired), in one round trip."""
        wanted = list(dict.fromkeys(company_ids))
        pipe = self._redis.pipeline(transaction=False)
        for company_id in wanted:
            pipe.hmget(self._key(company_id), "intercom_id", "fingerprint")
        found: dict[str, CompanyRecord | None] = {}
        for company_id, (intercom_id, fingerprint) in zip(wanted, pipe.execute(), strict=True):
            found[company_id] = (
                CompanyRecord(_text(intercom_id) or "", _text(fingerprint) or "") if intercom_id else None
            )
        return found

    def load(self, company_id: str) -> CompanyRecord | None:
        return self.load_many([company_id])[company_id]

    def written(self, company_id: str, intercom_id: str, fingerprint: str) -> None:
        pipe = self._redis.pipeline()
        pipe.hset(self._key(company_id), mapping={"intercom_id": intercom_id, "fingerprint": fingerprint})
        pipe.expire(self._key(company_id), self._ttl)
        pipe.execute()

    def forget(self, company_id: str) -> None:
        """The company is not in Intercom any more: its next sync writes it again."""
        self._redis.delete(self._key(company_id))

    def lock(self, company_id: str) -> Lock:
        """The lock one company's write is made under (a context manager; raises redis-py's
        ``LockError`` when it cannot be had within :data:`COMPANY_LOCK_WAIT_SECONDS`)."""
        return self._redis.lock(
            f"{self._key(company_id)}:lock",
            timeout=COMPANY_LOCK_SECONDS,
            blocking_timeout=COMPANY_LOCK_WAIT_SECONDS,
        )
