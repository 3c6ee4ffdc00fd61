"""A referral sync's user, read from the program's newest page: a burst of webhooks costs pages.

Guarantees of :meth:`PageReader.user`:
- the user it answers was read through the program's API at or after the request was stored
  (:class:`~.pagecache.PageCache`'s ``not_before``), never taken from the webhook's body;
- every worker together keeps at most one page read in flight (a Redis lock) and starts one at
  most every ``min_interval`` seconds: the syncs waiting meanwhile are all served by the next
  page (``per_page`` of the newest users; a user joined within seconds is among them), so a
  burst of N webhooks costs about one call per ``min_interval`` instead of N; a lone webhook finds
  no read due and reads at once (one call, as reading the user would);
- while users are joining (:meth:`PageReader.keep_fresh`: the newest page's first user changed at
  the last read) any run reads the newest page again once ``min_interval`` has passed, so a user
  is kept soon after its join, while it is still on the newest page: syncs that run long after
  their webhook (a backlog) find their user kept; the reads stop one read after the joins do;
- it waits for a page at most ``wait`` seconds; then, or when a page read after the request did
  not have the user (an older user, more than ``per_page`` joined since, another identifier), it
  reads the user itself (``ReferralClient.user``: one call), so a request never waits long nor
  goes unanswered; None: the program has no such user;
- the client's errors are raised as they are (the task's retries, the shared limiter's waits).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from sync_worker.keys import PREFIX
from sync_worker.referral import MAX_PER_PAGE
from sync_worker.referral_intake.pagecache import CODE_PREFIX, PageCache
from sync_worker.resync.lock import RunLock

LOCK_KEY = f"{PREFIX}:referral-page:reading"
#: A reader that died holding the lock blocks others this long at most.
LOCK_TTL_SECONDS = 15.0
MIN_INTERVAL_SECONDS = 0.5
WAIT_SECONDS = 3.0
POLL_SECONDS = 0.02


def identifier_of(source_id: str | None, email: str | None) -> str | None:
    """What the program reads the user by: its id, its code, else its email (pure)."""
    if source_id:
        return source_id.removeprefix(CODE_PREFIX)
    return email.strip() if email and email.strip() else None


class PageReader:
    def __init__(
        self,
        client: Any,  # sync_worker.referral.ReferralClient
        cache: PageCache,
        lock: RunLock,
        *,
        per_page: int = MAX_PER_PAGE,
        min_interval: float = MIN_INTERVAL_SECONDS,
        wait: float = WAIT_SECONDS,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.cache = cache
        self.lock = lock
        self.per_page = per_page
        self.min_interval = min_interval
        self.wait = wait
        self._clock = clock
        self._sleep = sleep

    def user(self, source_id: str | None, email: str | None, *, requested_at: float) -> dict[str, Any] | None:
        """The user a request names, read at or after ``requested_at`` (module guarantees)."""
        self.keep_fresh()
        deadline = time.monotonic() + self.wait
        while source_id:  # by its email alone: the program's read answers the newest of that email
            found = self.cache.lookup(source_id, not_before=requested_at)
            if found is not None:
                return found
            last_read = self.cache.read_at()
            if last_read >= requested_at or time.monotonic() >= deadline:
                break  # a page read since did not have it, or waiting longer costs more than a read
            if self._clock() - last_read >= self.min_interval and self._read_newest_page():
                continue
            self._sleep(POLL_SECONDS)
        identifier = identifier_of(source_id, email)
        return self.client.user(identifier) if identifier else None

    def keep_fresh(self) -> None:
        """While users are joining (the last read showed a new newest user), read the newest page
        again once ``min_interval`` has passed, whatever this request needs: each user is then kept
        within about ``min_interval`` of its join, while it is still on the newest page, so a
        backlog of any depth is served from pages (a request read late finds its user kept)."""
        read_at, moving = self.cache.freshness()
        if moving and self._clock() - read_at >= self.min_interval:
            self._read_newest_page()

    def _read_newest_page(self) -> bool:
        """Read the newest page unless another reader is at it; True when this one read it."""
        owner = uuid.uuid4().hex
        if not self.lock.acquire(owner):
            return False
        try:
            if self._clock() - self.cache.read_at() < self.min_interval:
                return True  # another reader's page landed meanwhile: look at it
            started = self._clock()
            page = self.client.users_page(per_page=self.per_page)
            self.cache.store(page.users, started)
            self.cache.note_read(started, page.users[0]["id"] if page.users else None)
        finally:
            self.lock.release(owner)
        return True
