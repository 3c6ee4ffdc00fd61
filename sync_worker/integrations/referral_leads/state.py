"""What the referral-leads integration keeps in Redis, per referral user (keys in :mod:`sync_worker.keys`).

Guarantees:
- the pairing referral id <-> Intercom contact id (and the lead's email -> referral id) is kept
  without expiry (:meth:`ReferralState.pair`), so a lead later merged or converted is still found;
- :meth:`ReferralState.claim_qualification` lets exactly one run report a referral: it answers
  ``reported`` when the record says it was reported, ``busy`` while another run holds the claim,
  ``claimed`` (with the claim set, expiring after ``ttl``, so a run that died lets it go) in one
  atomic script; :meth:`ReferralState.mark_reported` records the report without expiry and lets
  the claim go; :meth:`ReferralState.release_qualification` lets only its own claim go;
- :meth:`ReferralState.lock_creation` lets one run at a time create a referral's lead;
- the value last seen and the fingerprint of what the lead shows are written only after what
  they describe happened (the report, the write).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis as redis_lib

from sync_worker import keys

#: How long a referrer's name and email are kept (the program's calls cost budget).
REFERRER_TTL_SECONDS = 24 * 3600
CREATION_LOCK_SECONDS = 60

_CLAIM = """
if redis.call('HEXISTS', KEYS[1], 'reported_at') == 1 then
  return 'reported'
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  return 'claimed'
end
return 'busy'
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ReferralRecord:
    """One referral's record (all None / False when there is none)."""

    contact_id: str | None = None
    email: str | None = None
    seen: str | None = None
    seen_known: bool = False
    shown: str | None = None
    reported: bool = False
    skipped: str | None = None

    @classmethod
    def from_hash(cls, fields: Mapping[Any, Any]) -> ReferralRecord:
        found = {_text(name): _text(value) for name, value in fields.items()}
        return cls(
            contact_id=found.get("contact_id") or None,
            email=found.get("email") or None,
            seen=found.get("seen") or None,
            seen_known="seen" in found,
            shown=found.get("shown") or None,
            reported=bool(found.get("reported_at")),
            skipped=found.get("skipped") or None,
        )

    @property
    def handled(self) -> bool:
        """A lead was written for it, or it was skipped (the reconciliation walk stops at these)."""
        return bool(self.contact_id or self.skipped)


class ReferralState:
    def __init__(self, client: redis_lib.Redis):
        self._redis = client

    def load(self, referral_id: int | str) -> ReferralRecord:
        return ReferralRecord.from_hash(self._redis.hgetall(keys.referral(str(referral_id))))

    def referral_for_email(self, email: str | None) -> str | None:
        if not email or not email.strip():
            return None
        return _text(self._redis.get(keys.referral_email(email)))

    def pair(
        self,
        referral_id: int | str,
        contact_id: str,
        email: str | None,
        *,
        shown: str | None,
        seen: str | None = None,
        set_seen: bool = False,
    ) -> None:
        """The referral's lead is ``contact_id`` (with ``email``), showing ``shown``; ``set_seen``:
        its qualifying value is ``seen`` as of now (a first sight's baseline)."""
        fields: dict[str, str] = {"contact_id": contact_id}
        if email:
            fields["email"] = email.strip().lower()
        if shown:
            fields["shown"] = shown
        if set_seen:
            fields["seen"] = seen or ""
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(keys.referral(str(referral_id)), mapping=fields)
        pipe.hdel(keys.referral(str(referral_id)), "skipped")
        if email:
            pipe.set(keys.referral_email(email), str(referral_id))
        pipe.execute()

    def forget_contact(self, referral_id: int | str) -> None:
        """The paired contact is gone (merged or deleted): find it again next time."""
        self._redis.hdel(keys.referral(str(referral_id)), "contact_id", "shown")

    def remember_seen(self, referral_id: int | str, seen: str | None) -> None:
        self._redis.hset(keys.referral(str(referral_id)), "seen", seen or "")

    def mark_shown(self, referral_id: int | str, shown: str) -> None:
        self._redis.hset(keys.referral(str(referral_id)), "shown", shown)

    def mark_skipped(self, referral_id: int | str, reason: str) -> None:
        self._redis.hset(keys.referral(str(referral_id)), "skipped", reason)

    def claim_qualification(self, referral_id: int | str, token: str, *, ttl: int) -> str:
        answer = self._redis.eval(
            _CLAIM, 2, keys.referral(str(referral_id)), keys.referral_qualifying(str(referral_id)), token, ttl
        )
        return _text(answer) or "busy"

    def release_qualification(self, referral_id: int | str, token: str) -> None:
        self._redis.eval(_RELEASE, 1, keys.referral_qualifying(str(referral_id)), token)

    def mark_reported(self, referral_id: int | str, *, by: str) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(
            keys.referral(str(referral_id)), mapping={"reported_at": str(time.time()), "reported_by": by}
        )
        pipe.delete(keys.referral_qualifying(str(referral_id)))
        pipe.execute()

    def lock_creation(self, referral_id: int | str, token: str) -> bool:
        key = keys.referral_creating(str(referral_id))
        return bool(self._redis.set(key, token, nx=True, ex=CREATION_LOCK_SECONDS))

    def unlock_creation(self, referral_id: int | str, token: str) -> None:
        self._redis.eval(_RELEASE, 1, keys.referral_creating(str(referral_id)), token)

    def referrer(self, referrer_id: int | str) -> dict[str, Any] | None:
        kept = self._redis.get(keys.referral_referrer(str(referrer_id)))
        return json.loads(kept) if kept else None

    def keep_referrer(self, referrer_id: int | str, referrer: Mapping[str, Any]) -> None:
        document = {"first_name": referrer.get("first_name"), "email": referrer.get("email")}
        self._redis.set(
            keys.referral_referrer(str(referrer_id)), json.dumps(document), ex=REFERRER_TTL_SECONDS
        )
