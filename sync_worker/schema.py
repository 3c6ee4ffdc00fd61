"""Make sure the custom data attributes a sync writes exist in Intercom.

Guarantees:
- :meth:`AttributeSchema.ensure` returns only when every name given exists in
  the workspace as a ``string`` attribute of the schema's ``model`` (``contact`` unless told,
  ``company`` for company attributes), creating the missing ones (each once: the known names
  are cached in Redis for every worker, one cache per model);
- an attribute that exists with another type raises :class:`AttributeTypeClash`
  (permanent: Intercom never changes an attribute's type) naming it;
- Intercom is listed with archived attributes included: a name that is archived (it can be
  neither written nor created again) raises :class:`ArchivedAttribute` naming it, and names
  that would take the workspace past Intercom's :data:`MAX_CUSTOM_ATTRIBUTES` raise
  :class:`AttributeLimitReached` before any is created; these three are the workspace-wide
  :data:`SCHEMA_ERRORS` (a halt, :mod:`sync_worker.halts`, not a dead letter per contact);
  a write refused for a named attribute (:func:`names_may_be_stale`: archived after it was
  cached) makes the caller forget the cached names and try once more, so it is found then;
- Intercom is listed at most once per ``ttl_seconds`` per workspace while all
  names are known, so a steady-state sync costs no schema call; listing and
  creating happen under a Redis lock, so workers starting together do it once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import redis as redis_lib

from sync_worker import keys
from sync_worker.errors import PermanentError
from sync_worker.intercom import IntercomClient, InvalidAttribute

DATA_TYPE = "string"


#: Intercom's cap on a workspace's custom data attributes (archived ones are not counted here).
MAX_CUSTOM_ATTRIBUTES = 250


class AttributeTypeClash(PermanentError):
    code = "attribute_type_clash"


class ArchivedAttribute(PermanentError):
    code = "attribute_archived"


class AttributeLimitReached(PermanentError):
    code = "attribute_limit_reached"


#: Errors about the workspace's schema, never about one contact.
SCHEMA_ERRORS = (AttributeTypeClash, ArchivedAttribute, AttributeLimitReached)


def names_may_be_stale(error: BaseException) -> bool:
    """Whether a refused write says the cached names may be out of date (pure): Intercom refused a
    named custom attribute, e.g. one archived or deleted since it was listed. The caller forgets
    the names (:meth:`AttributeSchema.forget`) and tries once more: the next listing shows it."""
    return isinstance(error, InvalidAttribute) and error.attribute is not None


def listing_problem(
    wanted: list[str], attributes: list[dict]
) -> ArchivedAttribute | AttributeLimitReached | None:
    """What stops ``wanted`` from being written, given the workspace's custom data attributes
    (archived included), or None (pure). Names compare case-insensitively, as Intercom's do."""
    live = {a["name"].casefold() for a in attributes if not a.get("archived")}
    archived = {a["name"].casefold(): a["name"] for a in attributes if a.get("archived")}
    for name in wanted:
        if name.casefold() in archived and name.casefold() not in live:
            return ArchivedAttribute(
                f"custom attribute {archived[name.casefold()]!r} is archived in Intercom: unarchive it, "
                "or write under another name (SYNC_ATTRIBUTE_NAMES)"
            )
    missing = [name for name in wanted if name.casefold() not in live]
    if missing and len(live) + len(missing) > MAX_CUSTOM_ATTRIBUTES:
        return AttributeLimitReached(
            f"Intercom holds {len(live)} custom data attributes of its cap of {MAX_CUSTOM_ATTRIBUTES}: "
            f"{len(missing)} more cannot be created ({', '.join(repr(n) for n in missing)}); "
            "archive unused attributes"
        )
    return None


def workspace_id(api_url: str, token: str) -> str:
    """A stable, non-secret name for the workspace a token writes to."""
    return hashlib.sha256(f"{api_url}|{token}".encode()).hexdigest()[:16]


class AttributeSchema:
    def __init__(
        self,
        intercom: IntercomClient,
        client: redis_lib.Redis,
        workspace: str,
        *,
        ttl_seconds: int = 3600,
        model: str = "contact",
    ):
        self._intercom = intercom
        self._redis = client
        self._model = model
        self._key = keys.data_attributes(workspace, model)
        self._ttl = ttl_seconds

    def forget(self) -> None:
        """Drop the cached names: the next :meth:`ensure` lists Intercom again."""
        self._redis.delete(self._key)

    def _known(self) -> dict[str, str]:
        raw = self._redis.hgetall(self._key)
        return {
            k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in raw.items()
        }

    def _remember(self, attributes: dict[str, str]) -> None:
        if attributes:
            pipe = self._redis.pipeline()
            pipe.hset(self._key, mapping=attributes)
            pipe.expire(self._key, self._ttl)
            pipe.execute()

    def _check(self, name: str, data_type: str) -> None:
        if data_type != DATA_TYPE:
            raise AttributeTypeClash(
                f"custom attribute {name!r} exists in Intercom as {data_type!r}, not {DATA_TYPE!r}; "
                "rename it in SYNC_ATTRIBUTE_NAMES or archive the old attribute"
            )

    def ensure(self, names: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(names))
        known = self._known()
        if all(name in known for name in wanted):
            for name in wanted:
                self._check(name, known[name])
            return
        # One worker at a time lists and creates, so N workers starting together cost one round.
        with self._redis.lock(f"{self._key}:lock", timeout=60, blocking_timeout=60):
            self._ensure_locked(wanted)

    def _ensure_locked(self, wanted: list[str]) -> None:
        known = self._known()
        if any(name not in known for name in wanted):
            attributes = [
                attribute
                for attribute in self._intercom.list_data_attributes(model=self._model)
                if attribute.get("custom", True)
            ]
            listed = {
                attribute["name"]: attribute.get("data_type", DATA_TYPE)
                for attribute in attributes
                if not attribute.get("archived")
            }
            self._remember(listed)
            known.update(listed)
            problem = listing_problem(wanted, attributes)
            if problem is not None:
                raise problem
        for name in wanted:
            if name in known:
                self._check(name, known[name])
                continue
            created = self._intercom.create_data_attribute(name, data_type=DATA_TYPE, model=self._model)
            self._remember({name: created.get("data_type", DATA_TYPE)})
