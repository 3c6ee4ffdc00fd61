"""The service's Celery app limited by Celery's own per-worker ``rate_limit`` instead (bench only).

``celery -A bench.celery_task_rate worker ...`` runs the service's worker unchanged except:

- the sync task carries ``rate_limit = $BENCH_SYNC_TASK_RATE_LIMIT`` (Celery syntax,
  e.g. ``"3.75/s"``) through ``task_annotations``: every worker process (consumer) starts
  at most that many sync tasks per second, whatever the others do (a token bucket per
  worker, capacity 1);
- the runtime's request hooks do nothing (:class:`sync_worker.http.NoHooks`): no shared
  token is taken, and Intercom's ``X-RateLimit-*`` headers and 429s pause no one. A 429
  still raises :class:`~sync_worker.intercom.IntercomRateLimited` in the client, so the
  task reschedules itself for the window's reset exactly as the service does.

This is what "Celery's ``rate_limit`` set to the same total" means in
``bench/ratelimit_bench.py``; nothing in ``sync_worker`` knows about it.
"""

from __future__ import annotations

import os
from functools import cached_property

from bench._harness import TASK_RATE_ENV
from sync_worker import runtime
from sync_worker.celery_app import SYNC_TASK, app
from sync_worker.config import get_settings
from sync_worker.http import NoHooks, RequestHooks

app.conf.task_annotations = {SYNC_TASK: {"rate_limit": os.environ[TASK_RATE_ENV]}}


class UnlimitedRuntime(runtime.Runtime):
    """The service's runtime with hooks that neither take tokens nor follow Intercom's headers."""

    @cached_property
    def hooks(self) -> RequestHooks:  # type: ignore[override]
        return NoHooks()


# get_runtime() hands this one out in every process of the worker (set before any task runs).
runtime._runtime = UnlimitedRuntime(get_settings())

__all__ = ["app"]
