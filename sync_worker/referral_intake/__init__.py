"""The referral program's intake beside its webhook: how every referral reaches the pipeline.

One concept a module:

- :mod:`.marks` (pure): a user's place in the program's newest-first order (``signed_up_at``, id);
- :mod:`.highwater`: the walk's high-water mark (the place in the order it stops at);
- :mod:`.pagecache`: users read a page at a time, kept briefly in Redis by id, code and email;
- :mod:`.pagereader`: a referral sync's user read from the newest page, one read in flight and at
  most one per interval for every worker (a burst of webhooks is served from pages);
- :mod:`.pipeline`: :class:`~.pipeline.PagedReferralSync`, the referral pipeline's ``run`` with
  the user read through the page reader (a request about an Intercom contact runs as it is);
- :mod:`.walk`: the reconciliation walk's step (newest first, page by page, until users already
  handled; the unhandled ones stored as syncs served from the pages just read);
- :mod:`.backstop`: the qualification backstop (pending referral contacts that qualify in Intercom);
- :mod:`.tasks`: their Celery tasks on beat (one walk at a time: a lock);
- :mod:`.status`: what those tasks leave in Redis about their runs (the latest ends, the lock), as
  ``/metrics`` reads it.
"""
