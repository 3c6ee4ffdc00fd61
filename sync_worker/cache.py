"""Last known values: what each contact was last shown, and when it was read.

Guarantees:
- :meth:`LastKnownValues.store` keeps, per contact id, the computed values of
  the last successful platform read together with the time of that read; it is
  written only after Intercom accepted those values, so the cache never holds
  something the contact was not shown;
- :meth:`LastKnownValues.load` returns them (or None) for the staleness path;
  :meth:`LastKnownValues.find` by contact id, else by the email they were stored with;
- entries expire after ``ttl_seconds`` (default 90 days) so a workspace's
  departed contacts do not accumulate for ever;
- :meth:`LastKnownValues.mark_shown` keeps the fingerprint of what the contact
  shows now (live *or* stale; :mod:`sync_worker.fingerprint`: the names and values
  written and the profile's version), so "write only what changed" compares against
  what Intercom really holds;
- each integration keeps its own (``LastKnownValues(redis, integration=...)``, keyed by
  :func:`sync_worker.keys.contact_key`): one integration's values never show as another's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import redis as redis_lib

from sync_worker import keys

DEFAULT_TTL_SECONDS = 90 * 24 * 3600


@dataclass(frozen=True)
class CachedValues:
    values: dict[str, str | None]
    fetched_at: datetime


class LastKnownValues:
    def __init__(
        self,
        client: redis_lib.Redis,
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        integration: str = keys.LEGACY_INTEGRATION,
    ):
        self._redis = client
        self._ttl = ttl_seconds
        self.integration = integration

    def _by_id(self, contact_id: str) -> str:
        return keys.contact_key(contact_id, None, self.integration)

    def _by_email(self, email: str) -> str:
        return keys.contact_key(None, email, self.integration)

    def store(
        self,
        contact_id: str,
        values: Mapping[str, str | None],
        fetched_at: datetime,
        *,
        email: str | None = None,
    ) -> None:
        """Keep ``values`` for the contact; with ``email``, also find them by that address later."""
        document = {"values": dict(values), "fetched_at": fetched_at.astimezone(UTC).isoformat()}
        pipe = self._redis.pipeline()
        pipe.set(keys.last_known(self._by_id(contact_id)), json.dumps(document), ex=self._ttl)
        if email:
            pipe.set(keys.last_known(self._by_email(email)), contact_id, ex=self._ttl)
        pipe.execute()

    def load_by_email(self, email: str) -> tuple[str, CachedValues] | None:
        """The contact id and last known values last stored for ``email`` (trimmed, case-insensitive)."""
        contact_id = self._redis.get(keys.last_known(self._by_email(email)))
        if not contact_id:
            return None
        contact_id = contact_id.decode() if isinstance(contact_id, bytes) else contact_id
        cached = self.load(contact_id)
        return (contact_id, cached) if cached else None

    def find(self, contact_id: str | None, email: str | None = None) -> CachedValues | None:
        """The last known values stored for ``contact_id``, else (given ``email``) for ``email``."""
        cached = self.load(contact_id) if contact_id else None
        if cached is None and email:
            found = self.load_by_email(email)
            cached = found[1] if found else None
        return cached

    def load(self, contact_id: str) -> CachedValues | None:
        raw = self._redis.get(keys.last_known(self._by_id(contact_id)))
        if not raw:
            return None
        document = json.loads(raw)
        return CachedValues(document["values"], datetime.fromisoformat(document["fetched_at"]))

    def mark_shown(self, contact_id: str, fingerprint: str) -> None:
        self._redis.set(keys.shown(self._by_id(contact_id)), fingerprint, ex=self._ttl)

    def shown(self, contact_id: str) -> str | None:
        raw = self._redis.get(keys.shown(self._by_id(contact_id)))
        return raw.decode() if isinstance(raw, bytes) else raw
