"""The reconciliation walk's step: the program's users newest first, page by page, down to the mark.

Guarantees of :func:`walk_pages` (one step: at most ``max_pages`` pages):
- it reads pages only (``users_page``, then ``links.next``: one program call a page, never one
  per user) and keeps each page's users in the :class:`~.pagecache.PageCache` with the time
  its read started;
- every user newer than the walk's ``stop_at`` (the high-water mark when the walk started) that
  the pipeline has not handled (``handled``: a lead written or a skip decided) is stored as a sync
  (``store``: ``SyncRequest(integration="referral_leads", source_id=<id>, trigger="schedule")``,
  requested at the page's read, so the task is served the page's record without another call;
  a sync already waiting for the user, its webhook's, takes it in: one run);
- the walk is finished at the first user at or below ``stop_at`` or after the last page; then, and
  only then, the caller may advance the mark to :attr:`WalkState.newest` (the newest user of the
  walk's first page): every user between the two was handled or stored;
- a step that ends before that returns the state to go on from (``next_url``: the page after
  the last one read): no user of a page read is stored twice by one walk's steps, and a step that
  fails re-reads only its page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from sync_worker.dispatch import SyncRequest
from sync_worker.referral import MAX_PER_PAGE
from sync_worker.referral_intake.marks import Mark, mark_of
from sync_worker.referral_intake.pagecache import PageCache

INTEGRATION = "referral_leads"
TRIGGER = "schedule"


@dataclass(frozen=True)
class WalkState:
    """Where a walk is: what travels between its steps (JSON-friendly through :meth:`to_kwargs`)."""

    run_id: str
    stop_at: str | None = None  # Mark text: the high-water mark when the walk started
    newest: str | None = None  # Mark text: the newest user of the walk's first page
    next_url: str | None = None  # None: the first page
    pages: int = 0
    stored: int = 0
    already: int = 0  # users above the mark the pipeline had handled (their webhook's run)
    finished: bool = False

    def to_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> WalkState:
        return cls(**{name: kwargs[name] for name in cls.__dataclass_fields__ if name in kwargs})


def request_for(user: Mapping[str, Any], read_at: float) -> SyncRequest:
    """The sync the walk stores for an unhandled user (pure)."""
    email = user.get("email") if isinstance(user.get("email"), str) else None
    return SyncRequest(
        integration=INTEGRATION, source_id=str(user["id"]), email=email, trigger=TRIGGER, requested_at=read_at
    )


def walk_pages(
    state: WalkState,
    *,
    client: Any,  # sync_worker.referral.ReferralClient
    cache: PageCache,
    handled: Callable[[int], bool],
    store: Callable[[SyncRequest], object],
    clock: Callable[[], float],
    max_pages: int,
    per_page: int = MAX_PER_PAGE,
    on_page: Callable[[WalkState], None] = lambda state: None,
) -> WalkState:
    """Read up to ``max_pages`` pages from ``state`` on; the state after them (module guarantees).
    ``on_page`` is told the state after each page (a lock refresh)."""
    stop_at = Mark.from_text(state.stop_at)
    for _ in range(max_pages):
        started = clock()
        page = (
            client.users_page(per_page=per_page)
            if state.next_url is None
            else client.next_page(state.next_url)
        )
        cache.store(page.users, started)
        first = state.next_url is None and page.users
        cache.note_read(started, page.users[0]["id"] if first else None)
        newest = state.newest
        if newest is None and page.users:
            newest = mark_of(page.users[0]).to_text()
        stored = already = 0
        reached = False
        for user in page.users:
            if stop_at is not None and mark_of(user) <= stop_at:
                reached = True
                break
            if handled(user["id"]):
                already += 1
                continue
            store(request_for(user, started))
            stored += 1
        state = replace(
            state,
            newest=newest,
            next_url=page.next_url,
            pages=state.pages + 1,
            stored=state.stored + stored,
            already=state.already + already,
            finished=reached or page.next_url is None,
        )
        on_page(state)
        if state.finished:
            break
    return state
