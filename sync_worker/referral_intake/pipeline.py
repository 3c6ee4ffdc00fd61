"""The referral pipeline as the tasks run it: each user read from pages when it can be.

Guarantees of :class:`PagedReferralSync` (what ``runtime.pipeline("referral_leads")`` answers):
- a request about a referral user named by its id or code (no Intercom ``contact_id``) from the
  program's webhook or the walk (:data:`PAGED_TRIGGERS`) reads its user through
  :class:`~.pagereader.PageReader` (a record read at or after the request was stored) and runs
  the pipeline's ``apply`` on it: the same steps as the pipeline's own ``run`` after its read; a
  user the program does not have runs the pipeline's ``run`` (which reads once more and ends
  ``gone``, as it always does);
- any other request (about an Intercom contact: Intercom's webhooks, the backstop; a replay; a
  user named by email alone) runs the pipeline's ``run`` unchanged;
- everything else (``intercom_calls``, ``handled``, ``qualify_contact``, ``options``) is the
  pipeline's own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sync_worker.dispatch import SyncRequest
from sync_worker.referral_intake.pagecache import PageCache
from sync_worker.referral_intake.pagereader import LOCK_KEY, LOCK_TTL_SECONDS, PageReader
from sync_worker.resync.lock import RunLock
from sync_worker.sync import SyncOutcome

if TYPE_CHECKING:
    from sync_worker.runtime import Runtime


#: The triggers about a user who just joined (its webhook) or a page just read (the walk): its user
#: is on the newest page. Any other (a replay, a retry's fresh trigger, a user named by email alone)
#: reads the user as the pipeline does, one call, never a page and then the user.
PAGED_TRIGGERS = frozenset({"webhook", "schedule"})


class PagedReferralSync:
    def __init__(self, inner: Any, reader: PageReader):
        self.inner = inner  # sync_worker.integrations.referral_leads.pipeline.ReferralLeadSync
        self.reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def intercom_calls(self, request: SyncRequest) -> int:
        return self.inner.intercom_calls(request)

    def run(self, request: SyncRequest) -> list[SyncOutcome]:
        if request.contact_id or request.trigger not in PAGED_TRIGGERS or not request.source_id:
            return self.inner.run(request)
        user = self.reader.user(request.source_id, request.email, requested_at=request.requested_at)
        if user is None:
            return self.inner.run(request)
        return [self.inner.apply(user, request)]


def paged(inner: Any, runtime: Runtime) -> PagedReferralSync:
    """``inner`` (the referral pipeline) wired to the runtime's program client and Redis."""
    cache = PageCache(runtime.redis)
    lock = RunLock(runtime.redis, LOCK_KEY, ttl_seconds=LOCK_TTL_SECONDS)
    return PagedReferralSync(inner, PageReader(runtime.referral, cache, lock))
