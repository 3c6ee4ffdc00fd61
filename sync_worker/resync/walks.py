"""What a bulk re-sync walks, chosen per integration: the walks by name.

An integration names its walk (:attr:`Integration.resync_walks`); :func:`walk_for` builds it for a
process's runtime. A walk says where the run's pages come from, what of a page is queued (and
what is counted skipped), which upstream it reads (a walk step holds while that upstream is
halted) and what its chunks' entries are (:mod:`sync_worker.resync.entries`). The run record,
backpressure, checkpoints, resumes, locks and chunks are the same for every walk.

Guarantees:
- :data:`INTERCOM_CONTACTS`: Intercom's ``GET /contacts``, :data:`PAGE_SIZE` a page; an entry is a
  contact's ``(id, email)``; contacts without an email or refused by the screening are skipped;
  a chunk reads the platform for its contacts in one batch (the clients integration);
- :data:`PLATFORM_USERS`: the platform's ``GET /v1/users`` (cursor), :data:`USERS_PAGE_SIZE` a
  page, the source of truth for who exists; an entry is the whole user record the page carried
  (no read per user); every user is queued;
- a page with no items ends the walk (its cursor is not followed), so a source answering empty
  pages with a cursor cannot loop a run for ever;
- :func:`walk_for` refuses a walk name it does not know (:class:`UnknownWalk`, naming the known
  ones) the first time a process builds the integration's walk.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from sync_worker.halts import INTERCOM, PLATFORM
from sync_worker.integrations import Integration
from sync_worker.intercom import IntercomClient
from sync_worker.platform import PlatformClient
from sync_worker.resync.entries import ChunkEntries, ContactEntries, UserEntries
from sync_worker.resync.settings import PAGE_SIZE
from sync_worker.screening import screen

if TYPE_CHECKING:
    from sync_worker.runtime import Runtime

INTERCOM_CONTACTS = "intercom_contacts"
PLATFORM_USERS = "platform_users"
#: The platform's largest page of ``GET /v1/users``.
USERS_PAGE_SIZE = 500


class UnknownWalk(ValueError):
    """An integration names a walk this service does not have."""


@dataclass(frozen=True)
class Page:
    """One page of a walk: its items, the cursor of the next one (None: the last), and the
    source's total when it says one."""

    items: Sequence[Mapping[str, Any]]
    next_cursor: str | None
    total: int | None = None


class Walk(Protocol):
    name: ClassVar[str]
    #: the upstream its pages come from (:mod:`sync_worker.halts`)
    upstream: ClassVar[str]
    #: an error reading a page that is a permanent refusal is the upstream's contract (a halt)
    contract_halts: ClassVar[bool]

    def read_page(self, cursor: str | None) -> Page: ...

    def plan(self, items: Iterable[Mapping[str, Any]]) -> tuple[list[Any], dict[str, int]]: ...


def plan_page(
    contacts: Iterable[Mapping[str, Any]], excluded: Sequence[str]
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """The ``(contact_id, email)`` pairs to sync from one page, and the page's counts (pure)."""
    pairs: list[tuple[str, str]] = []
    counts = {"seen": 0, "skipped": 0, "no_email": 0, "queued": 0}
    for contact in contacts:
        counts["seen"] += 1
        email = (contact.get("email") or "").strip()
        if not email:
            counts["skipped"] += 1
            counts["no_email"] += 1
            continue
        if screen(email, excluded=excluded) is not None:
            counts["skipped"] += 1
            continue
        pairs.append((str(contact["id"]), email))
        counts["queued"] += 1
    return pairs, counts


def plan_users(users: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every user of one page, as its record, and the page's counts (pure)."""
    queued = [dict(user) for user in users]
    return queued, {"seen": len(queued), "queued": len(queued)}


class IntercomContacts:
    name = INTERCOM_CONTACTS
    upstream = INTERCOM
    contract_halts = False

    def __init__(self, intercom: IntercomClient, excluded: Sequence[str]):
        self.intercom, self.excluded = intercom, tuple(excluded)

    def read_page(self, cursor: str | None) -> Page:
        listed = self.intercom.list_contacts(per_page=PAGE_SIZE, starting_after=cursor)
        next_cursor = listed.next_cursor if listed.contacts else None
        return Page(listed.contacts, next_cursor, getattr(listed, "total_count", None))

    def plan(self, items: Iterable[Mapping[str, Any]]) -> tuple[list[Any], dict[str, int]]:
        pairs, counts = plan_page(items, self.excluded)
        return list(pairs), counts

    @staticmethod
    def entries(pipeline: Any, integration: str) -> ChunkEntries:
        return ContactEntries(pipeline)


class PlatformUsers:
    name = PLATFORM_USERS
    upstream = PLATFORM
    contract_halts = True

    def __init__(self, platform: PlatformClient, page_size: int = USERS_PAGE_SIZE):
        self.platform, self.page_size = platform, page_size

    def read_page(self, cursor: str | None) -> Page:
        page = self.platform.users_page(cursor, self.page_size)
        return Page(page.users, page.next_cursor if page.users else None)

    def plan(self, items: Iterable[Mapping[str, Any]]) -> tuple[list[Any], dict[str, int]]:
        users, counts = plan_users(items)
        return list(users), counts

    @staticmethod
    def entries(pipeline: Any, integration: str) -> ChunkEntries:
        return UserEntries(pipeline, integration)


WALKS: dict[str, type[IntercomContacts] | type[PlatformUsers]] = {
    INTERCOM_CONTACTS: IntercomContacts,
    PLATFORM_USERS: PlatformUsers,
}


def walk_kind(integration: Integration) -> type[IntercomContacts] | type[PlatformUsers]:
    """The class of the walk ``integration`` names (:class:`UnknownWalk` for another name)."""
    try:
        return WALKS[integration.resync_walks]
    except KeyError:
        known = ", ".join(sorted(WALKS))
        raise UnknownWalk(
            f"integration {integration.name!r} walks {integration.resync_walks!r} (known walks: {known})"
        ) from None


def walk_for(integration: Integration, runtime: Runtime) -> Walk:
    """``integration``'s walk, reading through ``runtime``'s clients (only the one it reads is built)."""
    kind = walk_kind(integration)
    if kind is PlatformUsers:
        return PlatformUsers(runtime.platform)
    return IntercomContacts(runtime.intercom, runtime.settings.excluded_emails)
