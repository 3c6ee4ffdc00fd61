"""What a chunk's entries are and how each one is applied, per walk (one class a walk).

Guarantees: a chunk (:mod:`sync_worker.resync.chunks`) runs every entry the same way (the rate
limit, halts, the retry decision, parking) and asks its :class:`ChunkEntries` only what differs:

- :class:`ContactEntries` (the ``intercom_contacts`` walk, the clients integration): an entry is
  an Intercom contact's ``(contact_id, email)``; the chunk first reads the source for all of them
  in one batched call (the integration's ``read_batch``), then each contact goes through
  :meth:`ContactSync.apply_records` (a dry run: :func:`preview`, which computes and compares but
  never writes), exactly as before walks were chosen per integration;
- :class:`UserEntries` (the ``platform_users`` walk): an entry is a whole user record as the
  platform's ``GET /v1/users`` page sent it, so there is nothing to read before applying it: each
  user goes through its pipeline's ``apply(user, request) -> SyncOutcome`` (a dry run: its
  ``preview(user, request) -> status``), keyed by the user's id (``SyncRequest.source_id``);
- every request a chunk makes has the trigger ``schedule`` and ``force_write = not only_changed``,
  and names the integration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from sync_worker.compute import compute_values
from sync_worker.dispatch import SyncRequest
from sync_worker.platform import PlatformClient
from sync_worker.screening import normalise_email
from sync_worker.sync import ContactSync

#: The trigger of a bulk run's syncs.
BULK_TRIGGER = "schedule"
#: Outcome statuses of a contact's sync that mean it was (dry run: would be) written.
WRITTEN = ("synced", "no_account", "stale")

Batch = Mapping[str, list[dict[str, Any]]]


class ChunkEntries(Protocol):
    """The part of a chunk that depends on what its walk queued."""

    #: the integration the entries belong to
    integration: str
    #: whether the chunk reads the source for all its entries (:meth:`read_batch`) before applying them
    batched: bool
    #: errors of that read meaning "the source cannot be read now" (the chunk holds)
    unreadable: tuple[type[Exception], ...]

    def request(self, entry: Any, *, only_changed: bool) -> SyncRequest: ...

    def read_batch(self, platform: PlatformClient, entries: Sequence[Any]) -> Batch: ...

    def apply(self, entry: Any, batch: Batch, request: SyncRequest) -> tuple[str, bool]:
        """Sync one entry: ``(outcome status, whether Intercom was written)``."""
        ...

    def preview(self, entry: Any, batch: Batch, request: SyncRequest) -> tuple[str, bool]:
        """What :meth:`apply` would do, writing nothing: ``(outcome status, whether it would write)``."""
        ...

    def forget_names(self) -> None:
        """A write was refused for a named attribute: list the data attributes again next time."""
        ...


def preview(
    contact_sync: ContactSync, contact_id: str, records: list[dict] | None, request: SyncRequest
) -> str:
    """What :meth:`ContactSync.apply_records` would do, without writing: the outcome status."""
    if records is None:
        return "stale"
    values = compute_values(contact_sync.profile, records, now=contact_sync.clock())
    if not request.force_write and contact_sync.cache.shown(contact_id) == contact_sync.fingerprint(values):
        return "unchanged"
    return "synced" if records else "no_account"


class ContactEntries:
    """``(contact_id, email)`` pairs of Intercom contacts, read in one batch, written by :class:`ContactSync`."""

    batched = True

    def __init__(self, contact_sync: ContactSync):
        self.contact_sync = contact_sync
        self.integration = contact_sync.integration.name
        self.unreadable = contact_sync.integration.unreadable

    def request(self, entry: tuple[str, str], *, only_changed: bool) -> SyncRequest:
        contact_id, email = entry
        return SyncRequest(
            contact_id=contact_id,
            email=email,
            trigger=BULK_TRIGGER,
            force_write=not only_changed,
            integration=self.integration,
        )

    def read_batch(self, platform: PlatformClient, entries: Sequence[tuple[str, str]]) -> Batch:
        emails: Iterable[str] = (email for _, email in entries)
        return self.contact_sync.integration.read_batch(platform, emails)

    def apply(self, entry: tuple[str, str], batch: Batch, request: SyncRequest) -> tuple[str, bool]:
        contact_id, email = entry
        found = batch.get(normalise_email(email), [])
        status = self.contact_sync.apply_records(contact_id, found, request).status
        return status, status in WRITTEN

    def preview(self, entry: tuple[str, str], batch: Batch, request: SyncRequest) -> tuple[str, bool]:
        contact_id, email = entry
        status = preview(self.contact_sync, contact_id, batch.get(normalise_email(email), []), request)
        return status, status in WRITTEN

    def forget_names(self) -> None:
        self.contact_sync.schema.forget()


class UserEntries:
    """Whole user records from the platform's pages, each applied by the integration's pipeline."""

    batched = False
    unreadable: tuple[type[Exception], ...] = ()

    def __init__(self, pipeline: Any, integration: str):
        self.pipeline = pipeline
        self.integration = integration

    def request(self, entry: Mapping[str, Any], *, only_changed: bool) -> SyncRequest:
        email = entry.get("email")
        return SyncRequest(
            source_id=str(entry["user_id"]),
            email=email if isinstance(email, str) and email.strip() else None,
            trigger=BULK_TRIGGER,
            force_write=not only_changed,
            integration=self.integration,
        )

    def read_batch(self, platform: PlatformClient, entries: Sequence[Any]) -> Batch:
        return {}  # the page carried the whole records

    def apply(self, entry: Mapping[str, Any], batch: Batch, request: SyncRequest) -> tuple[str, bool]:
        outcome = self.pipeline.apply(dict(entry), request)
        return outcome.status, bool(outcome.written)

    def preview(self, entry: Mapping[str, Any], batch: Batch, request: SyncRequest) -> tuple[str, bool]:
        outcome = self.pipeline.preview(dict(entry), request)
        return outcome.status, bool(outcome.written)

    def forget_names(self) -> None:
        schema = getattr(self.pipeline, "schema", None)
        if schema is not None:
            schema.forget()
